"""Train state; parameters and optimizer state are born sharded.

The model-specific parts come from a task (:class:`gsv_jax.train.task.Task`: ``init_params``,
``host_init_params``, ``loss_fn``, ``batch_spec``), so that the step, the loop and the
checkpointing stay model-agnostic.

Creation is abstract-first: ``jax.eval_shape`` gives the shapes and logical names, the rules
table (``gsv_jax.sharding``) turns them into ``NamedSharding``s, and a jitted init with those
``out_shardings`` materialises each shard directly on its device (no host copy of the model).
When the task's ``host_init_params(seed)`` returns a plain numpy tree, fresh runs instead draw
parameters on the host and place them shard by shard (S1: a jitted init of the 77 M-parameter
model compiles for many minutes on CPU). Optimizer statistics inherit their parameter's sharding
when their shape matches it; everything else (counters, per-tensor scalars) is replicated.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gsv_jax.sharding import tree_shardings

if TYPE_CHECKING:
    from gsv_jax.train.task import Task


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray  # number of optimizer updates done
    params: Any
    opt_state: Any
    rng: jnp.ndarray  # base key; each step folds in ``step``


def _path_key(path) -> tuple:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
    return tuple(out)


def opt_state_shardings(abstract_opt_state, abstract_params, param_shardings, mesh: Mesh):
    """Shardings for an optimizer state: a leaf whose path ends with a parameter's path and whose
    shape equals that parameter's shape gets the parameter's sharding; the rest is replicated."""
    by_path = {}
    for (path, leaf), sh in zip(jax.tree_util.tree_leaves_with_path(abstract_params),
                                jax.tree_util.tree_leaves(param_shardings)):
        by_path[_path_key(path)] = (tuple(leaf.shape), sh)
    replicated = NamedSharding(mesh, P())

    def one(path, leaf):
        key = _path_key(path)
        for start in range(len(key)):
            hit = by_path.get(key[start:])
            if hit is not None:
                return hit[1] if hit[0] == tuple(leaf.shape) else replicated
        return replicated

    return jax.tree_util.tree_map_with_path(one, abstract_opt_state)


def state_shardings(task: Task, tx: optax.GradientTransformation, mesh: Mesh, rng):
    """(abstract unboxed state, its NamedSharding tree)."""
    boxed = jax.eval_shape(task.init_params, rng)
    param_sh = tree_shardings(boxed, mesh)
    abstract_params = nn.meta.unbox(boxed)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    opt_sh = opt_state_shardings(abstract_opt, abstract_params, param_sh, mesh)
    rep = NamedSharding(mesh, P())
    abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                          opt_state=abstract_opt, rng=jax.eval_shape(lambda: rng))
    shardings = TrainState(step=rep, params=param_sh, opt_state=opt_sh, rng=rep)
    return abstract, shardings


def with_shardings(abstract, shardings):
    """ShapeDtypeStructs carrying their target sharding (orbax restore / AOT compile targets)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def create_train_state(task: Task, tx: optax.GradientTransformation, mesh: Mesh, rng,
                       params: Any | None = None) -> tuple[TrainState, TrainState]:
    """Sharded train state (fresh init, or from given plain ``params`` e.g. a converted checkpoint).

    Returns ``(state, shardings)``.
    """
    rng = jnp.asarray(rng)
    init_rng, state_rng = jax.random.split(rng)
    abstract, shardings = state_shardings(task, tx, mesh, init_rng)

    def from_params(p, r):
        p = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), p)
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p), rng=r)

    if params is None:  # drawn on the host when the task can, then placed
        params = task.host_init_params(int(np.asarray(jax.random.key_data(init_rng)).ravel()[-1]))
    if params is None:
        init = jax.jit(lambda r, sr: from_params(nn.meta.unbox(task.init_params(r)), sr),
                       out_shardings=shardings)
        state = init(init_rng, state_rng)
    else:
        params = nn.meta.unbox(params)
        want = jax.tree.structure(abstract.params)
        if jax.tree.structure(params) != want:
            raise ValueError("given params do not match the model's parameter tree; convert the checkpoint "
                             f"with the model's converter first.\n got: {jax.tree.structure(params)}\nwant: {want}")
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(abstract.params), jax.tree.leaves(params)):
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError(f"param {jax.tree_util.keystr(path)}: shape {b.shape} != model {a.shape}")
        params = jax.device_put(params, shardings.params)
        init = jax.jit(from_params, in_shardings=(shardings.params, shardings.rng), out_shardings=shardings)
        state = init(params, state_rng)
    return state, shardings


def count_params(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))


InitFn = Callable[[Any], Any]
