"""S2 public API with a v2ProPlus model (``../shared/golden/s2_v2ProPlus_tiny.*``): ``decode(..., sv_emb=...)``
at noise 0, with the injected noise and with two references; codes; batched decode == solo rows; bad input.

Tolerances (fp32 on CPU): waveforms 1e-4 absolute and 1e-4 relative L2 (the random-weight waveforms are
small: std 0.006, and the second reference moves them by max 4e-4 / relative L2 1e-2, the noise by
9e-4 / 2e-2, so both checks can fail); ``ge`` 2e-5 relative to its largest magnitude (a 20480-long
projection); batched vs solo 1e-4 absolute.
"""
import numpy as np
import pytest

import gsv_jax
from tests.conftest import golden_path

WAV_ABS = 1e-4
WAV_REL_L2 = 1e-4
GE_REL = 2e-5


@pytest.fixture(scope="module")
def s2():
    return gsv_jax.load_s2(golden_path("s2_v2ProPlus_tiny.pth"))


@pytest.fixture(scope="module")
def gold():
    return dict(np.load(golden_path("s2_v2ProPlus_tiny.npz")))


def _close(wav, ref):
    ref = np.asarray(ref).reshape(-1)
    assert wav.shape == ref.shape
    assert np.abs(wav - ref).max() < WAV_ABS
    assert np.linalg.norm(wav - ref) / np.linalg.norm(ref) < WAV_REL_L2


def test_version(s2, gold):
    assert s2.version == "v2ProPlus" and s2.speaker_verification and s2.sampling_rate == 32000


def test_codes_identical(s2, gold):
    np.testing.assert_array_equal(s2.extract_latent(gold["ssl"]), gold["codes"][0])


def test_decode_noise_0(s2, gold):
    out = s2._decode_batch(gold["codes"], gold["text"], gold["refer_spec"], noise_scale=0.0, sv_emb=gold["sv_emb"],
                           with_aux=True)
    ge = out["ge"][0]
    assert np.abs(ge - gold["decode_ns0_ge_sv"][0, :, 0]).max() < GE_REL * np.abs(gold["decode_ns0_ge_sv"]).max()
    assert np.abs(out["z"][0] - gold["decode_ns0_z"][0]).max() < 1e-5 * np.abs(gold["decode_ns0_z"]).max()
    _close(out["wavs"][0], gold["decode_ns0_wav"])
    # ge before the fusion: the reference encoder alone
    raw = s2.ref_embedding(gold["refer_spec"])[0]
    assert np.abs(raw - gold["decode_ns0_ge"][0, :, 0]).max() < 1e-5 * np.abs(gold["decode_ns0_ge"]).max()


@pytest.mark.parametrize("as_list", [False, True])
def test_decode_injected_noise(s2, gold, as_list):
    """The original's call shape (lists of one reference and one [1, 20480] embedding) and the array form."""
    spec, sv = (([gold["refer_spec"]], [gold["sv_emb"]]) if as_list else (gold["refer_spec"], gold["sv_emb"][0]))
    wav = s2.decode(gold["codes"], gold["text"], spec, noise_scale=0.5, noise=gold["decode_ns05_noise"], sv_emb=sv)
    _close(wav[0], gold["decode_ns05_wav"])


def test_two_references_each_with_its_embedding(s2, gold):
    specs = [gold["refer_spec"], gold["multi_refer_spec_1"]]
    svs = [gold["sv_emb"], gold["multi_sv_emb_1"]]
    fused = s2.ref_embedding(specs, svs)
    for k in range(2):
        ref = gold[f"multi_ge_sv_{k}"][0, :, 0]
        assert np.abs(fused[k] - ref).max() < GE_REL * np.abs(ref).max()
    mean = gold["multi_ge_mean"][0, :, 0]
    assert np.abs(fused.mean(0) - mean).max() < GE_REL * np.abs(mean).max()
    wav = s2.decode(gold["codes"], gold["text"], specs, noise_scale=0.0, sv_emb=svs)[0]
    _close(wav, gold["multi_wav"])
    # the second reference's own embedding matters (reusing the first one's misses the golden)
    other = s2.decode(gold["codes"], gold["text"], specs, noise_scale=0.0, sv_emb=svs[:1] * 2)[0]
    assert np.linalg.norm(other - wav) / np.linalg.norm(wav) > 100 * WAV_REL_L2


def test_batched_rows_with_their_own_reference_equal_solo(s2, gold):
    """Two rows of different lengths: with one shared reference, and with one embedding per row."""
    codes0, text0 = gold["codes"][0, 0], gold["text"][0]
    codes = np.zeros((2, 20), np.int64)
    text = np.zeros((2, 15), np.int64)
    codes[0], codes[1, :17] = codes0, codes0[::-1][:17]
    text[0], text[1, :11] = text0, (text0[:11] * 5 + 1) % 732
    c_lens, t_lens = np.array([20, 17]), np.array([15, 11])
    sv = np.concatenate([gold["sv_emb"], gold["multi_sv_emb_1"]])
    noise = np.random.default_rng(0).standard_normal((2, s2.config.inter_channels, 40)).astype(np.float32)
    # one shared reference (a list) for both rows, and a spec array with one embedding per row
    batched = s2.decode(codes, text, [gold["refer_spec"]], noise_scale=0.5, noise=noise, codes_lens=c_lens,
                        phones_lens=t_lens, sv_emb=[gold["sv_emb"]])
    per_row = s2.decode(codes, text, gold["refer_spec"][[0, 0]], noise_scale=0.5, noise=noise, codes_lens=c_lens,
                        phones_lens=t_lens, sv_emb=sv)
    for b in range(2):
        solo = s2.decode(codes[b:b + 1, : c_lens[b]], text[b:b + 1, : t_lens[b]], gold["refer_spec"], noise_scale=0.5,
                         noise=noise[b:b + 1, :, : 2 * c_lens[b]], sv_emb=gold["sv_emb"])[0]
        assert batched[b].shape == solo.shape == (2 * c_lens[b] * 640,)
        assert np.abs(batched[b] - solo).max() < WAV_ABS
        solo_own = s2.decode(codes[b:b + 1, : c_lens[b]], text[b:b + 1, : t_lens[b]], gold["refer_spec"],
                             noise_scale=0.5, noise=noise[b:b + 1, :, : 2 * c_lens[b]], sv_emb=sv[b])[0]
        assert np.abs(per_row[b] - solo_own).max() < WAV_ABS
    assert np.linalg.norm(per_row[1] - batched[1]) / np.linalg.norm(batched[1]) > 100 * WAV_REL_L2  # its own mattered
    _close(batched[0], s2.decode(gold["codes"], gold["text"], gold["refer_spec"], noise_scale=0.5,
                                 noise=noise[:1], sv_emb=gold["sv_emb"])[0])


def test_bad_speaker_embeddings(s2, gold):
    args = (gold["codes"], gold["text"], gold["refer_spec"])
    with pytest.raises(ValueError, match="needs the speaker embedding of every reference.*load_sv"):
        s2.decode(*args)
    with pytest.raises(ValueError, match=r"\[20480\] or \[1, 20480\].*got shape \(1280,\)"):
        s2.decode(*args, sv_emb=np.zeros(1280, np.float32))
    with pytest.raises(ValueError, match="1 speaker embedding.* for 2 reference"):
        s2.decode(gold["codes"], gold["text"], [gold["refer_spec"], gold["multi_refer_spec_1"]],
                  sv_emb=[gold["sv_emb"]])  # a list must give one embedding per reference
    with pytest.raises(ValueError, match="NaN or inf"):
        s2.decode(*args, sv_emb=np.full((1, 20480), np.nan, np.float32))


def test_v2_model_refuses_sv_emb(gold):
    v2 = gsv_jax.load_s2(golden_path("s2_v2_tiny.pth"))
    with pytest.raises(ValueError, match="only used by v2Pro/v2ProPlus models; this is a v2 model"):
        v2.ref_embedding(gold["refer_spec"], gold["sv_emb"])
