"""HiFi-GAN generator ``dec`` (spec s2.md §3.8; traps 1-3).

With a frame mask ``[B, T, 1]`` every conv input is zeroed beyond each row's true length (at the
current resolution), so a padded batch gives, in the valid region, exactly the samples that the
original gives on each row alone (its convs zero-pad at the row's end).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, ConvTranspose1d, ResBlock1, lrelu, normal_init
from gsv_jax.models.s2.spectral_conv import DEFAULT_BLOCK, kernel_spectrum, use_spectral


class Generator(nn.Module):
    initial_channel: int
    resblock_kernel_sizes: Sequence[int]
    resblock_dilation_sizes: Sequence[Sequence[int]]
    upsample_rates: Sequence[int]
    upsample_initial_channel: int
    upsample_kernel_sizes: Sequence[int]
    gin_channels: int = 0
    weight_norm: bool = True
    spectral_convs: bool = False  # see ResBlock1

    @nn.compact
    def __call__(self, x, g=None, mask=None):
        """``x [B, T, inter]``, ``g [B, 1, gin]``, ``mask [B, T, 1]`` or None -> ``[B, T * prod(u)]``."""
        U0 = self.upsample_initial_channel
        nk = len(self.resblock_kernel_sizes)
        if mask is not None:
            x = x * mask
        x = Conv1d(self.initial_channel, U0, 7, padding=3, name="conv_pre")(x)
        if g is not None and self.gin_channels:
            x = x + Conv1d(self.gin_channels, U0, 1, name="cond")(g)
        ch = U0
        for i, (u, k) in enumerate(zip(self.upsample_rates, self.upsample_kernel_sizes)):
            x = lrelu(x)
            if mask is not None:
                x = x * mask
            x = ConvTranspose1d(ch, ch // 2, k, u, (k - u) // 2, weight_norm=self.weight_norm,
                                kernel_init=normal_init(0.01), name=f"ups_{i}")(x)
            ch //= 2
            if mask is not None:
                mask = jnp.repeat(mask, u, axis=1)
            xs = None
            for j, (rk, rd) in enumerate(zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes)):
                r = ResBlock1(ch, rk, tuple(rd), weight_norm=self.weight_norm,
                              spectral_convs=self.spectral_convs, name=f"resblocks_{i * nk + j}")(x, mask)
                xs = r if xs is None else xs + r
            x = xs / nk
        x = lrelu(x, 0.01)  # the final activation uses torch's default slope 0.01
        if mask is not None:
            x = x * mask
        x = Conv1d(ch, 1, 7, padding=3, use_bias=False, name="conv_post")(x)
        return jnp.tanh(x)[..., 0]


def generator_spectra(dec_params) -> dict:
    """The ``"spectra"`` collection for a ``Generator(spectral_convs=True)``: the kernel spectrum of
    every resblock conv that runs in the frequency domain, from ``dec`` parameters whose conv
    kernels are in XLA's ``[k, in, out]`` layout (computed once per model instead of per call)."""
    spectra = {}
    for block, convs in dec_params.items():
        if not block.startswith("resblocks_"):
            continue
        for name, conv in convs.items():
            w = conv["weight"]
            if name.startswith("convs") and use_spectral(w.shape[1], w.shape[0]):
                spectra.setdefault(block, {})[name] = {"weight": _spectrum(w)}
    return spectra


@jax.jit
def _spectrum(w):
    return kernel_spectrum(w, DEFAULT_BLOCK)
