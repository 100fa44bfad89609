"""SoVITS v1/v2 discriminator ``MultiPeriodDiscriminator(use_spectral_norm=False)`` (docs/s2.md, "Discriminator").

``discriminators_0`` is the waveform discriminator (``DiscriminatorS``), ``discriminators_1..5`` are
period discriminators for periods 2, 3, 5, 7, 11. Every conv is weight-normed; parameters keep the
PyTorch names and shapes (``weight_v [out, in, k]`` / ``[out, in, k, 1]``, ``weight_g``, ``bias``), so
``discriminators.3.convs.0.weight_v`` <-> ``discriminators_3/convs_0/weight_v``.

Waveforms are ``[B, N]``. Each discriminator returns ``(logits [B, n], feature maps)``; logits are
flattened in PyTorch order (channel, time, period) so they compare element-wise with the original.
Feature maps are channels-last (their order only matters through ``mean |fmap_r - fmap_g|``).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from gsv_jax import families
from gsv_jax.models.s2.modules import LRELU_SLOPE, Conv1d, partitioned, torch_uniform_init, weight_param

# DiscriminatorS: (in, out, kernel, stride, groups, padding)
_S_LAYERS = ((1, 16, 15, 1, 1, 7), (16, 64, 41, 4, 4, 20), (64, 256, 41, 4, 16, 20),
             (256, 1024, 41, 4, 64, 20), (1024, 1024, 41, 4, 256, 20), (1024, 1024, 5, 1, 1, 2))
_P_CHANNELS = (1, 32, 128, 512, 1024, 1024)


def _w(c: int, width_div: int) -> int:
    return c if c == 1 else c // width_div


class DiscriminatorS(nn.Module):
    width_div: int = 1  # > 1: every width (and group count) divided, for cheap tests only

    @nn.compact
    def __call__(self, y):
        x = y[:, :, None]  # [B, N, 1]
        fmaps = []
        wd = self.width_div
        for i, (cin, cout, k, s, g, p) in enumerate(_S_LAYERS):
            g = g if g == 1 else max(1, g // wd)
            x = Conv1d(_w(cin, wd), _w(cout, wd), k, stride=s, groups=g, padding=p, weight_norm=True,
                       name=f"convs_{i}")(x)
            x = nn.leaky_relu(x, LRELU_SLOPE)
            x = nn.with_logical_constraint(x, ("batch", "length", None))
            fmaps.append(x)
        x = Conv1d(_w(1024, wd), 1, 3, padding=1, weight_norm=True, name="conv_post")(x)
        fmaps.append(x)
        return x.reshape(x.shape[0], -1), fmaps


class PeriodConv(nn.Module):
    """``Conv2d(in, out, (k, 1), (stride, 1), padding=(pad, 0))`` with weight norm, applied to
    ``[B * period, H, in]`` (the period axis folded into the batch): a 1-D conv along ``H``."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x):
        fan_in = self.in_channels * self.kernel_size
        w = weight_param(self, (self.out_channels, self.in_channels, self.kernel_size, 1), torch_uniform_init(fan_in),
                    True, ("conv_out", "conv_in", None, None))
        y = lax.conv_general_dilated(x, jnp.transpose(w[..., 0], (2, 1, 0)).astype(x.dtype), (self.stride,),
                                     [(self.padding, self.padding)], dimension_numbers=("NHC", "HIO", "NHC"))
        b = self.param("bias", partitioned(torch_uniform_init(fan_in), ("conv_out",)), (self.out_channels,))
        return y + b.astype(y.dtype)


class DiscriminatorP(nn.Module):
    period: int
    width_div: int = 1

    @nn.compact
    def __call__(self, y):
        B, n = y.shape
        p = self.period
        if n % p:
            y = jnp.pad(y, ((0, 0), (0, p - n % p)), mode="reflect")
        h = y.shape[1] // p
        # torch: view [B, 1, h, p]; a (k, 1) kernel convolves along h for each of the p columns
        x = y.reshape(B, h, p).transpose(0, 2, 1).reshape(B * p, h, 1)
        fmaps = []
        for i in range(5):
            x = PeriodConv(_w(_P_CHANNELS[i], self.width_div), _w(_P_CHANNELS[i + 1], self.width_div), 5,
                           3 if i < 4 else 1, 2, name=f"convs_{i}")(x)
            x = nn.leaky_relu(x, LRELU_SLOPE)
            x = nn.with_logical_constraint(x, ("batch", "length", None))
            fmaps.append(x)
        x = PeriodConv(_w(1024, self.width_div), 1, 3, 1, 1, name="conv_post")(x)
        fmaps.append(x)
        logits = x.reshape(B, p, -1).transpose(0, 2, 1).reshape(B, -1)  # torch order: (h, p)
        return logits, fmaps


class MultiPeriodDiscriminator(nn.Module):
    version: str = "v2"
    width_div: int = 1  # 1 = the original; 4 = 1/16 of the parameters (tests)

    @nn.compact
    def __call__(self, y):
        """``y [B, N]`` -> ``(logits, fmaps)``: lists over the 6 discriminators."""
        periods = families.family(self.version).periods
        if not periods:
            raise ValueError(f"version {self.version!r} has no multi-period discriminator (CFM models train otherwise)")
        outs = [DiscriminatorS(self.width_div, name="discriminators_0")(y)]
        for i, p in enumerate(periods):
            outs.append(DiscriminatorP(p, self.width_div, name=f"discriminators_{i + 1}")(y))
        return [o[0] for o in outs], [o[1] for o in outs]


def init_discriminator(rng, version: str = "v2", n: int = 4096, width_div: int = 1):
    """Boxed parameters of a fresh discriminator (PyTorch default init)."""
    return MultiPeriodDiscriminator(version, width_div).init(rng, jnp.zeros((1, n), jnp.float32))["params"]
