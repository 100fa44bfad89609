"""Sine positional embedding with a learned scale ``alpha`` (the original's ``SinePositionalEmbedding``).

``out = x + alpha * pe[positions]`` with the table built exactly as the original builds it: in
float32, ``div[i] = exp(float32(2i) * float32(-ln(10000) / D))``, ``pe[p, 2i] = sin(p * div[i])``,
``pe[p, 2i + 1] = cos(p * div[i])`` (the product rounded to float32 before sin/cos).
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

TABLE_LEN = 4000  # the original's table length (it rebuilds longer on demand; rows are the same)


@functools.lru_cache(maxsize=16)
def sine_table(length: int, dim: int) -> np.ndarray:
    """The float32 sinusoid table [length, dim] (read-only numpy array)."""
    position = np.arange(length, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-(math.log(10000.0) / dim)))
    angle = (position * div[None, :]).astype(np.float32)
    pe = np.zeros((length, dim), np.float32)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    pe.setflags(write=False)
    return pe


class SinePositionalEmbedding(nn.Module):
    """``x + alpha * pe[positions]`` then dropout (training only).

    ``positions``: int [B, T] or None for ``0..T-1``.  ``table_len`` must exceed every position
    (positions are static-shape bounded by the caller; the default covers the original's 4000).
    """

    dim: int
    dropout_rate: float = 0.1
    table_len: int = TABLE_LEN

    @nn.compact
    def __call__(self, x, positions=None, *, deterministic: bool = True):
        alpha = self.param("alpha", nn.with_logical_partitioning(nn.initializers.ones, (None,)), (1,))
        t = x.shape[1]
        if positions is None:
            pe = jnp.asarray(sine_table(max(self.table_len, t), self.dim)[:t])[None]
        else:
            table = jnp.asarray(sine_table(self.table_len, self.dim))
            pe = jnp.take(table, positions, axis=0, mode="clip")
        out = x + (alpha.astype(jnp.float32) * pe).astype(x.dtype)
        return nn.Dropout(self.dropout_rate)(out, deterministic=deterministic)
