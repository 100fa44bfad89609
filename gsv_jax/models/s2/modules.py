"""S2 building blocks: convolutions (optionally weight-normed), channel LayerNorm, WaveNet, ResBlock1, flow.

Layout: activations are channels-last ``[B, T, C]`` (XLA's fast convolution layout on CPU and TPU);
parameters keep the PyTorch layouts and names (conv ``weight [out, in, k]``, transposed conv
``weight [in, out, k]``, weight norm as ``weight_g [out|in, 1, 1]`` + ``weight_v``), so the checkpoint
converter is a pure renaming. ``weight_norm=True`` keeps ``(g, v)`` as trainable parameters (training);
inference folds them once into a plain ``weight`` (:func:`gsv_jax.convert.s2.fold_weight_norm`).

Masks are float ``[B, T, 1]`` (1 = valid frame).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gsv_jax.models.s2.spectral_conv import spectral_block, spectral_conv1d

LRELU_SLOPE = 0.1


def partitioned(init, names):
    return nn.with_logical_partitioning(init, names)


def torch_uniform_init(fan_in: int):
    """PyTorch's default Conv/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform a=sqrt(5))."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def normal_init(std: float):
    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def weight_norm_fold(g, v):
    """``v * g / ||v||`` with the norm over every axis but 0 (torch ``weight_norm(dim=0)``), fp32."""
    v = v.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
    return v * (g.astype(jnp.float32) / norm)


def weight_param(module: nn.Module, shape, init, weight_norm: bool, names):
    """The effective weight of a (possibly weight-normed) layer, creating its parameters."""
    if not weight_norm:
        return module.param("weight", partitioned(init, names), shape)
    v = module.param("weight_v", partitioned(init, names), shape)
    g_names = (names[0],) + (None,) * (len(shape) - 1)
    g = module.param(
        "weight_g",
        partitioned(lambda key, s: jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True)), g_names),
        (shape[0],) + (1,) * (len(shape) - 1),
    )
    return weight_norm_fold(g, v)


class Conv1d(nn.Module):
    """``torch.nn.Conv1d`` on channels-last input: ``[B, T, in] -> [B, T', out]``."""

    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    groups: int = 1
    use_bias: bool = True
    weight_norm: bool = False
    kernel_init: object = None
    bias_init: object = None
    spectral_block: int = 0  # > 0: in the frequency domain with blocks this long (spectral_conv.py); stride 1, groups 1

    @nn.compact
    def __call__(self, x):
        fan_in = self.in_channels // self.groups * self.kernel_size
        init = self.kernel_init or torch_uniform_init(fan_in)
        w = weight_param(self, (self.out_channels, self.in_channels // self.groups, self.kernel_size), init,
                    self.weight_norm, ("conv_out", "conv_in", None))
        if self.spectral_block:  # the kernel spectrum may come precomputed in the "prepared" collection
            if self.stride != 1 or self.groups != 1:
                raise ValueError(f"Conv1d: the frequency-domain path needs stride 1 and groups 1, got stride "
                                 f"{self.stride}, groups {self.groups}; leave spectral_block at 0 for this conv")
            spectrum = self.get_variable("prepared", "spectrum") if self.has_variable("prepared", "spectrum") else None
            y = spectral_conv1d(x, jnp.transpose(w, (2, 1, 0)).astype(x.dtype), self.dilation, self.padding,
                                self.spectral_block, spectrum)
        elif self.groups > 1 and self.dilation == 1:
            y = grouped_conv1d(x, jnp.transpose(w, (2, 1, 0)).astype(x.dtype), self.stride, self.padding,
                               self.groups)
        else:
            y = lax.conv_general_dilated(
                x, jnp.transpose(w, (2, 1, 0)).astype(x.dtype), (self.stride,), [(self.padding, self.padding)],
                rhs_dilation=(self.dilation,), dimension_numbers=("NHC", "HIO", "NHC"),
                feature_group_count=self.groups)
        if self.use_bias:
            b = self.param("bias", partitioned(self.bias_init or torch_uniform_init(fan_in), ("conv_out",)),
                           (self.out_channels,))
            y = y + b.astype(y.dtype)
        return y


def _phase_packed(x, stride: int, padding: int, groups: int, rows: int):
    """``x [B, T, C]`` zero-padded by ``padding`` on the left, cut or padded to ``stride * rows``
    samples, as ``[B, rows, stride, groups, C / groups]`` (sample ``stride * q + r`` -> row q, phase r)."""
    B, T, C = x.shape
    need = stride * rows
    xp = jnp.pad(x, ((0, 0), (padding, max(need - T - padding, 0)), (0, 0)))[:, :need]
    return xp.reshape(B, rows, stride, groups, C // groups)


def _grouped_conv(x, w, stride: int, padding: int, groups: int):
    """Grouped strided conv as a stride-1 grouped conv over phase-packed input: row q holds samples
    ``stride*q .. stride*q + stride - 1`` of each group's channels, tap ``j = stride*m + r`` of the
    kernel becomes tap m on phase r. Same products; XLA:CPU runs it ~2.5x faster than the strided
    grouped conv (S2 scale discriminator: stride 4, kernel 41, 4 input channels per group)."""
    B, T, C = x.shape
    k, cg, O = w.shape
    M = -(-k // stride)
    t_out = (T + 2 * padding - k) // stride + 1
    xq = _phase_packed(x, stride, padding, groups, t_out + M - 1)
    xq = xq.transpose(0, 1, 3, 2, 4).reshape(B, t_out + M - 1, C * stride)  # group-major: (g, r, c)
    kern = jnp.pad(w, ((0, M * stride - k), (0, 0), (0, 0))).reshape(M, stride * cg, O)
    return lax.conv_general_dilated(xq, kern, (1,), [(0, 0)], dimension_numbers=("NHC", "HIO", "NHC"),
                                    feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def grouped_conv1d(x, w, stride: int, padding: int, groups: int):
    """Grouped conv ``x [B, T, C]``, ``w [k, C/groups, O]`` (XLA's layout), with its own gradients:
    the input gradient is the polyphase transposed conv (:func:`conv_transpose_polyphase`; XLA:CPU's
    zero-stuffed one took ~15x longer on the S2 scale discriminator) and the weight gradient a
    batched product over the phase-packed input (XLA:CPU's grouped-conv weight gradient is up to
    40x slower on the 64/256-group layers, and came out wrong under a batch-sharded jit step)."""
    return _grouped_conv(x, w, stride, padding, groups)


def _grouped_conv_fwd(x, w, stride, padding, groups):
    return _grouped_conv(x, w, stride, padding, groups), (x, w)


def _grouped_conv_bwd(stride, padding, groups, res, dy):
    x, w = res
    B, T, _C = x.shape
    k, cg, O = w.shape
    dx = conv_transpose_polyphase(dy, jnp.transpose(w, (2, 1, 0)), stride, padding, groups=groups, out_len=T)
    M = -(-k // stride)
    t_out = dy.shape[1]
    xq = _phase_packed(x, stride, padding, groups, t_out + M - 1)
    dyg = dy.reshape(B, t_out, groups, O // groups)
    dw = jnp.stack([jnp.einsum("btrgc,btgo->rcgo", xq[:, m:m + t_out], dyg) for m in range(M)])
    return dx.astype(x.dtype), dw.reshape(M * stride, cg, O)[:k].astype(w.dtype)


grouped_conv1d.defvjp(_grouped_conv_fwd, _grouped_conv_bwd)


class ConvTranspose1d(nn.Module):
    """``torch.nn.ConvTranspose1d`` (weight ``[in, out, k]``) on channels-last input; output ``(L-1)u - 2p + k``.

    Computed polyphase: output phase ``r`` (positions ``o = q*u + r``) is an ordinary stride-1
    correlation of the input with the taps ``k = r + p + u*j`` -- the same products and sums as the
    zero-stuffed form, ``u`` times fewer multiplications.
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int = 0
    use_bias: bool = True
    weight_norm: bool = False
    kernel_init: object = None

    @nn.compact
    def __call__(self, x):
        k, u, p = self.kernel_size, self.stride, self.padding
        fan_in = self.out_channels * k  # torch computes fan_in from weight.size(1) * k for transposed convs
        init = self.kernel_init or torch_uniform_init(fan_in)
        w = weight_param(self, (self.in_channels, self.out_channels, k), init, self.weight_norm,
                    ("conv_in", "conv_out", None)).astype(x.dtype)
        b = None
        if self.use_bias:
            b = self.param("bias", partitioned(torch_uniform_init(fan_in), ("conv_out",)), (self.out_channels,))
        prepared = self.get_variable("prepared", "polyphase") if self.has_variable("prepared", "polyphase") else None
        y = conv_transpose_polyphase(x, w, u, p, kernel=prepared)
        if b is not None:
            y = y + b.astype(y.dtype)
        return y


def _polyphase_taps(k: int, u: int, p: int):
    """``(r, i - q, kk)`` for every product of the transposed conv: output ``o = q*u + r`` takes
    ``x[i] @ w[:, :, kk]`` where ``o = i*u - p + kk``; with ``r + p = shift*u + c``, ``kk = c + u*m``
    and ``i = q + shift - m``."""
    entries = []
    for r in range(u):
        c, shift = (r + p) % u, (r + p) // u
        for m, kk in enumerate(range(c, k, u)):
            entries.append((r, shift - m, kk))
    return entries


def polyphase_kernel(w, u: int, p: int, groups: int = 1):
    """The stride-1 kernel ``[W, in / groups, groups * u * out / groups]`` that
    :func:`conv_transpose_polyphase` correlates with, from torch's ``w [in, out / groups, k]``
    (a per-model constant: inference builds it once, see ``Generator``'s ``prepared`` collection)."""
    cin, cout_g, k = w.shape
    cin_g = cin // groups
    entries = _polyphase_taps(k, u, p)
    lo = min(e[1] for e in entries)
    width = max(e[1] for e in entries) - lo + 1
    kern = jnp.zeros((width, cin_g, groups, u, cout_g), w.dtype)
    for r, off, kk in entries:
        kern = kern.at[off - lo, :, :, r, :].set(w[:, :, kk].reshape(groups, cin_g, cout_g).transpose(1, 0, 2))
    return kern.reshape(width, cin_g, groups * u * cout_g)


def conv_transpose_polyphase(x, w, u: int, p: int, *, groups: int = 1, out_len: int | None = None,
                             kernel=None):
    """Transposed conv ``y[o] = sum_{i,kk: o = i*u - p + kk} x[i] @ w[:, :, kk]`` for ``x [B, L, in]``,
    ``w [in, out / groups, k]`` (torch's ConvTranspose1d layout); ``out_len`` defaults to torch's
    ``(L-1)u - 2p + k``; ``kernel``: :func:`polyphase_kernel` of ``w``, if built ahead.

    One stride-1 convolution with ``u * out`` output channels (per group, one block per output
    phase ``r = o mod u``) followed by interleaving the phases.
    """
    B, L, _cin = x.shape
    _, cout_g, k = w.shape
    if out_len is None:
        out_len = (L - 1) * u - 2 * p + k
    n_q = -(-out_len // u)  # output rows per phase
    lo = min(e[1] for e in _polyphase_taps(k, u, p))
    if kernel is None:
        kernel = polyphase_kernel(w, u, p, groups)
    width = kernel.shape[0]
    # window for output q covers x[q + lo .. q + lo + width - 1]
    need = n_q + width - 1
    pad_l = max(-lo, 0)
    pad_r = max(lo + need - L, 0)
    xp = jnp.pad(x, ((0, 0), (pad_l, pad_r), (0, 0)))
    start = lo + pad_l
    xp = xp[:, start: start + need]
    y = lax.conv_general_dilated(xp, kernel.astype(x.dtype), (1,), [(0, 0)],
                                 dimension_numbers=("NHC", "HIO", "NHC"), feature_group_count=groups)
    y = y.reshape(B, n_q, groups, u, cout_g).transpose(0, 1, 3, 2, 4)
    return y.reshape(B, n_q * u, groups * cout_g)[:, :out_len]


class Linear(nn.Module):
    """``torch.nn.Linear`` (weight ``[out, in]``)."""

    in_features: int
    out_features: int
    use_bias: bool = True
    kernel_init: object = None
    names: tuple = ("mlp", "embed")

    @nn.compact
    def __call__(self, x):
        init = self.kernel_init or torch_uniform_init(self.in_features)
        w = self.param("weight", partitioned(init, self.names), (self.out_features, self.in_features))
        y = jnp.einsum("...i,oi->...o", x, w.astype(x.dtype))
        if self.use_bias:
            b = self.param("bias", partitioned(torch_uniform_init(self.in_features), (self.names[0],)), (self.out_features,))
            y = y + b.astype(y.dtype)
        return y


class Embedding(nn.Module):
    """``torch.nn.Embedding`` (param ``weight [n, d]``, N(0, 1) init)."""

    num: int
    dim: int

    @nn.compact
    def __call__(self, ids):
        w = self.param("weight", partitioned(normal_init(1.0), ("vocab", "embed")), (self.num, self.dim))
        return jnp.take(w, ids, axis=0)


class LayerNorm(nn.Module):
    """LayerNorm over channels (``modules.LayerNorm``): biased variance, eps 1e-5, ``gamma``/``beta``."""

    channels: int
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", partitioned(nn.initializers.ones, ("norm",)), (self.channels,))
        beta = self.param("beta", partitioned(nn.initializers.zeros, ("norm",)), (self.channels,))
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, -1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), -1, keepdims=True)
        y = (xf - mean) * lax.rsqrt(var + self.eps)
        return (y * gamma + beta).astype(x.dtype)


def lrelu(x, slope=LRELU_SLOPE):
    return jnp.where(x >= 0, x, x * slope)


class WN(nn.Module):
    """WaveNet stack (``modules.WN``): gated dilated convs, conditioned on ``g [B, 1, gin]``."""

    hidden: int
    kernel_size: int
    dilation_rate: int
    n_layers: int
    gin_channels: int = 0
    weight_norm: bool = True
    p_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, mask, g=None, deterministic: bool = True):
        H = self.hidden
        out = jnp.zeros_like(x)
        if g is not None and self.gin_channels:
            g = Conv1d(self.gin_channels, 2 * H * self.n_layers, 1, weight_norm=self.weight_norm,
                       name="cond_layer")(g)
        for i in range(self.n_layers):
            d = self.dilation_rate ** i
            x_in = Conv1d(H, 2 * H, self.kernel_size, dilation=d, padding=(self.kernel_size * d - d) // 2,
                          weight_norm=self.weight_norm, name=f"in_layers_{i}")(x)
            if g is not None and self.gin_channels:
                x_in = x_in + g[:, :, 2 * H * i: 2 * H * (i + 1)]
            acts = jnp.tanh(x_in[..., :H]) * jax.nn.sigmoid(x_in[..., H:])
            acts = nn.Dropout(self.p_dropout)(acts, deterministic=deterministic)
            last = i == self.n_layers - 1
            rs = Conv1d(H, H if last else 2 * H, 1, weight_norm=self.weight_norm,
                        name=f"res_skip_layers_{i}")(acts)
            if not last:
                x = (x + rs[..., :H]) * mask
                out = out + rs[..., H:]
            else:
                out = out + rs
        return out * mask


class ResBlock1(nn.Module):
    """HiFi-GAN ResBlock1. With ``mask`` every conv input is masked, so padded frames never leak in.
    ``spectral_convs``: wide convs go through the frequency domain where that is faster (inference)."""

    channels: int
    kernel_size: int = 3
    dilations: Sequence[int] = (1, 3, 5)
    weight_norm: bool = True
    spectral_convs: bool = False

    @nn.compact
    def __call__(self, x, mask=None):
        k = self.kernel_size
        block = spectral_block(self.channels, k) if self.spectral_convs else 0
        for j, d in enumerate(self.dilations):
            t = lrelu(x)
            if mask is not None:
                t = t * mask
            t = Conv1d(self.channels, self.channels, k, dilation=d, padding=(k * d - d) // 2,
                       weight_norm=self.weight_norm, kernel_init=normal_init(0.01), spectral_block=block,
                       name=f"convs1_{j}")(t)
            t = lrelu(t)
            if mask is not None:
                t = t * mask
            t = Conv1d(self.channels, self.channels, k, dilation=1, padding=(k - 1) // 2,
                       weight_norm=self.weight_norm, kernel_init=normal_init(0.01), spectral_block=block,
                       name=f"convs2_{j}")(t)
            x = x + t
        if mask is not None:
            x = x * mask
        return x


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling (``logs = 0``): ``x1 -> x1 + m(x0)`` (forward) or ``(x1 - m) * mask``."""

    channels: int
    hidden: int
    kernel_size: int
    dilation_rate: int
    n_layers: int
    gin_channels: int = 0
    weight_norm: bool = True

    @nn.compact
    def __call__(self, x, mask, g=None, reverse: bool = False):
        half = self.channels // 2
        x0, x1 = x[..., :half], x[..., half:]
        h = Conv1d(half, self.hidden, 1, name="pre")(x0) * mask
        h = WN(self.hidden, self.kernel_size, self.dilation_rate, self.n_layers, self.gin_channels,
               weight_norm=self.weight_norm, name="enc")(h, mask, g)
        m = Conv1d(self.hidden, half, 1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros,
                   name="post")(h) * mask
        if not reverse:
            x1 = m + x1 * mask
        else:
            x1 = (x1 - m) * mask
        return jnp.concatenate([x0, x1], -1)


class ResidualCouplingBlock(nn.Module):
    """The flow: ``n_flows`` x [coupling, channel flip]. Parameters under ``flows_0, flows_2, ...``."""

    channels: int
    hidden: int
    kernel_size: int = 5
    dilation_rate: int = 1
    n_layers: int = 4
    n_flows: int = 4
    gin_channels: int = 0
    weight_norm: bool = True

    def setup(self):
        self.couplings = [
            ResidualCouplingLayer(self.channels, self.hidden, self.kernel_size, self.dilation_rate, self.n_layers,
                                  self.gin_channels, self.weight_norm, name=f"flows_{2 * i}")
            for i in range(self.n_flows)
        ]

    def __call__(self, x, mask, g=None, reverse: bool = False):
        if not reverse:
            for c in self.couplings:
                x = c(x, mask, g, reverse=False)
                x = jnp.flip(x, -1)
        else:
            for c in reversed(self.couplings):
                x = jnp.flip(x, -1)
                x = c(x, mask, g, reverse=True)
        return x


def sequence_mask(lengths, max_len: int, dtype=jnp.float32):
    """``[B] -> [B, max_len, 1]`` float mask."""
    return (jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]).astype(dtype)[..., None]
