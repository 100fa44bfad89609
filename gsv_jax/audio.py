"""Audio front: loading, resampling, loudness mixes, and the original's spectrograms in jnp.

Spectrograms follow the original ``module/mel_processing.py`` numerically (docs/features.md, "Spectrograms"):

* :func:`spectrogram` = ``spectrogram_torch``: reflect-pad ``(n_fft - hop) // 2`` on both sides,
  frames every ``hop`` samples, periodic Hann window of length ``win`` (zero-padded to ``n_fft``
  in the middle, as ``torch.stft`` does), one-sided un-normalised rFFT, magnitude
  ``sqrt(re² + im² + 1e-8)``;
* :func:`spec_to_mel` = ``spec_to_mel_torch``: ``log(clamp(M @ spec, 1e-5))`` with the librosa Slaney
  filterbank ``M`` (float32);
* :func:`mel_spectrogram` = ``mel_spectrogram_torch`` = the two above.

They are plain jnp functions (traceable inside a jitted training step) over ``[..., N]`` waveforms,
computed in float32 whatever the input dtype.

Loading and preparation follow the dataset preparation and inference paths of the original
(docs/features.md, "Audio handling"):

* :func:`load_audio` reads anything ``soundfile`` reads, mixes down to mono and resamples like
  ``librosa.load(path, sr=sr)`` (soxr "HQ"). The original decodes training audio with ffmpeg; the
  samples agree for PCM files at the target rate.
* :func:`loudness_mix` is the preparation mix ``x / max|x| · (0.95 · 0.5 · scale) + 0.5 · scale · x``
  (``scale`` 32768 for the stored 32 kHz wav, 1145.14 for the HuBERT input);
  :func:`prepare_clip` runs the whole 32 kHz → (HuBERT input at 16 kHz, int16 wav) step.
* :func:`resample_sinc` / :func:`load_reference` reproduce torchaudio's sinc resampler and the
  reference-audio steps before the S2 spectrogram (docs/features.md, "Audio handling").
* :func:`pad_reference` appends the ``int(32000 · 0.3)`` zeros that inference appends to the
  **16 kHz** reference before HuBERT.
"""
from __future__ import annotations

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax import families

# Constants of the original.
SPEC_EPS = 1e-8  # inside the sqrt of the magnitude
MEL_CLIP = 1e-5  # clamp before the log
PREP_MAX_PEAK = 2.2  # dataset prep skips clips louder than this
PREP_MAXX = 0.95
PREP_ALPHA = 0.5
HUBERT_SCALE = 1145.14
WAV_SCALE = 32768.0
HUBERT_SR = families.SSL_SAMPLE_RATE
MODEL_SR = families.SOVITS_SAMPLE_RATE  # S2's data rate (references, training clips)


# --------------------------------------------------------------------------------------------
# windows and filterbanks (numpy constants, cached)


@functools.cache
def hann_window(win: int, n_fft: int | None = None) -> np.ndarray:
    """Periodic Hann window (``torch.hann_window(win)``), centred in ``n_fft`` zeros if longer."""
    n = np.arange(win, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win)).astype(np.float32)
    n_fft = win if n_fft is None else n_fft
    if win > n_fft:
        raise ValueError(f"window length {win} is longer than n_fft {n_fft}; use win <= n_fft")
    left = (n_fft - win) // 2
    return np.pad(w, (left, n_fft - win - left))


@functools.cache
def mel_filterbank(
    n_fft: int, num_mels: int, sampling_rate: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """``librosa.filters.mel`` with its defaults (Slaney scale and norm), float32 ``[num_mels, n_fft//2+1]``."""
    import librosa

    return librosa.filters.mel(
        sr=sampling_rate, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax
    ).astype(np.float32)


# --------------------------------------------------------------------------------------------
# spectrograms (jnp)


def _reflect_pad(y: jax.Array, left: int, right: int) -> jax.Array:
    n = y.shape[-1]
    if left >= n or right >= n:
        raise ValueError(
            f"waveform of {n} samples is too short for reflect padding by ({left}, {right}); "
            f"it needs more than {max(left, right)} samples"
        )
    pad = [(0, 0)] * (y.ndim - 1) + [(left, right)]
    return jnp.pad(y, pad, mode="reflect")


def _frames(y: jax.Array, n_fft: int, hop: int) -> jax.Array:
    """``[..., N] -> [..., n_frames, n_fft]`` (frames start at ``k * hop``)."""
    n = y.shape[-1]
    if n < n_fft:
        raise ValueError(f"padded waveform of {n} samples is shorter than n_fft={n_fft}")
    n_frames = 1 + (n - n_fft) // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    return y[..., idx]


def spectrogram(
    wav, n_fft: int = 2048, hop: int = 640, win: int = 2048, center: bool = False
) -> jax.Array:
    """Linear magnitude spectrogram exactly as the original ``spectrogram_torch``.

    ``wav``: float ``[..., N]`` (e.g. ``[B, N]`` at 32 kHz). Returns float32
    ``[..., n_fft // 2 + 1, frames]``; with the defaults and ``center=False``,
    ``frames = N // 640`` for ``N >= 640``.
    """
    y = jnp.asarray(wav, jnp.float32)
    p = (n_fft - hop) // 2
    y = _reflect_pad(y, p, p)
    if center:  # torch.stft(center=True, pad_mode="reflect") pads n_fft // 2 more
        y = _reflect_pad(y, n_fft // 2, n_fft // 2)
    frames = _frames(y, n_fft, hop) * hann_window(win, n_fft)
    f = jnp.fft.rfft(frames, n=n_fft, axis=-1)  # [..., frames, bins]
    mag = jnp.sqrt(jnp.real(f) ** 2 + jnp.imag(f) ** 2 + SPEC_EPS)
    return jnp.swapaxes(mag, -1, -2).astype(jnp.float32)


def spec_to_mel(
    spec,
    n_fft: int = 2048,
    num_mels: int = 128,
    sampling_rate: int = MODEL_SR,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> jax.Array:
    """Log-mel of a linear spectrogram, as ``spec_to_mel_torch``: ``[..., bins, T] -> [..., num_mels, T]``."""
    spec = jnp.asarray(spec, jnp.float32)
    bins = n_fft // 2 + 1
    if spec.shape[-2] != bins:
        raise ValueError(f"spectrogram has {spec.shape[-2]} bins but n_fft={n_fft} gives {bins}")
    m = jnp.asarray(mel_filterbank(n_fft, num_mels, sampling_rate, fmin, fmax))
    mel = jnp.matmul(m, spec, precision=jax.lax.Precision.HIGHEST)
    return jnp.log(jnp.maximum(mel, MEL_CLIP))


def mel_spectrogram(
    wav,
    n_fft: int = 2048,
    num_mels: int = 128,
    sampling_rate: int = MODEL_SR,
    hop: int = 640,
    win: int = 2048,
    fmin: float = 0.0,
    fmax: float | None = None,
    center: bool = False,
) -> jax.Array:
    """Log-mel spectrogram as ``mel_spectrogram_torch`` (same argument order): ``[..., N] -> [..., num_mels, frames]``.

    The defaults are S2 training's (2048, 128 mels, 32 kHz, hop 640, win 2048, fmin 0, fmax None).
    """
    spec = spectrogram(wav, n_fft=n_fft, hop=hop, win=win, center=center)
    return spec_to_mel(spec, n_fft, num_mels, sampling_rate, fmin, fmax)


# --------------------------------------------------------------------------------------------
# loading, resampling, loudness (numpy, host side)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[N]`` or soundfile's ``[N, C]`` -> ``[N]`` (channel mean, as librosa's ``to_mono``)."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"expected audio shaped [N] or [N, channels], got {audio.shape}")
    return audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis as ``librosa.resample`` does by default (soxr "HQ"), float32."""
    wav = np.asarray(wav, np.float32)
    if int(orig_sr) == int(target_sr):
        return wav
    import librosa

    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(
        np.float32
    )


def resample_sinc(
    wav: np.ndarray, orig_sr: int, target_sr: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """Band-limited sinc resampling with a Hann-windowed kernel, numerically as torchaudio's
    ``Resample(orig_sr, target_sr)`` (its defaults; kernel built in float64, applied in float32).

    The original uses it for reference audio before the S2 reference spectrogram
    (docs/features.md, "Audio handling"). Output length ``ceil(N · target_sr / orig_sr)``; works along the last axis.
    """
    wav = np.asarray(wav, np.float32)
    if int(orig_sr) == int(target_sr):
        return wav
    g = math.gcd(int(orig_sr), int(target_sr))
    o, n = int(orig_sr) // g, int(target_sr) // g
    base = min(o, n) * rolloff
    width = math.ceil(lowpass_filter_width * o / base)
    # y[j] = sum_i x[i] · h(i / o - j / n) over one period of n outputs; output phase j / n is
    # formed in float32 as torchaudio does, the rest in float64
    phase = (np.arange(0, -n, -1).astype(np.float32) / np.float32(n)).astype(np.float64)
    t = (phase[:, None] + np.arange(-width, width + o, dtype=np.float64)[None, :] / o) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * np.pi / lowpass_filter_width / 2) ** 2
    t = t * np.pi
    with np.errstate(divide="ignore", invalid="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    kernel = (sinc * window * (base / o)).astype(np.float32)  # [n, 2 * width + o]
    length = wav.shape[-1]
    x = np.pad(wav, [(0, 0)] * (wav.ndim - 1) + [(width, width + o)])
    k = kernel.shape[1]
    n_frames = (x.shape[-1] - k) // o + 1
    frames = x[..., np.arange(n_frames)[:, None] * o + np.arange(k)[None, :]]
    out = (frames @ kernel.T).reshape(wav.shape[:-1] + (n_frames * n,))
    return np.ascontiguousarray(out[..., : math.ceil(n * length / o)], dtype=np.float32)


def load_reference(path: str | pathlib.Path, sr: int = MODEL_SR) -> np.ndarray:
    """Reference audio for the S2 spectrogram as the original's ``get_spepc`` prepares it:
    float32 ``[1, N]``, channels averaged, torchaudio-style sinc resampling to ``sr``, and divided
    by ``min(2, peak)`` only when the peak exceeds 1. Feed it to :func:`spectrogram`."""
    audio = load_audio(path, sr=None, mono=True)
    import soundfile as sf

    file_sr = sf.info(str(path)).samplerate
    audio = resample_sinc(audio, file_sr, sr)[None]
    peak = np.abs(audio).max() if audio.size else 0.0
    if peak > 1:
        audio = audio / min(2.0, peak)
    return audio.astype(np.float32)


def load_audio(path: str | pathlib.Path, sr: int | None = None, mono: bool = True) -> np.ndarray:
    """Read an audio file as float32 in [-1, 1] like ``librosa.load(path, sr=sr)``.

    Any format ``soundfile`` reads; channels are averaged when ``mono``; ``sr=None`` keeps the
    file's rate. Returns ``[N]`` (mono) or ``[C, N]``.
    """
    import soundfile as sf

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} not found")
    try:
        audio, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as e:  # soundfile's error for unknown formats
        raise ValueError(
            f"cannot read {path} with soundfile ({e}); convert it to wav/flac/ogg first"
        ) from e
    audio = to_mono(audio) if mono else audio.T
    if sr is not None:
        audio = resample(audio, file_sr, sr)
    return np.ascontiguousarray(audio, dtype=np.float32)


def loudness_mix(
    x: np.ndarray, scale: float, maxx: float = PREP_MAXX, alpha: float = PREP_ALPHA
) -> np.ndarray:
    """Dataset-prep loudness mix: ``x / max|x| · (maxx · alpha · scale) + (1 - alpha) · scale · x``.

    Float32 arithmetic as the original (numpy on a float32 array). ``x`` must not be silent.
    """
    x = np.asarray(x, np.float32)
    peak = np.abs(x).max()
    if not peak > 0:
        raise ValueError("cannot loudness-normalise a silent clip (max |x| is 0); drop it")
    return (x / peak * (maxx * alpha * scale)) + ((1 - alpha) * scale) * x


def prepare_clip(wav32k: np.ndarray):
    """Dataset-prep step 1B for one clip at 32 kHz (docs/features.md, "Audio handling").

    Returns ``(hubert_input_16k float32 [N/2], wav32k_int16 [N])`` or ``None`` when the original
    would skip the clip (peak above 2.2, or silent). The int16 conversion is numpy's ``astype``
    (truncation, no clipping), as the original writes it.
    """
    x = np.asarray(wav32k, np.float32)
    peak = np.abs(x).max() if x.size else 0.0
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform [N], got shape {x.shape}")
    if peak > PREP_MAX_PEAK or not peak > 0:
        return None
    stored = loudness_mix(x, WAV_SCALE).astype(np.int16)
    hubert_in = resample(loudness_mix(x, HUBERT_SCALE), MODEL_SR, HUBERT_SR)
    return hubert_in, stored


def pad_reference(wav16k, pad_seconds: float = 0.3, model_sr: int = MODEL_SR) -> np.ndarray:
    """Append ``int(model_sr · pad_seconds)`` zeros to the 16 kHz reference (inference quirk:
    a 32 kHz-based count, i.e. 0.6 s of silence at 16 kHz for the default 0.3 s)."""
    wav16k = np.asarray(wav16k, np.float32)
    n = int(model_sr * pad_seconds)
    pad = [(0, 0)] * (wav16k.ndim - 1) + [(0, n)]
    return np.pad(wav16k, pad)


# --------------------------------------------------------------------------------------------
# v3/v4 mel front ends (the CFM prompt and the vocoders' input; docs/v3v4.md)

#: ``mel_fn`` (v3, 24 kHz) and ``mel_fn_v4`` (v4, 32 kHz) of the original's ``TTS.py``
VOCODER_MEL = {
    "v3": dict(n_fft=1024, num_mels=100, sampling_rate=24000, hop=256, win=1024),
    "v4": dict(n_fft=1280, num_mels=100, sampling_rate=32000, hop=320, win=1280),
}
SPEC_MIN, SPEC_MAX = -12.0, 2.0  # norm_spec / denorm_spec range


def vocoder_mel(wav, version: str) -> jax.Array:
    """The v3/v4 log-mel exactly as ``TTS.py`` computes it (``mel_spectrogram_torch`` with fmin 0,
    fmax None, center False): ``wav [..., N]`` at 24 kHz (v3) / 32 kHz (v4) -> ``[..., 100, frames]``,
    not normalised (see :func:`norm_spec`)."""
    if version not in VOCODER_MEL:
        raise ValueError(f"vocoder_mel: version must be 'v3' or 'v4', got {version!r}")
    return mel_spectrogram(wav, **VOCODER_MEL[version])


def norm_spec(x):
    """``(x - spec_min) / (spec_max - spec_min) · 2 - 1`` (no clipping), as the CFM prompt is normalised."""
    return (x - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) * 2 - 1


def denorm_spec(y):
    """The inverse of :func:`norm_spec` (the CFM output -> the vocoder's log-mel)."""
    return (y + 1) / 2 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN
