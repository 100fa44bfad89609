"""BERT encoder (chinese-roberta-wwm-ext-large) in Flax linen.

The Hugging Face ``BertModel`` computation (post-LN, absolute positions, exact-erf GELU), written
for the one thing GPT-SoVITS uses it for: a chosen hidden state (the third from last) over a
padded batch of token ids. Only the layers up to that hidden state are run.

Parameters are named after the roles, not the Hugging Face module paths; the key map lives in
``gsv_jax/convert/hf.py``. Dense kernels are ``[in, out]`` (attention: ``[embed, heads, head_dim]``).
The layers are one ``nn.scan`` over parameters stacked on a leading layer axis
(``params["layers"]["layer"][...]``, shape ``[L, ...]``), so the layer body compiles once.
:func:`apply` runs the stored stack up to the requested hidden state.
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import ml_collections

from gsv_jax.nn.activations import ACTIVATIONS

# chinese-roberta-wwm-ext-large
LARGE = dict(
    vocab_size=21128,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)

_ACTIVATIONS = ACTIVATIONS


def bert_config(dtype: str = "float32", **overrides) -> ml_collections.ConfigDict:
    """Typed config; defaults are chinese-roberta-wwm-ext-large. ``dtype`` is the compute dtype."""
    cfg = ml_collections.ConfigDict(dict(LARGE, dtype=dtype))
    cfg.update(overrides)
    return cfg


def bert_config_from_hf(hf: dict, dtype: str = "float32") -> ml_collections.ConfigDict:
    """Config from a Hugging Face ``config.json`` dict; raises for another architecture."""
    if hf.get("model_type") != "bert":
        raise ValueError(
            f"config.json has model_type {hf.get('model_type')!r}, expected 'bert' "
            "(a chinese-roberta-wwm-ext-large style BERT folder)"
        )
    pos = hf.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ValueError(f"position_embedding_type {pos!r} is not supported (only 'absolute')")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"hidden_act {act!r} is not supported (one of {sorted(_ACTIVATIONS)})")
    return bert_config(dtype=dtype, **{k: hf.get(k, v) for k, v in LARGE.items()})


def _dense(features, names, axis=-1, name=None, dtype=jnp.float32):
    return nn.DenseGeneral(
        features,
        axis=axis,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), names),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros_init(), names[-(len(features) if isinstance(features, tuple) else 1):]
        ),
        name=name,
    )


def _layer_norm(eps, name, dtype):
    return nn.LayerNorm(
        epsilon=eps,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )


class BertLayer(nn.Module):
    """One post-LN transformer layer: self-attention, residual, LN; GELU MLP, residual, LN."""

    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x, bias):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        heads = cfg.num_attention_heads
        hd = cfg.hidden_size // heads
        q = _dense((heads, hd), ("embed", "heads", "kv"), name="query", dtype=dtype)(x)
        k = _dense((heads, hd), ("embed", "heads", "kv"), name="key", dtype=dtype)(x)
        v = _dense((heads, hd), ("embed", "heads", "kv"), name="value", dtype=dtype)(x)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(hd))
        probs = jax.nn.softmax(scores + bias, axis=-1).astype(dtype)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        att = _dense(cfg.hidden_size, ("heads", "kv", "embed"), axis=(-2, -1), name="attn_out", dtype=dtype)(ctx)
        x = _layer_norm(cfg.layer_norm_eps, "attn_norm", dtype)(att + x).astype(dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        h = _dense(cfg.intermediate_size, ("embed", "mlp"), name="intermediate", dtype=dtype)(x)
        h = _ACTIVATIONS[cfg.hidden_act](h)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        h = _dense(cfg.hidden_size, ("mlp", "embed"), name="output", dtype=dtype)(h)
        x = _layer_norm(cfg.layer_norm_eps, "output_norm", dtype)(h + x).astype(dtype)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Bert(nn.Module):
    """``(input_ids [B, L], attention_mask [B, L]) -> hidden states``.

    ``hidden_states`` selects which of the ``num_hidden_layers + 1`` hidden states to return
    (Python indexing, so ``-3`` is GPT-SoVITS' choice). Only the layers needed are run, so the
    stacked layer parameters must hold exactly that many layers (use :func:`apply` or
    :func:`trim_layers` with the full stack). Returns a tuple of ``[B, L, hidden]`` arrays.
    """

    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        hidden_states: Sequence[int] = (-1,),
    ):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        n_states = cfg.num_hidden_layers + 1
        wanted = [i % n_states for i in hidden_states]
        if any(not -n_states <= i < n_states for i in hidden_states):
            raise ValueError(f"hidden state index out of range for {n_states} hidden states: {hidden_states}")
        b, length = input_ids.shape
        if length > cfg.max_position_embeddings:
            raise ValueError(
                f"{length} tokens exceed the model's {cfg.max_position_embeddings} positions; "
                "split the text into shorter pieces"
            )
        if attention_mask is None:
            attention_mask = jnp.ones((b, length), jnp.int32)
        if token_type_ids is None:
            token_type_ids = jnp.zeros((b, length), jnp.int32)

        def embed(num, names, name):
            return nn.Embed(
                num,
                cfg.hidden_size,
                dtype=jnp.float32,
                param_dtype=jnp.float32,
                embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), names),
                name=name,
            )

        x = embed(cfg.vocab_size, ("vocab", "embed"), "word_embeddings")(input_ids)
        x = x + embed(cfg.max_position_embeddings, (None, "embed"), "position_embeddings")(jnp.arange(length))[None]
        x = x + embed(cfg.type_vocab_size, (None, "embed"), "token_type_embeddings")(token_type_ids)
        x = _layer_norm(cfg.layer_norm_eps, "embeddings_norm", dtype)(x).astype(dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

        # additive key mask, as Hugging Face: 0 where attended, the dtype minimum elsewhere
        bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        n_run = max(wanted)
        states = [x]
        if n_run:
            # one compiled layer body, scanned over the stacked layer parameters [L, ...]
            layers = nn.scan(
                _ScanLayer,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=nn.broadcast,
                length=n_run,
                metadata_params={nn.PARTITION_NAME: None},
            )(cfg, name="layers")
            _, ys = layers(x, bias)
            states += [ys[i] for i in range(n_run)]
        return tuple(states[i] for i in wanted)


class _ScanLayer(nn.Module):
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x, bias):
        x = BertLayer(self.cfg, name="layer")(x, bias)
        return x, x


def layers_needed(cfg, hidden_states: Sequence[int]) -> int:
    """How many transformer layers produce the requested hidden states."""
    n_states = cfg.num_hidden_layers + 1
    return max(i % n_states for i in hidden_states)


def trim_layers(params: dict, n_layers: int) -> dict:
    """Keep the first ``n_layers`` of the stacked layer parameters (what :class:`Bert` expects
    when it runs only part of the stack). Works inside jit."""
    if "layers" not in params:
        return params
    return {**params, "layers": jax.tree.map(lambda a: a[:n_layers], params["layers"])}


def apply(cfg, params, input_ids, attention_mask=None, token_type_ids=None, hidden_states=(-1,)):
    """``Bert(cfg).apply`` on the full stored parameters, running only the layers needed."""
    params = trim_layers(params, layers_needed(cfg, hidden_states))
    return Bert(cfg).apply({"params": params}, input_ids, attention_mask, token_type_ids, hidden_states)


def split_layers(params: dict, n_layers: int) -> dict:
    """Inference layout: the first ``n_layers`` layers as a list of separate per-layer trees (on
    the host, once).  :func:`apply_split` runs them unrolled, so no layer's weights are sliced out
    of the stack on every call (in ``nn.scan`` XLA copies each layer's ~50 MB per call)."""
    layers = jax.tree.map(np.asarray, params["layers"]["layer"])
    rest = {k: v for k, v in params.items() if k != "layers"}
    per_layer = []
    for i in range(n_layers):
        p = jax.tree.map(lambda a, i=i: np.ascontiguousarray(a[i]), layers)
        # query/key/value as one [D, 3, H, hd] matmul
        p["qkv"] = {"kernel": np.stack([p.pop(n)["kernel"] for n in ("query", "key", "value")], 1)}
        p["qkv"]["bias"] = np.stack([layers[n]["bias"][i] for n in ("query", "key", "value")], 0)
        per_layer.append(p)
    return {"embeddings": rest, "layers": per_layer}


def _layer_split(cfg, p, x, bias):
    """:class:`BertLayer` on one :func:`split_layers` entry (fused q/k/v; the same sums)."""
    heads = cfg.num_attention_heads
    hd = cfg.hidden_size // heads
    qkv = jnp.einsum("bld,dthk->blthk", x, p["qkv"]["kernel"]) + p["qkv"]["bias"]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(hd))
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(x.dtype)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    att = jnp.einsum("blhk,hkd->bld", ctx, p["attn_out"]["kernel"]) + p["attn_out"]["bias"]
    norm = _layer_norm(cfg.layer_norm_eps, None, x.dtype)
    x = norm.apply({"params": p["attn_norm"]}, att + x).astype(x.dtype)
    h = _ACTIVATIONS[cfg.hidden_act](x @ p["intermediate"]["kernel"] + p["intermediate"]["bias"])
    h = h @ p["output"]["kernel"] + p["output"]["bias"]
    return norm.apply({"params": p["output_norm"]}, h + x).astype(x.dtype)


def apply_split(cfg, split: dict, input_ids, attention_mask, hidden_state: int):
    """The ``hidden_state``-th hidden state (Python index) from :func:`split_layers` parameters;
    the same numbers as :func:`apply`."""
    n_states = cfg.num_hidden_layers + 1
    n_run = hidden_state % n_states
    if n_run > len(split["layers"]):
        raise ValueError(f"hidden state {hidden_state} needs {n_run} layers; {len(split['layers'])} were kept")
    (x,) = Bert(cfg).apply({"params": split["embeddings"]}, input_ids, attention_mask, None, (0,))
    bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
    for p in split["layers"][:n_run]:
        x = _layer_split(cfg, p, x, bias)
    return x


def init_params(cfg: ml_collections.ConfigDict, seed: int = 0, length: int = 8) -> dict:
    """Random parameters (plain dict) with every layer, e.g. for benchmarks."""
    model = Bert(cfg)
    ids = jnp.zeros((1, length), jnp.int32)
    variables = jax.jit(lambda key: model.init(key, ids, hidden_states=(cfg.num_hidden_layers,)))(
        jax.random.PRNGKey(seed)
    )
    return nn.meta.unbox(variables["params"])
