"""SV checkpoint converter: the golden state dict back bit-exact, round trip, fp16, wrong kinds refused."""
import collections

import jax
import numpy as np
import pytest

from gsv_jax.convert import sv as conv
from gsv_jax.io.torch_io import CheckpointError, load_torch_file, save_torch_file
from gsv_jax.io.trees import flatten
from tests.conftest import golden_path


@pytest.fixture(scope="module")
def golden_sd():
    return load_torch_file(golden_path("sv_eres2netv2_tiny.ckpt"))


@pytest.fixture(scope="module")
def converted():
    return conv.read_sv_checkpoint(golden_path("sv_eres2netv2_tiny.ckpt"))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_key_order_and_shapes_match_the_original(golden_sd, converted):
    cfg, variables, extras = converted
    shapes = conv.expected_shapes(cfg)
    assert list(shapes) == list(golden_sd) and len(shapes) == 1001
    assert all(tuple(golden_sd[k].shape) == s for k, s in shapes.items())
    assert set(extras) == {k for k in golden_sd if k.endswith("num_batches_tracked") or k.startswith("seg_1.")}
    # conv kernels are time-major: torch [O, I, kF, kT] -> [kT, kF, I, O]
    np.testing.assert_array_equal(variables["params"]["layer3_ds"]["kernel"],
                                  golden_sd["layer3_ds.weight"].transpose(3, 2, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["layer2_0"]["shortcut_1"]["var"],
                                  golden_sd["layer2.0.shortcut.1.running_var"])


def test_state_dict_back_is_bit_exact(golden_sd, converted):
    cfg, variables, extras = converted
    back = conv.variables_to_state_dict(cfg, variables, extras)
    assert list(back) == list(golden_sd)
    bad = [k for k in golden_sd if not _same(back[k], golden_sd[k])]
    assert not bad, bad[:5]


def test_round_trip_params_bit_exact(converted, tmp_path):
    cfg, variables, extras = converted
    path = tmp_path / "sv.ckpt"
    conv.write_sv_checkpoint(path, cfg, jax.tree.map(np.asarray, variables), extras)
    cfg2, variables2, extras2 = conv.read_sv_checkpoint(path)
    assert cfg2 == cfg
    a, b = flatten(variables), flatten(variables2)
    assert a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    assert all(_same(extras[k], extras2[k]) for k in extras)


def test_export_without_extras_is_strict_loadable(converted, tmp_path):
    """The original loads with strict load_state_dict: every key, counters as int64, seg_1 present."""
    torch = pytest.importorskip("torch")
    cfg, variables, _ = converted
    path = tmp_path / "sv.ckpt"
    conv.write_sv_checkpoint(path, cfg, variables)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state, collections.OrderedDict) and list(state) == list(conv.expected_shapes(cfg))
    assert state["bn1.num_batches_tracked"].dtype == torch.int64 and state["bn1.num_batches_tracked"].shape == ()
    assert state["seg_1.weight"].shape == (32, 2560) and state["conv1.weight"].dtype == torch.float32


def test_fp16_file_is_cast_to_fp32(golden_sd, converted, tmp_path):
    half = collections.OrderedDict(
        (k, v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in golden_sd.items())
    path = tmp_path / "half.ckpt"
    save_torch_file(half, path)
    _, variables, _ = conv.read_sv_checkpoint(path)
    k = variables["params"]["fuse34"]["local_att_0"]["kernel"]
    assert k.dtype == np.float32
    # the golden's values are fp16-representable, so nothing changes
    np.testing.assert_array_equal(k, converted[1]["params"]["fuse34"]["local_att_0"]["kernel"])


@pytest.mark.parametrize("name,kind", [("s1_v2_tiny.ckpt", "GPT"), ("s2_v2_tiny.pth", "SoVITS"),
                                       ("s2_v2ProPlus_tiny.pth", "SoVITS")])
def test_gpt_and_sovits_files_are_refused(name, kind):
    with pytest.raises(conv.NotSVError, match=f"is a {kind} .*not the speaker-verification model"):
        conv.read_sv_checkpoint(golden_path(name))


def test_other_state_dicts_are_refused(golden_sd, tmp_path):
    path = tmp_path / "x.ckpt"
    save_torch_file({"fc.weight": np.zeros((2, 2), np.float32)}, path)
    with pytest.raises(conv.NotSVError, match="not the speaker-verification model.*no conv1.weight"):
        conv.read_sv_checkpoint(path)
    broken = collections.OrderedDict(golden_sd)
    broken["layer3_ds.weight"] = np.zeros((128, 64, 1, 1), np.float32)
    save_torch_file(broken, path)
    with pytest.raises(conv.NotSVError, match=r"layer3_ds.weight has shape \(128, 64, 1, 1\)"):
        conv.read_sv_checkpoint(path)
    broken["layer3_ds.weight"] = golden_sd["layer3_ds.weight"]
    del broken["layer2.1.bns.3.running_var"]
    broken["extra.weight"] = np.zeros(3, np.float32)
    save_torch_file(broken, path)
    with pytest.raises(conv.NotSVError, match=r"missing \['layer2.1.bns.3.running_var'\].*unexpected \['extra.weight'\]"):
        conv.read_sv_checkpoint(path)
    del broken["layer3_ds.weight"]
    save_torch_file(broken, path)
    with pytest.raises(conv.NotSVError, match="no layer3_ds.weight"):
        conv.read_sv_checkpoint(path)


def test_looks_like_sv(golden_sd):
    assert conv.looks_like_sv(golden_sd)
    assert not conv.looks_like_sv(load_torch_file(golden_path("s1_v2_tiny.ckpt")))
    assert not conv.looks_like_sv({"weight": golden_sd})


def test_gpt_and_sovits_loaders_name_the_sv_model(golden):
    """The reverse of the SV loader's refusal: an SV file given as GPT or SoVITS says what it is."""
    from gsv_jax.convert import s1 as conv_s1
    from gsv_jax.convert import s2 as conv_s2

    path = golden("sv_eres2netv2_tiny.ckpt")
    with pytest.raises(CheckpointError, match="speaker-verification model .*not an S1 .*gsv_jax.load_sv"):
        conv_s1.read_s1_checkpoint(path)
    with pytest.raises(CheckpointError, match="speaker-verification model .*not a SoVITS model.*gsv_jax.load_sv"):
        conv_s2.read_s2_file(path)
