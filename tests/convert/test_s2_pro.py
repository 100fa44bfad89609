"""S2 converter for v2Pro / v2ProPlus: the 2-byte heads 05/06 both ways, bit-exact export round trip,
version detection (head, stored config, state dict), architecture from shapes, what the original's
loader reads (``load_sovits_new``: restore ``PK``, ``torch.load``), an SV checkpoint given as SoVITS."""
import sys
import types

import numpy as np
import pytest

import gsv_jax
from gsv_jax.convert import s2 as conv
from gsv_jax.inference.s2 import S2
from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.io.trees import flatten
from tests.conftest import golden_path


@pytest.fixture(scope="module")
def golden_file():
    return load_torch_file(golden_path("s2_v2ProPlus_tiny.pth"))


@pytest.fixture(scope="module")
def s2():
    return gsv_jax.load_s2(golden_path("s2_v2ProPlus_tiny.pth"))


def _head(path):
    with open(path, "rb") as f:
        return f.read(2)


def test_golden_head_and_keys(golden_file):
    assert _head(golden_path("s2_v2ProPlus_tiny.pth")) == b"06"
    sd = golden_file["weight"]
    assert len(sd) == 444 and not any(k.startswith("enc_q.") for k in sd)
    for k in ("sv_emb.weight", "sv_emb.bias", "ge_to512.weight", "ge_to512.bias", "prelu.weight"):
        assert k in sd


def test_export_round_trip_is_bit_exact(s2, golden_file, tmp_path):
    out = tmp_path / "export.pth"
    gsv_jax.save_s2_torch(s2, out)
    assert _head(out) == b"06"  # what the original's my_save2 writes for v2ProPlus
    mine, head = load_torch_file(out, return_head=True)
    assert head == b"06"
    ref = golden_file["weight"]
    assert list(mine["weight"]) == list(ref)
    for k, v in ref.items():
        assert mine["weight"][k].dtype == v.dtype == np.float16 and np.array_equal(mine["weight"][k], v), k
    assert isinstance(mine["config"], HParams) and mine["config"] == golden_file["config"]
    again = gsv_jax.load_s2(out)
    assert again.version == "v2ProPlus" and again.config == s2.config
    a, b = flatten(s2.params), flatten(again.params)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("version,head", [("v2Pro", b"05"), ("v2ProPlus", b"06")])
def test_export_without_stored_config_writes_the_family_head(s2, tmp_path, version, head):
    """A model without the file's HParams (e.g. trained here) gets a fresh config and its family's head."""
    import dataclasses

    cfg = dataclasses.replace(s2.config, version=version)
    out = tmp_path / f"{version}.pth"
    gsv_jax.save_s2_torch(S2(cfg, s2.params, buffers=s2.buffers), out)
    assert _head(out) == head
    obj = load_torch_file(out)
    model = obj["config"]["model"]
    assert model["version"] == version and model["gin_channels"] == 256 and "sv_dim" not in model
    assert model["upsample_kernel_sizes"] == [20, 16, 8, 2, 2]
    back = gsv_jax.load_s2(out)
    assert back.version == version and back.config == cfg


def test_export_is_what_the_original_loader_reads(s2, tmp_path):
    """``process_ckpt.load_sovits_new``: a head other than PK is replaced by PK, then torch.load; the
    state dict then fits the original's SynthesizerTrn(version=...) built from hps.model (same keys,
    dtypes and shapes as the file the original wrote)."""
    torch = pytest.importorskip("torch")
    import io

    out = tmp_path / "export.pth"
    gsv_jax.save_s2_torch(s2, out)
    data = out.read_bytes()
    assert data[:2] == b"06"
    stub = types.ModuleType("utils")

    class HP:
        pass

    stub.HParams = HP
    saved = sys.modules.get("utils")
    sys.modules["utils"] = stub
    try:
        obj = torch.load(io.BytesIO(b"PK" + data[2:]), map_location="cpu", weights_only=False)
        ref = torch.load(io.BytesIO(b"PK" + golden_path("s2_v2ProPlus_tiny.pth").read_bytes()[2:]),
                         map_location="cpu", weights_only=False)
    finally:
        if saved is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = saved
    assert obj["config"].model.__dict__ == ref["config"].model.__dict__
    assert obj["config"].model.version == "v2ProPlus"
    assert list(obj["weight"]) == list(ref["weight"])
    for k, v in ref["weight"].items():
        assert obj["weight"][k].dtype == v.dtype and torch.equal(obj["weight"][k], v), k


def test_detection_from_head_config_and_state_dict(golden_file, tmp_path):
    sd = dict(golden_file["weight"])
    hps = golden_file["config"]
    path = tmp_path / "m.pth"
    save_torch_file({"weight": sd, "config": hps, "info": "x"}, path, head=b"05")
    assert gsv_jax.load_s2(path).version == "v2Pro"  # the head decides, as in the original
    save_torch_file({"weight": sd, "config": hps, "info": "x"}, path)  # plain zip: the stored config names it
    assert gsv_jax.load_s2(path).version == "v2ProPlus"
    # a training checkpoint (G_*.pth: plain zip, no config): the state dict decides and gives the widths
    save_torch_file({"model": sd, "iteration": 1, "optimizer": None, "learning_rate": 1e-4}, path)
    g = gsv_jax.load_s2(path)
    assert g.version == "v2Pro"  # 96 decoder channels (tiny) is not v2ProPlus's 768: same code, other name
    c = g.config
    assert (c.gin_channels, c.sv_dim, c.upsample_initial_channel, c.upsample_kernel_sizes, c.p_dropout) == (
        256, 20480, 96, (20, 16, 8, 2, 2), 0.0)
    sd768 = {"enc_p.text_embedding.weight": (732, 192), "sv_emb.weight": (1024, 20480),
             "dec.conv_pre.weight": (768, 192, 7)}
    from gsv_jax import families

    assert families.detect_s2(sd768) == ("v2ProPlus", False)
    assert families.detect_s2({**sd768, "dec.conv_pre.weight": (512, 192, 7)}) == ("v2Pro", False)


def test_config_from_state_dict(golden_file):
    cfg = conv.config_from_state_dict(golden_file["weight"], "v2ProPlus")
    ref = golden_file["config"]["model"]
    for k in ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
              "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels", "resblock_kernel_sizes"):
        assert list(np.atleast_1d(cfg[k])) == list(np.atleast_1d(ref[k])), k
    assert cfg["sv_dim"] == 20480


def test_sv_checkpoint_given_as_sovits_is_refused():
    with pytest.raises(CheckpointError, match="speaker-verification model .*load_sv.*sv/"):
        gsv_jax.load_s2(golden_path("sv_eres2netv2_tiny.ckpt"))


def test_wrong_sv_width_is_listed(golden_file, tmp_path):
    sd = dict(golden_file["weight"])
    del sd["prelu.weight"]
    path = tmp_path / "bad.pth"
    save_torch_file({"weight": sd, "config": golden_file["config"], "info": "x"}, path, head=b"06")
    with pytest.raises(CheckpointError, match="1 missing .*prelu.weight"):
        gsv_jax.load_s2(path)
