"""Kaldi log-mel filterbank as GPT-SoVITS computes it for its speaker-verification model (docs/sv.md).

The original calls its copy of torchaudio's Kaldi-compliance ``fbank`` as
``fbank(wav[None], num_mel_bins=80, sample_frequency=16000, dither=0)`` with every other option at
its default. Only that configuration is implemented here:

* 400-sample frames every 160 samples, ``snip_edges`` (``T = 1 + (N - 400) // 160``, no frame for
  ``N < 400``);
* per frame: subtract the frame mean, pre-emphasis ``x[j] - 0.97 x[j-1]`` with ``x[-1] = x[0]``,
  the Povey window ``hann(400, periodic=False) ** 0.85``, zero padding to 512;
* power spectrum ``|rfft|^2`` (257 bins), 80 triangular mel filters (``1127 ln(1 + f/700)``,
  20 Hz .. 8 kHz, the 257th bin weighted 0), ``log(max(E, float32 eps))``;
* no energy column, no dither, no mean normalisation; input is the float waveform in [-1, 1].

Frames are independent, so the frames of a right-padded row that lie inside its valid samples equal
its solo result. Computed in float32 like the original (parity ~1e-6 relative to its largest value).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512  # frame length rounded up to a power of two
NUM_MEL_BINS = 80
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
HIGH_FREQ = SAMPLE_RATE / 2  # the default high_freq 0 means "Nyquist"
POVEY_POWER = 0.85
LOG_FLOOR = float(np.finfo(np.float32).eps)  # 1.1920929e-07, Kaldi's floor on every mel energy


def num_frames(num_samples):
    """Frames of a waveform of ``num_samples`` samples (``snip_edges``: only complete frames)."""
    n = np.asarray(num_samples, np.int64)
    return np.where(n >= FRAME_LENGTH, 1 + (n - FRAME_LENGTH) // FRAME_SHIFT, 0)


def samples_for_frames(frames: int) -> int:
    """The smallest sample count that gives ``frames`` frames."""
    return FRAME_LENGTH + (int(frames) - 1) * FRAME_SHIFT


def _mel(f):
    return np.float32(1127.0) * np.log(np.float32(1.0) + f / np.float32(700.0))


def mel_banks(num_bins: int = NUM_MEL_BINS, n_fft: int = N_FFT, sample_rate: float = SAMPLE_RATE,
              low_freq: float = LOW_FREQ, high_freq: float = HIGH_FREQ) -> np.ndarray:
    """Triangular mel filters ``[num_bins, n_fft // 2 + 1]`` (float32), built step by step in float32
    as the original does (band edges from float64 scalars, the FFT-bin mel values in float32)."""
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = np.float32((mel_high - mel_low) / (num_bins + 1))
    b = np.arange(num_bins, dtype=np.float32)[:, None]
    lo = np.float32(mel_low)
    left = lo + b * delta
    center = lo + (b + np.float32(1.0)) * delta
    right = lo + (b + np.float32(2.0)) * delta
    mel = _mel(np.float32(sample_rate / n_fft) * np.arange(n_fft // 2, dtype=np.float32))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(np.float32(0.0), np.minimum(up, down)).astype(np.float32)
    return np.pad(banks, ((0, 0), (0, 1)))  # the Nyquist bin gets weight 0


def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """``hann(length, periodic=False) ** 0.85`` in float32."""
    n = np.arange(length, dtype=np.float64)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (length - 1))).astype(np.float32)
    return np.power(hann, np.float32(POVEY_POWER)).astype(np.float32)


_MEL_BANKS_T = mel_banks().T.copy()  # [257, 80]
_WINDOW = povey_window()


def fbank(wav: jax.Array) -> jax.Array:
    """Log-mel features ``[..., T, 80]`` of float waveforms ``[..., N]`` (16 kHz, N >= 400).

    Pure and jittable; ``T = 1 + (N - 400) // 160``.
    """
    wav = jnp.asarray(wav, jnp.float32)
    n = wav.shape[-1]
    if n < FRAME_LENGTH:
        raise ValueError(f"fbank needs at least {FRAME_LENGTH} samples (25 ms at 16 kHz), got {n}")
    t = int(num_frames(n))
    idx = np.arange(t)[:, None] * FRAME_SHIFT + np.arange(FRAME_LENGTH)[None, :]
    x = wav[..., idx]  # [..., T, 400]
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    prev = jnp.concatenate([x[..., :1], x[..., :-1]], axis=-1)
    x = (x - PREEMPHASIS * prev) * _WINDOW
    spec = jnp.fft.rfft(x, n=N_FFT, axis=-1)
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    mel = jnp.matmul(power, _MEL_BANKS_T, precision=jax.lax.Precision.HIGHEST)
    return jnp.log(jnp.maximum(mel, LOG_FLOOR))
