"""The train step: a pure ``(state, batch, rng) -> (state, metrics)``, compiled once.

* rng: ``fold_in(rng, state.step)`` so every step draws fresh, reproducible dropout masks;
* gradient accumulation: ``accum_steps`` micro-batches per update (``lax.scan``), gradients
  summed (``accum_reduce="sum"``, the original S1 recipe: its loss is a per-batch sum and it
  accumulates 4 batches) or averaged (``"mean"``);
* clipping by global norm when ``grad_clip > 0`` (the original S1 recipe uses 0: ScaledAdam
  clips by itself);
* rematerialisation (``remat``): ``"none"`` keeps every forward intermediate for the backward
  pass; ``"dots"`` keeps only the outputs of weight matmuls (``jax.checkpoint`` with
  ``dots_with_no_batch_dims_saveable``) and recomputes the rest (attention scores and
  probabilities, norms, activations) in the backward pass: less memory for some more compute,
  same values;
* metrics are device scalars; the loop fetches them only when it logs.

``jit`` gets ``in_shardings``/``out_shardings`` from the state's sharding tree, the batch is
split along its leading (``batch``) dim and the state argument is donated.

FSDP: parameters (and optimizer state) are stored split over ``fsdp``; for the forward/backward
the step gathers each parameter over ``fsdp`` (``tensor`` splits stay) and reduce-scatters the
gradients back, so activations stay split by batch row. Left to itself, the SPMD partitioner
resolved ``x[B/n, S, D] @ W[D/n, F]`` by gathering the *activations* instead (whole-batch
``[64, 512, 1536]`` intermediates on every device: 19.7 GiB per device for the v2 model at batch
64 over 8 devices).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

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


# shardings for the forward/backward (params gathered over fsdp) and the gradients; set by
# ``jit_step`` while tracing so every caller of make_step_fn gets FSDP without passing them on
_FSDP = contextvars.ContextVar("gsv_fsdp_shardings", default=None)


def _drop_axis(spec: P, axis: str) -> P:
    out = []
    for entry in spec:
        if entry == axis:
            entry = None
        elif isinstance(entry, tuple):
            kept = tuple(a for a in entry if a != axis)
            entry = kept if len(kept) > 1 else (kept[0] if kept else None)
        out.append(entry)
    return P(*out)


def gathered_shardings(param_sh, axis: str = "fsdp"):
    """The parameters' shardings with ``axis`` removed (what the forward/backward computes with)."""
    return jax.tree.map(lambda s: NamedSharding(s.mesh, _drop_axis(s.spec, axis)), param_sh)


@contextlib.contextmanager
def fsdp_shardings(param_sh):
    """While tracing a step: gather params over ``fsdp`` for the loss, gradients back to ``param_sh``."""
    token = _FSDP.set((gathered_shardings(param_sh), param_sh))
    try:
        yield
    finally:
        _FSDP.reset(token)


REMAT_POLICIES = {"none": None, "dots": "dots_with_no_batch_dims_saveable"}


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Options of the generic single-loss step (the ``train`` config keys of the same names)."""

    accum_steps: int = 1  # forwards per optimizer update
    accum_reduce: str = "sum"  # "sum" (the original S1 recipe) or "mean"
    grad_clip: float = 0.0  # global-norm clipping; 0 = off
    remat: str = "none"  # "dots": recompute all but the weight-matmul outputs in the backward pass


def make_step_fn(task, tx: optax.GradientTransformation, schedule: Callable, *,
                 accum_steps: int = StepConfig.accum_steps, accum_reduce: str = StepConfig.accum_reduce,
                 grad_clip: float = StepConfig.grad_clip, remat: str = StepConfig.remat):
    """The un-jitted pure step function."""
    if accum_reduce not in ("sum", "mean"):
        raise ValueError(f"accum_reduce={accum_reduce!r}: use 'sum' or 'mean'")
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat={remat!r}: use one of {sorted(REMAT_POLICIES)}")
    loss_fn = task.loss_fn
    if REMAT_POLICIES[remat]:
        loss_fn = jax.checkpoint(task.loss_fn, policy=getattr(jax.checkpoint_policies, REMAT_POLICIES[remat]),
                                 static_argnums=(3,))

    def loss_and_grad(params, batch, rng):
        fsdp = _FSDP.get()
        if fsdp is None:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng, True)
            return loss, metrics, grads
        gathered, stored = fsdp

        def loss_gathered(p, b, r):
            return loss_fn(jax.lax.with_sharding_constraint(p, gathered), b, r, True)

        (loss, metrics), grads = jax.value_and_grad(loss_gathered, has_aux=True)(params, batch, rng)
        return loss, metrics, jax.lax.with_sharding_constraint(grads, stored)

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
        with shd.axis_rules(), fsdp_shardings(state_sh.params):
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
    gib = lambda b: f"{b / 2**30:.3f} GiB"
    parts = [f"{k.replace('_in_bytes', '').replace('_bytes', '')}={gib(v)}" for k, v in rep.items() if k.endswith("bytes")]
    if "flops" in rep:
        parts.append(f"flops/device={rep['flops']:.3e}")
    return "compiled step: " + ", ".join(parts)
