"""S1 (GPT) checkpoints: the original ``.ckpt`` <-> our Flax parameter tree.

The original file (docs/convert.md, "S1 files") is a torch zip holding ``{"weight": {"model.<name>": fp16 tensor},
"config": dict, "info": "GPT-e<epoch>"}``.  Linear weights are [out, in]; the fused attention
projection ``in_proj_weight`` [3D, D] holds Q, K, V row blocks with heads as contiguous slices.
The architecture comes from ``config["model"]``; v1 and v2 differ only by the phoneme table
(512 vs 732 symbols), told apart by the config and checked against the embedding's shape.
"""
from __future__ import annotations

import collections
import copy
import os
from typing import Any

import numpy as np

from gsv_jax import families
from gsv_jax.convert.sv import looks_like_sv
from gsv_jax.data.pipeline import checkpoint_data_section
from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.models.s1 import BERT_DIM, S1Dims

PREFIX = "model."

# top-level (non-layer) keys: torch name -> (flax path, kind)
_TOP = {  # in the original's state-dict order (layers go before the predict layer)
    "bert_proj.weight": (("bert_proj", "kernel"), "linear"),
    "bert_proj.bias": (("bert_proj", "bias"), "copy"),
    "ar_text_embedding.word_embeddings.weight": (("text_embedding", "embedding"), "copy"),
    "ar_text_position.alpha": (("text_position", "alpha"), "copy"),
    "ar_audio_embedding.word_embeddings.weight": (("audio_embedding", "embedding"), "copy"),
    "ar_audio_position.alpha": (("audio_position", "alpha"), "copy"),
}
_HEAD = {"ar_predict_layer.weight": (("predict", "kernel"), "linear")}
_LAYER = {
    "self_attn.in_proj_weight": (("attn", "qkv_kernel"), "qkv_kernel"),
    "self_attn.in_proj_bias": (("attn", "qkv_bias"), "qkv_bias"),
    "self_attn.out_proj.weight": (("attn", "out_kernel"), "out_kernel"),
    "self_attn.out_proj.bias": (("attn", "out_bias"), "copy"),
    "linear1.weight": (("linear1", "kernel"), "linear"),
    "linear1.bias": (("linear1", "bias"), "copy"),
    "linear2.weight": (("linear2", "kernel"), "linear"),
    "linear2.bias": (("linear2", "bias"), "copy"),
    "norm1.weight": (("norm1", "scale"), "copy"),
    "norm1.bias": (("norm1", "bias"), "copy"),
    "norm2.weight": (("norm2", "scale"), "copy"),
    "norm2.bias": (("norm2", "bias"), "copy"),
}


def key_map(dims: S1Dims) -> dict[str, tuple[tuple[str, ...], str]]:
    """Every checkpoint key (with the ``model.`` prefix) -> (Flax path, transform kind)."""
    out = {PREFIX + k: v for k, v in _TOP.items()}
    for i in range(dims.n_layer):
        for k, (path, kind) in _LAYER.items():
            out[f"{PREFIX}h.layers.{i}.{k}"] = ((f"layers_{i}",) + path, kind)
    out.update({PREFIX + k: v for k, v in _HEAD.items()})
    return out


def _to_flax(a: np.ndarray, kind: str, dims: S1Dims) -> np.ndarray:
    d, h = dims.dim, dims.heads
    if kind == "copy":
        return a
    if kind == "linear":
        return a.T
    if kind == "qkv_kernel":  # [3D, D] -> [D, 3, H, hd]
        return a.T.reshape(d, 3, h, d // h)
    if kind == "qkv_bias":
        return a.reshape(3, h, d // h)
    if kind == "out_kernel":  # [D_out, D_in] -> [H, hd, D_out]
        return a.T.reshape(h, d // h, d)
    raise AssertionError(kind)


def _to_torch(a: np.ndarray, kind: str, dims: S1Dims) -> np.ndarray:
    d = dims.dim
    if kind == "copy":
        return a
    if kind == "linear":
        return a.T
    if kind == "qkv_kernel":
        return a.reshape(d, 3 * d).T
    if kind == "qkv_bias":
        return a.reshape(3 * d)
    if kind == "out_kernel":
        return a.reshape(d, d).T
    raise AssertionError(kind)


def _expected_torch_shapes(dims: S1Dims) -> dict[str, tuple[int, ...]]:
    d, v, vp = dims.dim, dims.vocab_size, dims.phoneme_vocab_size
    top = {
        "ar_text_embedding.word_embeddings.weight": (vp, d), "bert_proj.weight": (d, BERT_DIM),
        "bert_proj.bias": (d,), "ar_text_position.alpha": (1,), "ar_audio_embedding.word_embeddings.weight": (v, d),
        "ar_audio_position.alpha": (1,), "ar_predict_layer.weight": (v, d),
    }
    layer = {
        "self_attn.in_proj_weight": (3 * d, d), "self_attn.in_proj_bias": (3 * d,),
        "self_attn.out_proj.weight": (d, d), "self_attn.out_proj.bias": (d,),
        "linear1.weight": (4 * d, d), "linear1.bias": (4 * d,), "linear2.weight": (d, 4 * d),
        "linear2.bias": (d,), "norm1.weight": (d,), "norm1.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
    }
    out = {PREFIX + k: s for k, s in top.items()}
    for i in range(dims.n_layer):
        out.update({f"{PREFIX}h.layers.{i}.{k}": s for k, s in layer.items()})
    return out


def state_dict_to_params(state: dict, dims: S1Dims, dtype=np.float32, where: str = "checkpoint") -> dict:
    """Original ``weight`` dict -> unboxed Flax params (numpy, ``dtype``).  Strict: missing,
    unexpected or mis-shaped keys raise :class:`CheckpointError` listing them."""
    kmap = key_map(dims)
    shapes = _expected_torch_shapes(dims)
    missing = [k for k in kmap if k not in state]
    unexpected = [k for k in state if k not in kmap]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: S1 weights do not match the architecture in its config "
            f"({dims.n_layer} layers, width {dims.dim}): missing keys {_short(missing)}, "
            f"unexpected keys {_short(unexpected)}")
    params: dict = {}
    for key, (path, kind) in kmap.items():
        a = np.asarray(state[key])
        if tuple(a.shape) != shapes[key]:
            raise CheckpointError(f"{where}: {key} has shape {tuple(a.shape)}, expected {shapes[key]}")
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        # one pass: the stored (fp16) layout straight into the final dtype and layout
        node[path[-1]] = np.ascontiguousarray(_to_flax(a, kind, dims), dtype=dtype)
    return params


def params_to_state_dict(params: dict, dims: S1Dims, dtype=np.float16) -> collections.OrderedDict[str, np.ndarray]:
    """Unboxed Flax params -> the original ``weight`` dict (keys with ``model.``, ``dtype``)."""
    out = collections.OrderedDict()
    for key, (path, kind) in key_map(dims).items():
        node = params
        for p in path:
            node = node[p]
        out[key] = np.ascontiguousarray(_to_torch(np.asarray(node, np.float32), kind, dims).astype(dtype))
    return out


def _short(keys, n=6):
    return "[]" if not keys else "[" + ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") + "]"


def _as_dict(cfg) -> dict:
    if isinstance(cfg, HParams):
        return cfg.to_dict()
    if isinstance(cfg, dict):
        return {k: _as_dict(v) if isinstance(v, (dict, HParams)) else v for k, v in cfg.items()}
    return cfg


def _looks_like_sovits(obj) -> bool:
    weight = obj.get("weight") if isinstance(obj, dict) else None
    keys = list(weight) if isinstance(weight, dict) else (list(obj.get("model", {})) if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else [])
    return isinstance(obj, dict) and (isinstance(obj.get("config"), HParams) or any(
        k.startswith(("enc_p.", "dec.", "flow.", "ref_enc.", "quantizer.", "ssl_proj.")) for k in keys))


def dims_from_checkpoint(config: dict | None, state: dict, where: str = "checkpoint") -> S1Dims:
    """Architecture from the embedded ``config["model"]``, cross-checked against tensor shapes.
    Without a config (bare state dicts) it is inferred from the shapes (16 heads, as every preset)."""
    emb = state.get(PREFIX + "ar_text_embedding.word_embeddings.weight")
    if emb is None:
        raise CheckpointError(f"{where}: no '{PREFIX}ar_text_embedding.word_embeddings.weight'; not an S1 (GPT) checkpoint")
    n_layer = len({k.split(".")[3] for k in state if k.startswith(PREFIX + "h.layers.")})
    m = dict((config or {}).get("model") or {})
    if not m:
        dim = int(emb.shape[1])
        m = {"vocab_size": int(state[PREFIX + "ar_predict_layer.weight"].shape[0]), "phoneme_vocab_size": int(emb.shape[0]),
             "hidden_dim": dim, "embedding_dim": dim, "head": 16, "n_layer": n_layer}
        m["EOS"] = m["vocab_size"] - 1
    try:
        dims = S1Dims.from_config(m)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: bad S1 config['model'] {m}: {e}") from None
    if tuple(emb.shape) != (dims.phoneme_vocab_size, dims.dim):
        raise CheckpointError(
            f"{where}: the phoneme embedding is {tuple(emb.shape)} but config['model'] says "
            f"phoneme_vocab_size={dims.phoneme_vocab_size}, hidden_dim={dims.dim}")
    if n_layer != dims.n_layer:
        raise CheckpointError(f"{where}: {n_layer} layers in the weights but n_layer={dims.n_layer} in the config")
    return dims


def version_of(dims: S1Dims) -> str:
    """'v1' (512 phonemes) or 'v2' (732: v2, v3, v4, v2Pro, v2ProPlus all use this S1 layout)."""
    try:
        return families.detect_s1(dims.phoneme_vocab_size)
    except ValueError:
        return f"custom({dims.phoneme_vocab_size} phonemes)"


def read_s1_checkpoint(path: str | os.PathLike, dtype=np.float32):
    """Read an original S1 ``.ckpt`` -> (config dict, S1Dims, params (numpy), info).

    Raises :class:`CheckpointError` for a file that is not a checkpoint, a SoVITS (S2) file, or
    weights that do not match the config."""
    obj = load_torch_file(path)
    where = str(path)
    if _looks_like_sovits(obj):
        raise CheckpointError(
            f"{where}: this is a SoVITS (S2) checkpoint, not an S1 (GPT) one; load it with "
            "gsv_jax.load_s2 and pass the GPT .ckpt to load_s1")
    if looks_like_sv(obj):
        raise CheckpointError(
            f"{where} is the speaker-verification model (ERes2NetV2), not an S1 (GPT) checkpoint; load it with "
            "gsv_jax.load_sv (v2Pro/v2ProPlus model folders keep it as sv/<file>.ckpt)")
    if not isinstance(obj, dict) or not isinstance(obj.get("weight", obj.get("state_dict")), dict):
        raise CheckpointError(
            f"{where}: not an S1 (GPT) checkpoint: expected a dict with a 'weight' state dict "
            f"(got {type(obj).__name__}{' with keys ' + str(list(obj)[:8]) if isinstance(obj, dict) else ''})")
    state = obj.get("weight", obj.get("state_dict"))  # exported weights, or a Lightning training checkpoint
    if state and not any(k.startswith(PREFIX) for k in state):
        state = {PREFIX + k: v for k, v in state.items()}
    config = _as_dict(obj.get("config") or obj.get("hyper_parameters", {}).get("config") or {})
    dims = dims_from_checkpoint(config, state, where)
    params = state_dict_to_params(state, dims, dtype, where)
    return config, dims, params, obj.get("info", "")


def write_s1_checkpoint(path: str | os.PathLike, params: dict, dims: S1Dims, config: dict | None = None,
                        info: str = "GPT-e0") -> None:
    """Write the original ``.ckpt`` (fp16 weights, ``config``, ``info``) that the original loads."""
    config = copy.deepcopy(_as_dict(config or {}))
    model_cfg = {k: v for k, v in dict(config.get("model") or {}).items() if k not in ("corrected_mask", "hard_dropout", "dtype")}
    model_cfg.update(vocab_size=dims.vocab_size, phoneme_vocab_size=dims.phoneme_vocab_size,
                     embedding_dim=dims.dim, hidden_dim=dims.dim, head=dims.heads, n_layer=dims.n_layer,
                     EOS=dims.eos, dropout=model_cfg.get("dropout", dims.token_dropout))
    model_cfg.setdefault("linear_units", 4 * dims.dim)
    model_cfg.setdefault("random_bert", 0)
    config["model"] = model_cfg
    config.setdefault("data", checkpoint_data_section())
    weight = params_to_state_dict(params, dims)
    save_torch_file({"weight": weight, "config": _plain(config), "info": info}, path)


def _plain(obj: Any):
    """ConfigDict / numpy scalars -> plain Python containers (the original pickles plain types)."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
