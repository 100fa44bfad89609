"""The F5-TTS DiT that GPT-SoVITS v3/v4 use as the CFM velocity estimator (docs/v3v4.md).

Channels-last ``[B, T, C]``; parameters keep the PyTorch layouts and names (``Linear`` weight
``[out, in]``, conv weight ``[out, in/groups, k]``), so ``cfm.estimator.transformer_blocks.0.attn.to_q.weight``
<-> ``estimator/transformer_blocks_0/attn/to_q/weight``.

Every function takes an optional frame mask ``[B, T, 1]``: with it, frames beyond each row's length
are zeroed before every convolution and GRN norm and are never attended to, so a padded batch gives
in its valid frames what the original gives on each row alone. With an all-ones mask (or none) it is
the original computation.

The step-independent parts are separate methods so that the sampler computes them once:
:meth:`DiT.condition` (text embedding -> the ``[cond; text]`` part of the input projection) and
:meth:`DiT.step_embedding` (``d`` embedding); :meth:`DiT.__call__` composes everything (training form).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.models.s2.modules import Conv1d, Linear, torch_uniform_init
from gsv_jax.models.s2.ref_enc import mish

LN_EPS = 1e-6
TEXT_MAX_POS = 4096  # positions of the text table are clamped at 4095


def _layer_norm(x, eps=LN_EPS):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def _mask(x, mask):
    return x if mask is None else x * mask


def sinus_embedding(t, dim: int = 256, scale: float = 1000.0):
    """``SinusPositionEmbedding``: ``t [B]`` -> ``[B, dim]`` = ``[sin, cos](scale · t · exp(-i ln(1e4) / (dim/2 - 1)))``."""
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * jnp.float32(-math.log(10000) / (half - 1)))
    emb = (scale * t.astype(jnp.float32))[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], -1)


def text_position_table(dim: int, length: int) -> np.ndarray:
    """``precompute_freqs_cis(dim, 4096)[arange(length) clamped]``: ``[length, dim]`` = ``[cos, sin]`` halves,
    angles formed in float32 as the original does."""
    freqs = (np.float32(1.0) / (np.float32(10000.0) ** (np.arange(0, dim, 2, dtype=np.float32)[: dim // 2]
                                                          / np.float32(dim)))).astype(np.float32)
    pos = np.minimum(np.arange(length), TEXT_MAX_POS - 1).astype(np.float32)
    ang = (pos[:, None] * freqs[None, :]).astype(np.float32)
    return np.concatenate([np.cos(ang.astype(np.float64)), np.sin(ang.astype(np.float64))], -1).astype(np.float32)


class TimestepEmbedding(nn.Module):
    dim: int
    freq_dim: int = 256

    @nn.compact
    def __call__(self, t):
        h = Linear(self.freq_dim, self.dim, name="time_mlp_0")(sinus_embedding(t, self.freq_dim))
        return Linear(self.dim, self.dim, name="time_mlp_2")(jax.nn.silu(h))


class _AffineLayerNorm(nn.Module):
    dim: int

    @nn.compact
    def __call__(self, x):
        w = self.param("weight", nn.initializers.ones, (self.dim,))
        b = self.param("bias", nn.initializers.zeros, (self.dim,))
        return _layer_norm(x) * w + b


class GRN(nn.Module):
    """Global response norm: ``γ (x · N) + β + x``, ``N = ‖x‖₂ over time / (its channel mean + 1e-6)``."""

    dim: int

    @nn.compact
    def __call__(self, x, mask=None):
        gamma = self.param("gamma", nn.initializers.zeros, (1, 1, self.dim))
        beta = self.param("beta", nn.initializers.zeros, (1, 1, self.dim))
        xm = _mask(x, mask)
        g = jnp.sqrt(jnp.sum(xm * xm, axis=1, keepdims=True))
        n = g / (jnp.mean(g, axis=-1, keepdims=True) + 1e-6)
        return gamma * (x * n) + beta + x


class ConvNeXtV2Block(nn.Module):
    dim: int
    hidden: int

    @nn.compact
    def __call__(self, x, mask=None):
        h = Conv1d(self.dim, self.dim, 7, padding=3, groups=self.dim, name="dwconv")(_mask(x, mask))
        h = _AffineLayerNorm(self.dim, name="norm")(h)
        h = jax.nn.gelu(Linear(self.dim, self.hidden, name="pwconv1")(h), approximate=False)
        h = GRN(self.hidden, name="grn")(h, mask)
        return x + Linear(self.hidden, self.dim, name="pwconv2")(h)


class TextEmbedding(nn.Module):
    """Condition features + fixed sinusoidal positions, then ConvNeXtV2 blocks."""

    dim: int
    conv_layers: int
    conv_mult: int = 2

    @nn.compact
    def __call__(self, text, mask=None):
        x = text + jnp.asarray(text_position_table(self.dim, text.shape[1]))[None].astype(text.dtype)
        for i in range(self.conv_layers):
            x = ConvNeXtV2Block(self.dim, self.dim * self.conv_mult, name=f"text_blocks_{i}")(x, mask)
        return x


class ConvPositionEmbedding(nn.Module):
    dim: int
    kernel_size: int = 31
    groups: int = 16

    @nn.compact
    def __call__(self, x, mask=None):
        k, g = self.kernel_size, self.groups
        x = mish(Conv1d(self.dim, self.dim, k, padding=k // 2, groups=g, name="conv1d_0")(_mask(x, mask)))
        return mish(Conv1d(self.dim, self.dim, k, padding=k // 2, groups=g, name="conv1d_2")(_mask(x, mask)))


class _SplitLinear(nn.Module):
    """``Linear`` over a concatenated input, applied block by block (same parameters as ``Linear``)."""

    in_features: int
    out_features: int

    def setup(self):
        init = torch_uniform_init(self.in_features)
        self.weight = self.param("weight", init, (self.out_features, self.in_features))
        self.bias = self.param("bias", init, (self.out_features,))

    def block(self, x, lo: int, hi: int):
        return jnp.einsum("...i,oi->...o", x, self.weight[:, lo:hi].astype(x.dtype))

    def __call__(self, x):
        return self.block(x, 0, self.in_features) + self.bias


class InputEmbedding(nn.Module):
    """``proj([x; cond; text])`` + ConvPositionEmbedding. The projection is applied per input block
    so that the ``[cond; text]`` part (step-independent in sampling) is computed once."""

    mel_dim: int
    text_dim: int
    dim: int

    def setup(self):
        self.proj = _SplitLinear(2 * self.mel_dim + self.text_dim, self.dim)
        self.conv_pos_embed = ConvPositionEmbedding(self.dim)

    def condition(self, cond, text):
        """``W_cond · cond + W_text · text + b`` (``cond`` the prompt mel, ``text`` the text embedding)."""
        m = self.mel_dim
        return self.proj.block(cond, m, 2 * m) + self.proj.block(text, 2 * m, 2 * m + self.text_dim) + self.proj.bias

    def __call__(self, x, conditioned, mask=None):
        """``x`` the noisy mel, ``conditioned`` = :meth:`condition` output."""
        h = self.proj.block(x, 0, self.mel_dim) + conditioned
        return self.conv_pos_embed(h, mask) + h


def rope_angles(inv_freq, length: int):
    """x_transformers' ``RotaryEmbedding.forward_from_seq_len``: ``[T, 2·len(inv_freq)]``, each
    frequency repeated for its channel pair."""
    ang = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq.astype(jnp.float32)[None, :]
    return jnp.repeat(ang, 2, axis=-1)


def apply_rope(x, angles):
    """Rotate the first ``angles.shape[-1]`` channels of ``x [B, T, C]`` (before the head split, so
    only head 0 gets positions, as the original), channel pairs interleaved."""
    r = angles.shape[-1]
    xr, rest = x[..., :r], x[..., r:]
    pairs = xr.reshape(xr.shape[:-1] + (r // 2, 2))
    rot = jnp.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(xr.shape)
    xr = xr * jnp.cos(angles) + rot * jnp.sin(angles)
    return jnp.concatenate([xr, rest], -1)


class Attention(nn.Module):
    dim: int
    heads: int
    dim_head: int = 64

    @nn.compact
    def __call__(self, x, angles, mask=None):
        B, T, _ = x.shape
        inner = self.heads * self.dim_head
        q = apply_rope(Linear(self.dim, inner, name="to_q")(x), angles)
        k = apply_rope(Linear(self.dim, inner, name="to_k")(x), angles)
        v = Linear(self.dim, inner, name="to_v")(x)
        q, k, v = (a.reshape(B, T, self.heads, self.dim_head) for a in (q, k, v))
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (1.0 / math.sqrt(self.dim_head))
        if mask is not None:
            s = jnp.where(mask[:, None, None, :, 0] > 0, s, -jnp.inf)
        p = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("bhqk,bkhd->bqhd", p, v).reshape(B, T, inner)
        return _mask(Linear(inner, self.dim, name="to_out_0")(o), mask)


class _FeedForward(nn.Module):
    dim: int
    mult: int

    @nn.compact
    def __call__(self, x):
        h = jax.nn.gelu(Linear(self.dim, self.dim * self.mult, name="ff_0_0")(x), approximate=True)
        return Linear(self.dim * self.mult, self.dim, name="ff_2")(h)


class _AdaLayerNorm(nn.Module):
    """``Linear(SiLU(t))`` modulation (``n`` chunks) of a non-affine LayerNorm."""

    dim: int
    n: int

    @nn.compact
    def __call__(self, t):
        e = Linear(self.dim, self.dim * self.n, name="linear")(jax.nn.silu(t))
        return jnp.split(e[:, None, :], self.n, axis=-1)


class DiTBlock(nn.Module):
    dim: int
    heads: int
    dim_head: int = 64
    ff_mult: int = 2

    @nn.compact
    def __call__(self, x, t, angles, mask=None):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = _AdaLayerNorm(
            self.dim, 6, name="attn_norm")(t)
        h = _layer_norm(x) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * Attention(self.dim, self.heads, self.dim_head, name="attn")(h, angles, mask)
        h = _layer_norm(x) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * _FeedForward(self.dim, self.ff_mult, name="ff")(h)


class _RotaryEmbed(nn.Module):
    dim_head: int

    @nn.compact
    def __call__(self):
        # a buffer in the original files (stored fp16): loaded, not recomputed
        init = lambda key, shape: 1.0 / (10000.0 ** (jnp.arange(0, self.dim_head, 2, dtype=jnp.float32) / self.dim_head))
        return jax.lax.stop_gradient(self.param("inv_freq", init, (self.dim_head // 2,)))


class DiT(nn.Module):
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 2
    mel_dim: int = 100
    text_dim: int = 512
    conv_layers: int = 4

    def setup(self):
        self.time_embed = TimestepEmbedding(self.dim)
        self.d_embed = TimestepEmbedding(self.dim)
        self.text_embed = TextEmbedding(self.text_dim, self.conv_layers)
        self.input_embed = InputEmbedding(self.mel_dim, self.text_dim, self.dim)
        self.rotary_embed = _RotaryEmbed(self.dim_head)
        self.transformer_blocks = [DiTBlock(self.dim, self.heads, self.dim_head, self.ff_mult,
                                            name=f"transformer_blocks_{i}") for i in range(self.depth)]
        self.norm_out = _AdaLayerNorm(self.dim, 2)
        self.proj_out = Linear(self.dim, self.mel_dim)

    # --- step-independent pieces ------------------------------------------------------------
    def condition(self, cond, text, mask=None):
        """``cond [B, T, mel]`` prompt mel (zeros after the prompt), ``text [B, T, text_dim]`` features
        -> the conditioning term of the input projection ``[B, T, dim]``."""
        return self.input_embed.condition(cond, self.text_embed(text, mask))

    def step_embedding(self, d):
        """``d [B]`` step size -> its embedding (added to the time embedding)."""
        return self.d_embed(d)

    # --- per step ---------------------------------------------------------------------------
    def velocity(self, x, t, d_emb, conditioned, mask=None):
        """``x [B, T, mel]``, ``t [B]`` -> ``[B, T, mel]``."""
        temb = self.time_embed(t) + d_emb
        h = self.input_embed(x, conditioned, mask)
        angles = rope_angles(self.rotary_embed(), x.shape[1])
        for blk in self.transformer_blocks:
            h = blk(h, temb, angles, mask)
        scale, shift = self.norm_out(temb)
        h = _layer_norm(h) * (1 + scale) + shift
        return self.proj_out(h)

    def __call__(self, x, cond, t, d, text, mask=None):
        """The original ``DiT.forward`` (no CFG drops): ``x, cond [B, T, mel]``, ``t, d [B]``, ``text [B, T, text_dim]``."""
        return self.velocity(x, t, self.step_embedding(d), self.condition(cond, text, mask), mask)
