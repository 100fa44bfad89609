"""S1 training-step benchmark (prints JSON).

1. Speed: real v2 config (24 layers, width 512), batch 8 x (100 phonemes, 300 semantic tokens),
   fp32 on CPU, one device: compile time and seconds per step (forward + backward + ScaledAdam
   update, the whole jitted step). The original measured 36.7 s per forward+backward at this
   size on a 2-core CPU; the target is >= 1.3x faster (<= 28.2 s).
2. Pod path: the compiled step's per-device memory for batch 64 with FSDP over 8 devices,
   bf16 compute: on a TPU v5e topology (2x4, 16 GiB HBM per chip) when libtpu is installed,
   else on 8 fake CPU devices (same sharded program, CPU memory accounting).

    python bench/s1_train.py [--steps 3] [--skip-speed] [--skip-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--tx", type=int, default=100)
ap.add_argument("--ty", type=int, default=300)
ap.add_argument("--skip-speed", action="store_true")
ap.add_argument("--skip-memory", action="store_true")
ap.add_argument("--memory-batch", type=int, default=64)
args = ap.parse_args()

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import s1_v2  # noqa: E402
from gsv_jax.models.s1 import S1Dims  # noqa: E402
from gsv_jax.train.mesh import make_mesh  # noqa: E402
from gsv_jax.train.optim import original_s1_schedule, scaled_adam  # noqa: E402
from gsv_jax.train.s1_task import S1Task  # noqa: E402
from gsv_jax.train.state import count_params, create_train_state, state_shardings, with_shardings  # noqa: E402
from gsv_jax.train.step import batch_shardings, compiled_report, jit_step, make_step_fn, to_device_batch  # noqa: E402

ORIGINAL_SECONDS = 36.7


def batch_of(b, tx, ty, seed=0):
    rs = np.random.RandomState(seed)
    x_lens = np.full((b,), tx, np.int32)
    y_lens = np.full((b,), ty, np.int32)
    return {"x": rs.randint(0, 732, (b, tx)).astype(np.int32), "x_lens": x_lens,
            "y": rs.randint(0, 1024, (b, ty)).astype(np.int32), "y_lens": y_lens,
            "bert": (rs.standard_normal((b, 1024, tx)) * 0.1).astype(np.float16),
            "loss_len": np.full((b,), ty + 1, np.int32)}


def speed(out):
    dims = S1Dims.from_config(s1_v2.get_config().model)
    task = S1Task(dims)
    sched = original_s1_schedule()
    tx = scaled_adam(sched)
    mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    state, sh = create_train_state(task, tx, mesh, jax.random.PRNGKey(0))
    batch = batch_of(args.batch, args.tx, args.ty)
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, sched), sh, b_sh, mesh)
    rng = jax.device_put(jax.random.PRNGKey(1), sh.rng)
    t0 = time.perf_counter()
    compiled = step.lower(state, spec, rng).compile()
    out["compile_seconds"] = round(time.perf_counter() - t0, 2)
    dev_batch = to_device_batch(batch, b_sh)
    times = []
    for i in range(args.steps + 1):
        t = time.perf_counter()
        state, m = compiled(state, dev_batch, rng)
        jax.block_until_ready(m)
        if i:  # the first call also allocates: not counted
            times.append(time.perf_counter() - t)
    out.update(config="s1_v2 (24 layers, 512 wide, 16 heads)", params=count_params(state.params),
               batch=args.batch, phonemes=args.tx, semantic=args.ty, dtype="float32", device="cpu x1",
               seconds_per_step=round(float(np.median(times)), 3), all_step_seconds=[round(t, 3) for t in times],
               original_seconds_fwd_bwd=ORIGINAL_SECONDS,
               speedup_vs_original=round(ORIGINAL_SECONDS / float(np.median(times)), 2),
               loss=float(m["loss"]), load_average=os.getloadavg()[0])


def memory(out):
    import dataclasses

    dims = dataclasses.replace(S1Dims.from_config(s1_v2.get_config().model), dtype="bfloat16", corrected_mask=True)
    task = S1Task(dims)
    sched = original_s1_schedule()
    tx = scaled_adam(sched)
    devices, target, hbm = None, "8 fake CPU devices", None
    try:
        from jax.experimental import topologies

        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
        devices = list(topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x4").devices)
        target, hbm = f"TPU v5e:2x4 topology ({devices[0].device_kind}), compiled without hardware", 16.0
    except Exception as e:  # noqa: BLE001
        out_note = f"no TPU topology ({type(e).__name__}); compiled for fake CPU devices"
        devices = jax.devices()[:8]
        out["memory_note"] = out_note
    from jax.sharding import Mesh

    mesh = Mesh(np.asarray(devices, dtype=object).reshape(1, 8, 1), ("data", "fsdp", "tensor"))
    abstract, sh = state_shardings(task, tx, mesh, jax.random.PRNGKey(0))
    spec = task.batch_spec(args.memory_batch, 128, 384)
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, sched), sh, b_sh, mesh)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    t0 = time.perf_counter()
    compiled = step.lower(with_shardings(abstract, sh), with_shardings(spec, b_sh),
                          jax.ShapeDtypeStruct((2,), np.uint32, sharding=rep)).compile()
    rep_d = compiled_report(compiled)
    rep_d.update(target=target, mesh={"data": 1, "fsdp": 8, "tensor": 1}, batch=args.memory_batch,
                 padded_shape=[128, 384], compute_dtype="bfloat16", compile_seconds=round(time.perf_counter() - t0, 1))
    if hbm:
        rep_d["device_memory_gib"] = hbm
        rep_d["fits"] = rep_d.get("peak_estimate_bytes", 0) <= hbm * 2**30
    rep_d["peak_estimate_gib"] = round(rep_d.get("peak_estimate_bytes", 0) / 2**30, 3)
    out["memory_fsdp8_batch64"] = rep_d


if __name__ == "__main__":
    jax.config.update("jax_default_matmul_precision", "highest")
    result = {"bench": "s1_train"}
    if not args.skip_speed:
        speed(result)
    if not args.skip_memory:
        memory(result)
    print(json.dumps(result, indent=1))
