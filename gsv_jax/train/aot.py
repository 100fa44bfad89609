"""Ahead-of-time compile of a sharded train step: per-device memory and FLOPs without running it
(``train.py --compile-only``; a TPU topology needs ``libtpu`` but no TPU hardware; docs/training.md)."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh

from gsv_jax.sharding import MESH_AXES
from gsv_jax.train.mesh import resolve_mesh_shape
from gsv_jax.train.state import count_params, state_shardings, with_shardings
from gsv_jax.train.step import batch_shardings, compiled_report, jit_step
from gsv_jax.train.task import TrainingSetupError

# TPU generations: chips per "-N" suffix unit, HBM per chip (GiB), torus dimensions
TPU_GENERATIONS = {"v5e": (1, 16.0, 2), "v6e": (1, 32.0, 2), "v4": (2, 32.0, 3), "v5p": (2, 95.0, 3)}


def topology_name(spec: str) -> tuple[str, float]:
    """'v5e-16' -> ('v5e:4x4', 16.0); 'v4-32' -> ('v4:2x2x4', 32.0); 'v5e:4x4' passes through."""
    if ":" in spec:
        gen = spec.split(":")[0]
        return spec, TPU_GENERATIONS.get(gen, (1, 16.0, 2))[1]
    gen, _, n = spec.partition("-")
    if gen not in TPU_GENERATIONS or not n.isdigit():
        raise TrainingSetupError(f"--topology {spec!r}: use <generation>-<size> with generation in "
                                 f"{sorted(TPU_GENERATIONS)} (e.g. v5e-16) or an explicit name like v5e:4x4")
    per, hbm, ndim = TPU_GENERATIONS[gen]
    chips = int(n) // per
    if chips < 1:
        raise TrainingSetupError(f"--topology {spec!r}: too small")
    dims = [1] * ndim
    i = 0
    while chips > 1:  # grow the torus as evenly as possible
        if chips % 2:
            raise TrainingSetupError(f"--topology {spec!r}: chip count must be a power of two")
        dims[i % ndim] *= 2
        chips //= 2
        i += 1
    return f"{gen}:" + "x".join(str(d) for d in sorted(dims)), hbm


def target_devices(topology: str | None) -> tuple[list, str, float | None]:
    """(devices, description, HBM GiB per device or None): a TPU topology's abstract devices, or this host's."""
    if not topology:
        devices = jax.devices()
        return devices, f"{len(devices)} {devices[0].platform} device(s)", None
    name, hbm = topology_name(topology)
    try:
        from jax.experimental import topologies

        for k, v in {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost"}.items():
            os.environ.setdefault(k, v)
        devices = list(topologies.get_topology_desc(platform="tpu", topology_name=name).devices)
    except Exception as e:  # any failure means: no usable libtpu
        raise TrainingSetupError(
            f"--topology {topology}: could not get the TPU topology description ({type(e).__name__}: {e}); "
            "it needs the libtpu package (`pip install libtpu`, a version matching your jax); without it, "
            "use --fake-devices N to compile the same sharded step for N fake CPU devices") from e
    return devices, f"{topology} ({name}, {len(devices)} chips, {devices[0].device_kind})", hbm


def compile_step(task, tx, schedule, mesh_sizes: dict, spec: dict, *, topology: str | None = None,
                 hbm_gib: float = 0.0) -> dict:
    """Lower and compile ``task.make_step_fn`` for the batch ``spec`` on the target; the report as a dict."""
    devices, target, default_hbm = target_devices(topology)
    hbm = hbm_gib or default_hbm
    shape = resolve_mesh_shape({a: int(mesh_sizes[a]) for a in MESH_AXES}, len(devices))
    mesh = Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES)
    rng = jax.random.PRNGKey(0)
    abstract, shardings = state_shardings(task, tx, mesh, rng)
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(task.make_step_fn(tx, schedule), shardings, b_sh, mesh)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    compiled = step.lower(with_shardings(abstract, shardings), with_shardings(spec, b_sh),
                          jax.ShapeDtypeStruct((2,), np.uint32, sharding=rep)).compile()
    report = compiled_report(compiled)
    report.update(target=target, mesh=dict(zip(MESH_AXES, shape)), params=count_params(abstract.params))
    if hbm and "peak_estimate_bytes" in report:
        report["device_memory_gib"] = hbm
        report["fits"] = report["peak_estimate_bytes"] <= hbm * 2**30
    return report
