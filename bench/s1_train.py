"""S1 training-step benchmark (prints JSON).

1. Speed: real v2 config (24 layers, width 512), batch 8 x (100 phonemes, 300 semantic tokens),
   fp32 on CPU, one device: compile time, wall and CPU seconds per step (forward + backward +
   ScaledAdam update: the whole jitted step of ``gsv_jax.train.step``, as ``train.py`` runs it).
   ``--original /path/to/GPT-SoVITS``: the original's step on the same work (``bench/original.py
   --only s1_train``), in separate processes interleaved with ours (``--rounds``).
2. Pod path: the compiled step's per-device memory (``memory_analysis``) and FLOPs
   (``cost_analysis``) for batch 64 with FSDP over 8 devices, bf16 compute (fp32 parameters
   and optimizer state): on 8 fake CPU devices (same sharded program, CPU memory accounting),
   checked against a v5e-like 16 GiB device; ``--tpu`` compiles it for a TPU v5e:2x4 topology
   instead (needs the ``libtpu`` package; no TPU hardware).

Parameters are drawn on the host (``gsv_jax.models.s1.init_params``, numpy) and placed with
``create_train_state(params=...)``: a jitted Flax init of the full-size model takes tens of
minutes to compile on CPU and is not what is being measured.

    python bench/s1_train.py [--steps 3] [--skip-speed] [--skip-memory] [--tpu] [--layers N] [--device cpu]
                             [--original /path/to/GPT-SoVITS --rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--steps", type=int, default=3, help="timed steps after the first (median reported)")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--tx", type=int, default=100)
ap.add_argument("--ty", type=int, default=300)
ap.add_argument("--layers", type=int, default=0, help="override n_layer (quick checks only)")
ap.add_argument("--wait-load", type=float, default=0.0,
                help="before the timed steps, wait until the 1-min load average is below this (0 = no wait)")
ap.add_argument("--wait-max", type=float, default=900.0, help="longest wait for --wait-load (s)")
ap.add_argument("--quiet-steps", type=int, default=0,
                help="after the --steps, keep timing steps (each started when other processes were idle for 3 s) "
                     "until this many ran with other processes under 10%% of a core, or --quiet-budget runs out")
ap.add_argument("--quiet-budget", type=float, default=1200.0, help="seconds for --quiet-steps")
ap.add_argument("--compilation-cache", default="", help="persistent compilation cache dir (repeat runs)")
ap.add_argument("--skip-speed", action="store_true")
ap.add_argument("--skip-memory", action="store_true")
ap.add_argument("--memory-batch", type=int, default=64)
ap.add_argument("--memory-tx", type=int, default=128, help="padded phoneme length (a data bucket)")
ap.add_argument("--memory-ty", type=int, default=384, help="padded semantic length (a data bucket)")
ap.add_argument("--memory-dtype", default="bfloat16")
ap.add_argument("--memory-remat", default="none", help="train.remat for the memory section: none | dots")
ap.add_argument("--tpu", action="store_true", help="memory section on a TPU v5e:2x4 topology (libtpu)")
ap.add_argument("--hbm-gib", type=float, default=16.0, help="device memory to check against (v5e: 16)")
ap.add_argument("--device", default=None, help="speed section on cpu, gpu or tpu (default: JAX's default device)")
ap.add_argument("--original", help="a GPT-SoVITS checkout: time its training step on the same work")
ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds with --original")
args = ap.parse_args()

if args.original:  # ours (speed only) and the original, interleaved in fresh processes
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import compare

    if (args.batch, args.tx, args.ty, args.layers) != (8, 100, 300, 0):
        raise SystemExit("--original times the original at its fixed work: v2, batch 8 x (100, 300)")
    child = [sys.executable, os.path.abspath(__file__), "--skip-memory", "--steps", str(args.steps)]
    if args.device:
        child += ["--device", args.device]
    if args.compilation_cache:
        child += ["--compilation-cache", args.compilation_cache]
    raw = compare.interleave(child, compare.original_cmd(args.original, "s1_train", args.steps), args.rounds)
    report = {"bench": "s1_train", "work": "v2, batch 8 x (100 phonemes, 300 tokens), fwd+bwd+ScaledAdam, fp32",
              "unit": "seconds per step (lower is better; ratio = original / ours)",
              **compare.summary([r["speed"]["seconds_per_step"] for r in raw["ours"]],
                                [r["s1_train"]["seconds"] for r in raw["original"]], higher_is_better=False),
              "load_average_before_each_run": raw["load_average_before"], "load_average_after": raw["load_average_after"]}
    print(json.dumps(report, indent=1))
    sys.exit(0)

if not args.tpu:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    if not args.device:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import numpy as np

from gsv_jax.configs import s1_v2
from gsv_jax.models.s1 import init_params
from gsv_jax.train.mesh import make_mesh
from gsv_jax.train.optim import make_optimizer
from gsv_jax.train.s1_task import S1Task
from gsv_jax.train.state import count_params, create_train_state, state_shardings, with_shardings
from gsv_jax.train.step import batch_shardings, compiled_report, jit_step, make_step_fn, to_device_batch


def config():
    c = s1_v2.get_config()
    if args.layers:
        c.model.n_layer = args.layers
    return c


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load():
    return [round(x, 2) for x in os.getloadavg()]


def machine_busy_seconds():
    """CPU-seconds all processes on the machine have used (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def wait_for_quiet():
    t0 = time.perf_counter()
    while args.wait_load and os.getloadavg()[0] >= args.wait_load and time.perf_counter() - t0 < args.wait_max:
        time.sleep(5)
    return round(time.perf_counter() - t0, 1)


def batch_of(b, tx, ty, seed=0):
    rs = np.random.RandomState(seed)
    return {"x": rs.randint(0, 732, (b, tx)).astype(np.int32), "x_lens": np.full((b,), tx, np.int32),
            "y": rs.randint(0, 1024, (b, ty)).astype(np.int32), "y_lens": np.full((b,), ty, np.int32),
            "bert": (rs.standard_normal((b, 1024, tx)) * 0.1).astype(np.float16),
            "loss_len": np.full((b,), ty + 1, np.int32)}


def speed(out):
    cfg = config()
    task = S1Task.from_config(cfg)  # fp32 compute, the training mask train.py uses
    tx, sched = make_optimizer(cfg.optim)  # ScaledAdam, the original's lr
    mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices(args.device)[:1])
    t0 = time.perf_counter()
    state, sh = create_train_state(task, tx, mesh, jax.random.PRNGKey(0), params=init_params(task.dims, 0))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    batch = batch_of(args.batch, args.tx, args.ty)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, sched), sh, b_sh, mesh)  # accum 1: one forward+backward per step
    rng = jax.device_put(jax.random.PRNGKey(1), sh.rng)
    load_before = load()
    t0, c0 = time.perf_counter(), cpu_seconds()
    compiled = step.lower(state, spec, rng).compile()
    compile_s, compile_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    dev_batch = to_device_batch(batch, b_sh)
    state, m = compiled(state, dev_batch, rng)  # the first call also allocates buffers: not timed
    jax.block_until_ready(m)
    losses = [float(m["loss"])]
    waited = wait_for_quiet()
    load_at_start = load()
    times, cpus, loads, others = [], [], [], []
    for i in range(args.steps):
        t, c, busy = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
        state, m = compiled(state, dev_batch, rng)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t)
        cpus.append(cpu_seconds() - c)
        loads.append(load()[0])
        if busy is not None:
            others.append(round(machine_busy_seconds() - busy - cpus[-1], 2))
        losses.append(float(m["loss"]))
    def others_idle(window=3.0):
        b, c = machine_busy_seconds(), cpu_seconds()
        time.sleep(window)
        return b is None or machine_busy_seconds() - b - (cpu_seconds() - c) < 0.2 * window

    quiet, t_budget = [], time.perf_counter()
    while len(quiet) < args.quiet_steps and time.perf_counter() - t_budget < args.quiet_budget:
        if not others_idle():
            continue
        t, c, busy = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
        state, m = compiled(state, dev_batch, rng)
        jax.block_until_ready(m)
        dt, dc = time.perf_counter() - t, cpu_seconds() - c
        other = machine_busy_seconds() - busy - dc if busy is not None else 0.0
        if other < 0.1 * dt:
            quiet.append({"seconds": round(dt, 3), "cpu_seconds": round(dc, 2), "others_cpu_seconds": round(other, 2),
                          "load_1min": load()[0]})
    sec = float(np.median(times))
    out["speed"] = dict(
        config=f"s1_v2 ({task.dims.n_layer} layers, {task.dims.dim} wide, {task.dims.heads} heads)",
        params=count_params(state.params), batch=args.batch, phonemes=args.tx, semantic=args.ty,
        compute_dtype=str(task.dims.dtype), optimizer="scaled_adam", device="cpu x1",
        matmul_precision=str(jax.config.jax_default_matmul_precision),
        host_init_and_place_seconds=round(init_s, 2),
        compile_seconds=round(compile_s, 2), compile_cpu_seconds=round(compile_cpu, 2),
        seconds_per_step=round(sec, 3), all_step_seconds=[round(t, 3) for t in times],
        cpu_seconds_per_step=round(float(np.median(cpus)), 3), all_cpu_seconds=[round(c, 2) for c in cpus],
        other_processes_cpu_seconds_each_step=others, load_1min_after_each_step=loads,
        waited_for_load_seconds=waited, load_average_at_first_timed_step=load_at_start,
        best_step_seconds=round(min(times), 3),
        quiet_step_seconds=[round(t, 3) for t, o in zip(times, others) if o < 0.1 * t],  # others < 10% of a core
        quiet_steps=quiet,
        quiet_median_seconds=round(float(np.median([q["seconds"] for q in quiet])), 3) if quiet else None,
        step_flops=float(compiled_report(compiled).get("flops", -1.0)),
        losses=[round(x, 3) for x in losses],
        load_average_before_compile=load_before, load_average_after_steps=load())


def tpu_devices():
    from jax.experimental import topologies

    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    devs = list(topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x4").devices)
    return devs, f"TPU v5e:2x4 topology ({devs[0].device_kind}), compiled without hardware"


def memory(out):
    from jax.sharding import Mesh

    cfg = config()
    cfg.train.compute_dtype = args.memory_dtype
    task = S1Task.from_config(cfg)
    tx, sched = make_optimizer(cfg.optim)
    if args.tpu:
        devices, target = tpu_devices()
    else:
        devices, target = jax.devices()[:8], "8 fake CPU devices (XLA CPU memory accounting)"
    mesh = Mesh(np.asarray(devices, dtype=object).reshape(1, 8, 1), ("data", "fsdp", "tensor"))
    abstract, sh = state_shardings(task, tx, mesh, jax.random.PRNGKey(0))
    spec = task.batch_spec(args.memory_batch, args.memory_tx, args.memory_ty)
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, sched, remat=args.memory_remat), sh, b_sh, mesh)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    t0, c0 = time.perf_counter(), cpu_seconds()
    compiled = step.lower(with_shardings(abstract, sh), with_shardings(spec, b_sh),
                          jax.ShapeDtypeStruct((2,), np.uint32, sharding=rep)).compile()
    r = compiled_report(compiled)
    gib = lambda b: round(b / 2**30, 3)
    per_device = {k.replace("_in_bytes", "_gib").replace("_bytes", "_gib"): gib(v)
                  for k, v in r.items() if k.endswith("bytes")}
    state_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(abstract))
    peak = r.get("peak_estimate_bytes", 0)
    total = peak + r.get("generated_code_size_in_bytes", 0)
    out["memory"] = dict(
        target=target, mesh={"data": 1, "fsdp": 8, "tensor": 1}, batch=args.memory_batch,
        padded_shape={"phonemes": args.memory_tx, "semantic": args.memory_ty}, compute_dtype=args.memory_dtype,
        remat=args.memory_remat, params=count_params(abstract.params), train_state_gib_total=gib(state_bytes),
        per_device=per_device, per_device_total_gib=gib(total),
        flops_per_device=r.get("flops"), device_memory_gib=args.hbm_gib,
        fits=bool(total <= args.hbm_gib * 2**30), headroom_gib=round(args.hbm_gib - total / 2**30, 3),
        compile_seconds=round(time.perf_counter() - t0, 1), compile_cpu_seconds=round(cpu_seconds() - c0, 1),
        note="peak = argument + output + temp - alias (donated state aliased); total adds generated code")


if __name__ == "__main__":
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if args.device:
        jax.config.update("jax_default_device", jax.devices(args.device)[0])
    dev = jax.devices(args.device)[0] if args.device else jax.devices()[0]
    result = {"bench": "s1_train", "jax": jax.__version__, "cpus": os.cpu_count(), "load_average_start": load(),
              "device": {"platform": dev.platform, "device_kind": dev.device_kind}}
    if not args.skip_speed:
        speed(result)
    if not args.skip_memory:
        memory(result)
    result["load_average_end"] = load()
    print(json.dumps(result))
