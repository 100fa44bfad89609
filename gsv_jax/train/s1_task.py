"""S1 specifics for the generic training machinery: init, loss, batch shapes, data, export.

Loss = the original's ``forward_old`` cross-entropy **summed** over every target position up
to the batch's longest semantic sequence (+1 EOS), padded EOS targets included, exactly as the
original counts them. Positions added only by our length buckets are excluded (``loss_len``),
so bucketing does not change the loss. Accuracy = top-3 over non-EOS targets (as the original
logs it).

Padding: the original's current code right-pads phonemes but masks them as if left-padded
(docs/s1.md, "Padding-mask quirk"). ``config.train.fix_padding_mask`` (default True: what the original intends)
trains with the corrected mask (``S1Dims.corrected_mask``); False reproduces the quirk.

Dropout masks come from ``config.train.dropout_rng``: ``"hash"`` (default; a cheap counter-hash
stream, ``gsv_jax/train/dropout_rng.py``, ~17 CPU-s less per v2 step at batch 8 on CPU) or
``"threefry"`` (JAX's default generator). Both drop with the same probability; they differ only
in which elements they drop.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.models.s1 import BERT_DIM, S1Dims, S1Model
from gsv_jax.train.dropout_rng import DROPOUT_RNGS, dropout_key


class S1Task:
    def __init__(self, dims: S1Dims, compute_dtype: str | None = None, dropout_rng: str = "hash"):
        if compute_dtype:
            dims = dataclasses.replace(dims, dtype=str(compute_dtype))
        if dropout_rng not in DROPOUT_RNGS:
            raise ValueError(f"train.dropout_rng={dropout_rng!r}: use one of {DROPOUT_RNGS}")
        self.dims = dims
        self.dropout_rng = dropout_rng
        self.model = S1Model(dims)

    @classmethod
    def from_config(cls, config) -> S1Task:
        dims = S1Dims.from_config(config.model)
        train = config.get("train", {}) or {}
        if "fix_padding_mask" in train:
            dims = dataclasses.replace(dims, corrected_mask=bool(train["fix_padding_mask"]))
        return cls(dims, train.get("compute_dtype", None), train.get("dropout_rng", "hash"))

    # -- the Task interface ----------------------------------------------------------------------
    def init_params(self, rng):
        x = jnp.zeros((1, 2), jnp.int32)
        variables = self.model.init(rng, x, jnp.array([2]), x, jnp.array([2]), jnp.zeros((1, BERT_DIM, 2)),
                                    method=S1Model.forward_old)
        return variables["params"]

    def host_init_params(self, seed: int):
        """Fresh parameters drawn on the host (numpy) with the original's initialisation; used by
        ``create_train_state`` for runs from scratch (a jitted init of the v2 model compiles for
        many minutes on CPU)."""
        from gsv_jax.models.s1 import init_params

        return init_params(self.dims, seed)

    def loss_fn(self, params, batch, rng, train: bool = True):
        logits, targets = self.model.apply(
            {"params": params}, batch["x"], batch["x_lens"], batch["y"], batch["y_lens"], batch["bert"],
            deterministic=not train, method=S1Model.forward_old,
            rngs={"dropout": dropout_key(rng, self.dropout_rng)})
        logits = logits.astype(jnp.float32)
        n_pos = targets.shape[1]
        if "loss_len" in batch:
            weight = (jnp.arange(n_pos)[None, :] < batch["loss_len"][:, None]).astype(jnp.float32)
        else:
            weight = jnp.ones(targets.shape, jnp.float32)
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        loss = jnp.sum(nll * weight)
        t_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)
        rank = jnp.sum(logits > t_logit, axis=-1)
        use = (targets != self.dims.eos) & (weight > 0)
        acc = jnp.sum((rank < 3) & use) / jnp.maximum(jnp.sum(use), 1)
        return loss, {"acc": acc.astype(jnp.float32), "tokens": jnp.sum(weight)}

    def batch_spec(self, batch_size: int, tx: int = 128, ty: int = 256) -> dict:
        i32 = jnp.int32
        return {"x": jax.ShapeDtypeStruct((batch_size, tx), i32), "x_lens": jax.ShapeDtypeStruct((batch_size,), i32),
                "y": jax.ShapeDtypeStruct((batch_size, ty), i32), "y_lens": jax.ShapeDtypeStruct((batch_size,), i32),
                "bert": jax.ShapeDtypeStruct((batch_size, BERT_DIM, tx), jnp.float16),
                "loss_len": jax.ShapeDtypeStruct((batch_size,), i32)}

    # -- export ----------------------------------------------------------------------------------
    def export_original(self, params, path: str, config=None, info: str = "GPT-e0"):
        """The original ``.ckpt`` (fp16, ``{"weight", "config", "info"}``) that the original WebUI loads."""
        from gsv_jax.convert.s1 import write_s1_checkpoint

        plain = jax.tree.map(lambda a: np.asarray(jax.device_get(a), np.float32), nn.meta.unbox(params))
        cfg = config.to_dict() if hasattr(config, "to_dict") else (config or {})
        write_s1_checkpoint(path, plain, self.dims, cfg, info=info)
        return path

    def export_inference(self, params, path: str, config=None):
        """Our inference format: the same ``.ckpt`` (``gsv_jax.load_s1`` reads it); fp32 weights
        are rounded to fp16 as the original stores them."""
        return self.export_original(params, path, config, info="GPT-gsv-jax")


def make_s1_data(config, process_index: int | None = None, process_count: int | None = None):
    """Checkpointable S1 batch iterator from ``config.data`` (``dataset`` = our format or
    ``exp_dir`` = the original's experiment folder)."""
    from gsv_jax.data.pipeline import S1BatchIterator, S1DataConfig

    d = config.data
    from gsv_jax.data.original_s1 import OriginalS1Folder
    from gsv_jax.data.sources import open_training_reader

    reader = open_training_reader(d, lambda folder: OriginalS1Folder(folder, d.get("version", "v2")))
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    per_update = config.train.batch_size * config.train.get("accum_steps", 1)
    dcfg = S1DataConfig.from_config(d, batch_size=per_update, seed=config.train.get("seed", 0))
    return S1BatchIterator(reader, dcfg, pi, pc)
