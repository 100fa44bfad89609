"""Optimisers as optax transforms: the original S1 recipe (ScaledAdam + its lr behaviour) and AdamW.

ScaledAdam (docs/training.md, "ScaledAdam") reproduces the original's ``AR/modules/optim.py`` update per tensor:

* non-scalar tensors: Adam-like step without first-moment bias correction, scaled by the
  tensor's rms (``param_rms``, refreshed every ``size_update_period`` = 4 steps), plus a
  "parameter size" update every 4 steps (from step index 3 on) driven by ``sum(p * g)``;
* one-element tensors (the two positional ``alpha`` scalars): plain scalar step at
  ``lr * scalar_lr_scale``, parameter clamped to ``±scalar_max`` before the update is added;
* global clipping: nothing for the first ``clipping_update_period`` (1000) updates; then the
  rms-weighted gradient norm is clipped to ``clipping_scale`` × the median norm of the last
  period (the threshold is refreshed every 1000 updates).

The original stacks tensors of identical shape and updates them together; every formula is
per tensor except the global clipping norm, so a per-tensor implementation is exact.

Learning rate (docs/training.md, "Learning rate"): the original's ``WarmupCosineLRSchedule`` computes a
warmup/cosine value but then overwrites it with 0.002 on every ``scheduler.step()``, and its
constructor never touches the optimizer. So the **first update runs at ScaledAdam's constructor
lr (0.01) and every later update at 0.002**: :func:`original_s1_schedule`. The nominal
warmup/cosine curve is kept as :func:`nominal_warmup_cosine` for reference only.

For new pretraining use :func:`adamw` (optax AdamW with a real linear-warmup + cosine decay,
no weight decay on one-dimensional tensors).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules
# ----------------------------------------------------------------------------------------------
def original_s1_schedule(first_lr: float = 0.01, locked_lr: float = 0.002) -> Schedule:
    """The lr the original S1 training really uses for update ``count`` (0-based):
    ``first_lr`` (ScaledAdam's constructor lr) for the first update, ``locked_lr`` after."""

    def schedule(count):
        return jnp.where(jnp.asarray(count) == 0, jnp.float32(first_lr), jnp.float32(locked_lr))

    return schedule


def nominal_warmup_cosine(step: int, init_lr=1e-5, peak_lr=0.01, end_lr=1e-4,
                          warmup_steps=2000, total_steps=40000) -> float:
    """The value the original's ``WarmupCosineLRSchedule`` computes and then DISCARDS (reference)."""
    if step < warmup_steps:
        return init_lr + (peak_lr - init_lr) / warmup_steps * step
    if step > total_steps:
        return end_lr
    ratio = (step - warmup_steps) / (total_steps - warmup_steps)
    return end_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak_lr - end_lr)


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, init_lr: float = 0.0,
                  end_lr: float = 0.0) -> Schedule:
    """Linear warmup ``init_lr -> peak_lr`` over ``warmup_steps``, cosine to ``end_lr`` at ``total_steps``."""
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
    return optax.warmup_cosine_decay_schedule(init_value=init_lr, peak_value=peak_lr,
                                              warmup_steps=warmup_steps, decay_steps=total_steps,
                                              end_value=end_lr)


# ----------------------------------------------------------------------------------------------
# ScaledAdam
# ----------------------------------------------------------------------------------------------
class ScaledAdamState(NamedTuple):
    count: jnp.ndarray  # number of updates done (the original's per-tensor ``step``)
    delta: optax.Updates  # momentum of the parameter change
    exp_avg_sq: optax.Updates  # second moment of the gradient
    param_rms: optax.Updates  # shape (1,)*ndim per tensor (unused for one-element tensors)
    scale_exp_avg_sq: optax.Updates  # second moment of the size gradient, (1,)*ndim
    scale_grads: optax.Updates  # last ``size_update_period`` sum(p*g), (period,)+(1,)*ndim
    model_norms: jnp.ndarray  # ring buffer of global norms, [clipping_update_period]
    norm_threshold: jnp.ndarray  # clipping threshold (valid once count >= period)


def _rms(p):
    return jnp.sqrt(jnp.mean(jnp.square(p.astype(jnp.float32)))).reshape((1,) * p.ndim)


def _is_scalar(p) -> bool:
    return p.size == 1


def scaled_adam(learning_rate: float | Schedule = 0.01, betas=(0.9, 0.95), clipping_scale: float | None = 2.0,
                scalar_lr_scale: float = 0.1, eps: float = 1e-8, param_min_rms: float = 1e-5,
                param_max_rms: float = 3.0, scalar_max: float = 10.0, size_update_period: int = 4,
                clipping_update_period: int = 1000) -> optax.GradientTransformationExtraArgs:
    """ScaledAdam of the original S1 training as an optax transform (needs ``params`` in ``update``).

    The returned updates are the parameter *changes* (``optax.apply_updates`` adds them).
    """
    beta1, beta2 = betas
    period = size_update_period
    lr_fn = learning_rate if callable(learning_rate) else (lambda count: jnp.float32(learning_rate))

    def init_fn(params):
        zeros = lambda p: jnp.zeros(p.shape, jnp.float32)
        return ScaledAdamState(
            count=jnp.zeros((), jnp.int32),
            delta=jax.tree.map(zeros, params),
            exp_avg_sq=jax.tree.map(zeros, params),
            param_rms=jax.tree.map(_rms, params),
            scale_exp_avg_sq=jax.tree.map(lambda p: jnp.zeros((1,) * p.ndim, jnp.float32), params),
            scale_grads=jax.tree.map(lambda p: jnp.zeros((period,) + (1,) * p.ndim, jnp.float32), params),
            model_norms=jnp.zeros((clipping_update_period,), jnp.float32),
            norm_threshold=jnp.zeros((), jnp.float32),
        )

    def update_fn(grads, state: ScaledAdamState, params=None, **extra):
        if params is None:
            raise ValueError("scaled_adam needs params: call tx.update(grads, state, params)")
        t = state.count
        lr = lr_fn(t).astype(jnp.float32)
        tf = t.astype(jnp.float32)

        # ---- global clipping (inactive for the first clipping_update_period updates) ----
        model_norms, threshold = state.model_norms, state.norm_threshold
        if clipping_scale is not None:
            sumsq = 0.0
            for g, rms, p in zip(jax.tree.leaves(grads), jax.tree.leaves(state.param_rms), jax.tree.leaves(params)):
                g = g.astype(jnp.float32)
                sumsq = sumsq + (jnp.sum(g * g) if _is_scalar(p) else jnp.sum(jnp.square(g * rms)))
            norm = jnp.sqrt(sumsq)
            # step 0 returns before recording (as the original); afterwards record in the ring.
            slot = t % clipping_update_period
            model_norms = jnp.where(t > 0, model_norms.at[slot].set(norm), model_norms)
            median = jnp.sort(model_norms)[min(clipping_update_period - 1, (clipping_update_period // 4) * 2)]
            threshold = jnp.where((t > 0) & (slot == 0), clipping_scale * median, threshold)
            factor = jnp.where(t < clipping_update_period, 1.0,
                               jnp.minimum(1.0, threshold / (norm + 1e-20)))
        else:
            factor = jnp.float32(1.0)

        bc2_main = 1.0 - jnp.power(jnp.float32(beta2), tf + 1.0)
        refresh = (t % period) == (period - 1)
        beta2c = beta2 ** period
        size_lr = lr * scalar_lr_scale

        def per_tensor(p, g, delta, e, rms, s_e, s_g):
            p = p.astype(jnp.float32)
            g = g.astype(jnp.float32) * factor
            delta = delta * beta1
            if _is_scalar(p):
                e = e * beta2 + (1.0 - beta2) * g * g
                denom = jnp.sqrt(e / bc2_main) + eps
                delta = delta + (-size_lr * (1.0 - beta1)) * (g / denom)
                # p <- clamp(p) + delta, expressed as an update on p
                return (jnp.clip(p, -scalar_max, scalar_max) - p) + delta, delta, e, rms, s_e, s_g
            s_g = s_g.at[t % period].set(jnp.sum(p * g).reshape((1,) * p.ndim))
            rms = jnp.where(refresh, _rms(p), rms)
            # parameter-size update (when refreshing and t > 0)
            s_e_new = s_e * beta2c + (1.0 - beta2c) * jnp.mean(jnp.square(s_g), axis=0)
            size_step_n = ((t + 1) // period).astype(jnp.float32)
            bc = 1.0 - jnp.power(jnp.float32(beta2c), size_step_n)
            scale_step = -size_lr * jnp.sqrt(bc) * jnp.sum(s_g, axis=0) / (jnp.sqrt(s_e_new) + eps)
            scale_step = jnp.where(rms < param_min_rms, 0.0, scale_step)
            scale_step = jnp.where(rms > param_max_rms, -size_lr * period, scale_step)
            do_size = refresh & (t > 0)
            delta = jnp.where(do_size, delta + (1.0 - beta1) * (p * scale_step), delta)
            s_e = jnp.where(do_size, s_e_new, s_e)
            # main step
            e = e * beta2 + (1.0 - beta2) * (g * g)
            e_hat = jnp.where(bc2_main < 0.99, e * (1.0 / bc2_main), e)
            step_dir = g / (jnp.sqrt(e_hat) + eps)
            alpha = -lr * (1.0 - beta1) * jnp.maximum(rms, param_min_rms)
            delta = delta + step_dir * alpha
            return delta, delta, e, rms, s_e, s_g

        # Tensors of identical shape are updated together (vmapped), as the original batches them:
        # the math is per tensor, and far fewer ops keep compile time low for deep models.
        treedef = jax.tree.structure(params)
        leaves = [jax.tree.leaves(x) for x in (params, grads, state.delta, state.exp_avg_sq, state.param_rms,
                                               state.scale_exp_avg_sq, state.scale_grads)]
        groups: dict = {}
        for i, p in enumerate(leaves[0]):
            groups.setdefault((tuple(p.shape), str(p.dtype)), []).append(i)
        outs = [None] * len(leaves[0])
        for idx in groups.values():
            if len(idx) == 1:
                outs[idx[0]] = per_tensor(*(lv[idx[0]] for lv in leaves))
                continue
            stacked = [jnp.stack([lv[i] for i in idx]) for lv in leaves]
            res = jax.vmap(per_tensor)(*stacked)
            for j, i in enumerate(idx):
                outs[i] = tuple(r[j] for r in res)
        unflat = lambda i: jax.tree.unflatten(treedef, [o[i] for o in outs])
        updates = unflat(0)
        new_state = ScaledAdamState(count=t + 1, delta=unflat(1), exp_avg_sq=unflat(2), param_rms=unflat(3),
                                    scale_exp_avg_sq=unflat(4), scale_grads=unflat(5),
                                    model_norms=model_norms, norm_threshold=threshold)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ----------------------------------------------------------------------------------------------
# AdamW for new pretraining
# ----------------------------------------------------------------------------------------------
def _decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(schedule: Schedule, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.01) -> optax.GradientTransformation:
    """AdamW with decoupled weight decay on matrices only (not on norms, biases, scalars)."""
    return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=_decay_mask)


# ----------------------------------------------------------------------------------------------
# From config
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class S1OptimConfig:
    """``config.optim`` of S1 training. Defaults = the original S1 recipe: ScaledAdam, lr 0.01 for the
    first update then 0.002 (docs/training.md)."""

    name: str = "scaled_adam"  # or "adamw" (new pretraining)
    schedule: str = "original"  # 0.01 then 0.002 (what the original really does); "warmup_cosine"; "constant"
    lr: float = 0.01  # first update ("original"), peak ("warmup_cosine") or constant lr
    locked_lr: float = 0.002  # "original": every later update
    betas: tuple = (0.9, 0.95)
    clipping_scale: float = 2.0  # ScaledAdam's own clipping
    clipping_update_period: int = 1000
    warmup_steps: int = 2000  # "warmup_cosine" only (as the next four)
    total_steps: int = 40000
    init_lr: float = 1e-5
    end_lr: float = 1e-4
    weight_decay: float = 0.01  # "adamw" only


def make_optimizer(optim_cfg) -> tuple[optax.GradientTransformation, Schedule]:
    """(transform, schedule) from ``config.optim`` (a mapping or an :class:`S1OptimConfig`).

    ``optim.name``: ``"scaled_adam"`` (the original S1 recipe; ``optim.schedule`` ``"original"``
    = 0.01 then 0.002, or ``"warmup_cosine"``/``"constant"``) or ``"adamw"``.
    """
    from gsv_jax.configs import read_section

    o = optim_cfg if isinstance(optim_cfg, S1OptimConfig) else read_section(S1OptimConfig, optim_cfg)
    if o.schedule == "original":
        schedule = original_s1_schedule(o.lr, o.locked_lr)
    elif o.schedule == "warmup_cosine":
        schedule = warmup_cosine(o.lr, o.warmup_steps, o.total_steps, o.init_lr, o.end_lr)
    elif o.schedule == "constant":
        schedule = optax.constant_schedule(o.lr)
    else:
        raise ValueError(f"optim.schedule={o.schedule!r}: use 'original', 'warmup_cosine' or 'constant'")
    if o.name == "scaled_adam":
        tx = scaled_adam(schedule, betas=tuple(o.betas), clipping_scale=o.clipping_scale,
                         clipping_update_period=o.clipping_update_period)
    elif o.name == "adamw":
        tx = adamw(schedule, *tuple(o.betas), weight_decay=o.weight_decay)
    else:
        raise ValueError(f"optim.name={o.name!r}: use 'scaled_adam' or 'adamw'")
    return tx, schedule
