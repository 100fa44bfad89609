"""Residual vector quantizer (n_q = 1, eval semantics only: no EMA, no straight-through; docs/s2.md "Quantizer").

The codebook lives at ``quantizer/vq/layers_0/_codebook/embed [bins, dim]``; it is a frozen buffer in
the original, so gradients are stopped here.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import partitioned


class _Codebook(nn.Module):
    bins: int
    dim: int

    @nn.compact
    def __call__(self):
        return jax.lax.stop_gradient(
            self.param("embed", partitioned(nn.initializers.normal(1.0), ("vocab", "embed")), (self.bins, self.dim)))


def quantize_codes(x, embed):
    """``x [B, T, D]`` -> codes ``[B, T]``: argmax of ``-(|x|^2 - 2 x.e + |e|^2)``, first index on ties."""
    xf = x.astype(jnp.float32)
    e = embed.astype(jnp.float32)
    dist = -(jnp.sum(xf * xf, -1, keepdims=True) - 2.0 * jnp.einsum("btd,kd->btk", xf, e)
             + jnp.sum(e * e, -1)[None, None, :])
    return jnp.argmax(dist, axis=-1).astype(jnp.int32)


class _Layer(nn.Module):
    dim: int
    bins: int

    @nn.compact
    def __call__(self):
        return _Codebook(self.bins, self.dim, name="_codebook")()


class _VQ(nn.Module):
    dim: int
    bins: int

    @nn.compact
    def __call__(self):
        return _Layer(self.dim, self.bins, name="layers_0")()


class ResidualVectorQuantizer(nn.Module):
    """Returns the (gradient-stopped) codebook; use :func:`quantize_codes` and ``jnp.take`` with it."""

    dim: int = 768
    bins: int = 1024

    @nn.compact
    def __call__(self):
        return _VQ(self.dim, self.bins, name="vq")()
