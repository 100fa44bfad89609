"""HiFi-GAN generator ``dec`` (docs/s2.md, "HiFi-GAN generator"; traps 1-3).

With a frame mask ``[B, T, 1]`` every conv input is zeroed beyond each row's true length (at the
current resolution), so a padded batch gives, in the valid region, exactly the samples that the
original gives on each row alone (its convs zero-pad at the row's end).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, ConvTranspose1d, ResBlock1, lrelu, normal_init, polyphase_kernel
from gsv_jax.models.s2.spectral_conv import kernel_spectrum, spectral_block


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


def prepare_generator(dec_params, upsample_rates: Sequence[int], upsample_kernel_sizes: Sequence[int]) -> dict:
    """The ``"prepared"`` collection of a ``Generator``: per-model constants derived from its weights,
    built once rather than in every call (together ~40 ms of an 8 s decode). ``dec_params`` has its
    conv kernels in XLA's ``[k, in, out]`` layout (as the inference programs take them).

    * ``ups_i/polyphase``: the transposed convs' stride-1 kernels (:func:`polyphase_kernel`);
    * ``resblocks_*/convs*/spectrum``: kernel spectra of the convs that run in the frequency domain
      (read only by a ``Generator(spectral_convs=True)``).
    """
    prepared = {}
    for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
        w = dec_params[f"ups_{i}"]["weight"]
        prepared[f"ups_{i}"] = {"polyphase": _polyphase(w, u, (k - u) // 2)}
    for block, convs in dec_params.items():
        if not block.startswith("resblocks_"):
            continue
        for name, conv in convs.items():
            w = conv["weight"]
            n = spectral_block(w.shape[1], w.shape[0]) if name.startswith("convs") else 0
            if n:
                prepared.setdefault(block, {})[name] = {"spectrum": _spectrum(w, n)}
    return prepared


@functools.partial(jax.jit, static_argnums=1)
def _spectrum(w, n):
    return kernel_spectrum(w, n)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _polyphase(w, u, p):
    return polyphase_kernel(jnp.transpose(w, (2, 1, 0)), u, p)
