"""The v4 vocoder: the HiFi-GAN ``Generator`` of ``module/models.py`` built with ``initial_channel=100,
upsample_rates=[10, 6, 2, 2, 2], upsample_kernel_sizes=[20, 12, 4, 4, 4], upsample_initial_channel=512,
gin_channels=0, is_bias=True`` (100 mel frames/s -> 48 kHz; docs/v3v4.md).

Same blocks as the S2 decoder (:mod:`gsv_jax.models.s2.generator`): leaky ReLU 0.1 -> transposed
conv -> mean of ResBlock1s per stage, final leaky ReLU with torch's default slope 0.01, ``conv_post``
with bias, tanh. Parameters as ``vocoder.pth`` (weight norm removed): ``conv_pre/weight``,
``ups_0/weight``, ``resblocks_0/convs1_0/weight``, ``conv_post/bias``. With ``lengths`` (frames per
row) every conv input is zeroed beyond the row, so a padded batch equals each row alone.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, ConvTranspose1d, ResBlock1, lrelu


@dataclasses.dataclass(frozen=True)
class VocoderV4Config:
    initial_channel: int = 100
    upsample_rates: tuple = (10, 6, 2, 2, 2)
    upsample_kernel_sizes: tuple = (20, 12, 4, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple = (3, 7, 11)
    resblock_dilation_sizes: tuple = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sampling_rate: int = 48000

    @property
    def hop(self) -> int:
        return math.prod(self.upsample_rates)


class VocoderV4(nn.Module):
    config: VocoderV4Config
    spectral_convs: bool = False  # wide ResBlock convs in the frequency domain (see ResBlock1)

    @nn.compact
    def __call__(self, mel, lengths=None):
        """``mel [B, T, 100]`` -> waveform ``[B, T · 480]``; ``lengths [B]`` valid frames per row."""
        c = self.config
        mask = None if lengths is None else (jnp.arange(mel.shape[1])[None, :] < lengths[:, None])[..., None].astype(
            mel.dtype)
        m = (lambda h: h) if mask is None else (lambda h: h * mask)
        x = Conv1d(c.initial_channel, c.upsample_initial_channel, 7, padding=3, name="conv_pre")(m(mel))
        ch = c.upsample_initial_channel
        nk = len(c.resblock_kernel_sizes)
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)):
            x = ConvTranspose1d(ch, ch // 2, k, u, (k - u) // 2, name=f"ups_{i}")(m(lrelu(x)))
            ch //= 2
            if mask is not None:
                mask = jnp.repeat(mask, u, axis=1)
            xs = None
            for j, (rk, rd) in enumerate(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes)):
                r = ResBlock1(ch, rk, tuple(rd), weight_norm=False, spectral_convs=self.spectral_convs,
                              name=f"resblocks_{i * nk + j}")(x, mask)
                xs = r if xs is None else xs + r
            x = xs / nk
        x = Conv1d(ch, 1, 7, padding=3, use_bias=True, name="conv_post")(m(lrelu(x, 0.01)))
        return jnp.tanh(x)[..., 0]
