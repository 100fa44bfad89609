"""Ahead-of-time compile of a sharded train step: per-device memory and FLOPs without running it
(``train.py --compile-only``; a TPU topology needs ``libtpu`` but no TPU hardware; docs/training.md,
docs/pretraining.md).

A step that does not fit the chip's HBM is still reported (``fits: false`` and what the compiler
said it needs) rather than raised, with the FLOPs of the unpartitioned program divided by the chip
count. With a TPU topology the report adds an *estimate* of the step time at the chip's peak bf16
rate (``step_seconds_at_peak``): a lower bound, not a measurement.
"""
from __future__ import annotations

import json
import os
import re

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
# peak dense bf16 FLOP/s per chip as Google Cloud publishes them (for estimates only)
PEAK_BF16_FLOPS = {"v5e": 197e12, "v6e": 918e12, "v4": 275e12, "v5p": 459e12}


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
    lowered = step.lower(with_shardings(abstract, shardings), with_shardings(spec, b_sh),
                         jax.ShapeDtypeStruct((2,), np.uint32, sharding=rep))
    try:
        report = compiled_report(lowered.compile())
    except Exception as e:  # the TPU compiler refuses a program larger than HBM (JaxRuntimeError)
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        report = out_of_memory_report(str(e), lowered, len(devices))
    report.update(target=target, mesh=dict(zip(MESH_AXES, shape)), params=count_params(abstract.params))
    if hbm and "peak_estimate_bytes" in report:
        report["device_memory_gib"] = hbm
        report["fits"] = report["peak_estimate_bytes"] <= hbm * 2**30
    elif hbm:
        report["device_memory_gib"] = hbm
    gen = topology.split("-")[0].split(":")[0] if topology else None
    if gen in PEAK_BF16_FLOPS and report.get("flops", -1) > 0:
        report["peak_bf16_flops_per_chip"] = PEAK_BF16_FLOPS[gen]
        report["step_seconds_at_peak"] = report["flops"] / PEAK_BF16_FLOPS[gen]
    return report


def out_of_memory_report(message: str, lowered, n_devices: int) -> dict:
    """The report of a step the compiler refused for lack of device memory: what it needs, and the
    FLOPs of the unpartitioned program per device (XLA's HLO cost analysis before partitioning)."""
    line = " ".join(message.split())
    rep: dict = {"fits": False, "compile_error": line[line.find("RESOURCE_EXHAUSTED"):][:300]}
    m = re.search(r"required for HLO temporaries \(([\d.]+)([KMGT])\)", line)
    if m:
        rep["temp_required_bytes"] = int(float(m.group(1)) * 2 ** (10 * " KMGT".index(m.group(2))))
    try:
        cost = lowered.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    except Exception as e:  # noqa: BLE001 - not every backend analyses an uncompiled program
        cost, rep["cost_error"] = None, str(e)
    if cost:
        rep["flops"] = float(cost.get("flops", -1.0)) / n_devices
        rep["flops_source"] = "unpartitioned HLO / devices"
    else:
        rep.setdefault("cost_error", "no FLOP count: the backend analyses compiled programs only")
    return rep


def s2_batch_spec(task, batch_size: int, frames: int, text_len: int) -> dict:
    """The abstract S2 training batch as ``gsv_jax.data.s2_pipeline.collate`` makes it (audio, not a
    spectrogram: the step computes the spectrogram on device; SSL features in float16)."""
    spec = task.batch_spec(batch_size, frames, text_len)
    del spec["spec"]
    spec["ssl"] = jax.ShapeDtypeStruct(spec["ssl"].shape, np.float16)
    spec["wav_lens"] = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return spec


def s2_compile_only(config, *, topology: str | None = None, tx_len: int = 0, ty_len: int = 0,
                    hbm_gib: float = 0.0) -> dict:
    """``train.py --compile-only`` for S2: the GAN step (D and G updates, the trainable codebook when
    ``freeze_quantizer`` is false) for a global batch of ``train.batch_size`` clips padded to
    ``ty_len`` spectrogram frames (default: the largest length bucket) and ``tx_len`` phonemes
    (default: ``frames / 2``, i.e. 25 phonemes per second, rounded up to ``text_multiple``)."""
    import dataclasses

    from gsv_jax.configs import read_section
    from gsv_jax.data.s2_pipeline import S2DataConfig
    from gsv_jax.train.mesh import MeshConfig
    from gsv_jax.train.s2_task import S2Task, S2TrainConfig, training_config

    training_config(config)
    task = S2Task.from_config(config)
    t = read_section(S2TrainConfig, config.train)
    d = S2DataConfig.from_config(config.data, batch_size=t.batch_size)
    frames = ty_len or max(d.boundaries)
    # 25 phonemes per second of audio (the fastest rate S1's data filter keeps) at 50 frames per second
    text_len = tx_len or -(-(frames // 2) // d.text_multiple) * d.text_multiple
    mesh = dataclasses.asdict(read_section(MeshConfig, config.get("mesh", None)))
    report = compile_step(task, task.tx, lambda s: 0.0, mesh, s2_batch_spec(task, t.batch_size, frames, text_len),
                          topology=topology, hbm_gib=hbm_gib)
    report.update(batch=t.batch_size, frames=frames, text_len=text_len,
                  freeze_quantizer=bool(task.config.freeze_quantizer), compute_dtype="float32")
    print(json.dumps(report, indent=1))
    return report


def compile_only(task_cls, config, **options) -> dict:
    """``train.py --compile-only``: the task's own compile-only, or the S2 one above."""
    if task_cls.name == "s2":
        return s2_compile_only(config, **options)
    return task_cls.compile_only(config, **options)
