"""Prior text encoder ``enc_p``: SSL branch + phoneme branch fused by MRTE (docs/s2.md, "MRTE and the text encoder")."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from gsv_jax.models.s2.attentions import Encoder, MultiHeadAttention
from gsv_jax.models.s2.modules import Conv1d, Embedding


class MRTE(nn.Module):
    """Multi-reference timbre encoder: cross-attention from SSL frames (queries) to phonemes."""

    content_channels: int = 192
    hidden: int = 512
    out_channels: int = 192
    n_heads: int = 4

    @nn.compact
    def __call__(self, ssl_enc, ssl_mask, text, text_mask, ge):
        attn_mask = ssl_mask * jnp.swapaxes(text_mask, 1, 2)  # [B, Ts, Tt]
        s = Conv1d(self.content_channels, self.hidden, 1, name="c_pre")(ssl_enc * ssl_mask)
        t = Conv1d(self.content_channels, self.hidden, 1, name="text_pre")(text * text_mask)
        x = MultiHeadAttention(self.hidden, self.hidden, self.n_heads, None, name="cross_attention")(
            s * ssl_mask, t * text_mask, attn_mask)
        x = x + s + (0.0 if ge is None else ge)  # residual uses the unmasked c_pre output (trap 22)
        return Conv1d(self.hidden, self.out_channels, 1, name="c_post")(x * ssl_mask)


def linear_resize(y, lengths, out_lengths, out_len: int):
    """``F.interpolate(mode="linear", align_corners=False)`` per row, from ``lengths[b]`` to ``out_lengths[b]``.

    ``y [B, T, C]`` -> ``[B, out_len, C]``; half-pixel centres, source index clamped at 0, no
    antialiasing; rows beyond ``out_lengths[b]`` are garbage (mask them).
    """
    lengths = jnp.asarray(lengths)
    out_lengths = jnp.asarray(out_lengths)
    scale = lengths.astype(jnp.float32) / out_lengths.astype(jnp.float32)  # [B]
    dst = jnp.arange(out_len, dtype=jnp.float32)[None, :]
    src = jnp.maximum(scale[:, None] * (dst + 0.5) - 0.5, 0.0)
    i0 = jnp.floor(src).astype(jnp.int32)
    i0 = jnp.minimum(i0, lengths[:, None] - 1)
    i1 = jnp.minimum(i0 + 1, lengths[:, None] - 1)
    lam = (src - i0.astype(jnp.float32))[..., None]
    g0 = jnp.take_along_axis(y, i0[..., None], axis=1)
    g1 = jnp.take_along_axis(y, i1[..., None], axis=1)
    return (1.0 - lam) * g0 + lam * g1


class TextEncoder(nn.Module):
    out_channels: int
    hidden: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    n_symbols: int
    ssl_dim: int = 768
    p_dropout: float = 0.0

    def setup(self):
        self.ssl_proj = Conv1d(self.ssl_dim, self.hidden, 1)
        enc = lambda n: Encoder(self.hidden, self.filter_channels, self.n_heads, n, self.kernel_size,
                                self.p_dropout)
        self.encoder_ssl = enc(self.n_layers // 2)
        self.encoder_text = enc(self.n_layers)
        self.text_embedding = Embedding(self.n_symbols, self.hidden)
        self.mrte = MRTE(self.hidden, 512, self.hidden, 4)
        self.encoder2 = enc(self.n_layers // 2)
        self.proj = Conv1d(self.hidden, self.out_channels * 2, 1)

    def __call__(self, y, y_mask, text, text_mask, ge, deterministic: bool = True):
        """``y [B, T, 768]`` quantized SSL (50 Hz), ``text [B, Tt]`` ids; returns the ``encoder2`` output."""
        y = self.ssl_proj(y * y_mask) * y_mask
        y = self.encoder_ssl(y * y_mask, y_mask, deterministic)
        t = self.text_embedding(text)  # not scaled by sqrt(d)
        t = self.encoder_text(t * text_mask, text_mask, deterministic)
        y = self.mrte(y, y_mask, t, text_mask, ge)
        return self.encoder2(y * y_mask, y_mask, deterministic)

    def stats(self, x, mask):
        """``proj(x) * mask`` split into ``(m, logs)``."""
        s = self.proj(x) * mask
        return s[..., : self.out_channels], s[..., self.out_channels:]
