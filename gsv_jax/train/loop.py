"""The training loop: model-agnostic (a task + an optax transform + a data iterator).

Per run (``workdir``): ``checkpoints/`` (orbax), ``tb/`` (TensorBoard event files: loss,
accuracy, lr, grad norm, tokens/s, step time), ``metrics.jsonl`` (the same figures, one JSON
object per logged step) and readable log lines on stdout with a tqdm bar.

Resumes automatically from the newest checkpoint in ``workdir`` (state + data position); stops
cleanly on SIGTERM / SIGINT after saving.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from gsv_jax.train import checkpoint as ckpt_lib
from gsv_jax.train.state import TrainState, count_params, create_train_state, state_shardings, with_shardings
from gsv_jax.train.step import batch_shardings, compiled_report, format_report, jit_step, to_device_batch
from gsv_jax.train.task import DataIterator, Task


@dataclass(frozen=True)
class LoopConfig:
    """What the loop itself reads from ``config.train`` (tasks extend it: ``S1TrainConfig``, ``S2TrainConfig``)."""

    num_steps: int = 1000  # optimizer updates in total (including those before a resume)
    log_every: int = 10
    save_every: int = 1000
    keep: int = 3  # checkpoints kept
    seed: int = 1234
    async_checkpoint: bool = True
    progress_bar: bool = True
    tensorboard: bool = True

    @classmethod
    def from_config(cls, train_cfg) -> LoopConfig:
        from gsv_jax.configs import read_section

        return read_section(cls, train_cfg)


@dataclass
class RunResult:
    state: TrainState
    history: list = field(default_factory=list)  # logged metric dicts
    stopped_by_signal: bool = False
    report: dict = field(default_factory=dict)


class _Logger:
    def __init__(self, workdir: str, tensorboard: bool, is_main: bool):
        self.is_main = is_main
        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a") if is_main else None  # noqa: SIM115 - held open
        self.tb = None
        if tensorboard and is_main:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: dict):
        if not self.is_main:
            return
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"train/{k}", v, step)
            self.tb.flush()

    def close(self):
        if self.jsonl:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _say(msg: str):
    if jax.process_index() == 0:
        print(msg, flush=True)


def run(task: Task, tx, schedule, data_iter: DataIterator, workdir: str, mesh, cfg: LoopConfig, *,
        init_params: Any = None, on_log: Callable[[int, dict], None] | None = None,
        stop_after: int | None = None) -> RunResult:
    """Train until ``cfg.num_steps`` updates (or ``stop_after`` more updates in this call).

    ``task``: a :class:`gsv_jax.train.task.Task` (its ``make_step_fn`` gives the update rule).
    ``data_iter``: iterator of host-local numpy batch dicts with ``get_state()``/``set_state()``.
    ``init_params``: plain parameter tree to start from (fine-tuning) when no checkpoint exists.
    """
    os.makedirs(workdir, exist_ok=True)
    rng = jax.random.PRNGKey(cfg.seed)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=cfg.keep,
                                 async_save=cfg.async_checkpoint)
    abstract, shardings = state_shardings(task, tx, mesh, jax.random.split(rng)[0])
    latest = ckpt.latest_step()
    if latest is not None:
        state, data_state = ckpt.restore(with_shardings(abstract, shardings), latest)
        if data_state:
            data_iter.set_state(data_state)
        _say(f"resumed from {ckpt.directory} step {latest}")
    else:
        state, _ = create_train_state(task, tx, mesh, rng, params=init_params)
        _say("initialised " + ("from given parameters" if init_params is not None else "from scratch")
             + f": {count_params(state.params):,} parameters")

    first = next(data_iter)
    step_fn = None
    compiled_by_shape: dict = {}  # one executable per padded batch shape (few, by the data buckets)
    report: dict = {}

    def spec_of(batch):
        return {k: jax.ShapeDtypeStruct((np.asarray(v).shape[0] * jax.process_count(),) + np.asarray(v).shape[1:],
                                        np.asarray(v).dtype) for k, v in batch.items()}

    def compiled_for(batch):
        nonlocal step_fn, report
        key = tuple(sorted((k, np.asarray(v).shape, str(np.asarray(v).dtype)) for k, v in batch.items()))
        if key not in compiled_by_shape:
            spec = spec_of(batch)
            b_sh = batch_shardings(spec, mesh)
            step_fn = jit_step(task.make_step_fn(tx, schedule), shardings, b_sh, mesh)
            t0 = time.perf_counter()
            compiled = step_fn.lower(with_shardings(abstract, shardings), spec, rng).compile()
            rep = compiled_report(compiled)
            rep["compile_seconds"] = time.perf_counter() - t0
            shape_txt = ", ".join(f"{k}{tuple(v.shape)}" for k, v in spec.items())
            _say(format_report(rep) + f" (compiled in {rep['compile_seconds']:.1f}s for {shape_txt})")
            if not report:
                report = rep
            compiled_by_shape[key] = (compiled, b_sh)
        return compiled_by_shape[key]

    compiled_for(first)

    logger = _Logger(workdir, cfg.tensorboard, jax.process_index() == 0)
    start = int(jax.device_get(state.step))
    end = cfg.num_steps if stop_after is None else min(cfg.num_steps, start + stop_after)
    bar = None
    if cfg.progress_bar and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.num_steps, initial=start, dynamic_ncols=True, mininterval=1.0)
    history, stopped = [], False
    pending: list = []  # (step, device metrics, seconds) not yet fetched
    # a separate (non-donated) copy of the base key, replicated
    base_rng = jax.device_put(np.asarray(jax.device_get(state.rng)), shardings.rng)
    batch = first
    t_last = time.perf_counter()
    try:
        with ckpt_lib.StopSignal() as stop:
            for step in range(start, end):
                if batch is None:
                    batch = next(data_iter)
                compiled, b_sh = compiled_for(batch)
                state, metrics = compiled(state, to_device_batch(batch, b_sh), base_rng)
                batch = None
                done = step + 1
                pending.append((done, metrics))
                if done % cfg.log_every == 0 or done == end:
                    jax.block_until_ready(metrics)
                    now = time.perf_counter()
                    dt = (now - t_last) / len(pending)
                    t_last = now
                    for s, m in pending:
                        m = {k: float(v) for k, v in jax.device_get(m).items()}
                        m["step_seconds"] = dt
                        if "tokens" in m:
                            m["tokens_per_second"] = m["tokens"] / dt if dt > 0 else 0.0
                        history.append({"step": s, **m})
                        logger.write(s, m)
                        if on_log:
                            on_log(s, m)
                    pending = []
                    last = history[-1]
                    if bar is not None:
                        bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "acc", "lr", "grad_norm") if k in last})
                    _say(f"step {done}: " + " ".join(f"{k}={v:.5g}" for k, v in last.items() if k != "step"))
                if bar is not None:
                    bar.update(1)
                # position to resume from = after this step's batch
                data_pos = data_iter.get_state()
                if done % cfg.save_every == 0 or done == end:
                    ckpt.save(done, state, data_pos)
                if ckpt_lib.process_allgather_flag(stop.requested):
                    if done % cfg.save_every != 0 and done != end:
                        ckpt.save(done, state, data_pos)
                    _say(f"stop signal {stop.signum}: saved step {done}, exiting")
                    stopped = True
                    break
    finally:
        ckpt.close()
        logger.close()
        if bar is not None:
            bar.close()
    return RunResult(state=state, history=history, stopped_by_signal=stopped, report=report)
