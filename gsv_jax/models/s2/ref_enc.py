"""Reference (timbre) encoder ``ref_enc`` = ``MelStyleEncoder`` (docs/s2.md, "Reference encoder", trap 6).

The original is not padding-invariant: padded frames become ``mish(bias) != 0`` after the first
Linear and the k=5 GLU convs mix them into the last valid frames. ``exact_lengths=True`` (inference)
zeroes padded frames before each conv, which equals running the original at each reference's true
length (its conv zero padding); ``exact_lengths=False`` reproduces the original on a padded batch
(training parity).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, Linear


def mish(x):
    sp = jnp.where(x > 20.0, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20.0))))  # torch softplus, threshold 20
    return x * jnp.tanh(sp)


class _LinearNorm(nn.Module):
    din: int
    dout: int

    @nn.compact
    def __call__(self, x):
        return Linear(self.din, self.dout, name="fc")(x)


class _Conv1dGLU(nn.Module):
    channels: int
    kernel_size: int
    p_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        h = _ConvNorm(self.channels, 2 * self.channels, self.kernel_size, name="conv1")(x)
        h = h[..., : self.channels] * jax.nn.sigmoid(h[..., self.channels:])
        return x + nn.Dropout(self.p_dropout)(h, deterministic=deterministic)


class _ConvNorm(nn.Module):
    cin: int
    cout: int
    kernel_size: int

    @nn.compact
    def __call__(self, x):
        return Conv1d(self.cin, self.cout, self.kernel_size, padding=(self.kernel_size - 1) // 2, name="conv")(x)


class _SelfAttention(nn.Module):
    d_model: int
    n_heads: int
    p_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, key_pad, deterministic: bool = True):
        B, T, D = x.shape
        H, dk = self.n_heads, self.d_model // self.n_heads
        q = Linear(D, D, name="w_qs")(x).reshape(B, T, H, dk)
        k = Linear(D, D, name="w_ks")(x).reshape(B, T, H, dk)
        v = Linear(D, D, name="w_vs")(x).reshape(B, T, H, dk)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.d_model)  # temperature sqrt(d_model)
        s = jnp.where(key_pad[:, None, None, :], -jnp.inf, s)
        p = jax.nn.softmax(s, axis=-1)
        p = nn.Dropout(self.p_dropout)(p, deterministic=deterministic)
        o = jnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(B, T, D)
        o = Linear(D, D, name="fc")(o)
        return nn.Dropout(self.p_dropout)(o, deterministic=deterministic) + x


class MelStyleEncoder(nn.Module):
    in_dim: int
    out_dim: int
    hidden: int = 128
    kernel_size: int = 5
    n_heads: int = 2
    p_dropout: float = 0.0
    exact_lengths: bool = True

    @nn.compact
    def __call__(self, x, mask, deterministic: bool = True):
        """``x [B, T, in_dim]``, ``mask [B, T, 1]`` -> ``ge [B, 1, out_dim]``."""
        drop = lambda h: nn.Dropout(self.p_dropout)(h, deterministic=deterministic)
        x = drop(mish(_LinearNorm(self.in_dim, self.hidden, name="spectral_0")(x)))
        x = drop(mish(_LinearNorm(self.hidden, self.hidden, name="spectral_3")(x)))
        for i in range(2):
            if self.exact_lengths:
                x = x * mask
            x = _Conv1dGLU(self.hidden, self.kernel_size, self.p_dropout, name=f"temporal_{i}")(x, deterministic)
        pad = mask[..., 0] == 0  # [B, T]
        x = jnp.where(pad[..., None], 0.0, x)
        x = _SelfAttention(self.hidden, self.n_heads, self.p_dropout, name="slf_attn")(x, pad, deterministic)
        x = _LinearNorm(self.hidden, self.out_dim, name="fc")(x)
        # temporal average: divide by the valid length, then sum (fp32)
        n = jnp.sum(mask[..., 0], axis=1).astype(jnp.float32)  # [B]
        xf = jnp.where(pad[..., None], 0.0, x).astype(jnp.float32)
        w = jnp.sum(xf / n[:, None, None], axis=1)
        return w.astype(x.dtype)[:, None, :]
