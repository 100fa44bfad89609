"""THE rules table: logical axis names (used by model code) -> mesh axes (``data``, ``fsdp``, ``tensor``).

Model code never names mesh axes. It names the *logical* role of each dimension:

* parameters: ``nn.with_logical_partitioning(init, ("embed", "mlp"))``
* activations: ``nn.with_logical_constraint(x, ("batch", "length", "embed"))``

and this file alone decides where each role lives on the device mesh:

=========  ===================  =====================================================
logical    mesh axes            why
=========  ===================  =====================================================
batch      (data, fsdp)         data parallel over both the data and the FSDP axis
length     None                 sequences stay whole (attention needs all positions)
embed      fsdp                 FSDP: every weight with a model-width dim is split
heads      tensor               Megatron tensor parallel: heads / MLP / vocab split
mlp        tensor
vocab      tensor
kv         None                 per-head width stays whole
conv_in    fsdp                 convolution weights: like embed / mlp
conv_out   tensor
norm       None                 LayerNorm scales and biases are tiny: replicated
=========  ===================  =====================================================

A dimension is only split when its size divides evenly by the product of the mesh axes
(e.g. the 1025-entry semantic vocabulary stays whole on a 2-way tensor axis); otherwise it is
replicated along those axes. Each mesh axis is used at most once per array.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    ("norm", None),
)
LOGICAL_NAMES = tuple(name for name, _ in LOGICAL_AXIS_RULES)


def _as_tuple(axes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def mesh_axes_for(name: str | None, rules=LOGICAL_AXIS_RULES) -> tuple[str, ...]:
    """Mesh axes a logical name maps to (``()`` for replicated / ``None``)."""
    if name is None:
        return ()
    for logical, axes in rules:
        if logical == name:
            return _as_tuple(axes)
    raise ValueError(f"unknown logical axis name {name!r}; allowed: {LOGICAL_NAMES} or None "
                     "(add new names to gsv_jax/sharding.py LOGICAL_AXIS_RULES)")


def logical_to_spec(names: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                    rules=LOGICAL_AXIS_RULES) -> P:
    """PartitionSpec for an array of ``shape`` whose dims carry logical ``names``.

    Dims whose size does not divide by the mesh axes' product are replicated; a mesh axis
    already used by an earlier dim is not reused; size-1 mesh axes are dropped. If ``names``
    does not match the array's rank (e.g. optimizer statistics derived from a parameter) the
    array is replicated.
    """
    if names is None or len(names) != len(shape):
        return P()
    used: set[str] = set()
    out = []
    for name, size in zip(names, shape):
        axes = [a for a in mesh_axes_for(name, rules) if a not in used and mesh.shape.get(a, 1) > 1]
        # Greedily keep the longest prefix of axes whose product divides the dim.
        keep = []
        prod = 1
        for a in axes:
            if size % (prod * mesh.shape[a]) == 0:
                keep.append(a)
                prod *= mesh.shape[a]
        used.update(keep)
        out.append(None if not keep else (keep[0] if len(keep) == 1 else tuple(keep)))
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def _is_box(x) -> bool:
    return isinstance(x, nn.Partitioned)


def tree_shardings(abstract_tree, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """NamedShardings for a (possibly boxed) abstract pytree; the result has the UNBOXED structure.

    Leaves boxed with ``nn.Partitioned`` / ``nn.LogicallyPartitioned`` are split by their names;
    every other leaf is replicated.
    """

    def one(leaf):
        if _is_box(leaf):
            value = leaf.value
            return NamedSharding(mesh, logical_to_spec(leaf.names, value.shape, mesh, rules))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map(one, abstract_tree, is_leaf=_is_box)


def batch_sharding(mesh: Mesh, ndim: int, batch_size: int | None = None) -> NamedSharding:
    """Sharding of a data array whose leading dim is the batch (rest replicated)."""
    shape = (batch_size if batch_size is not None else int(np.prod([mesh.shape[a] for a in mesh_axes_for("batch")])),) + (1,) * (ndim - 1)
    names = ("batch",) + (None,) * (ndim - 1)
    return NamedSharding(mesh, logical_to_spec(names, shape, mesh))


def axis_rules():
    """Context manager activating the rules for ``nn.with_logical_constraint`` during tracing."""
    return nn.logical_axis_rules(LOGICAL_AXIS_RULES)
