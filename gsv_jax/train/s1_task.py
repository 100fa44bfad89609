"""S1 on the generic training machinery: init, loss, batch shapes, data, export, and the S1 run
that ``train.py`` dispatches to (:meth:`S1Task.train`, :meth:`S1Task.compile_only`).

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
import json
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.configs import read_section
from gsv_jax.models.s1 import BERT_DIM, S1Dims, S1Model
from gsv_jax.train.dropout_rng import DROPOUT_RNGS, dropout_key
from gsv_jax.train.loop import LoopConfig
from gsv_jax.train.step import StepConfig
from gsv_jax.train.task import Task, TrainingSetupError, data_or_setup_error


@dataclasses.dataclass(frozen=True)
class S1TrainConfig(LoopConfig, StepConfig):
    """``config.train`` of S1 training. Defaults = the original S1 recipe: batch 8 with 4 batches
    accumulated per update, loss summed, no extra clipping (ScaledAdam clips by itself)."""

    task: str = "s1"
    batch_size: int = 8  # items per forward (global over all hosts)
    accum_steps: int = 4  # forwards per optimizer update (the original steps every 4 batches)
    num_steps: int = 10000  # optimizer updates
    save_every: int = 500
    compute_dtype: str = "float32"  # "bfloat16" on TPU/GPU; parameters and losses stay float32
    fix_padding_mask: bool = True  # train with the mask the original intends (sets S1Dims.corrected_mask)
    dropout_rng: str = "hash"  # dropout mask stream: "hash" (cheap counter hash) or "threefry" (JAX's default)

    @property
    def step(self) -> StepConfig:
        return StepConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(StepConfig)})


class S1Task(Task):
    name = "s1"

    def __init__(self, dims: S1Dims, compute_dtype: str | None = None, dropout_rng: str = S1TrainConfig.dropout_rng,
                 step_config: StepConfig | None = None):
        if compute_dtype:
            dims = dataclasses.replace(dims, dtype=str(compute_dtype))
        if dropout_rng not in DROPOUT_RNGS:
            raise ValueError(f"train.dropout_rng={dropout_rng!r}: use one of {DROPOUT_RNGS}")
        self.dims = dims
        self.dropout_rng = dropout_rng
        self.step_config = step_config or StepConfig()
        self.model = S1Model(dims)

    @classmethod
    def from_config(cls, config) -> S1Task:
        """From ``config.model`` (the original's names, read by :class:`S1Dims`) and ``config.train``
        (:class:`S1TrainConfig`; ``fix_padding_mask`` wins over ``model.corrected_mask``)."""
        dims = S1Dims.from_config(config.model)
        train = config.get("train", None)
        if not train:
            return cls(dims)
        t = read_section(S1TrainConfig, train)
        if "fix_padding_mask" in train:
            dims = dataclasses.replace(dims, corrected_mask=bool(t.fix_padding_mask))
        return cls(dims, t.compute_dtype if "compute_dtype" in train else None, t.dropout_rng, t.step)

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

    def params_from_original(self, path: str):
        """Plain parameters from an original S1 ``.ckpt`` (fine-tuning); the architecture must match the config."""
        from gsv_jax.convert.s1 import read_s1_checkpoint
        from gsv_jax.io.torch_io import CheckpointError

        try:
            _, dims, params, info = read_s1_checkpoint(path)
        except CheckpointError as e:
            raise TrainingSetupError(f"--init-from: {e}") from e
        for f in ("vocab_size", "phoneme_vocab_size", "dim", "heads", "n_layer"):
            if getattr(dims, f) != getattr(self.dims, f):
                raise TrainingSetupError(
                    f"--init-from {path}: {f}={getattr(dims, f)} but the config has {getattr(self.dims, f)}; "
                    "use the matching preset (--config s1_v1 for v1 checkpoints, --config s1_v2 otherwise)")
        return params, info

    # -- run side (train.py) ---------------------------------------------------------------------
    @classmethod
    def check_config(cls, config, workdir, init_from=(), *, data=True):
        super().check_config(config, workdir, init_from, data=data)
        if len(init_from) > 1:
            raise TrainingSetupError(f"--init-from takes one S1 .ckpt, got {list(init_from)}")

    @classmethod
    def train(cls, config, workdir: str, init_from: Sequence[str] = (), *, stop_after: int | None = None,
              export_path: str | None = None):
        """Build the task, optimizer, mesh and data, fine-tune from ``init_from`` (an original ``.ckpt``,
        used when ``workdir`` has no checkpoint yet), run the loop (auto-resume), export an original ``.ckpt``
        (``export_path``, default ``<workdir>/export/s1-step<N>.ckpt``)."""
        from gsv_jax.train.loop import run
        from gsv_jax.train.mesh import mesh_from_config
        from gsv_jax.train.optim import make_optimizer

        cls.check_config(config, None, init_from)
        train_cfg = read_section(S1TrainConfig, config.train)
        task = cls.from_config(config)
        tx, schedule = make_optimizer(config.optim)
        mesh = mesh_from_config(config)
        data = data_or_setup_error(make_s1_data, config)
        init_params = None
        if init_from:
            init_params, info = task.params_from_original(init_from[0])
            if jax.process_index() == 0:
                print(f"fine-tuning from {init_from[0]} ({info})")
        if jax.process_index() == 0:
            print(f"mesh {dict(mesh.shape)}; {data.batches_per_epoch} batches per epoch; "
                  f"padded shapes (Tx, Ty): {sorted(data.shapes())}")
        res = run(task, tx, schedule, data, workdir, mesh, train_cfg, init_params=init_params, stop_after=stop_after)
        # the original's .ckpt, loadable by the original WebUI and by gsv_jax.load_s1
        if jax.process_index() == 0 and not res.stopped_by_signal:
            step = int(jax.device_get(res.state.step))
            path = export_path or os.path.join(workdir, "export", f"s1-step{step}.ckpt")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            task.export_original(res.state.params, path, config, info=f"GPT-e{step}")
            print(f"exported {path}")
        return res

    @classmethod
    def compile_only(cls, config, *, topology: str | None = None, tx_len: int = 0, ty_len: int = 0,
                     hbm_gib: float = 0.0) -> dict:
        """Compile the sharded step for the largest buckets (or ``tx_len`` / ``ty_len``) and print the report."""
        from gsv_jax.data.pipeline import S1DataConfig
        from gsv_jax.train.aot import compile_step
        from gsv_jax.train.mesh import MeshConfig
        from gsv_jax.train.optim import make_optimizer

        task = cls.from_config(config)
        tx, schedule = make_optimizer(config.optim)
        t = read_section(S1TrainConfig, config.train)
        d = read_section(S1DataConfig, config.data)
        per_update = t.batch_size * t.accum_steps
        tx_len, ty_len = tx_len or max(d.x_buckets), ty_len or max(d.y_buckets)
        mesh = dataclasses.asdict(read_section(MeshConfig, config.get("mesh", None)))
        report = compile_step(task, tx, schedule, mesh, task.batch_spec(per_update, tx_len, ty_len),
                              topology=topology, hbm_gib=hbm_gib)
        report.update(batch=per_update, tx=tx_len, ty=ty_len, compute_dtype=str(task.dims.dtype))
        print(json.dumps(report, indent=1))
        return report


def make_s1_data(config, process_index: int | None = None, process_count: int | None = None):
    """Checkpointable S1 batch iterator from ``config.data`` (:class:`S1DataConfig`: ``dataset`` = our format
    or ``exp_dir`` = the original's experiment folder); batch = ``batch_size * accum_steps`` items."""
    from gsv_jax.data.original_s1 import OriginalS1Folder
    from gsv_jax.data.pipeline import S1BatchIterator, S1DataConfig
    from gsv_jax.data.sources import open_training_reader

    t = read_section(S1TrainConfig, config.train)
    d = read_section(S1DataConfig, config.data, batch_size=t.batch_size * t.accum_steps, seed=t.seed)
    reader = open_training_reader(config.data, lambda folder: OriginalS1Folder(folder, d.version))
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    return S1BatchIterator(reader, d, pi, pc)
