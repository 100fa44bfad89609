"""BigVGAN v2 generator (the v3 vocoder, ``nvidia/bigvgan_v2_24khz_100band_256x``; docs/v3v4.md).

``conv_pre`` -> per stage: transposed conv, mean of AMPBlock1s (anti-aliased SnakeBeta -> dilated
conv -> anti-aliased SnakeBeta -> conv, residual) -> anti-aliased SnakeBeta -> ``conv_post`` ->
``clamp(-1, 1)`` (or ``tanh``). The anti-aliased activation: x2 up-sampling with the stored
12-tap low-pass filter (replicate padding), ``x + sin²(x e^α) / (e^β + 1e-9)``, x2 down-sampling
with the same filter (replicate padding).

Channels-last ``[B, T, C]``; parameters as the state dict with weight norm folded (``conv_pre/weight``,
``ups_0_0/weight``, ``resblocks_0/activations_0/act/alpha``, ``.../upsample/filter``, ...).

With ``lengths`` (frames per row) a padded batch gives in each row's valid samples what the original
gives on that row alone: convs see zeros beyond the row (the original's zero padding) and the
filters see the row's last sample repeated (its replicate padding).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, ConvTranspose1d
from gsv_jax.models.s2.spectral_conv import spectral_block

FILTER_TAPS = 12


@dataclasses.dataclass(frozen=True)
class BigVGANConfig:
    num_mels: int = 100
    upsample_rates: tuple = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    snake_logscale: bool = True
    use_tanh_at_final: bool = False
    use_bias_at_final: bool = False
    sampling_rate: int = 24000

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_json(cls, d: dict) -> BigVGANConfig:
        tup = lambda v: tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tup(v) for k, v in d.items() if k in names}
        kw.setdefault("use_tanh_at_final", True)  # the original's defaults when the keys are absent
        kw.setdefault("use_bias_at_final", True)
        return cls(**kw)


def _valid(T: int, lengths):
    """``[B, T, 1]`` bool mask of the first ``lengths[b]`` samples (all True if lengths is None)."""
    if lengths is None:
        return None
    return (jnp.arange(T)[None, :] < lengths[:, None])[..., None]


def _replicate_tail(x, lengths):
    """Samples at and beyond each row's length replaced by its last valid sample."""
    if lengths is None:
        return x
    last = jnp.take_along_axis(x, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)  # [B, 1, C]
    return jnp.where(_valid(x.shape[1], lengths), x, last)


def upsample2(x, filt):
    """``UpSample1d(2, 12)``: replicate-pad 5, ``2 · conv_transpose(filter, stride 2)``, crop 15 per side.
    Even output ``2m`` = ``2 Σ f[odd k] x[m + (5 - k) // 2]``, odd ``2m+1`` = ``2 Σ f[even k] x[m + (6 - k) // 2]``
    (x indices clamped to the row: the replicate padding)."""
    T = x.shape[1]
    xp = jnp.pad(x, ((0, 0), (5, 5), (0, 0)), mode="edge")
    f = filt.reshape(-1).astype(x.dtype)
    even = sum(f[k] * xp[:, 5 + (5 - k) // 2 - 0: 5 + (5 - k) // 2 + T] for k in range(1, FILTER_TAPS, 2))
    odd = sum(f[k] * xp[:, 5 + (6 - k) // 2: 5 + (6 - k) // 2 + T] for k in range(0, FILTER_TAPS, 2))
    return 2.0 * jnp.stack([even, odd], axis=2).reshape(x.shape[0], 2 * T, x.shape[2])


def downsample2(x, filt):
    """``DownSample1d(2, 12)``: replicate-pad 5 left / 6 right, ``conv(filter, stride 2)``: ``y[m] = Σ f[k] x[2m + k - 5]``."""
    T = x.shape[1]
    xp = jnp.pad(x, ((0, 0), (5, 6), (0, 0)), mode="edge")
    f = filt.reshape(-1).astype(x.dtype)
    n = T // 2
    return sum(f[k] * xp[:, k: k + 2 * n: 2] for k in range(FILTER_TAPS))


class SnakeBeta(nn.Module):
    channels: int
    logscale: bool = True

    @nn.compact
    def __call__(self, x):
        alpha = self.param("alpha", nn.initializers.zeros, (self.channels,))
        beta = self.param("beta", nn.initializers.zeros, (self.channels,))
        if self.logscale:
            alpha, beta = jnp.exp(alpha), jnp.exp(beta)
        return x + (1.0 / (beta + 1e-9)) * jnp.square(jnp.sin(x * alpha))


class _Filter(nn.Module):
    @nn.compact
    def __call__(self):
        return self.param("filter", nn.initializers.zeros, (1, 1, FILTER_TAPS))


class _LowPass(nn.Module):
    @nn.compact
    def __call__(self):
        return _Filter(name="lowpass")()


class Activation1d(nn.Module):
    """Anti-aliased activation (filters are the file's buffers)."""

    channels: int
    logscale: bool = True

    @nn.compact
    def __call__(self, x, lengths=None):
        up_f = _Filter(name="upsample")()
        down_f = _LowPass(name="downsample")()
        x = _replicate_tail(x, lengths)
        y = SnakeBeta(self.channels, self.logscale, name="act")(upsample2(x, up_f))
        y = _replicate_tail(y, None if lengths is None else 2 * lengths)
        return downsample2(y, down_f)


class AMPBlock1(nn.Module):
    channels: int
    kernel_size: int
    dilations: Sequence[int]
    logscale: bool = True
    spectral_convs: bool = False  # wide convs in the frequency domain where faster (inference; as the S2 generator)

    @nn.compact
    def __call__(self, x, lengths=None):
        valid = _valid(x.shape[1], lengths)
        k = self.kernel_size
        block = spectral_block(self.channels, k) if self.spectral_convs else 0
        zero = (lambda h: h) if valid is None else (lambda h: jnp.where(valid, h, 0.0))
        for j, d in enumerate(self.dilations):
            t = Activation1d(self.channels, self.logscale, name=f"activations_{2 * j}")(x, lengths)
            t = Conv1d(self.channels, self.channels, k, dilation=d, padding=(k * d - d) // 2, spectral_block=block,
                       name=f"convs1_{j}")(zero(t))
            t = Activation1d(self.channels, self.logscale, name=f"activations_{2 * j + 1}")(t, lengths)
            t = Conv1d(self.channels, self.channels, k, padding=(k - 1) // 2, spectral_block=block,
                       name=f"convs2_{j}")(zero(t))
            x = x + t
        return x


class BigVGAN(nn.Module):
    config: BigVGANConfig
    spectral_convs: bool = False  # see AMPBlock1 (inference sets it; the numbers agree to fp32 rounding)

    @nn.compact
    def __call__(self, mel, lengths=None):
        """``mel [B, T, num_mels]`` (log mel, denormalised) -> waveform ``[B, T · hop]``; ``lengths [B]`` frames."""
        c = self.config
        valid = lambda h, n: h if n is None else jnp.where(_valid(h.shape[1], n), h, 0.0)
        x = Conv1d(c.num_mels, c.upsample_initial_channel, 7, padding=3, name="conv_pre")(valid(mel, lengths))
        ch = c.upsample_initial_channel
        nk = len(c.resblock_kernel_sizes)
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)):
            x = ConvTranspose1d(ch, ch // 2, k, u, (k - u) // 2, name=f"ups_{i}_0")(valid(x, lengths))
            ch //= 2
            lengths = None if lengths is None else lengths * u
            xs = None
            for j, (rk, rd) in enumerate(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes)):
                r = AMPBlock1(ch, rk, tuple(rd), c.snake_logscale, self.spectral_convs,
                              name=f"resblocks_{i * nk + j}")(x, lengths)
                xs = r if xs is None else xs + r
            x = xs / nk
        x = Activation1d(ch, c.snake_logscale, name="activation_post")(x, lengths)
        x = Conv1d(ch, 1, 7, padding=3, use_bias=c.use_bias_at_final, name="conv_post")(valid(x, lengths))
        x = jnp.tanh(x) if c.use_tanh_at_final else jnp.clip(x, -1.0, 1.0)
        return x[..., 0]
