"""Relative-position multi-head attention, FFN and the post-norm transformer ``Encoder`` (``attentions.py``).

Channels-last ``[B, T, C]``; masks ``[B, T, 1]``. Parity details (docs/s2.md, parity traps 4, 5, 7):
the query is divided by ``sqrt(dk)`` before both the content and the relative logits; relative offsets
are ``key - query`` within ``window`` (zero outside, not clipped); masked logits are set to ``-1e4``.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import Conv1d, LayerNorm, partitioned


def _xavier_uniform_conv(channels):
    bound = math.sqrt(6.0 / (channels + channels))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def relative_onehot(t_q: int, t_k: int, window: int, dtype=jnp.float32):
    """``[Tq, Tk, 2w+1]``: one-hot of the offset ``key - query + w`` (all zeros outside the window)."""
    d = jnp.arange(t_k)[None, :] - jnp.arange(t_q)[:, None] + window
    return jax.nn.one_hot(d, 2 * window + 1, dtype=dtype)  # out-of-range indices give zero rows


def relative_to_absolute(rel, window: int):
    """``rel [..., T, 2w+1]`` (per query, the offsets ``key - query`` from -w to w) -> ``[..., T, T]``
    with ``out[q, k] = rel[q, k - q + w]`` inside the band and 0 outside: the one-hot product done by
    padding and re-reading the flat buffer with a row length one shorter (each row shifts by one)."""
    *lead, t, r = rel.shape
    row = t + r  # 2w+1 values, then t zeros
    flat = jnp.pad(rel, [(0, 0)] * len(lead) + [(0, 0), (0, t)]).reshape(*lead, t * row)
    return flat[..., : t * (row - 1)].reshape(*lead, t, row - 1)[..., window: window + t]


def absolute_to_relative(p, window: int):
    """The transpose of :func:`relative_to_absolute`: ``p [..., T, T]`` -> ``[..., T, 2w+1]`` with
    ``out[q, r] = p[q, q + r - w]`` (0 where that key is outside ``[0, T)``)."""
    *lead, t, _ = p.shape
    row = t + 2 * window + 1
    flat = jnp.pad(p, [(0, 0)] * len(lead) + [(0, 0), (window, window + 1)]).reshape(*lead, t * row)
    flat = jnp.pad(flat, [(0, 0)] * len(lead) + [(0, t)])
    return flat.reshape(*lead, t, row + 1)[..., : 2 * window + 1]


class MultiHeadAttention(nn.Module):
    channels: int
    out_channels: int
    n_heads: int
    window_size: int | None = None
    p_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, c, attn_mask, deterministic: bool = True):
        """``x [B, Tq, C]`` queries, ``c [B, Tk, C]`` keys/values, ``attn_mask [B, Tq, Tk]`` (1 = keep)."""
        C, H = self.channels, self.n_heads
        dk = C // H
        init = _xavier_uniform_conv(C)
        q = Conv1d(C, C, 1, kernel_init=init, name="conv_q")(x)
        k = Conv1d(C, C, 1, kernel_init=init, name="conv_k")(c)
        v = Conv1d(C, C, 1, kernel_init=init, name="conv_v")(c)
        B, Tq, Tk = x.shape[0], x.shape[1], c.shape[1]
        q = q.reshape(B, Tq, H, dk) / math.sqrt(dk)
        k = k.reshape(B, Tk, H, dk)
        v = v.reshape(B, Tk, H, dk)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        if self.window_size is not None:
            w = self.window_size
            rel_init = lambda key, s, dt=jnp.float32: dk ** -0.5 * jax.random.normal(key, s, dt)
            emb_k = self.param("emb_rel_k", partitioned(rel_init, (None, None, "kv")), (1, 2 * w + 1, dk))
            emb_v = self.param("emb_rel_v", partitioned(rel_init, (None, None, "kv")), (1, 2 * w + 1, dk))
            qe = jnp.einsum("bqhd,rd->bhqr", q, emb_k[0].astype(q.dtype))  # [B, H, Tq, 2w+1]
            if Tq == Tk:  # self-attention: the band by reshaping (the one-hot products cost ~20x more)
                scores = scores + relative_to_absolute(qe, w)
            else:
                onehot = relative_onehot(Tq, Tk, w, scores.dtype)  # [Tq, Tk, 2w+1]
                scores = scores + jnp.einsum("bhqr,qkr->bhqk", qe, onehot)
        scores = jnp.where(attn_mask[:, None] == 0, jnp.asarray(-1e4, scores.dtype), scores)
        p = jax.nn.softmax(scores, axis=-1)
        p = nn.Dropout(self.p_dropout)(p, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", p, v)
        if self.window_size is not None:
            pr = absolute_to_relative(p, w) if Tq == Tk else jnp.einsum("bhqk,qkr->bhqr", p, onehot)
            out = out + jnp.einsum("bhqr,rd->bqhd", pr, emb_v[0].astype(p.dtype))
        out = out.reshape(B, Tq, C)
        return Conv1d(C, self.out_channels, 1, name="conv_o")(out)


class FFN(nn.Module):
    """conv(k) -> ReLU -> conv(k) with explicit 'same' padding and the input masked before each conv."""

    in_channels: int
    out_channels: int
    filter_channels: int
    kernel_size: int
    p_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, mask, deterministic: bool = True):
        k = self.kernel_size
        pad = ((0, 0), ((k - 1) // 2, k // 2), (0, 0))
        h = Conv1d(self.in_channels, self.filter_channels, k, name="conv_1")(jnp.pad(x * mask, pad))
        h = jax.nn.relu(h)
        h = nn.Dropout(self.p_dropout)(h, deterministic=deterministic)
        h = Conv1d(self.filter_channels, self.out_channels, k, name="conv_2")(jnp.pad(h * mask, pad))
        return h * mask


class Encoder(nn.Module):
    """Post-norm transformer with relative attention (no positional encoding, no input scaling)."""

    hidden: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int = 1
    p_dropout: float = 0.0
    window_size: int = 4

    @nn.compact
    def __call__(self, x, mask, deterministic: bool = True):
        attn_mask = mask * jnp.swapaxes(mask, 1, 2)  # [B, T, T]
        x = x * mask
        for i in range(self.n_layers):
            y = MultiHeadAttention(self.hidden, self.hidden, self.n_heads, self.window_size, self.p_dropout,
                                   name=f"attn_layers_{i}")(x, x, attn_mask, deterministic)
            y = nn.Dropout(self.p_dropout)(y, deterministic=deterministic)
            x = LayerNorm(self.hidden, name=f"norm_layers_1_{i}")(x + y)
            y = FFN(self.hidden, self.hidden, self.filter_channels, self.kernel_size, self.p_dropout,
                    name=f"ffn_layers_{i}")(x, mask, deterministic)
            y = nn.Dropout(self.p_dropout)(y, deterministic=deterministic)
            x = LayerNorm(self.hidden, name=f"norm_layers_2_{i}")(x + y)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return x * mask
