"""Public S1 API: load the original GPT weights (or ours), score, generate, export.

::

    s1 = gsv_jax.load_s1("s1v3.ckpt")        # original .ckpt, or a file written by S1.save
    s1 = gsv_jax.load_s1("s1v3.ckpt", precision="int8")   # or "bf16": smaller weights (not exact)
    logits = s1.forward_logits(x, x_lens, y, y_lens, bert)    # [B, Ty+1, 1025]
    loss, acc = s1.forward_loss(x, x_lens, y, y_lens, bert)   # the original's forward_old
    rows = s1.generate(x, bert, prompt, top_k=15)              # list of new-token arrays
    gsv_jax.save_s1_torch(s1, "mine.ckpt")                     # the original's format
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from gsv_jax.convert import s1 as convert
from gsv_jax.inference.s1_decoder import S1Decoder, check_precision, dequantize, quantize_params
from gsv_jax.io.torch_io import CheckpointError
from gsv_jax.models import s1 as model_lib

NATIVE_MAGIC = b"GSVJAX-S1\n"  # our single-file format: magic, then msgpack {format, config (json), params}


class S1:
    """An S1 model: ``config`` (ml_collections, with ``model``) and ``params`` (plain pytree).

    ``precision`` (docs/performance.md "S1 reduced precision"): ``"fp32"`` (default, exact),
    ``"bf16"`` (matmul kernels stored bf16) or ``"int8"`` (weight-only int8 kernels with one fp32
    scale per output channel); ``params`` then holds the stored form and every jitted program
    dequantises it to fp32 inside (:meth:`float_params` gives the fp32 tree back)."""

    def __init__(self, config, params, info: str = "", precision: str = "fp32"):
        self.config = config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)
        self.dims = model_lib.S1Dims.from_config(self.config.model)
        self.precision = check_precision(precision)
        self.params = quantize_params(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), precision)
        self.info = info
        self.model = model_lib.S1Model(self.dims)
        self._decoder = None
        self._fwd = jax.jit(lambda p, *a: self.model.apply({"params": dequantize(p)}, *a,
                                                           method=model_lib.S1Model.forward_old))

    def float_params(self):
        """The fp32 parameter tree (for ``precision="fp32"`` the stored one itself)."""
        return self.params if self.precision == "fp32" else jax.jit(dequantize)(self.params)

    def to_precision(self, precision: str) -> S1:
        """A copy of this model with its weights stored at ``precision`` (from this model's weights)."""
        check_precision(precision)
        return S1(self.config, self.float_params(), info=self.info, precision=precision)

    @property
    def version(self) -> str:
        return convert.version_of(self.dims)

    @classmethod
    def random(cls, config, seed: int = 0, precision: str = "fp32") -> S1:
        """Randomly initialised model (the original's default init) for a config with ``model``."""
        check_precision(precision)
        config = config if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)
        return cls(config, model_lib.init_params(model_lib.S1Dims.from_config(config.model), seed),
                   precision=precision)

    @property
    def decoder(self) -> S1Decoder:
        if self._decoder is None:
            self._decoder = S1Decoder(self.dims)
        return self._decoder

    # -- scoring ----------------------------------------------------------------------------------
    def _batch(self, x, x_lens, y, y_lens, bert):
        x, y = _ints(x, "x", 2), _ints(y, "y", 2)
        x_lens, y_lens = _ints(x_lens, "x_lens", 1), _ints(y_lens, "y_lens", 1)
        bert = _bert(bert, x)
        if x.shape[0] != y.shape[0] or len(x_lens) != x.shape[0] or len(y_lens) != y.shape[0]:
            raise ValueError(f"batch sizes differ: x {x.shape}, y {y.shape}, x_lens {x_lens.shape}, y_lens {y_lens.shape}")
        _check_lens(x_lens, x.shape[1], "x_lens", "phoneme")
        _check_lens(y_lens, y.shape[1], "y_lens", "semantic", allow_zero=True)
        _check_range(x, self.dims.phoneme_vocab_size, "phoneme id")
        _check_range(y, self.dims.vocab_size, "semantic token")
        return x, x_lens, y, y_lens, bert

    def forward_logits(self, x, x_lens, y, y_lens, bert) -> np.ndarray:
        """The original's ``forward_old`` logits [B, Ty+1, 1025] (eval mode, fp32)."""
        logits, _ = self._fwd(self.params, *self._batch(x, x_lens, y, y_lens, bert))
        return np.asarray(logits)

    def forward_loss(self, x, x_lens, y, y_lens, bert) -> tuple[float, float]:
        """(cross-entropy summed over all positions, top-3 accuracy ignoring EOS), as ``forward_old``."""
        logits, targets = self._fwd(self.params, *self._batch(x, x_lens, y, y_lens, bert))
        return (float(model_lib.cross_entropy_sum(logits, targets)),
                float(model_lib.top3_accuracy(logits, targets, self.dims.eos)))

    # -- generation -------------------------------------------------------------------------------
    def generate(self, x, bert, prompt=None, top_k: int = 15, top_p: float = 1.0, temperature: float = 1.0,
                 repetition_penalty: float = 1.35, max_new_tokens: int = 1500, seed: int | Sequence[int] = 0, *,
                 x_lens=None, prompt_lens=None, return_info: bool = False, on_chunk=None):
        """Sample semantic tokens after [phonemes; prompt] with the original's rules.

        x int [B, Tx]; bert [B, 1024, Tx]; prompt int [B, Tp] or None (reference-free).  Rows of
        different lengths: right-pad and give ``x_lens`` / ``prompt_lens``.  ``max_new_tokens``
        counts new tokens (the original's ``early_stop_num + 1``; its hard cap is 1500).
        ``seed``: int (every row uses this stream, so a row gives what it gives alone) or one per row.
        Returns a list of 1-D int32 arrays (the new tokens, EOS removed), one per row; with
        ``return_info`` also a dict (``eos_stop`` per row, timings). ``on_chunk``: streaming hook, see
        :meth:`S1Decoder.generate`.
        """
        x = _ints(x, "x", 2)
        b = x.shape[0]
        bert = _bert(bert, x)
        x_lens = np.full((b,), x.shape[1], np.int32) if x_lens is None else _ints(x_lens, "x_lens", 1)
        _check_lens(x_lens, x.shape[1], "x_lens", "phoneme")
        _check_range(x, self.dims.phoneme_vocab_size, "phoneme id")
        if prompt is None:
            prompt = np.zeros((b, 0), np.int32)
            prompt_lens = np.zeros((b,), np.int32)
        else:
            prompt = _ints(prompt, "prompt", 2)
            if prompt.shape[0] != b:
                raise ValueError(f"prompt has {prompt.shape[0]} rows but x has {b}")
            prompt_lens = (np.full((b,), prompt.shape[1], np.int32) if prompt_lens is None
                           else _ints(prompt_lens, "prompt_lens", 1))
            _check_lens(prompt_lens, prompt.shape[1], "prompt_lens", "prompt", allow_zero=True)
            p_valid = np.arange(prompt.shape[1])[None] < prompt_lens[:, None]
            _check_range(np.where(p_valid, prompt, 0), self.dims.vocab_size - 1, "prompt token (EOS not allowed)")
        if not (isinstance(top_k, (int, np.integer)) and top_k >= 1):
            raise ValueError(f"top_k must be a positive int (got {top_k!r})")
        res = self.decoder.generate(self.params, x, x_lens, bert, prompt, prompt_lens, top_k=int(top_k),
                                    top_p=float(top_p), temperature=float(temperature),
                                    repetition_penalty=float(repetition_penalty),
                                    max_new_tokens=int(max_new_tokens), seeds=seed, on_chunk=on_chunk)
        if return_info:
            return res.tokens, {"eos_stop": res.eos_stop, **res.timings}
        return res.tokens

    # -- saving -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Our native single file: magic line + msgpack {format, config json, params}."""
        path = pathlib.Path(path)
        payload = {"format": "gsv-jax-s1", "version": 1, "info": self.info,
                   "config": json.dumps(self.config.to_dict()),
                   "params": jax.tree.map(np.asarray, self.float_params())}
        data = NATIVE_MAGIC + serialization.msgpack_serialize(payload)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def load_s1(path: str | os.PathLike, precision: str = "fp32") -> S1:
    """Load an original S1 ``.ckpt`` (fp16 -> fp32) or a file written by :meth:`S1.save`.
    ``precision``: ``"fp32"`` (exact), ``"bf16"`` or ``"int8"`` weights (see :class:`S1`)."""
    check_precision(precision)
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"S1 checkpoint not found: {path}")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(len(NATIVE_MAGIC))
        if head == NATIVE_MAGIC:
            return _load_native(path, precision)
    config, dims, params, info = convert.read_s1_checkpoint(path)
    cfg = ml_collections.ConfigDict(_jsonable(config))
    if "model" not in cfg:  # bare state dict: record the inferred architecture
        cfg.model = ml_collections.ConfigDict({"vocab_size": dims.vocab_size, "EOS": dims.eos,
                                               "phoneme_vocab_size": dims.phoneme_vocab_size,
                                               "embedding_dim": dims.dim, "hidden_dim": dims.dim,
                                               "head": dims.heads, "n_layer": dims.n_layer})
    return S1(cfg, params, info=str(info), precision=precision)


def save_s1_torch(s1: S1, path: str | os.PathLike, info: str | None = None) -> None:
    """Write the original's S1 ``.ckpt`` (fp16 ``weight``, ``config``, ``info``): loadable by the
    original WebUI/TTS code and by :func:`load_s1`."""
    cfg = s1.config.to_dict()
    convert.write_s1_checkpoint(path, jax.tree.map(np.asarray, s1.float_params()), s1.dims, cfg,
                                info=info or s1.info or "GPT-e0")


def _load_native(path: pathlib.Path, precision: str = "fp32") -> S1:
    try:
        payload = serialization.msgpack_restore(path.read_bytes()[len(NATIVE_MAGIC):])
        config = json.loads(payload["config"])
        params = payload["params"]
    except Exception as e:  # noqa: BLE001 - any decoding failure means a damaged file
        raise CheckpointError(f"{path}: damaged gsv-jax S1 file ({type(e).__name__}: {e})") from None
    try:
        dims = model_lib.S1Dims.from_config(ml_collections.ConfigDict(config).model)
        want = jax.tree.map(lambda s: s.shape, model_lib.param_shapes(dims))
        got = jax.tree.map(lambda a: np.shape(a), params)
    except Exception as e:  # noqa: BLE001 - a config that cannot describe a model is damage too
        raise CheckpointError(f"{path}: damaged gsv-jax S1 file ({type(e).__name__}: {e})") from None
    if want != got:
        raise CheckpointError(f"{path}: parameters do not match the stored config")
    return S1(config, params, info=payload.get("info", ""), precision=precision)


# ---------------------------------------------------------------------------------------------
# input checks

def _ints(a, name, ndim):
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got {a.dtype}")
    return a.astype(np.int32)


def _bert(bert, x):
    bert = np.asarray(bert, np.float32)
    want = (x.shape[0], model_lib.BERT_DIM, x.shape[1])
    if bert.shape != want:
        hint = " (channels first: [B, 1024, Tx])" if bert.ndim == 3 and bert.shape[-1] == model_lib.BERT_DIM else ""
        raise ValueError(f"bert must have shape {want}, got {bert.shape}{hint}")
    return bert


def _check_lens(lens, width, name, what, allow_zero=False):
    if not allow_zero and (width == 0 or (lens < 1).any()):
        raise ValueError(f"empty {what} sequence ({name}={lens.tolist()}, width {width}): every row needs at least one {what}")
    if (lens > width).any() or (lens < 0).any():
        raise ValueError(f"{name}={lens.tolist()} outside [0, {width}] (the padded width)")


def _check_range(a, n, what):
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{what} out of range [0, {n}): min {a.min()}, max {a.max()}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
