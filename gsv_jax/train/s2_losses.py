"""S2 (SoVITS) training losses exactly as the original ``s2_train.py`` / ``module/losses.py`` (docs/training.md).

All in fp32. Discriminator outputs are lists (one entry per sub-discriminator) of logits ``[B, n]``;
feature maps are lists of lists of arrays.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def discriminator_loss(d_real, d_fake):
    """LSGAN: ``sum_d mean((1 - D(y))^2) + mean(D(y_hat)^2)``; returns ``(loss, real terms, fake terms)``."""
    r = jnp.stack([jnp.mean((1.0 - _f32(x)) ** 2) for x in d_real])
    g = jnp.stack([jnp.mean(_f32(x) ** 2) for x in d_fake])
    return jnp.sum(r) + jnp.sum(g), r, g


def generator_loss(d_fake):
    """``sum_d mean((1 - D(y_hat))^2)``; returns ``(loss, per-discriminator terms)``."""
    g = jnp.stack([jnp.mean((1.0 - _f32(x)) ** 2) for x in d_fake])
    return jnp.sum(g), g


def feature_terms(fmap_r, fmap_g):
    """``mean |fmap_r - fmap_g|`` per feature map (discriminator-major), real maps detached."""
    return jnp.stack([jnp.mean(jnp.abs(jax.lax.stop_gradient(_f32(r)) - _f32(g)))
                      for dr, dg in zip(fmap_r, fmap_g) for r, g in zip(dr, dg)])


def feature_loss(fmap_r, fmap_g):
    """The original's feature-matching loss: ``2 * sum`` of :func:`feature_terms`."""
    return 2.0 * jnp.sum(feature_terms(fmap_r, fmap_g))


def kl_loss(z_p, logs_q, m_p, logs_p, mask):
    """``sum(mask * (logs_p - logs_q - 0.5 + 0.5 (z_p - m_p)^2 exp(-2 logs_p))) / sum(mask)``.

    ``mask`` has one channel (``[B, T, 1]``), so the denominator counts frames, not frames x channels.
    """
    z_p, logs_q, m_p, logs_p, mask = map(_f32, (z_p, logs_q, m_p, logs_p, mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * jnp.exp(-2.0 * logs_p)
    return jnp.sum(kl * mask) / jnp.sum(mask)


def mel_loss(y_mel, y_hat_mel):
    """Mean absolute error of two log-mels (``F.l1_loss``); the caller multiplies by ``c_mel``."""
    return jnp.mean(jnp.abs(_f32(y_mel) - _f32(y_hat_mel)))
