"""BERT encoder (chinese-roberta-wwm-ext-large) in Flax linen.

The Hugging Face ``BertModel`` computation (post-LN, absolute positions, exact-erf GELU), written
for the one thing GPT-SoVITS uses it for: a chosen hidden state (the third from last) over a
padded batch of token ids. Only the layers up to that hidden state are run.

One layer computation, :func:`layer_forward`, feature-major (``[D, tokens]``, kernels ``[out, in]``).
Two parameter layouts feed it:

* the stored layout (what ``gsv_jax/io/hf.py`` maps the Hugging Face keys to, and what training,
  sharding and :func:`init_params` use): kernels ``[in, out]`` (attention ``[embed, heads, head_dim]``),
  layers stacked on a leading axis under one ``nn.scan`` (``params["layers"]["layer"]``, ``[L, ...]``);
  :class:`Bert` / :func:`apply` run it, converting each layer with :func:`feature_major` in the trace;
* the inference layout from :func:`split_layers`: the same conversion done once on the host, one
  tree per layer, run by :func:`apply_split` (what ``gsv_jax.inference.features.BertFeatures`` uses).
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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
    """One post-LN transformer layer: self-attention, residual, LN; GELU MLP, residual, LN.

    Declares the parameters in the checkpoint's layout and computes through :func:`layer_forward`,
    the one implementation of the layer (inference runs it directly on :func:`split_layers` weights).
    """

    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x, bias):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        heads = cfg.num_attention_heads
        hd = cfg.hidden_size // heads
        p = {}
        for n in ("query", "key", "value"):
            p[n] = _declare_dense(n, (cfg.hidden_size, heads, hd), ("embed", "heads", "kv"), n_out=2)
        p["attn_out"] = _declare_dense("attn_out", (heads, hd, cfg.hidden_size), ("heads", "kv", "embed"))
        p["attn_norm"] = _declare_norm("attn_norm", cfg.hidden_size)
        p["intermediate"] = _declare_dense("intermediate", (cfg.hidden_size, cfg.intermediate_size), ("embed", "mlp"))
        p["output"] = _declare_dense("output", (cfg.intermediate_size, cfg.hidden_size), ("mlp", "embed"))
        p["output_norm"] = _declare_norm("output_norm", cfg.hidden_size)
        b, length, d = x.shape
        xt = layer_forward(cfg, feature_major(p, jnp), x.astype(dtype).reshape(b * length, d).T, bias, b)
        return nn.with_logical_constraint(xt.T.reshape(b, length, d), ("batch", "length", "embed"))


def _declare_dense(name, shape, names, n_out=1):
    """A dense layer's ``kernel`` ``[in..., out...]`` and ``bias`` ``[out...]`` (Hugging Face init)."""

    def declare(scope):
        kernel = scope.param("kernel", nn.with_logical_partitioning(nn.initializers.normal(0.02), names), shape)
        bias = scope.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-n_out:]),
                           shape[-n_out:])
        return {"kernel": kernel, "bias": bias}

    return _Sub(declare, name=name)()


class _Sub(nn.Module):
    """A named parameter scope (so the tree keeps the ``query/kernel`` layout) built by a function."""

    fn: object

    @nn.compact
    def __call__(self):
        return self.fn(self)


def _declare_norm(name, width):
    def declare(scope):
        return {"scale": scope.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
                                     (width,)),
                "bias": scope.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), ("norm",)),
                                    (width,))}

    return _Sub(declare, name=name)()


def feature_major(p: dict, xp=np) -> dict:
    """One layer's parameters (checkpoint layout) -> the layout :func:`layer_forward` reads: every
    kernel ``[out, in]`` with an ``[out, 1]`` bias; query, key and value fused into one ``[3D, D]``
    product. ``xp``: numpy (once, on the host) or jax.numpy (inside a traced function)."""

    def dense(kernel, bias):  # [in, ...out] -> [out, in]
        return {"kernel": xp.transpose(xp.reshape(kernel, (kernel.shape[0], -1))), "bias": xp.reshape(bias, (-1, 1))}

    qkv_k = xp.concatenate([xp.reshape(p[n]["kernel"], (p[n]["kernel"].shape[0], -1))
                            for n in ("query", "key", "value")], 1)
    qkv_b = xp.concatenate([xp.reshape(p[n]["bias"], (-1,)) for n in ("query", "key", "value")])
    out_k = p["attn_out"]["kernel"]
    return {
        "qkv": dense(qkv_k, qkv_b),
        "attn_out": dense(xp.reshape(out_k, (-1, out_k.shape[-1])), p["attn_out"]["bias"]),
        "attn_norm": {k: xp.reshape(v, (-1, 1)) for k, v in p["attn_norm"].items()},
        "intermediate": dense(p["intermediate"]["kernel"], p["intermediate"]["bias"]),
        "output": dense(p["output"]["kernel"], p["output"]["bias"]),
        "output_norm": {k: xp.reshape(v, (-1, 1)) for k, v in p["output_norm"].items()},
    }


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
    """Inference layout: the first ``n_layers`` layers as a list of separate :func:`feature_major`
    trees (on the host, once). Unrolled separate arrays: in ``nn.scan`` XLA copies each layer's
    ~50 MB out of the stack on every call."""
    layers = jax.tree.map(np.asarray, params["layers"]["layer"])
    rest = {k: v for k, v in params.items() if k != "layers"}
    per_layer = [jax.tree.map(np.ascontiguousarray, feature_major(jax.tree.map(lambda a, i=i: a[i], layers)))
                 for i in range(n_layers)]
    return {"embeddings": rest, "layers": per_layer}


def _layer_norm_features(x, p, eps):
    """LayerNorm over axis 0 of a feature-major ``[D, N]`` array (torch's biased variance)."""
    x32 = x.astype(jnp.float32)
    mu = x32.mean(axis=0, keepdims=True)
    d = x32 - mu
    var = (d * d).mean(axis=0, keepdims=True)
    return (d * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]).astype(x.dtype)


def layer_forward(cfg, p, xt, bias, batch: int):
    """One transformer layer on :func:`feature_major` weights, feature-major: ``xt [D, B*L]``.
    ``W [out, in] @ xt`` runs ~15 % faster in XLA:CPU than ``x @ W`` at these shapes (62 tokens:
    the weights are the large operand). ``bias``: the additive key mask ``[B, 1, 1, L]``."""
    heads = cfg.num_attention_heads
    D = cfg.hidden_size
    hd = D // heads
    n = xt.shape[1]
    L = n // batch
    qkv = (p["qkv"]["kernel"] @ xt + p["qkv"]["bias"]).reshape(3, heads, hd, batch, L)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = jnp.einsum("hdbq,hdbk->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(hd))
    probs = jax.nn.softmax(scores + bias, axis=-1).astype(xt.dtype)
    ctx = jnp.einsum("bhqk,hdbk->hdbq", probs, v).reshape(D, n)
    att = p["attn_out"]["kernel"] @ ctx + p["attn_out"]["bias"]
    xt = _layer_norm_features(att + xt, p["attn_norm"], cfg.layer_norm_eps)
    h = _ACTIVATIONS[cfg.hidden_act](p["intermediate"]["kernel"] @ xt + p["intermediate"]["bias"])
    h = p["output"]["kernel"] @ h + p["output"]["bias"]
    return _layer_norm_features(h + xt, p["output_norm"], cfg.layer_norm_eps)


def apply_split(cfg, split: dict, input_ids, attention_mask, hidden_state: int):
    """The ``hidden_state``-th hidden state (Python index) ``[B, L, D]`` from :func:`split_layers`
    parameters; the same numbers as :func:`apply` up to float rounding."""
    n_states = cfg.num_hidden_layers + 1
    n_run = hidden_state % n_states
    if n_run > len(split["layers"]):
        raise ValueError(f"hidden state {hidden_state} needs {n_run} layers; {len(split['layers'])} were kept")
    (x,) = Bert(cfg).apply({"params": split["embeddings"]}, input_ids, attention_mask, None, (0,))
    B, L, D = x.shape
    bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
    xt = x.reshape(B * L, D).T
    for p in split["layers"][:n_run]:
        xt = layer_forward(cfg, p, xt, bias, B)
    return xt.T.reshape(B, L, D)


def init_params(cfg: ml_collections.ConfigDict, seed: int = 0, length: int = 8) -> dict:
    """Random parameters (plain dict) with every layer, e.g. for benchmarks."""
    model = Bert(cfg)
    ids = jnp.zeros((1, length), jnp.int32)
    variables = jax.jit(lambda key: model.init(key, ids, hidden_states=(cfg.num_hidden_layers,)))(
        jax.random.PRNGKey(seed)
    )
    return nn.meta.unbox(variables["params"])
