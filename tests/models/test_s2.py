"""S2 (SoVITS) parity against the original's golden vectors (``../shared/golden/s2_v2_tiny.*``).

Tolerances (fp32 on CPU, as the golden README states): codes identical; ``ge``, text-encoder outputs
and flow output 1e-5 relative to each tensor's largest magnitude; waveforms 1e-4 absolute.
"""
import numpy as np
import pytest

from tests.conftest import golden_path

REL = 1e-5
WAV_ABS = 1e-4


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def s2():
    from gsv_jax.inference.s2 import load_s2

    return load_s2(golden_path("s2_v2_tiny.pth"))


@pytest.fixture(scope="module")
def gold():
    return dict(np.load(golden_path("s2_v2_tiny.npz")))


def test_version_and_config(s2, gold):
    assert s2.version == str(gold["model_version"]) == "v2"
    assert s2.config.inter_channels == 32 and s2.config.resblock_kernel_sizes == (3, 5)


def test_extract_latent_codes_identical(s2, gold):
    codes = s2.extract_latent(gold["ssl"])
    assert codes.shape == (1, gold["ssl"].shape[2] // 2)
    np.testing.assert_array_equal(codes, gold["codes"][0])


def test_decode_noise_scale_0_matches_golden(s2, gold):
    out = s2._decode_batch(gold["codes"], gold["text"], gold["refer_spec"], noise_scale=0.0, with_aux=True)
    assert rel_err(out["ge"][0], gold["decode_ns0_ge"][0, :, 0]) < REL
    assert rel_err(out["x"][0], gold["decode_ns0_enc_p_x"][0]) < REL
    assert rel_err(out["m_p"][0], gold["decode_ns0_m_p"][0]) < REL
    assert rel_err(out["logs_p"][0], gold["decode_ns0_logs_p"][0]) < REL
    assert rel_err(out["z"][0], gold["decode_ns0_z"][0]) < REL
    wav = out["wavs"][0]
    assert wav.dtype == np.float32 and wav.shape == gold["decode_ns0_wav"][0, 0].shape
    assert np.abs(wav - gold["decode_ns0_wav"][0, 0]).max() < WAV_ABS


def test_decode_noise_scale_05_with_injected_noise(s2, gold):
    wavs = s2.decode(gold["codes"], gold["text"], [gold["refer_spec"]], noise_scale=0.5,
                     noise=gold["decode_ns05_noise"])
    assert len(wavs) == 1
    assert np.abs(wavs[0] - gold["decode_ns05_wav"][0, 0]).max() < WAV_ABS


def test_spectrogram_matches_golden(gold):
    import gsv_jax

    spec = np.asarray(gsv_jax.spectrogram(gold["ref_wav"]))
    assert spec.shape == gold["refer_spec"].shape
    assert rel_err(spec, gold["refer_spec"]) < 1e-4


@pytest.mark.parametrize("T,w", [(1, 4), (3, 4), (9, 4), (50, 4), (7, 1)])
def test_relative_band_reshapes_equal_onehot_products(T, w):
    """Self-attention's relative-position terms by reshaping equal the one-hot products exactly
    (both pick single values: no sums reordered), including sequences shorter than the window."""
    import jax.numpy as jnp

    from gsv_jax.models.s2.attentions import absolute_to_relative, relative_onehot, relative_to_absolute

    rng = np.random.default_rng(T)
    rel = jnp.asarray(rng.standard_normal((2, 3, T, 2 * w + 1)), jnp.float32)
    p = jnp.asarray(rng.standard_normal((2, 3, T, T)), jnp.float32)
    onehot = relative_onehot(T, T, w)
    np.testing.assert_array_equal(relative_to_absolute(rel, w), jnp.einsum("bhqr,qkr->bhqk", rel, onehot))
    np.testing.assert_array_equal(absolute_to_relative(p, w), jnp.einsum("bhqk,qkr->bhqr", p, onehot))
