"""S2 checkpoint converter: key maps, export round trip (bit-exact fp16), weight-norm styles, version
detection and refusal of unsupported versions, discriminator files."""
import sys
import types

import numpy as np
import pytest

import gsv_jax
from gsv_jax.convert import s2 as conv
from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.io.trees import flatten
from tests.conftest import golden_path


@pytest.fixture(scope="module")
def golden_file():
    return load_torch_file(golden_path("s2_v2_tiny.pth"))


@pytest.fixture(scope="module")
def s2():
    return gsv_jax.load_s2(golden_path("s2_v2_tiny.pth"))


def test_key_map_is_a_bijection(golden_file):
    for k in golden_file["weight"]:
        assert conv.path_to_torch_key(conv.torch_key_to_path(k)) == k
    assert conv.torch_key_to_path("enc_p.encoder_ssl.norm_layers_1.0.gamma") == (
        "enc_p", "encoder_ssl", "norm_layers_1_0", "gamma")
    assert conv.path_to_torch_key(("enc_p", "encoder_text", "ffn_layers_1", "conv_2", "weight")) == \
        "enc_p.encoder_text.ffn_layers.1.conv_2.weight"


def test_export_round_trip_is_bit_exact(s2, golden_file, tmp_path):
    out = tmp_path / "export.pth"
    gsv_jax.save_s2_torch(s2, out)
    mine, head = load_torch_file(out, return_head=True)
    assert head == b"PK"
    ref = golden_file["weight"]
    assert list(mine["weight"]) == list(ref)  # same keys, same order
    for k, v in ref.items():
        assert mine["weight"][k].dtype == v.dtype == np.float16
        assert np.array_equal(mine["weight"][k], v), k
    assert isinstance(mine["config"], HParams) and mine["config"] == golden_file["config"]
    again = gsv_jax.load_s2(out)
    a, b = flatten(s2.params), flatten(again.params)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_export_loads_in_torch(s2, tmp_path):
    torch = pytest.importorskip("torch")
    out = tmp_path / "export.pth"
    gsv_jax.save_s2_torch(s2, out)
    # the original unpickles its config as utils.HParams: provide a stand-in module for torch.load
    stub = types.ModuleType("utils")

    class HP:
        pass

    stub.HParams = HP
    saved = sys.modules.get("utils")
    sys.modules["utils"] = stub
    try:
        obj = torch.load(out, map_location="cpu", weights_only=False)
    finally:
        if saved is None:
            del sys.modules["utils"]
        else:
            sys.modules["utils"] = saved
    sd = s2.state_dict()
    assert set(obj["weight"]) == set(sd)
    for k, v in sd.items():
        assert np.array_equal(obj["weight"][k].numpy(), v), k
    assert obj["config"].model.inter_channels == 32


def _folded(s2):
    return flatten(s2.infer_params)


@pytest.mark.parametrize("style", ["parametrizations", "plain"])
def test_weight_norm_styles(s2, golden_file, tmp_path, style):
    sd = {}
    for k, v in golden_file["weight"].items():
        if style == "parametrizations" and k.endswith((".weight_g", ".weight_v")):
            k = k[: -len("weight_g")] + ("parametrizations.weight.original0" if k.endswith("_g")
                                         else "parametrizations.weight.original1")
        elif style == "plain" and k.endswith(".weight_g"):
            continue
        elif style == "plain" and k.endswith(".weight_v"):
            layer = k[: -len(".weight_v")]
            g = golden_file["weight"][layer + ".weight_g"].astype(np.float32)
            vv = v.astype(np.float32)
            v = vv * g / np.sqrt((vv ** 2).sum(axis=tuple(range(1, vv.ndim)), keepdims=True))
            k = layer + ".weight"
        sd[k] = v
    path = tmp_path / f"{style}.pth"
    save_torch_file({"weight": sd, "config": golden_file["config"], "info": "x"}, path)
    other = gsv_jax.load_s2(path)
    a, b = _folded(s2), _folded(other)
    assert a.keys() == b.keys()
    tol = 0 if style == "parametrizations" else 2e-3  # plain: the folded weight was rounded to fp16 above
    for k in a:
        assert np.abs(np.asarray(a[k]) - np.asarray(b[k])).max() <= tol * max(1.0, np.abs(np.asarray(a[k])).max()), k


@pytest.mark.parametrize("head,name", [(b"03", "v3"), (b"04", "v4")])  # v2Pro*: tests/convert/test_s2_pro.py
def test_lora_heads_go_to_the_cfm_engine_which_asks_for_the_base(tmp_path, head, name):
    """A v3/v4 LoRA file (heads 03/04) is not read as a VITS model: the CFM loader names the base it needs."""
    sd = {"enc_p.text_embedding.weight": np.zeros((732, 4), np.float16),
          "cfm.estimator.proj_out.weight": np.zeros((100, 8), np.float16)}
    path = tmp_path / "m.pth"
    save_torch_file({"weight": sd, "config": {"model": {}}, "info": "x", "lora_rank": 4}, path, head=head)
    with pytest.raises(CheckpointError, match=f"SoVITS {name} LoRA fine-tune: load it with its base model"):
        gsv_jax.load_s2(path)


def test_unsupported_family_is_refused_by_name(tmp_path, monkeypatch):
    """A family the registry marks unsupported is refused with its name, before any weights are mapped."""
    import dataclasses

    from gsv_jax import families

    v2 = dataclasses.replace(families.FAMILIES["v2"], supported=False)
    monkeypatch.setitem(families.FAMILIES, "v2", v2)
    with pytest.raises(conv.UnsupportedVersionError, match="SoVITS v2 models are not supported yet"):
        conv.refuse_unsupported(tmp_path / "m.pth", "v2")


def test_v1_detected_from_embedding_rows(golden_file, tmp_path):
    rng = np.random.default_rng(0)
    sd = dict(golden_file["weight"])
    sd["enc_p.text_embedding.weight"] = sd["enc_p.text_embedding.weight"][:322]
    w = sd["ref_enc.spectral.0.fc.weight"]
    sd["ref_enc.spectral.0.fc.weight"] = np.concatenate(
        [w, (0.05 * rng.standard_normal((w.shape[0], 1025 - 704))).astype(np.float16)], 1)
    path = tmp_path / "v1.pth"
    save_torch_file({"weight": sd, "config": golden_file["config"], "info": "x"}, path)
    v1 = gsv_jax.load_s2(path)
    assert v1.version == "v1" and v1.config.n_symbols == 322 and v1.config.ref_in == 1025
    spec = np.abs(rng.standard_normal((1, 1025, 30))).astype(np.float32)
    spec2 = spec.copy()
    spec2[:, 800:] *= 3.0  # bins >= 704 are seen by v1's reference encoder only
    v2 = gsv_jax.load_s2(golden_path("s2_v2_tiny.pth"))
    assert np.abs(v1.ref_embedding(spec) - v1.ref_embedding(spec2)).max() > 1e-4
    assert np.abs(v2.ref_embedding(spec) - v2.ref_embedding(spec2)).max() == 0


def test_discriminator_file_readable_and_refused_as_generator():
    path = golden_path("s2_train_tiny_D.pth")
    sd = conv.read_discriminator_state(path)
    assert len(sd) == 111 and all(k.startswith("discriminators.") for k in sd)
    assert sd["discriminators.0.convs.0.weight_v"].shape == (16, 1, 15)
    with pytest.raises(CheckpointError, match="discriminator checkpoint"):
        gsv_jax.load_s2(path)


def test_mismatched_weights_are_listed(golden_file, tmp_path):
    sd = dict(golden_file["weight"])
    del sd["dec.conv_pre.bias"]
    sd["dec.extra.weight"] = np.zeros(3, np.float16)
    path = tmp_path / "bad.pth"
    save_torch_file({"weight": sd, "config": golden_file["config"], "info": "x"}, path)
    with pytest.raises(CheckpointError, match="1 missing .*dec.conv_pre.bias.*1 unexpected .*dec.extra.weight"):
        gsv_jax.load_s2(path)
