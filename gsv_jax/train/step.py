"""The train step: a pure ``(state, batch, rng) -> (state, metrics)``, compiled once.

* rng: ``fold_in(rng, state.step)`` so every step draws fresh, reproducible dropout masks;
* gradient accumulation: ``accum_steps`` micro-batches per update (``lax.scan``), gradients
  summed (``accum_reduce="sum"``, the original S1 recipe: its loss is a per-batch sum and it
  accumulates 4 batches) or averaged (``"mean"``);
* clipping by global norm when ``grad_clip > 0`` (the original S1 recipe uses 0: ScaledAdam
  clips by itself);
* metrics are device scalars; the loop fetches them only when it logs.

``jit`` gets ``in_shardings``/``out_shardings`` from the state's sharding tree, the batch is
split along its leading (``batch``) dim and the state argument is donated.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gsv_jax import sharding as shd
from gsv_jax.train.state import TrainState


def batch_shardings(batch_spec: dict, mesh: Mesh) -> dict:
    """Leading dim of every batch field on the ``batch`` logical axis, other dims whole."""
    out = {}
    for k, v in batch_spec.items():
        names = ("batch",) + (None,) * (len(v.shape) - 1)
        out[k] = NamedSharding(mesh, shd.logical_to_spec(names, v.shape, mesh))
    return out


def _split_micro(x, n):
    # rows i, i+n, i+2n ... form micro-batch i, so every micro-batch stays spread over all devices
    return x.reshape((x.shape[0] // n, n) + x.shape[1:]).swapaxes(0, 1)


def make_step_fn(task, tx: optax.GradientTransformation, schedule: Callable, *, accum_steps: int = 1,
                 accum_reduce: str = "sum", grad_clip: float = 0.0):
    """The un-jitted pure step function."""
    if accum_reduce not in ("sum", "mean"):
        raise ValueError(f"accum_reduce={accum_reduce!r}: use 'sum' or 'mean'")

    def loss_and_grad(params, batch, rng):
        (loss, metrics), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(params, batch, rng, True)
        return loss, metrics, grads

    def step(state: TrainState, batch: dict, rng) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(rng, state.step)
        if accum_steps == 1:
            loss, metrics, grads = loss_and_grad(state.params, batch, rng)
        else:
            micro = jax.tree.map(lambda x: _split_micro(x, accum_steps), batch)

            def body(carry, xs):
                i, mb = xs
                loss_i, metrics_i, grads_i = loss_and_grad(state.params, mb, jax.random.fold_in(rng, i))
                acc_loss, acc_metrics, acc_grads = carry
                return (acc_loss + loss_i, jax.tree.map(jnp.add, acc_metrics, metrics_i),
                        jax.tree.map(jnp.add, acc_grads, grads_i)), None

            zero_metrics = jax.eval_shape(lambda: loss_and_grad(state.params, jax.tree.map(lambda x: x[0], micro), rng)[1])
            init = (jnp.zeros((), jnp.float32), jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_metrics),
                    jax.tree.map(jnp.zeros_like, state.params))
            (loss, metrics, grads), _ = jax.lax.scan(body, init, (jnp.arange(accum_steps), micro))
            # metrics are per-micro-batch means except counts; report their mean (counts: sum)
            metrics = {k: (v if k == "tokens" else v / accum_steps) for k, v in metrics.items()}
            if accum_reduce == "mean":
                loss = loss / accum_steps
                grads = jax.tree.map(lambda g: g / accum_steps, grads)
        grad_norm = optax.tree.norm(grads)
        if grad_clip and grad_clip > 0:
            scale = jnp.minimum(1.0, grad_clip / (grad_norm + 1e-6))
            grads = jax.tree.map(lambda g: g * scale, grads)
        count = state.step
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics)
        metrics.update(loss=loss, grad_norm=grad_norm, lr=jnp.asarray(schedule(count), jnp.float32))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return step


def jit_step(step_fn, state_sh, batch_sh, mesh: Mesh):
    """``jax.jit`` with explicit shardings and the state donated; traced under the axis rules."""
    rep = NamedSharding(mesh, P())

    def wrapped(state, batch, rng):
        with shd.axis_rules():
            return step_fn(state, batch, rng)

    return jax.jit(wrapped, in_shardings=(state_sh, batch_sh, rep), out_shardings=(state_sh, rep),
                   donate_argnums=(0,))


def to_device_batch(batch: dict, batch_sh: dict) -> dict:
    """Host-local numpy batch -> global sharded arrays (each host passes only its own rows)."""
    out = {}
    for k, sh in batch_sh.items():
        local = np.asarray(batch[k])
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        out[k] = jax.make_array_from_process_local_data(sh, local, global_shape)
    return out


def compiled_report(compiled) -> dict:
    """Per-device memory (bytes) and FLOPs of a compiled step, as a plain dict."""
    rep: dict[str, Any] = {}
    try:
        mem = compiled.memory_analysis()
    except Exception as e:  # noqa: BLE001 - some backends do not implement it
        mem, rep["memory_error"] = None, str(e)
    if mem is not None:
        for name in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                     "alias_size_in_bytes", "generated_code_size_in_bytes"):
            rep[name] = int(getattr(mem, name, 0))
        rep["peak_estimate_bytes"] = (rep["argument_size_in_bytes"] + rep["output_size_in_bytes"]
                                      + rep["temp_size_in_bytes"] - rep["alias_size_in_bytes"])
    try:
        cost = compiled.cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0] if cost else {}
        rep["flops"] = float(cost.get("flops", -1.0)) if cost else -1.0
    except Exception as e:  # noqa: BLE001
        rep["cost_error"] = str(e)
    return rep


def format_report(rep: dict) -> str:
    gib = lambda b: f"{b / 2**30:.3f} GiB"  # noqa: E731
    parts = [f"{k.replace('_in_bytes', '').replace('_bytes', '')}={gib(v)}" for k, v in rep.items() if k.endswith("bytes")]
    if "flops" in rep:
        parts.append(f"flops/device={rep['flops']:.3e}")
    return "compiled step: " + ", ".join(parts)
