"""Residual vector quantizer (n_q = 1): eval semantics for inference and fine-tuning, and the trainable
codebook (k-means init, EMA, dead-code expiry, straight-through, commitment loss) for pretraining
(docs/s2.md "Quantizer", docs/pretraining.md).

Variables (paths as the original's buffers ``quantizer.vq.layers.0._codebook.*``):

* ``params``   ``quantizer/vq/layers_0/_codebook/embed [bins, dim]``, gradient-stopped; the optimizer
  never touches it, the trainable codebook overwrites it after each step;
* ``codebook`` (a separate collection, created by ``init``; absent at inference)
  ``quantizer/vq/layers_0/_codebook/{inited [1], cluster_size [bins], embed_avg [bins, dim]}``:
  the EMA statistics, zeros in a fresh model (``inited`` 0 -> k-means on the first batch).

The training update is the pure function :func:`train_forward` (rows in, new state out). Every
statistic is a sum over all rows it is given, so under ``jit`` with a batch-sharded input the
sums are global (XLA inserts the all-reduce), like the original's ``dist.all_reduce``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.models.s2.modules import partitioned

STATS = ("inited", "cluster_size", "embed_avg")


@dataclasses.dataclass(frozen=True)
class CodebookConfig:
    """``VectorQuantization`` as ``ResidualVectorQuantizer(768, n_q=1, bins=1024)`` builds it."""

    bins: int = 1024
    dim: int = 768
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    kmeans_frames: int = 10_000  # k-means sub-samples this many rows when the batch has more
    threshold_ema_dead_code: float = 2.0  # 0 turns expiry off
    commitment_weight: float = 1.0


class _Codebook(nn.Module):
    bins: int
    dim: int

    @nn.compact
    def __call__(self, with_stats: bool = False):
        embed = jax.lax.stop_gradient(
            self.param("embed", partitioned(nn.initializers.normal(1.0), ("vocab", "embed")), (self.bins, self.dim)))
        # the statistics exist only where they were created (init) or passed in (training)
        if not (self.is_initializing() or self.has_variable("codebook", "inited")):
            if with_stats:
                raise ValueError("the trainable quantizer needs the 'codebook' collection (inited, cluster_size, "
                                 "embed_avg): pass it with model.apply({'params': ..., 'codebook': ...})")
            return embed
        shapes = {"inited": (1,), "cluster_size": (self.bins,), "embed_avg": (self.bins, self.dim)}
        stats = {k: self.variable("codebook", k, jnp.zeros, shapes[k], jnp.float32).value for k in STATS}
        return (embed, stats) if with_stats else embed


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
    def __call__(self, with_stats: bool = False):
        return _Codebook(self.bins, self.dim, name="_codebook")(with_stats)


class _VQ(nn.Module):
    dim: int
    bins: int

    @nn.compact
    def __call__(self, with_stats: bool = False):
        return _Layer(self.dim, self.bins, name="layers_0")(with_stats)


class ResidualVectorQuantizer(nn.Module):
    """Returns the (gradient-stopped) codebook, with ``with_stats=True`` also its ``codebook``-collection
    statistics; use :func:`quantize_codes` / ``jnp.take`` (eval) or :func:`train_forward` (training)."""

    dim: int = 768
    bins: int = 1024

    @nn.compact
    def __call__(self, with_stats: bool = False):
        return _VQ(self.dim, self.bins, name="vq")(with_stats)


# ----------------------------------------------------------------------------------------------
# the trainable codebook: pure functions on rows [N, D] (fp32)

# fixed odd multipliers of the exact row fingerprint (see _first_identical)
_HASH_MULT = np.random.default_rng(18).integers(1, 2 ** 31, size=(2, 4096), dtype=np.int64).astype(np.uint32) | 1


def _first_identical(e):
    """``e [K, D]`` -> ``[K]``: for each row the lowest index of a bit-identical row.

    Identical codebook rows are real (k-means seeds drawn with replacement, expiry copies); the
    original's distances tie exactly there and the first index wins, while a GEMM may round identical
    columns differently by position. Two 32-bit fingerprints of the raw bits (integer sums wrap
    exactly, so no reduction order matters) identify identical rows in a ``K x K`` compare."""
    bits = jax.lax.bitcast_convert_type(e.astype(jnp.float32), jnp.uint32)
    m = jnp.asarray(_HASH_MULT[:, : e.shape[1]])
    h1 = jnp.sum(bits * m[0], axis=1, dtype=jnp.uint32)
    h2 = jnp.sum((bits ^ (bits >> 13)) * m[1], axis=1, dtype=jnp.uint32)
    same = (h1[:, None] == h1[None, :]) & (h2[:, None] == h2[None, :])
    return jnp.argmax(same, axis=1).astype(jnp.int32)


def nearest_code(rows, embed):
    """``rows [N, D]``, ``embed [K, D]`` -> ``[N]`` nearest code (the original's formula; exact ties ->
    lowest index)."""
    e = embed.astype(jnp.float32)
    x = rows.astype(jnp.float32)
    dist = -(jnp.sum(x * x, -1, keepdims=True) - 2.0 * x @ e.T + jnp.sum(e * e, -1)[None, :])
    return _first_identical(e)[jnp.argmax(dist, axis=-1)]


def _counts_and_sums(rows, codes, k):
    onehot = jax.nn.one_hot(codes, k, dtype=jnp.float32)  # [N, K]
    return jnp.sum(onehot, axis=0), onehot.T @ rows


def kmeans(samples, num_clusters: int, num_iters: int, seed_idx, *, return_assignments: bool = False):
    """``core_vq.kmeans`` after its sub-sampling: seeds ``samples[seed_idx]``, ``num_iters`` passes of
    (assign to the nearest mean, ties lowest; every non-empty cluster's mean <- mean of its rows).
    Returns ``(means [K, D], bins [K] int32 of the last pass)`` (+ ``assignments [iters, N]``)."""
    samples = samples.astype(jnp.float32)
    means0 = samples[seed_idx]

    def one_pass(means, _):
        assign = nearest_code(samples, means)
        bins, sums = _counts_and_sums(samples, assign, num_clusters)
        new = sums / jnp.maximum(bins, 1.0)[:, None]
        means = jnp.where((bins == 0)[:, None], means, new)
        return means, (bins, assign if return_assignments else None)

    means, (bins, assign) = jax.lax.scan(one_pass, means0, None, length=num_iters)
    out = (means, bins[-1].astype(jnp.int32))
    return out + (assign,) if return_assignments else out


def sample_indices(key, n: int, num: int):
    """``sample_vectors``' draw as ``[num]`` row indices: the first ``num`` of a permutation of ``n`` when
    ``n >= num``, else ``num`` uniform draws with replacement."""
    if n >= num:
        return jax.random.permutation(key, n)[:num].astype(jnp.int32)
    return jax.random.randint(key, (num,), 0, n, jnp.int32)


def make_draws(key, n_rows: int, cfg: CodebookConfig) -> dict:
    """The random row indices one training forward may use (only those its branches need are read):

    * ``kmeans_sub [min(N, frames)]``: the k-means sub-sample (identity when ``N <= frames``);
    * ``kmeans_seed [K]``: the initial means among the (sub-sampled) rows;
    * ``expire [K]``: ``expire[j]`` is the row copied into the ``j``-th expired code (ascending). The
      original draws ``n_exp`` rows by a permutation when ``N >= n_exp``, with replacement otherwise;
      both are drawn here and the one matching the (traced) count is picked.
    """
    k_sub, k_seed, k_perm, k_int = jax.random.split(key, 4)
    K = cfg.bins
    n_sub = min(n_rows, cfg.kmeans_frames)
    sub = (jax.random.permutation(k_sub, n_rows)[:n_sub].astype(jnp.int32) if n_rows > cfg.kmeans_frames
           else jnp.arange(n_rows, dtype=jnp.int32))
    perm = jax.random.permutation(k_perm, n_rows).astype(jnp.int32)
    perm = perm[:K] if n_rows >= K else jnp.concatenate([perm, jnp.zeros((K - n_rows,), jnp.int32)])
    return {"kmeans_sub": sub, "kmeans_seed": sample_indices(k_seed, n_sub, K),
            "expire_perm": perm, "expire_randint": jax.random.randint(k_int, (K,), 0, n_rows, jnp.int32)}


def expire_rows(draws: dict, n_expired, n_rows: int):
    """``[K]`` row indices for the expired codes in ascending order (see :func:`make_draws`)."""
    if "expire" in draws:
        return draws["expire"]
    return jnp.where(n_expired <= n_rows, draws["expire_perm"], draws["expire_randint"])


def init_state(rows, embed, stats, draws: dict, cfg: CodebookConfig):
    """``init_embed_``: k-means on ``rows`` when ``inited == 0`` (``embed = embed_avg = means``,
    ``cluster_size = bins``, ``inited = 1``), else unchanged. Returns ``(embed, stats)``."""

    def run(_):
        sub = rows[draws["kmeans_sub"]]
        means, bins = kmeans(sub, cfg.bins, cfg.kmeans_iters, draws["kmeans_seed"])
        return means, {"inited": jnp.ones((1,), jnp.float32), "cluster_size": bins.astype(jnp.float32),
                       "embed_avg": means}

    def keep(_):
        return embed.astype(jnp.float32), {k: stats[k].astype(jnp.float32) for k in STATS}

    return jax.lax.cond(stats["inited"][0] > 0, keep, run, None)


def ema_update(embed, stats, rows, codes, cfg: CodebookConfig):
    """EMA of counts and sums (global over ``rows``), Laplace-smoothed codebook. Returns ``(embed, stats)``."""
    c, s = _counts_and_sums(rows, codes, cfg.bins)
    d = jnp.float32(cfg.decay)
    a = jnp.float32(1.0 - cfg.decay)
    cluster_size = stats["cluster_size"] * d + a * c
    embed_avg = stats["embed_avg"] * d + a * s
    n = jnp.sum(cluster_size)
    smoothed = (cluster_size + cfg.epsilon) / (n + cfg.bins * cfg.epsilon) * n
    return embed_avg / smoothed[:, None], {"inited": stats["inited"], "cluster_size": cluster_size,
                                           "embed_avg": embed_avg}


def expire_codes(embed, stats, rows, draws: dict, cfg: CodebookConfig):
    """Codes whose EMA count is below the threshold get a row of this batch (``cluster_size`` and
    ``embed_avg`` untouched). Returns ``(embed, expired [K] bool)``."""
    if cfg.threshold_ema_dead_code == 0:
        return embed, jnp.zeros((cfg.bins,), bool)
    expired = stats["cluster_size"] < cfg.threshold_ema_dead_code
    rank = jnp.clip(jnp.cumsum(expired.astype(jnp.int32)) - 1, 0, cfg.bins - 1)
    src = expire_rows(draws, jnp.sum(expired.astype(jnp.int32)), rows.shape[0])[rank]
    return jnp.where(expired[:, None], rows[src], embed), expired


class VQTrainResult(NamedTuple):
    quantized: jnp.ndarray  # [..., D] straight-through value x + stop_gradient(q - x)
    codes: jnp.ndarray  # [...] int32
    commit_loss: jnp.ndarray  # () mean((stop_gradient(quantized) - x)^2) * weight
    embed: jnp.ndarray  # [K, D] codebook after this forward (goes to params)
    stats: dict  # the ``codebook`` collection after this forward
    expired: jnp.ndarray  # [K] bool


def train_forward(x, embed, stats, cfg: CodebookConfig, *, key=None, draws: dict | None = None) -> VQTrainResult:
    """One training-mode forward of ``VectorQuantization`` on ``x [..., D]`` (every frame counts, padded
    ones included, as in the original): init if needed, assign with the codebook before the update,
    straight-through output and commitment loss, then EMA and expiry.

    Random rows come from ``key`` (:func:`make_draws`); entries of ``draws`` replace them (tests inject
    the original's draws; ``expire [K]`` replaces both expiry draws)."""
    x = x.astype(jnp.float32)
    rows = x.reshape(-1, x.shape[-1])
    draws = {**make_draws(jax.random.PRNGKey(0) if key is None else key, rows.shape[0], cfg), **(draws or {})}
    rows_sg = jax.lax.stop_gradient(rows)
    embed, stats = init_state(rows_sg, jax.lax.stop_gradient(embed), stats, draws, cfg)
    codes = nearest_code(rows_sg, embed)
    q = embed[codes].reshape(x.shape)
    quantized = x + jax.lax.stop_gradient(q - x)
    commit = jnp.mean(jnp.square(jax.lax.stop_gradient(quantized) - x)) * cfg.commitment_weight
    new_embed, new_stats = ema_update(embed, stats, rows_sg, codes, cfg)
    new_embed, expired = expire_codes(new_embed, new_stats, rows_sg, draws, cfg)
    return VQTrainResult(quantized, codes.reshape(x.shape[:-1]), commit, new_embed, new_stats, expired)


def frozen_stats(embed) -> dict:
    """Statistics of a codebook that is used frozen and never had any (``inited`` 1, counts 1,
    ``embed_avg = embed``), as exports of such models store them."""
    e = jnp.asarray(embed, jnp.float32)
    return {"inited": jnp.ones((1,), jnp.float32), "cluster_size": jnp.ones((e.shape[0],), jnp.float32),
            "embed_avg": e}


def code_usage(codes, bins: int) -> dict:
    """Codebook usage of a batch of codes: ``codebook_perplexity`` (``exp`` of the code entropy; ``bins``
    when uniform) and ``codes_used_fraction`` (codes hit at least once / ``bins``)."""
    counts = jnp.sum(jax.nn.one_hot(codes.reshape(-1), bins, dtype=jnp.float32), axis=0)
    p = counts / jnp.maximum(jnp.sum(counts), 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return {"codebook_perplexity": jnp.exp(entropy), "codes_used_fraction": jnp.mean((counts > 0).astype(jnp.float32))}
