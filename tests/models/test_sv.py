"""ERes2NetV2 (forward3) and its Kaldi fbank front end against the original's goldens.

Tolerance: 1e-4 relative to the reference's largest magnitude (fbank and every model output); we
measure ~4e-5 on the fbank (float32 rounding near the log floor) and ~1e-6 on the model.
"""
import jax
import numpy as np
import pytest

from gsv_jax import fbank as fb
from gsv_jax.convert import sv as conv
from gsv_jax.models import sv as sv_lib
from tests.conftest import golden_path

RTOL = 1e-4


def _close(mine, ref, rtol=RTOL):
    mine, ref = np.asarray(mine, np.float64), np.asarray(ref, np.float64)
    assert mine.shape == ref.shape
    err = np.abs(mine - ref).max() / np.abs(ref).max()
    assert err < rtol, f"relative error {err:.2e} >= {rtol}"


@pytest.fixture(scope="module")
def golden():
    return np.load(golden_path("sv_eres2netv2_tiny.npz"))


@pytest.fixture(scope="module")
def model():
    cfg, variables, _ = conv.read_sv_checkpoint(golden_path("sv_eres2netv2_tiny.ckpt"))
    return cfg, variables


T_PAD = 320  # every model test runs at [2, T_PAD, 80] (one compile); rows carry their valid frames


@pytest.fixture(scope="module")
def run(model):
    """``run(feats_list, garbage=False)`` -> (embeddings [n, D], intermediates), one padded batch."""
    cfg, variables = model
    net = sv_lib.ERes2NetV2(cfg)
    apply = jax.jit(lambda v, x, n: net.apply(v, x, n, mutable=["intermediates"]))

    def go(feats, garbage=False, frames=None):
        rng = np.random.default_rng(0)
        batch = rng.normal(0, 5, (2, T_PAD, 80)) if garbage else np.zeros((2, T_PAD, 80))
        for i, f in enumerate(feats):
            batch[i, : len(f)] = f
        n = np.array([len(f) for f in feats] + [T_PAD] * (2 - len(feats))) if frames is None else frames
        out, state = apply(variables, batch.astype(np.float32), n)
        return np.asarray(out)[: len(feats)], {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}

    return go


def test_fbank_options_are_the_ones_sv_py_uses(golden):
    import json

    eff = json.loads(str(golden["fbank_effective_json"]))
    assert (eff["num_mel_bins"], eff["sample_frequency"], eff["dither"]) == (fb.NUM_MEL_BINS, fb.SAMPLE_RATE, 0)
    assert eff["preemphasis_coefficient"] == fb.PREEMPHASIS and eff["low_freq"] == fb.LOW_FREQ
    assert eff["window_type"] == "povey" and eff["snip_edges"] and not eff["use_energy"]
    assert not eff["subtract_mean"] and eff["remove_dc_offset"] and eff["round_to_power_of_two"]
    assert int(fb.SAMPLE_RATE * eff["frame_length"] / 1000) == fb.FRAME_LENGTH
    assert int(fb.SAMPLE_RATE * eff["frame_shift"] / 1000) == fb.FRAME_SHIFT


def test_mel_banks(golden):
    # torch's float32 log differs from the correctly rounded one by up to 2 ulp: ~1e-5 in a few weights
    np.testing.assert_allclose(fb.mel_banks(), golden["mel_banks"], rtol=0, atol=3e-5)
    assert fb.mel_banks().shape == (80, 257) and not fb.mel_banks()[:, -1].any()


@pytest.mark.parametrize("wav,ref", [("wav16k", "fbank"), ("wav16k_odd", "fbank_odd"),
                                     ("batch_wav16k", "batch_fbank")])
def test_fbank(golden, wav, ref):
    out = fb.fbank(golden[wav])
    assert out.shape[-2] == fb.num_frames(golden[wav].shape[-1])
    _close(out, golden[ref])


def test_fbank_refuses_short_audio():
    with pytest.raises(ValueError, match="at least 400 samples"):
        fb.fbank(np.zeros(399, np.float32))
    assert fb.num_frames(399) == 0 and fb.num_frames(400) == 1 and fb.num_frames(559) == 1
    assert fb.num_frames(fb.samples_for_frames(7)) == 7


def test_config_from_shapes(model, golden):
    import json

    cfg, _ = model
    ref = json.loads(str(golden["config_json"]))
    assert (cfg.m_channels, cfg.base_width, cfg.scale, cfg.expansion, list(cfg.num_blocks), cfg.embedding_size) == (
        ref["m_channels"], ref["baseWidth"], ref["scale"], ref["expansion"], ref["num_blocks"], ref["embedding_size"])
    assert sv_lib.embedding_dim(cfg) == int(golden["embedding_dim"]) == 1280
    assert sv_lib.embedding_dim(sv_lib.sv_config()) == 20480  # the released model


def test_forward3_and_stages(run, golden):
    out, inter = run([golden["fbank"], golden["fbank_odd"]])
    _close(out[:1], golden["forward3"])
    _close(out[1:], golden["embed_odd"])
    to_torch = (0, 3, 2, 1)  # ours [B, T, F, C] -> the original's [B, C, F, T]
    for mine, ref in [("layer3", "layer3"), ("layer4", "layer4"), ("out3_ds", "layer3_ds"), ("fuse_out34", "fuse34")]:
        want = golden[f"stage_{ref}"]
        _close(inter[mine][:1, : want.shape[-1]].transpose(to_torch), want)
    for name in ("stem", "layer1", "layer2"):
        want = golden[f"stage_{name}_tmean"]
        t = int(sv_lib.stage_frames(298, {"stem": 0, "layer1": 0, "layer2": 1}[name]))
        _close(inter[name][:1, :t].mean(1).transpose(0, 2, 1), want)
    # the blocks' Hardtanh(0, 20) is really exercised by this golden
    assert inter["layer4"].max() == 20.0 and golden["stage_layer4"].max() == 20.0


def test_forward3_unpadded(model, golden):
    cfg, variables = model
    out = jax.jit(sv_lib.ERes2NetV2(cfg).apply)(variables, golden["fbank"][None])
    _close(out, golden["forward3"])


@pytest.mark.parametrize("wav,ref", [("batch_wav16k", "batch_embed"), ("resample_out_16k", "embed_from_32k")])
def test_fbank_then_forward3(run, golden, wav, ref):
    out, _ = run(list(np.asarray(fb.fbank(np.atleast_2d(golden[wav])))))
    _close(out, golden[ref])


def test_padded_rows_equal_solo_rows(run, golden):
    """Garbage past each row's end (not zeros) must not reach the valid frames or the average."""
    feats = [golden["fbank_odd"], golden["batch_fbank"][0][:101]]
    out, _ = run(feats, garbage=True)
    _close(out[:1], golden["embed_odd"])
    for i, f in enumerate(feats):
        solo, _ = run([f])
        _close(out[i], solo[0], rtol=1e-6)
    # the mask matters: the same batch without it (every frame valid) differs
    unmasked, _ = run(feats, garbage=True, frames=np.array([T_PAD, T_PAD]))
    assert np.abs(unmasked[0] - out[0]).max() > 1e-3 * np.abs(out[0]).max()


def test_stage_frames():
    assert sv_lib.stage_frames(298).item() == 38 and sv_lib.stage_frames(231).item() == 29
    assert sv_lib.stage_frames(1).item() == 1
