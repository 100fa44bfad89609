"""S2 public API: batched decode == solo decode, static shapes (no steady-state recompiles), speed,
several references, our own checkpoint, bad input. Uses the tiny golden model (shapes chosen to share
compiled buckets: 19-20 codes, 12-16 phonemes, 73-80 reference frames)."""
import numpy as np
import pytest

import gsv_jax
from gsv_jax.io.torch_io import CheckpointError
from gsv_jax.io.trees import flatten
from tests.conftest import golden_path

SOLO_ABS = 1e-4  # batched vs solo waveform, absolute


@pytest.fixture(scope="module")
def s2():
    return gsv_jax.load_s2(golden_path("s2_v2_tiny.pth"))


@pytest.fixture(scope="module")
def gold():
    return dict(np.load(golden_path("s2_v2_tiny.npz")))


def _rows(gold):
    codes0, text0 = gold["codes"][0, 0], gold["text"][0]
    codes1 = codes0[::-1][:19].copy()
    text1 = (text0[:12] * 7 + 3) % 732
    codes = np.zeros((2, 20), np.int64)
    text = np.zeros((2, 15), np.int64)
    codes[0], codes[1, :19] = codes0, codes1
    text[0], text[1, :12] = text0, text1
    return codes, text, np.array([20, 19]), np.array([15, 12])


@pytest.mark.parametrize("speed", [1.0, 1.05])
def test_batched_equals_solo(s2, gold, speed):
    codes, text, c_lens, t_lens = _rows(gold)
    rng = np.random.default_rng(0)
    T_out = 2 * 20 if speed == 1.0 else int(40 / speed) + 1
    noise = rng.standard_normal((2, s2.config.inter_channels, T_out)).astype(np.float32)
    spec = gold["refer_spec"]
    batched = s2.decode(codes, text, spec, noise_scale=0.5, speed=speed, noise=noise, codes_lens=c_lens,
                        phones_lens=t_lens)
    assert len(batched) == 2
    for b in range(2):
        n_out = 2 * c_lens[b] if speed == 1.0 else int(2 * c_lens[b] / speed) + 1
        solo = s2.decode(codes[b:b + 1, : c_lens[b]], text[b:b + 1, : t_lens[b]], spec, noise_scale=0.5,
                         speed=speed, noise=noise[b:b + 1, :, :n_out])[0]
        assert batched[b].shape == solo.shape == (n_out * 640,)
        assert np.abs(batched[b] - solo).max() < SOLO_ABS
    if speed == 1.0:  # row 0 is the golden utterance: batching must not change it
        ref = s2.decode(gold["codes"], gold["text"], spec, noise_scale=0.5, noise=noise[:1])[0]
        assert np.abs(batched[0] - ref).max() < SOLO_ABS


def test_no_steady_state_recompiles(s2, gold):
    spec = gold["refer_spec"]
    s2.decode(gold["codes"], gold["text"], spec, noise_scale=0.0)  # warm the (1, 20 codes, 16 phones) bucket
    n = s2._jit_decode._cache_size(), s2._jit_ref._cache_size()
    for lc, lt, lr in [(20, 15, 75), (19, 13, 74), (19, 16, 73), (20, 12, 75)]:
        out = s2.decode(gold["codes"][..., :lc], gold["text"][:, :lt], spec[..., :lr], noise_scale=0.3, seed=lc)
        assert out[0].shape == (2 * lc * 640,)
    assert (s2._jit_decode._cache_size(), s2._jit_ref._cache_size()) == n


def test_speed_resize_matches_torch_formula(s2, gold):
    """enc_p output is resized to int(T/speed)+1 frames by linear interpolation (align_corners=False)."""
    speed = 1.05
    out = s2._decode_batch(gold["codes"], gold["text"], gold["refer_spec"], noise_scale=0.0, speed=speed,
                           with_aux=True)
    x = out["x"][0]  # [192, 40] before the resize
    T, T2 = x.shape[1], int(x.shape[1] / speed) + 1
    assert out["m_p"][0].shape == (s2.config.inter_channels, T2)
    assert out["wavs"][0].shape == (T2 * 640,)
    # reference resize: half-pixel centres, source clamped at 0
    src = np.maximum((np.arange(T2) + 0.5) * (T / T2) - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, T - 1)
    lam = src - i0
    xr = x[:, i0] * (1 - lam) + x[:, i1] * lam
    try:
        import torch

        xt = torch.nn.functional.interpolate(torch.tensor(x[None]), size=T2, mode="linear")[0].numpy()
        np.testing.assert_allclose(xr, xt, atol=1e-5)
    except ImportError:
        pass
    p = s2.infer_params["enc_p"]["proj"]
    stats = np.einsum("oc,ct->ot", np.asarray(p["weight"])[:, :, 0], xr) + np.asarray(p["bias"])[:, None]
    m_p = stats[: s2.config.inter_channels]
    assert np.abs(out["m_p"][0] - m_p).max() / np.abs(m_p).max() < 1e-5


def test_several_references_are_averaged(s2, gold):
    spec = gold["refer_spec"]
    spec_b = np.ascontiguousarray(spec[..., ::-1][..., :74])
    ge_a, ge_b = s2.ref_embedding(spec), s2.ref_embedding(spec_b)
    out = s2._decode_batch(gold["codes"], gold["text"], [spec, spec_b], noise_scale=0.0)
    np.testing.assert_allclose(out["ge"][0], (ge_a[0] + ge_b[0]) / 2, rtol=0, atol=1e-6)
    # the same reference twice is the same as once
    twice = s2.decode(gold["codes"], gold["text"], [spec, spec], noise_scale=0.0)[0]
    once = s2.decode(gold["codes"], gold["text"], spec, noise_scale=0.0)[0]
    assert np.abs(twice - once).max() < 1e-6
    mixed = s2.decode(gold["codes"], gold["text"], [spec, spec_b], noise_scale=0.0)[0]
    assert mixed.shape == once.shape and np.abs(mixed - once).max() > 1e-6


def test_own_checkpoint_round_trip(s2, tmp_path):
    s2.save(tmp_path / "ckpt")
    again = gsv_jax.load_s2(tmp_path / "ckpt")
    assert again.config == s2.config

    a, b = flatten(s2.params), flatten(again.params)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# bad input

def test_bad_spectrogram_bins(s2, gold):
    with pytest.raises(ValueError, match="1025 frequency bins"):
        s2.decode(gold["codes"], gold["text"], gold["refer_spec"][:, :1024])


def test_reference_shorter_than_one_frame(s2, gold):
    with pytest.raises(ValueError, match="shorter than one frame"):
        s2.decode(gold["codes"], gold["text"], np.zeros((1, 1025, 0), np.float32))


def test_codes_out_of_range(s2, gold):
    codes = gold["codes"].copy()
    codes[..., 3] = 1024
    with pytest.raises(ValueError, match="semantic codes must be in 0..1023"):
        s2.decode(codes, gold["text"], gold["refer_spec"])


def test_empty_phonemes(s2, gold):
    with pytest.raises(ValueError, match="empty phoneme"):
        s2.decode(gold["codes"], np.zeros((1, 0), np.int64), gold["refer_spec"])


def test_phoneme_ids_out_of_range(s2, gold):
    with pytest.raises(ValueError, match="phoneme ids must be in 0..731"):
        s2.decode(gold["codes"], gold["text"] + 731, gold["refer_spec"])


def test_gpt_file_given_as_sovits():
    with pytest.raises(CheckpointError, match="GPT \\(S1"):
        gsv_jax.load_s2(golden_path("s1_v2_tiny.ckpt"))


def test_truncated_file(tmp_path):
    data = golden_path("s2_v2_tiny.pth").read_bytes()
    bad = tmp_path / "cut.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        gsv_jax.load_s2(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        gsv_jax.load_s2(tmp_path / "nope.pth")


def test_load_s2_dispatches_cfm_families_to_the_v3_engine(golden):
    """v3/v4 files (and a LoRA fine-tune with its base) load through the same entry point."""
    import gsv_jax
    from gsv_jax.inference.v3 import S2V3

    for name, version in (("s2Gv3_tiny.pth", "v3"), ("s2Gv4_tiny.pth", "v4")):
        m = gsv_jax.load_s2(golden(name))
        assert isinstance(m, S2V3) and m.version == version
    lora = gsv_jax.load_s2(golden("s2Gv3_lora_tiny.pth"), base=golden("s2Gv3_tiny.pth"))
    assert isinstance(lora, S2V3) and lora.version == "v3"
    with pytest.raises(Exception, match=r"v3 LoRA fine-tune: load it with its base model, load_s2\(\.\.\., base="):
        gsv_jax.load_s2(golden("s2Gv3_lora_tiny.pth"))


def test_tts_refuses_a_cfm_model_without_its_vocoder(golden):
    import gsv_jax
    from gsv_jax.inference.tts import TTS

    v4 = gsv_jax.load_s2(golden("s2Gv4_tiny.pth"))
    with pytest.raises(ValueError, match=r"v4 model needs its vocoder: .*load_vocoder\('vocoder.pth'\)"):
        TTS(None, v4, None, None, compilation_cache=False)
