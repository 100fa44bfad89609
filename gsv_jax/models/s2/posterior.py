"""Posterior encoder ``enc_q`` (training only): linear spectrogram -> ``z, m_q, logs_q`` (docs/s2.md)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gsv_jax.models.s2.modules import WN, Conv1d


class PosteriorEncoder(nn.Module):
    in_channels: int
    out_channels: int
    hidden: int
    kernel_size: int = 5
    dilation_rate: int = 1
    n_layers: int = 16
    gin_channels: int = 0
    weight_norm: bool = True

    @nn.compact
    def __call__(self, spec, mask, g=None, noise=None):
        """``spec [B, T, 1025]``, ``mask [B, T, 1]``, ``g [B, 1, gin]`` (gradient stopped, as the original
        detaches it), ``noise [B, T, out]`` standard normal -> ``(z, m, logs)``."""
        if g is not None:
            g = jax.lax.stop_gradient(g)
        x = Conv1d(self.in_channels, self.hidden, 1, name="pre")(spec) * mask
        x = WN(self.hidden, self.kernel_size, self.dilation_rate, self.n_layers, self.gin_channels,
               weight_norm=self.weight_norm, name="enc")(x, mask, g)
        stats = Conv1d(self.hidden, 2 * self.out_channels, 1, name="proj")(x) * mask
        m, logs = stats[..., : self.out_channels], stats[..., self.out_channels:]
        if noise is None:
            noise = jnp.zeros_like(m)
        z = (m + noise * jnp.exp(logs)) * mask
        return z, m, logs
