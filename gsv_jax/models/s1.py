"""S1: the text-to-semantic autoregressive transformer of GPT-SoVITS (``Text2SemanticDecoder``).

Phoneme ids + BERT features (text stream, bidirectional) followed by semantic tokens (causal),
one stack of post-LayerNorm transformer layers, a bias-free head over 1025 classes (EOS = 1024).

Entry points (all pure; call through ``S1Model(...).apply(params, ..., method=...)``):

* ``forward_old``  - the original's training forward: logits over the semantic positions
  (from the last text position on) and the EOS-padded targets; losses are module-level functions
  (:func:`cross_entropy_sum`, :func:`top3_accuracy`, :func:`dpo_loss`).
* ``forward_dpo``  - the original's DPO forward with the reject sequences given by the caller
  (draw them with :func:`make_reject_y` to mimic the original).
* ``prefill``      - [phonemes; prompt] at padded (bucketed) lengths with per-row lengths; returns
  the last real position's logits and per-layer keys/values ``[B, H, S, hd]``.
* ``decode_step``  - one new token per row, written into a preallocated cache at a common column.

Padding-mask quirk (docs/s1.md, "Padding-mask quirk"): the original's data loader right-pads phonemes, but its
training mask treats them as left-padded: for a row shorter than the batch, the *first*
``Tx - x_len`` (real) phonemes are masked, the trailing pad tokens stay visible and the position
that predicts the first semantic token is a pad.  ``corrected_mask=False`` (default) reproduces this
exactly; ``corrected_mask=True`` moves each row's real phonemes to the right end (keeping their
positions 0..x_len-1) so the left mask is right: the intended behaviour, and what inference does.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.nn.positional import TABLE_LEN, SinePositionalEmbedding

BERT_DIM = 1024
Cache = Sequence[tuple[jax.Array, jax.Array]]  # per layer (k, v), each [B, H, T, hd]


# ---------------------------------------------------------------------------------------------
# initialisers (the original's PyTorch defaults, docs/training.md "Initialisation")

def _torch_linear_bias(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _sym_uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


_torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _dense(features: int, fan_in: int, names: tuple, use_bias: bool = True, dtype=jnp.float32, name=None):
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(_torch_linear_kernel, names),
        bias_init=nn.with_logical_partitioning(_torch_linear_bias(fan_in), (names[1],)),
        name=name,
    )


def _layer_norm(name: str, dtype):
    return nn.LayerNorm(
        epsilon=1e-5,
        dtype=dtype,
        use_fast_variance=False,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        name=name,
    )


# ---------------------------------------------------------------------------------------------
# layers

class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection.

    ``qkv_kernel`` [D, 3, H, hd] (Q, K, V; heads are contiguous hd-wide slices as in the original),
    ``out_kernel`` [H, hd, D].  Keys/values are kept as [B, H, T, hd].
    """

    dim: int
    heads: int
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    def setup(self):
        hd = self.dim // self.heads
        bound = math.sqrt(6.0 / (self.dim + 3 * self.dim))  # xavier_uniform on [3D, D]
        self.qkv_kernel = self.param(
            "qkv_kernel",
            nn.with_logical_partitioning(_sym_uniform(bound), ("embed", None, "heads", "kv")),
            (self.dim, 3, self.heads, hd),
        )
        self.qkv_bias = self.param(
            "qkv_bias", nn.with_logical_partitioning(nn.initializers.zeros, (None, "heads", "kv")),
            (3, self.heads, hd))
        self.out_kernel = self.param(
            "out_kernel",
            nn.with_logical_partitioning(_sym_uniform(1.0 / math.sqrt(self.dim)), ("heads", "kv", "embed")),
            (self.heads, hd, self.dim))
        self.out_bias = self.param(
            "out_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (self.dim,))
        self.drop = nn.Dropout(self.dropout_rate)

    def project(self, x):
        """x [B, T, D] -> q, k, v each [B, H, T, hd] (one [D, 3D] matmul)."""
        b, t, d = x.shape
        w = jnp.asarray(self.qkv_kernel, self.dtype).reshape(d, 3 * d)
        qkv = (x @ w).reshape(b, t, 3, self.heads, d // self.heads) + jnp.asarray(self.qkv_bias, self.dtype)
        qkv = jnp.transpose(qkv, (2, 0, 3, 1, 4))
        return qkv[0], qkv[1], qkv[2]

    def output(self, o):
        """o [B, T, H, hd] -> [B, T, D] through out_proj."""
        b, t = o.shape[:2]
        w = jnp.asarray(self.out_kernel, self.dtype).reshape(self.dim, self.dim)
        return o.reshape(b, t, self.dim) @ w + jnp.asarray(self.out_bias, self.dtype)

    def attend(self, q, k, v, keep, deterministic: bool):
        """Softmax attention; ``keep`` bool broadcastable to [B, H, Tq, Tk] (True = may attend)."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = jnp.einsum("bhqk,bhtk->bhqt", q, k).astype(jnp.float32) * scale
        s = jnp.where(keep, s, -jnp.inf)
        p = jax.nn.softmax(s, axis=-1)
        p = self.drop(p, deterministic=deterministic).astype(self.dtype)
        return self.output(jnp.einsum("bhqt,bhtk->bqhk", p, v))

    def attend_cached(self, q, k, v, keep, rk, rv, rkeep):
        """Single-query attention over a cache plus a small buffer of recent keys/values.
        q [B, H, 1, hd]; k/v [B, H, T, hd] with keep [B, T]; rk/rv [B, H, C, hd] with rkeep [B, C]."""
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = jnp.einsum("bhqk,bhtk->bhqt", q, k).astype(jnp.float32) * scale
        rs = jnp.einsum("bhqk,bhtk->bhqt", q, rk).astype(jnp.float32) * scale
        s = jnp.where(keep[:, None, None, :], s, -jnp.inf)
        rs = jnp.where(rkeep[:, None, None, :], rs, -jnp.inf)
        m = jnp.maximum(jnp.max(s, axis=-1, keepdims=True), jnp.max(rs, axis=-1, keepdims=True))
        e, re = jnp.exp(s - m), jnp.exp(rs - m)
        z = jnp.sum(e, axis=-1, keepdims=True) + jnp.sum(re, axis=-1, keepdims=True)
        o = jnp.einsum("bhqt,bhtk->bqhk", (e / z).astype(self.dtype), v) + jnp.einsum(
            "bhqt,bhtk->bqhk", (re / z).astype(self.dtype), rv)
        return self.output(o)


class Block(nn.Module):
    """Post-LN transformer layer: ``LN1(x + attn(x))`` then ``LN2(x + W2 relu(W1 x))``."""

    dim: int
    heads: int
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    def setup(self):
        self.attn = Attention(self.dim, self.heads, self.dropout_rate, self.dtype)
        self.norm1 = _layer_norm("norm1", self.dtype)
        self.norm2 = _layer_norm("norm2", self.dtype)
        self.linear1 = _dense(4 * self.dim, self.dim, ("embed", "mlp"), dtype=self.dtype)
        self.linear2 = _dense(self.dim, 4 * self.dim, ("mlp", "embed"), dtype=self.dtype)
        self.drop = nn.Dropout(self.dropout_rate)

    def _finish(self, x, a, deterministic):
        x = self.norm1(x + self.drop(a, deterministic=deterministic))
        f = self.drop(nn.relu(self.linear1(x)), deterministic=deterministic)
        f = self.linear2(f)
        return self.norm2(x + self.drop(f, deterministic=deterministic))

    def __call__(self, x, keep, deterministic: bool = True):
        """Full sequence. Returns (output [B, T, D], (k, v) [B, H, T, hd])."""
        q, k, v = self.attn.project(x)
        a = self.attn.attend(q, k, v, keep, deterministic)
        return self._finish(x, a, deterministic), (k, v)

    def decode(self, x, cache_k, cache_v, keep, recent_k, recent_v, slot, recent_keep, window: int):
        """One position per row: x [B, 1, D].  Its k/v go to column ``slot`` of the small
        ``recent`` buffers [B, H, C, hd]; attention reads the first ``window`` cache columns where
        ``keep`` [B, window] is True plus the recent columns where ``recent_keep`` [B, C] is True.
        The big cache is only read here (the caller flushes ``recent`` into it every C steps), so
        XLA never copies it inside the decode loop."""
        q, k, v = self.attn.project(x)
        # a select, not a dynamic_update_slice: XLA copied the carried buffers around the latter
        at_slot = (jnp.arange(recent_k.shape[2]) == slot)[None, None, :, None]
        recent_k = jnp.where(at_slot, k.astype(recent_k.dtype), recent_k)
        recent_v = jnp.where(at_slot, v.astype(recent_v.dtype), recent_v)
        kw = jax.lax.slice_in_dim(cache_k, 0, window, axis=2)
        vw = jax.lax.slice_in_dim(cache_v, 0, window, axis=2)
        a = self.attn.attend_cached(q, kw, vw, keep, recent_k, recent_v, recent_keep)
        return self._finish(x, a, True), recent_k, recent_v


# ---------------------------------------------------------------------------------------------
# the model

@dataclasses.dataclass(frozen=True)
class S1Dims:
    """Architecture read from ``config.model`` (names as in the original's config)."""

    vocab_size: int = 1025
    phoneme_vocab_size: int = 732
    dim: int = 512
    heads: int = 16
    n_layer: int = 24
    eos: int = 1024
    token_dropout: float = 0.0
    dropout_rate: float = 0.1
    corrected_mask: bool = False
    dtype: str = "float32"

    @classmethod
    def from_config(cls, m) -> S1Dims:
        get = (lambda k, d=None: m.get(k, d)) if hasattr(m, "get") else (lambda k, d=None: getattr(m, k, d))
        dim = int(get("hidden_dim") or get("embedding_dim"))
        if get("embedding_dim") is not None and int(get("embedding_dim")) != dim:
            raise ValueError(f"embedding_dim {get('embedding_dim')} != hidden_dim {dim}: the S1 model needs them equal")
        vocab = int(get("vocab_size", 1025))
        eos = int(get("EOS", vocab - 1))
        if eos != vocab - 1:
            raise ValueError(f"model.EOS must be vocab_size - 1 (got EOS={eos}, vocab_size={vocab})")
        heads = int(get("head"))
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by head {heads}")
        return cls(
            vocab_size=vocab, phoneme_vocab_size=int(get("phoneme_vocab_size")), dim=dim, heads=heads,
            n_layer=int(get("n_layer")), eos=eos, token_dropout=float(get("dropout", 0.0) or 0.0),
            dropout_rate=float(get("hard_dropout", 0.1)), corrected_mask=bool(get("corrected_mask", False)),
            dtype=str(get("dtype", "float32")),
        )


class S1Model(nn.Module):
    """The S1 transformer.  Parameter tree (unboxed)::

        text_embedding/embedding [V_ph, D]      bert_proj/{kernel [1024, D], bias}
        text_position/alpha [1]                 audio_embedding/embedding [V, D]
        audio_position/alpha [1]                predict/kernel [D, V]
        layers_{i}/attn/{qkv_kernel [D,3,H,hd], qkv_bias [3,H,hd], out_kernel [H,hd,D], out_bias}
        layers_{i}/{linear1, linear2}/{kernel, bias}    layers_{i}/{norm1, norm2}/{scale, bias}
    """

    dims: S1Dims
    table_len: int = TABLE_LEN  # positions must stay below this (the original: 4000, rebuilt if longer)

    def setup(self):
        d = self.dims
        dt = jnp.dtype(d.dtype)
        self.text_embedding = nn.Embed(
            d.phoneme_vocab_size, d.dim, dtype=dt,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")))
        self.audio_embedding = nn.Embed(
            d.vocab_size, d.dim, dtype=dt,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")))
        self.bert_proj = _dense(d.dim, BERT_DIM, (None, "embed"), dtype=dt)
        self.text_position = SinePositionalEmbedding(d.dim, d.dropout_rate, self.table_len)
        self.audio_position = SinePositionalEmbedding(d.dim, d.dropout_rate, self.table_len)
        self.layers = [Block(d.dim, d.heads, d.dropout_rate, dt, name=f"layers_{i}") for i in range(d.n_layer)]
        self.predict = _dense(d.vocab_size, d.dim, ("embed", "vocab"), use_bias=False, dtype=dt)
        self.token_drop = nn.Dropout(d.token_dropout)

    # -- embeddings -----------------------------------------------------------------------------
    def embed_text(self, x, bert, deterministic: bool = True):
        """x int [B, Tx], bert [B, 1024, Tx] -> [B, Tx, D] (text positions 0..Tx-1)."""
        dt = jnp.dtype(self.dims.dtype)
        h = self.token_drop(self.text_embedding(x), deterministic=deterministic)
        h = h + self.bert_proj(jnp.swapaxes(jnp.asarray(bert, dt), 1, 2))
        return self.text_position(h, deterministic=deterministic)

    def embed_audio(self, y, positions=None, deterministic: bool = True):
        """y int [B, T] -> [B, T, D]; semantic positions 0..T-1 unless ``positions`` [B, T] given."""
        h = self.token_drop(self.audio_embedding(y), deterministic=deterministic)
        return self.audio_position(h, positions, deterministic=deterministic)

    def logits(self, h):
        out = self.predict(h).astype(jnp.float32)
        return nn.with_logical_constraint(out, ("batch", "length", "vocab")) if out.ndim == 3 else out

    def encode(self, xy, keep, deterministic: bool = True):
        """The layer stack over [B, S, D] with ``keep`` [B, 1, S, S]; returns (h, [(k, v)] per layer)."""
        kv = []
        for layer in self.layers:
            xy = nn.with_logical_constraint(xy, ("batch", "length", "embed"))
            xy, layer_kv = layer(xy, keep, deterministic)
            kv.append(layer_kv)
        return nn.with_logical_constraint(xy, ("batch", "length", "embed")), kv

    # -- training ---------------------------------------------------------------------------------
    def _text_for_training(self, x, x_lens, bert, deterministic):
        tx = x.shape[1]
        h = self.embed_text(x, bert, deterministic)
        if self.dims.corrected_mask:
            x_lens = jnp.asarray(x_lens, jnp.int32)  # move each right-padded row's real tokens to the right end
            shift = tx - x_lens
            src = (jnp.arange(tx)[None, :] - shift[:, None]) % tx
            h = jnp.take_along_axis(h, src[:, :, None], axis=1)
        return h

    def make_input(self, x_text, x_lens, y, y_lens, deterministic: bool = True):
        """The original's ``make_input_data`` after the text embedding: (xy [B,S,D], keep [B,1,S,S],
        targets [B, Ty+1])."""
        eos = self.dims.eos
        y, x_lens, y_lens = jnp.asarray(y, jnp.int32), jnp.asarray(x_lens, jnp.int32), jnp.asarray(y_lens, jnp.int32)
        tx, ty = x_text.shape[1], y.shape[1]
        x_pad = jnp.arange(tx)[None, :] < (tx - x_lens)[:, None]  # "left" padding mask (see module doc)
        y_pad = jnp.arange(ty)[None, :] >= y_lens[:, None]
        codes = jnp.where(y_pad, 0, y)
        targets = jnp.concatenate([codes, jnp.zeros_like(codes[:, :1])], 1) + eos * jnp.concatenate(
            [y_pad, jnp.ones_like(y_pad[:, :1])], 1).astype(y.dtype)
        y_in = targets[:, :-1]
        y_emb = self.embed_audio(y_in, deterministic=deterministic)
        xy = jnp.concatenate([x_text, y_emb.astype(x_text.dtype)], axis=1)
        s = tx + ty
        i = jnp.arange(s)
        struct = jnp.where((i < tx)[:, None], (i < tx)[None, :], (i[None, :] < tx) | (i[None, :] <= i[:, None]))
        blocked = jnp.concatenate([x_pad, y_pad], axis=1)
        keep = struct[None, None] & ~blocked[:, None, None, :]
        return xy, keep, targets

    def forward_old(self, x, x_lens, y, y_lens, bert, deterministic: bool = True):
        """Training forward (the original's ``forward_old``) -> (logits [B, Ty+1, V] fp32, targets [B, Ty+1])."""
        x_text = self._text_for_training(x, x_lens, bert, deterministic)
        xy, keep, targets = self.make_input(x_text, x_lens, y, y_lens, deterministic)
        h, _ = self.encode(xy, keep, deterministic)
        return self.logits(h[:, x.shape[1] - 1:]), targets

    def forward_dpo(self, x, x_lens, y, y_lens, bert, reject_y, reject_lens, deterministic: bool = True):
        """The original's DPO ``forward`` with injected reject sequences ->
        (logits, targets, reject_logits, reject_targets)."""
        x_text = self._text_for_training(x, x_lens, bert, deterministic)
        tx = x.shape[1]
        xy, keep, targets = self.make_input(x_text, x_lens, y, y_lens, deterministic)
        h, _ = self.encode(xy, keep, deterministic)
        rxy, rkeep, rtargets = self.make_input(x_text, x_lens, reject_y, reject_lens, deterministic)
        rh, _ = self.encode(rxy, rkeep, deterministic)
        return self.logits(h[:, tx - 1:]), targets, self.logits(rh[:, tx - 1:]), rtargets

    # -- inference --------------------------------------------------------------------------------
    def prefill(self, x, x_lens, bert, prompt, prompt_lens):
        """[phonemes; prompt] for a batch of rows with their own lengths.

        x int [B, Tx] and bert [B, 1024, Tx] right-padded to Tx; prompt int [B, P] right-padded to P
        (P may be 0: reference-free).  Layout of the S = Tx + P columns: row b's phonemes at
        [0, x_len_b), its prompt at [Tx, Tx + p_b); other columns are masked as keys.

        Returns (logits [B, V] at each row's last real position, kv [(k, v)] per layer
        [B, H, S, hd], valid [B, S] bool: which columns are real keys).
        """
        tx, p = x.shape[1], prompt.shape[1]
        xt = self.embed_text(x, bert)
        if p:
            xy = jnp.concatenate([xt, self.embed_audio(prompt).astype(xt.dtype)], axis=1)
        else:
            xy = xt
        s = tx + p
        j = jnp.arange(s)
        is_x = j < tx
        valid = jnp.where(is_x[None, :], j[None, :] < x_lens[:, None], (j[None, :] - tx) < prompt_lens[:, None])
        struct = jnp.where(is_x[:, None], is_x[None, :], is_x[None, :] | (j[None, :] <= j[:, None]))
        keep = struct[None, None] & valid[:, None, None, :]
        h, kv = self.encode(xy, keep)
        last = jnp.where(prompt_lens > 0, tx + prompt_lens - 1, x_lens - 1)
        h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
        return self.logits(h_last), kv, valid

    def decode_step(self, tokens, positions, cache: Cache, keep, recent: Cache, slot, recent_keep, window: int):
        """One token per row.  tokens int [B]; positions int [B] (semantic position of the token);
        cache per layer (k, v) [B, H, T, hd], read-only, first ``window`` columns under ``keep``
        [B, window]; recent per layer (k, v) [B, H, C, hd]: the new k/v go to column ``slot``,
        columns under ``recent_keep`` [B, C] are attended (include ``slot``).
        Returns (logits [B, V] fp32, new recent)."""
        h = self.embed_audio(tokens[:, None], positions[:, None])
        new_recent = []
        for layer, (ck, cv), (rk, rv) in zip(self.layers, cache, recent):
            h, rk, rv = layer.decode(h, ck, cv, keep, rk, rv, slot, recent_keep, window)
            new_recent.append((rk, rv))
        return self.logits(h[:, 0]), tuple(new_recent)


# ---------------------------------------------------------------------------------------------
# losses (the original's forward_old / forward)

def cross_entropy_sum(logits, targets):
    """Cross-entropy summed over every position (padding EOS targets included, as the original)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def top3_accuracy(logits, targets, ignore_index: int = 1024):
    """torchmetrics MulticlassAccuracy(top_k=3, average="micro", ignore_index=EOS)."""
    t_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)
    rank = jnp.sum(logits > t_logit, axis=-1)  # classes strictly above the target
    use = targets != ignore_index
    hit = (rank < 3) & use
    return jnp.sum(hit) / jnp.maximum(jnp.sum(use), 1)


def sequence_logp(logits, targets):
    """Sum over all positions of log p(target) per row -> [B]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0], axis=-1)


def dpo_loss(logits, targets, reject_logits, reject_targets, beta: float = 0.2):
    """Reference-free DPO term: mean_b -log sigmoid(beta (logp_chosen - logp_reject))."""
    d = sequence_logp(logits, targets) - sequence_logp(reject_logits, reject_targets)
    return jnp.mean(-jax.nn.log_sigmoid(beta * d))


def make_reject_y(y, y_lens, rng: np.random.Generator):
    """Host-side reject sequences as the original draws them (docs/s1.md "DPO reject sequences"): per row, repeat or
    drop the slice [a, b) of the *padded* row, (a, b) two sorted draws in [0, Ty).  Returns
    (reject_y int64 [B, Tr] right-padded with 0, reject_lens int64 [B])."""
    y = np.asarray(y)
    rows = []
    for row in y:
        a, b = sorted(rng.integers(0, len(row), size=2))
        if rng.integers(0, 2) == 0:
            rows.append(np.concatenate([row[:a], row[a:b], row[a:b], row[b:]]))
        else:
            rows.append(np.concatenate([row[:a], row[b:]]))
    lens = np.array([len(r) for r in rows], np.int64)
    out = np.zeros((len(rows), int(lens.max())), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lens


def param_shapes(dims: S1Dims, *, boxed: bool = False):
    """The parameter tree as ShapeDtypeStructs (boxed: with the logical axis names), no compute."""
    model = S1Model(dims)
    x = jnp.zeros((1, 2), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, jnp.array([2]), x, jnp.array([2]),
                                               jnp.zeros((1, BERT_DIM, 2)), method=S1Model.forward_old)["params"])
    return shapes if boxed else nn.meta.unbox(shapes)


def init_params(dims: S1Dims, seed: int = 0, *, boxed: bool = False):
    """Random parameters drawn on the host (numpy, no XLA compile) with the original's default
    initialisation (docs/training.md "Initialisation"): embeddings N(0, 1); Linear weights and biases
    U(+-1/sqrt(fan_in)); fused in_proj Xavier-uniform with zero bias; out_proj bias 0; LayerNorm
    1/0; alpha 1.  As in the original, every layer starts identical (one layer deep-copied).
    ``boxed=True`` keeps the ``nn.Partitioned`` logical-axis boxes around the arrays.
    Inside ``jax.jit`` use ``S1Model(dims).init`` instead (same tree, flax initialisers)."""
    rng = np.random.default_rng(seed)

    def uni(shape, bound):
        return rng.uniform(-bound, bound, size=shape).astype(np.float32)

    def draw(path, sds):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]  # skips the box's .value
        leaf, parent, shape = names[-1], names[-2], tuple(sds.shape)
        if leaf == "embedding":
            return rng.standard_normal(shape).astype(np.float32)
        if leaf == "alpha" or leaf == "scale":
            return np.ones(shape, np.float32)
        if parent.startswith("norm") or leaf in ("qkv_bias", "out_bias"):
            return np.zeros(shape, np.float32)
        if leaf == "qkv_kernel":
            d = shape[0]
            return uni(shape, math.sqrt(6.0 / (4 * d)))
        if leaf == "out_kernel":
            return uni(shape, 1.0 / math.sqrt(shape[-1]))
        fan_in = {"bert_proj": BERT_DIM, "linear1": dims.dim, "linear2": 4 * dims.dim, "predict": dims.dim}[parent]
        return uni(shape, 1.0 / math.sqrt(fan_in))

    shapes = param_shapes(dims, boxed=boxed)
    first = None
    params = jax.tree_util.tree_map_with_path(draw, shapes)
    plain = nn.meta.unbox(params) if boxed else params
    first = plain.get("layers_0")
    for i in range(1, dims.n_layer):  # the original deep-copies one layer
        src = jax.tree.map(np.copy, first)
        if boxed:
            params[f"layers_{i}"] = jax.tree.map(lambda box, v: box.replace_boxed(v), params[f"layers_{i}"], src,
                                                 is_leaf=lambda b: isinstance(b, nn.Partitioned))
        else:
            params[f"layers_{i}"] = src
    return params
