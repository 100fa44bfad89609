"""v3 BigVGAN and v4 HiFi-GAN vocoders against the original's goldens (``bigvgan_v3_tiny/``,
``vocoder_v4_tiny.pth``; inputs/outputs in ``v3_tiny.npz`` / ``v4_tiny.npz``), the anti-aliasing
filters against a direct numpy transcription of torch's ops, and the v3/v4 mel front ends.

Tolerances: waveforms 1e-4 absolute (measured ~2e-5: fp32 convolution order); a bucket-padded row
equals the row alone to 1e-6; filters 1e-6; mels 1e-4 relative to the largest magnitude (fp32 FFT
rounding in near-silent bins, ~1e-3 absolute in log, is shared with the original's own fp32 STFT).
"""
import numpy as np
import pytest

from tests.conftest import golden_path

WAV_ABS = 1e-4


@pytest.fixture(scope="module")
def bigvgan():
    from gsv_jax.inference.v3 import load_vocoder

    return load_vocoder(golden_path("bigvgan_v3_tiny"))


@pytest.fixture(scope="module")
def voc4():
    from gsv_jax.inference.v3 import load_vocoder

    return load_vocoder(golden_path("vocoder_v4_tiny.pth"))


def _np_upsample2(x, f):
    """torch: F.pad(x, (5, 5), "replicate"); 2 * conv_transpose1d(stride 2); crop 15 both sides."""
    xp = np.concatenate([np.repeat(x[:1], 5, 0), x, np.repeat(x[-1:], 5, 0)])
    out = np.zeros((2 * len(xp) - 2 + len(f),) + x.shape[1:])
    for i in range(len(xp)):
        out[2 * i: 2 * i + len(f)] += xp[i] * f[:, None]
    return 2 * out[15:-15]


def _np_downsample2(x, f):
    xp = np.concatenate([np.repeat(x[:1], 5, 0), x, np.repeat(x[-1:], 6, 0)])
    n = (len(xp) - len(f)) // 2 + 1
    return np.stack([(xp[2 * m: 2 * m + len(f)] * f[:, None]).sum(0) for m in range(n)])


def test_antialias_filters_match_torch_ops():
    import jax.numpy as jnp

    from gsv_jax.models.bigvgan import downsample2, upsample2

    rng = np.random.default_rng(0)
    f = rng.standard_normal(12)
    x = rng.standard_normal((23, 3))
    up = np.asarray(upsample2(jnp.asarray(x[None], jnp.float32), jnp.asarray(f, jnp.float32)))[0]
    ref = _np_upsample2(x, f)
    assert up.shape == ref.shape == (46, 3)
    assert np.abs(up - ref).max() < 1e-5
    y = rng.standard_normal((46, 3))
    down = np.asarray(downsample2(jnp.asarray(y[None], jnp.float32), jnp.asarray(f, jnp.float32)))[0]
    ref = _np_downsample2(y, f)
    assert down.shape == ref.shape == (23, 3)
    assert np.abs(down - ref).max() < 1e-5


def test_bigvgan_config_and_filters(bigvgan):
    cfg = bigvgan.module.config
    assert (bigvgan.version, bigvgan.sampling_rate, bigvgan.hop) == ("v3", 24000, 256)
    assert cfg.upsample_initial_channel == 64 and not cfg.use_tanh_at_final and not cfg.use_bias_at_final
    f = np.asarray(bigvgan.params["resblocks_0"]["activations_0"]["upsample"]["filter"])
    assert f.shape == (1, 1, 12) and abs(f.sum() - 1) < 1e-5  # the stored kaiser-sinc low-pass


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_vocoder_waveform(version, bigvgan, voc4):
    voc = bigvgan if version == "v3" else voc4
    g = np.load(golden_path(f"{version}_tiny.npz"))
    mel = g["single_steps4_mel"]
    ref = g["single_steps4_wav"][0, 0]
    wav = voc(mel)
    assert wav.shape == (1, ref.shape[0]) == (1, mel.shape[2] * voc.hop)
    assert np.abs(wav[0] - ref).max() < WAV_ABS
    # the same row inside a longer (masked) bucket, garbage after its end: identical samples
    junk = np.random.default_rng(1).standard_normal((1, 100, 7)).astype(np.float32) * 3
    padded = voc(np.concatenate([mel, junk], 2), lengths=[mel.shape[2]])
    assert np.abs(padded[0, : ref.shape[0]] - wav[0]).max() < 1e-6


def test_v4_vocoder_shape(voc4):
    assert (voc4.version, voc4.sampling_rate, voc4.hop) == ("v4", 48000, 480)
    assert voc4.module.config.upsample_initial_channel == 32


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_vocoder_mel_front_end(version):
    from gsv_jax.audio import denorm_spec, norm_spec
    from gsv_jax.inference.v3 import vocoder_mel

    g = np.load(golden_path(f"{version}_tiny.npz"))
    wav = (g["ref_wav_24k_i16"] if version == "v3" else g["ref_wav_32k_i16"]).astype(np.float32) / 32768
    mel = vocoder_mel(wav, version)
    ref = g["ref_mel_raw"]
    assert mel.shape == ref.shape == (1, 100, {"v3": 281, "v4": 300}[version])
    assert np.abs(mel - ref).max() / np.abs(ref).max() < 1e-4
    assert np.median(np.abs(mel - ref)) < 1e-6
    assert np.abs(np.asarray(norm_spec(ref)) - g["ref_mel"]).max() < 1e-6
    assert np.abs(np.asarray(denorm_spec(g["ref_mel"])) - ref).max() < 1e-5


def test_vocoder_mel_refuses_other_versions():
    from gsv_jax.inference.v3 import vocoder_mel

    with pytest.raises(ValueError, match="'v3' or 'v4'"):
        vocoder_mel(np.zeros(4000, np.float32), "v2")


def test_reference_mel_v4_is_the_normalised_prompt():
    from gsv_jax.inference.v3 import reference_mel

    g = np.load(golden_path("v4_tiny.npz"))
    wav = g["ref_wav_32k_i16"].astype(np.float32) / 32768
    mel = reference_mel(np.stack([wav, wav]), 32000, "v4")  # stereo: channels averaged; 32 kHz: no resampling
    assert mel.shape == g["ref_mel"].shape
    # the raw mel's tolerance (1e-4 of its largest magnitude, ~11.5) in normalised units (x 2/14)
    assert np.abs(mel - g["ref_mel"]).max() < 1e-4 * 11.5 * 2 / 14
    assert np.median(np.abs(mel - g["ref_mel"])) < 1e-6
    assert reference_mel(wav, 32000, "v3").shape == (1, 100, 281)  # resampled to 24 kHz first
