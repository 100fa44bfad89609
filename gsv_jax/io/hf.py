"""Hugging Face model folders (as users have them on disk), read without torch and fully offline.

A folder holds ``config.json`` and the weights as ``model.safetensors`` or ``pytorch_model.bin``
(either may be sharded with a ``*.index.json``); BERT folders also hold tokenizer files
(``vocab.txt``, ``tokenizer.json`` ...). Weights become plain numpy dicts keyed like the PyTorch
state dict; the key maps below turn them into the parameter trees of
``gsv_jax/models/{bert,hubert}.py`` and fail loudly on missing or unexpected weights.
"""
from __future__ import annotations

import json
import pathlib
import re

import numpy as np

from gsv_jax.io.torch_io import load_torch_file

PathLike = str | pathlib.Path

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


# --------------------------------------------------------------------------------------------
# folder reading


def _folder(folder: PathLike) -> pathlib.Path:
    path = pathlib.Path(folder).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model folder {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; pass the Hugging Face model folder that contains it")
    return path


def read_config(folder: PathLike) -> dict:
    """``config.json`` of a Hugging Face folder as a dict."""
    path = _folder(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a Hugging Face model folder needs its config.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: PathLike) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file as read-only numpy views of one memory map: nothing is copied until a
    tensor is used, so a model's loader reads each weight once, straight into its final layout
    (``safetensors.numpy.load_file`` copies the whole file first). bf16 tensors come back as
    ``ml_dtypes.bfloat16``."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError(f"{path} is not a safetensors file (unreadable header: {e})") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype == "BF16":
            import ml_dtypes

            np_dtype = np.dtype(ml_dtypes.bfloat16)
        elif dtype in _SAFETENSORS_DTYPES:
            np_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, which this reader does not handle")
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(np_dtype).reshape(info["shape"])
    return out


def _read_one(path: pathlib.Path) -> dict[str, np.ndarray]:
    if path.name.endswith(".safetensors"):
        return read_safetensors(path)
    state = load_torch_file(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k: np.asarray(v) for k, v in state.items()}


def read_state_dict(folder: PathLike) -> dict[str, np.ndarray]:
    """All weights of a folder as ``{name: numpy array}`` (stored dtype), safetensors preferred."""
    path = _folder(folder)
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return _read_one(path / name)
        index = path / f"{name}.index.json"
        if index.is_file():
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state = {}
            for shard in shards:
                if not (path / shard).is_file():
                    raise FileNotFoundError(f"{index} lists shard {shard}, which is missing from {path}")
                state.update(_read_one(path / shard))
            return state
    raise FileNotFoundError(
        f"no weights in {path}: expected one of {', '.join(WEIGHT_FILES)} (or a sharded *.index.json)"
    )


def load_tokenizer(folder: PathLike):
    """The folder's own transformers tokenizer (offline)."""
    path = _folder(folder)
    names = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
    if not any((path / n).is_file() for n in names):
        raise FileNotFoundError(f"no tokenizer files in {path}: expected one of {', '.join(names)}")
    if (path / "tokenizer.json").is_file() and _plain_bert_tokenizer(path):
        return FastTokenizer(path / "tokenizer.json")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _plain_bert_tokenizer(path: pathlib.Path) -> bool:
    """True when ``tokenizer.json`` alone gives what transformers would build: a BERT tokenizer, no
    added-token file, and the normaliser options transformers would impose (``do_lower_case``,
    ``strip_accents``, ``tokenize_chinese_chars`` from ``tokenizer_config.json`` or their defaults)
    already those of ``tokenizer.json``. Anything else goes through transformers."""
    try:
        cfg_path = path / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        norm = json.loads((path / "tokenizer.json").read_text(encoding="utf-8")).get("normalizer") or {}
    except (ValueError, UnicodeDecodeError):
        return False
    if (path / "added_tokens.json").is_file() or cfg.get("tokenizer_class", "BertTokenizer") not in (
            "BertTokenizer", "BertTokenizerFast") or norm.get("type") != "BertNormalizer":
        return False
    return (norm.get("lowercase") == cfg.get("do_lower_case", True)
            and norm.get("strip_accents") == cfg.get("strip_accents")
            and norm.get("handle_chinese_chars") == cfg.get("tokenize_chinese_chars", True))


class FastTokenizer:
    """``tokenizer.json`` through the ``tokenizers`` library directly: the same ids as transformers'
    ``BertTokenizerFast`` (which wraps this very object) for ``tokenizer(text)["input_ids"]``,
    without importing transformers (~3 s of a cold start)."""

    def __init__(self, path: PathLike):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()

    def __call__(self, text: str) -> dict:
        return {"input_ids": self._tok.encode(text).ids}

    def convert_ids_to_tokens(self, ids) -> list:
        return [self._tok.id_to_token(int(i)) for i in ids]


# --------------------------------------------------------------------------------------------
# key maps


class _Keys:
    """A state dict with prefix stripping, fp32 casting and a record of what was used."""

    def __init__(self, state: dict[str, np.ndarray], prefixes, ignore, what: str):
        self.state = {}
        for k, v in state.items():
            for p in prefixes:
                if k.startswith(p):
                    k = k[len(p):]
                    break
            self.state[k] = v
        self.ignore = [re.compile(r) for r in ignore]
        self.used = set()
        self.what = what

    def has(self, key):
        return key in self.state

    def __call__(self, key, shape=None):
        if key not in self.state:
            raise KeyError(f"{self.what}: weight {key!r} is missing from the checkpoint")
        self.used.add(key)
        v = np.asarray(self.state[key], np.float32)
        if shape is not None and tuple(v.shape) != tuple(shape):
            raise ValueError(f"{self.what}: weight {key!r} has shape {v.shape}, config.json implies {tuple(shape)}")
        return v

    def norm(self, key):  # LayerNorm weight/bias, or the old gamma/beta names
        w = key + ".weight" if self.has(key + ".weight") else key + ".gamma"
        b = key + ".bias" if self.has(key + ".bias") else key + ".beta"
        return {"scale": self(w), "bias": self(b)}

    def finish(self):
        left = [k for k in self.state if k not in self.used and not any(r.fullmatch(k) for r in self.ignore)]
        if left:
            raise ValueError(
                f"{self.what}: {len(left)} unexpected weights (another architecture?), e.g. {left[:5]}"
            )


def _stack(layers: list) -> dict:
    """Per-layer trees -> one tree with a leading layer axis, under ``{"layer": ...}`` (the
    layout of the models' ``nn.scan``)."""
    def stack(*leaves):
        return np.stack(leaves)

    import jax

    return {"layer": jax.tree.map(stack, *layers)}


def _bert_embeddings(k: _Keys, cfg) -> dict:
    e, h = "embeddings.", cfg.hidden_size
    return {
        "word_embeddings": {"embedding": k(e + "word_embeddings.weight", (cfg.vocab_size, h))},
        "position_embeddings": {"embedding": k(e + "position_embeddings.weight", (cfg.max_position_embeddings, h))},
        "token_type_embeddings": {"embedding": k(e + "token_type_embeddings.weight", (cfg.type_vocab_size, h))},
        "embeddings_norm": k.norm(e + "LayerNorm"),
    }


def bert_params(state: dict[str, np.ndarray], cfg) -> dict:
    """Hugging Face ``BertModel`` / ``BertForMaskedLM`` state dict -> ``models.bert.Bert`` params."""
    k = _Keys(state, ("bert.",), (r"cls\..*", r"pooler\..*", r".*position_ids"), "BERT")
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    hd = h // heads

    def dense(name, n_in, n_out):
        return {"kernel": k(name + ".weight", (n_out, n_in)).T, "bias": k(name + ".bias", (n_out,))}

    def qkv(name):
        d = dense(name, h, h)
        return {"kernel": d["kernel"].reshape(h, heads, hd), "bias": d["bias"].reshape(heads, hd)}

    p = _bert_embeddings(k, cfg)
    layers = []
    for i in range(cfg.num_hidden_layers):
        a = f"encoder.layer.{i}."
        out = dense(a + "attention.output.dense", h, h)
        layers.append({
            "query": qkv(a + "attention.self.query"),
            "key": qkv(a + "attention.self.key"),
            "value": qkv(a + "attention.self.value"),
            "attn_out": {"kernel": out["kernel"].reshape(heads, hd, h), "bias": out["bias"]},
            "attn_norm": k.norm(a + "attention.output.LayerNorm"),
            "intermediate": dense(a + "intermediate.dense", h, cfg.intermediate_size),
            "output": dense(a + "output.dense", cfg.intermediate_size, h),
            "output_norm": k.norm(a + "output.LayerNorm"),
        })
    if layers:
        p["layers"] = _stack(layers)
    k.finish()
    return p


def bert_inference_params(state: dict[str, np.ndarray], cfg, n_layers: int) -> dict:
    """The inference layout of ``models.bert.split_layers`` built straight from a Hugging Face state
    dict: the checkpoint's ``[out, in]`` kernels are already what the feature-major layers read, so
    each weight is read once (no transposed, stacked copy of a 1.3 GB model first); only the first
    ``n_layers`` layers are read. Equal to ``split_layers(bert_params(state, cfg), n_layers)``."""
    later = "|".join(str(i) for i in range(n_layers, cfg.num_hidden_layers)) or "-"
    k = _Keys(state, ("bert.",), (r"cls\..*", r"pooler\..*", r".*position_ids", rf"encoder\.layer\.({later})\..*"),
              "BERT")
    h = cfg.hidden_size

    def dense(name, n_in, n_out):
        return {"kernel": k(name + ".weight", (n_out, n_in)), "bias": k(name + ".bias", (n_out,)).reshape(-1, 1)}

    def column(norm):
        return {n: v.reshape(-1, 1) for n, v in norm.items()}

    embeddings = _bert_embeddings(k, cfg)
    layers = []
    for i in range(n_layers):
        a = f"encoder.layer.{i}."
        qkv = [dense(a + f"attention.self.{n}", h, h) for n in ("query", "key", "value")]
        layers.append({
            "qkv": {"kernel": np.concatenate([d["kernel"] for d in qkv]),
                    "bias": np.concatenate([d["bias"] for d in qkv])},
            "attn_out": dense(a + "attention.output.dense", h, h),
            "attn_norm": column(k.norm(a + "attention.output.LayerNorm")),
            "intermediate": dense(a + "intermediate.dense", h, cfg.intermediate_size),
            "output": dense(a + "output.dense", cfg.intermediate_size, h),
            "output_norm": column(k.norm(a + "output.LayerNorm")),
        })
    k.finish()
    return {"embeddings": embeddings, "layers": layers}


def _fold_weight_norm(g: np.ndarray, v: np.ndarray, dim: int) -> np.ndarray:
    """``g · v / ||v||`` with the norm over every axis except ``dim`` (torch ``weight_norm``)."""
    axes = tuple(a for a in range(v.ndim) if a != dim % v.ndim)
    v64 = v.astype(np.float64)
    return (g.astype(np.float64) * v64 / np.sqrt((v64**2).sum(axis=axes, keepdims=True))).astype(np.float32)


def hubert_params(state: dict[str, np.ndarray], cfg) -> dict:
    """Hugging Face ``HubertModel`` state dict -> ``models.hubert.Hubert`` params (weight norm folded)."""
    k = _Keys(state, ("hubert.",), (r"masked_spec_embed", r"label_embs_concat", r"final_proj\..*"), "HuBERT")
    h = cfg.hidden_size

    def dense(name, n_in, n_out):
        return {"kernel": k(name + ".weight", (n_out, n_in)).T, "bias": k(name + ".bias", (n_out,))}

    def conv_kernel(w):  # torch [out, in/groups, k] -> flax [k, in/groups, out]
        return np.ascontiguousarray(w.transpose(2, 1, 0))

    p = {}
    c_in = 1
    for i, (c, kk) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel)):
        f = f"feature_extractor.conv_layers.{i}."
        conv = {"kernel": conv_kernel(k(f + "conv.weight", (c, c_in, kk)))}
        if cfg.conv_bias:
            conv["bias"] = k(f + "conv.bias", (c,))
        p[f"conv_{i}"] = conv
        if (cfg.feat_extract_norm == "group" and i == 0) or cfg.feat_extract_norm == "layer":
            p[f"conv_{i}_norm"] = k.norm(f + "layer_norm")
        c_in = c
    if cfg.feat_proj_layer_norm:
        p["feature_norm"] = k.norm("feature_projection.layer_norm")
    p["feature_projection"] = dense("feature_projection.projection", cfg.conv_dim[-1], h)

    pc = "encoder.pos_conv_embed.conv."
    groups, kk = cfg.num_conv_pos_embedding_groups, cfg.num_conv_pos_embeddings
    if k.has(pc + "weight_g"):
        w = _fold_weight_norm(k(pc + "weight_g"), k(pc + "weight_v", (h, h // groups, kk)), dim=2)
    elif k.has(pc + "parametrizations.weight.original0"):
        w = _fold_weight_norm(
            k(pc + "parametrizations.weight.original0"),
            k(pc + "parametrizations.weight.original1", (h, h // groups, kk)),
            dim=2,
        )
    else:
        w = k(pc + "weight", (h, h // groups, kk))
    p["pos_conv"] = {"kernel": conv_kernel(w), "bias": k(pc + "bias", (h,))}
    p["encoder_norm"] = k.norm("encoder.layer_norm")
    layers = []
    for i in range(cfg.num_hidden_layers):
        a = f"encoder.layers.{i}."
        layers.append({
            "q_proj": dense(a + "attention.q_proj", h, h),
            "k_proj": dense(a + "attention.k_proj", h, h),
            "v_proj": dense(a + "attention.v_proj", h, h),
            "out_proj": dense(a + "attention.out_proj", h, h),
            "attn_norm": k.norm(a + "layer_norm"),
            "ff_in": dense(a + "feed_forward.intermediate_dense", h, cfg.intermediate_size),
            "ff_out": dense(a + "feed_forward.output_dense", cfg.intermediate_size, h),
            "final_norm": k.norm(a + "final_layer_norm"),
        })
    if layers:
        p["layers"] = _stack(layers)
    k.finish()
    return p
