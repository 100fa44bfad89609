"""Device mesh from config: axes ``data``, ``fsdp``, ``tensor``; a size of -1 fills the rest.

``config.mesh`` (ml_collections) holds ``data``, ``fsdp``, ``tensor`` (ints, at most one -1).
Multi-host runs call :func:`maybe_initialize_distributed` first: it starts
``jax.distributed`` when the environment describes a cluster (TPU pod slices, SLURM, or the
explicit ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` variables).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from gsv_jax.sharding import MESH_AXES

_started = False


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """``config.mesh``: devices per mesh axis; -1 = all remaining devices (default: pure data parallel)."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1


def maybe_initialize_distributed(force: bool | None = None) -> bool:
    """Call ``jax.distributed.initialize()`` once if the environment asks for a multi-host run.

    Returns True when it was initialised. Single-process runs (the default) do nothing.
    """
    global _started
    if _started:
        return True
    env = os.environ
    wanted = force if force is not None else (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("JAX_NUM_PROCESSES", "1")) > 1
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or "MEGASCALE_COORDINATOR_ADDRESS" in env
        or (env.get("TPU_WORKER_HOSTNAMES", "") .count(",") > 0)
    )
    if not wanted:
        return False
    kwargs = {}
    if "JAX_COORDINATOR_ADDRESS" in env:
        kwargs = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                      num_processes=int(env["JAX_NUM_PROCESSES"]),
                      process_id=int(env["JAX_PROCESS_ID"]))
    jax.distributed.initialize(**kwargs)
    _started = True
    return True


def resolve_mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes for (data, fsdp, tensor) with one -1 filled so that the product is ``num_devices``."""
    unknown = [a for a in MESH_AXES if int(sizes.get(a, 1)) == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got {dict(sizes)}")
    known = int(np.prod([int(sizes.get(a, 1)) for a in MESH_AXES if a not in unknown]))
    if known <= 0 or num_devices % known:
        raise ValueError(f"mesh {dict(sizes)} does not divide {num_devices} devices; "
                         "fix config.mesh (use -1 on one axis to fill)")
    shape = [int(sizes.get(a, 1)) if a not in unknown else num_devices // known for a in MESH_AXES]
    if int(np.prod(shape)) != num_devices:
        raise ValueError(f"mesh {dict(zip(MESH_AXES, shape))} uses {int(np.prod(shape))} devices "
                         f"but {num_devices} are available; set one axis to -1")
    return tuple(shape)


def make_mesh(sizes: Mapping[str, int] | None = None, devices: Sequence | None = None) -> Mesh:
    """Mesh over ``devices`` (default: all) with axes ``MESH_AXES``; default = pure data parallel."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = dict(sizes or dataclasses.asdict(MeshConfig()))
    shape = resolve_mesh_shape(sizes, len(devices))
    try:  # topology-aware device order on real accelerators
        from jax.experimental import mesh_utils

        arr = mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # noqa: BLE001 - fake CPU devices or unusual topologies
        arr = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(arr, MESH_AXES)


def mesh_from_config(config) -> Mesh:
    """Mesh from ``config.mesh`` (``data``/``fsdp``/``tensor``; missing keys: :class:`MeshConfig`)."""
    from gsv_jax.configs import read_section

    m = read_section(MeshConfig, config.get("mesh", None) if hasattr(config, "get") else None)
    return make_mesh({a: int(getattr(m, a)) for a in MESH_AXES})
