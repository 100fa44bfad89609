"""Train S1 (text -> semantic tokens) or S2 (SoVITS GAN) from one CPU to a TPU pod slice.

    python train.py --config configs/s1_v2.py --workdir runs/exp1 \\
        --config.data.exp_dir=logs/myexp --config.train.batch_size=32
    python train.py --config configs/s1_v2.py --workdir runs/ft --init-from s1v3.ckpt ...   # fine-tune
    python train.py --config configs/s2_v2.py --workdir runs/s2 --config.data.exp_dir=logs/myexp \\
        --init-from s2G2333k.pth s2D2333k.pth                                # S2 fine-tune (G [D])
    python train.py --config configs/s1_v2.py --compile-only --topology v5e-16 \\
        --config.mesh.fsdp=-1 --config.mesh.data=1                          # does it fit? (no TPU needed)

Sections: 1 flags, 2 set-up (distributed, config, task, optimiser), 3 ahead-of-time compile only,
4 data + initial weights, 5 the loop (auto-resume from --workdir), 6 export.
Overrides use ml_collections syntax (``--config.train.batch_size=32``); ``--help`` lists flags.
"""
from __future__ import annotations

import json
import os
import sys

# ---------------------------------------------------------------------------------------------
# 1. flags (dashed spellings are accepted: --init-from, --compile-only, --fake-devices)
_DASHED = {"--init-from": "--init_from", "--compile-only": "--compile_only", "--fake-devices": "--fake_devices",
           "--no-compile-only": "--nocompile_only"}


def _normalise_argv(argv):
    out = []
    for a in argv:
        head, sep, tail = a.partition("=")
        out.append(_DASHED.get(head, head) + sep + tail)
    return out


sys.argv = _normalise_argv(sys.argv)


def _early_fake_devices():
    """--compile-only without --topology compiles for N fake CPU devices; XLA must know N first."""
    n = None
    for i, a in enumerate(sys.argv):
        if a.startswith("--fake_devices="):
            n = a.split("=", 1)[1]
        elif a == "--fake_devices" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
    if n and int(n) > 0:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={int(n)}").strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


_early_fake_devices()

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/s1_v2.py", lock_config=True)
flags.DEFINE_string("workdir", None, "run folder: checkpoints/, tb/, metrics.jsonl, export/ (resumes from it)")
flags.DEFINE_string("init_from", None, "original S1 .ckpt to fine-tune from (used when workdir has no checkpoint); "
                    "S2: G.pth [D.pth] (original G_*/D_*.pth or pretrained s2G/s2D)")
flags.DEFINE_bool("compile_only", False, "compile the sharded train step, print memory/FLOPs per device, exit")
flags.DEFINE_string("topology", None, "TPU topology for --compile-only, e.g. v5e-16, v5e:4x4, v4-32, v5p-64, v6e-8 "
                    "(needs `pip install libtpu`; no TPU hardware)")
flags.DEFINE_integer("fake_devices", 0, "--compile-only without --topology: number of fake CPU devices")
flags.DEFINE_integer("tx", 0, "--compile-only: padded phoneme length (default: the largest x bucket)")
flags.DEFINE_integer("ty", 0, "--compile-only: padded semantic length (default: the largest y bucket)")
flags.DEFINE_float("hbm_gib", 0.0, "--compile-only: device memory to check against (default: by topology, 16 for v5e)")
flags.DEFINE_string("export", None, "where to write the final weights as an original .ckpt "
                    "(default: <workdir>/export/s1-step<N>.ckpt)")
flags.DEFINE_integer("stop_after", 0, "stop after this many updates in this invocation (0 = run to num_steps)")
FLAGS = flags.FLAGS

# TPU generations: chips per "-N" suffix unit and HBM per chip (GiB)
_TPU = {"v5e": (1, 16.0, 2), "v6e": (1, 32.0, 2), "v4": (2, 32.0, 3), "v5p": (2, 95.0, 3)}


def topology_name(spec: str) -> tuple[str, float]:
    """'v5e-16' -> ('v5e:4x4', 16.0); 'v4-32' -> ('v4:2x2x4', 32.0); 'v5e:4x4' passes through."""
    if ":" in spec:
        gen = spec.split(":")[0]
        return spec, _TPU.get(gen, (1, 16.0, 2))[1]
    gen, _, n = spec.partition("-")
    if gen not in _TPU or not n.isdigit():
        raise ValueError(f"--topology {spec!r}: use <generation>-<size> with generation in {sorted(_TPU)} "
                         "(e.g. v5e-16) or an explicit name like v5e:4x4")
    per, hbm, ndim = _TPU[gen]
    chips = int(n) // per
    if chips < 1:
        raise ValueError(f"--topology {spec!r}: too small")
    dims = [1] * ndim
    i = 0
    while chips > 1:  # grow the torus as evenly as possible
        if chips % 2:
            raise ValueError(f"--topology {spec!r}: chip count must be a power of two")
        dims[i % ndim] *= 2
        chips //= 2
        i += 1
    return f"{gen}:" + "x".join(str(d) for d in sorted(dims)), hbm


def _compile_only(config, task, tx, schedule):
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from gsv_jax.sharding import MESH_AXES
    from gsv_jax.train.mesh import resolve_mesh_shape
    from gsv_jax.train.state import count_params, state_shardings, with_shardings
    from gsv_jax.train.step import batch_shardings, compiled_report, jit_step, make_step_fn

    hbm = FLAGS.hbm_gib or None
    if FLAGS.topology:
        try:
            from jax.experimental import topologies

            name, default_hbm = topology_name(FLAGS.topology)
            for k, v in {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_HOSTNAMES": "localhost"}.items():
                os.environ.setdefault(k, v)
            devices = list(topologies.get_topology_desc(platform="tpu", topology_name=name).devices)
            hbm = hbm or default_hbm
            target = f"{FLAGS.topology} ({name}, {len(devices)} chips, {devices[0].device_kind})"
        except Exception as e:  # noqa: BLE001
            raise SystemExit(
                f"--topology {FLAGS.topology}: could not get the TPU topology description ({type(e).__name__}: {e}).\n"
                "It needs the libtpu package (`pip install libtpu`, a version matching your jax). Without it, "
                "use --fake-devices N to compile the same sharded step for N fake CPU devices.")
    else:
        devices = jax.devices()
        target = f"{len(devices)} {devices[0].platform} device(s)"
    shape = resolve_mesh_shape({a: int(config.mesh[a]) for a in MESH_AXES}, len(devices))
    mesh = Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES)
    rng = jax.random.PRNGKey(0)
    abstract, shardings = state_shardings(task, tx, mesh, rng)
    per_update = config.train.batch_size * config.train.accum_steps
    tx_len = FLAGS.tx or max(config.data.x_buckets)
    ty_len = FLAGS.ty or max(config.data.y_buckets)
    spec = task.batch_spec(per_update, tx_len, ty_len)
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, schedule, accum_steps=config.train.accum_steps,
                                 accum_reduce=config.train.accum_reduce, grad_clip=config.train.grad_clip,
                                 remat=config.train.get("remat", "none")),
                    shardings, b_sh, mesh)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    compiled = step.lower(with_shardings(abstract, shardings), with_shardings(spec, b_sh),
                          jax.ShapeDtypeStruct((2,), np.uint32, sharding=rep)).compile()
    report = compiled_report(compiled)
    report.update(target=target, mesh=dict(zip(MESH_AXES, shape)), params=count_params(abstract.params),
                  batch=per_update, tx=tx_len, ty=ty_len, compute_dtype=str(task.dims.dtype))
    if hbm and "peak_estimate_bytes" in report:
        report["device_memory_gib"] = hbm
        report["fits"] = report["peak_estimate_bytes"] <= hbm * 2**30
    print(json.dumps(report, indent=1))
    return report


def main(argv):
    extra_args = list(argv[1:])  # S2: `--init-from G.pth D.pth` leaves D.pth as a positional argument
    del argv
    import jax

    # -------------------------------------------------------------------------------------------
    # 2. set-up
    from absl import logging as absl_logging

    from gsv_jax.train.mesh import maybe_initialize_distributed

    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file at INFO
    if not FLAGS.compile_only:
        maybe_initialize_distributed()
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/s1_v2.py")
    if config.get("train", {}).get("task", "s1") == "s2":  # SoVITS GAN training (gsv_jax/train/s2_task.py)
        if not FLAGS.workdir:
            raise app.UsageError("--workdir is required (the run folder; training resumes from it)")
        from gsv_jax.train.s2_task import run_training

        init = [p for p in (FLAGS.init_from or "").split(",") if p] + extra_args
        run_training(config, FLAGS.workdir, init, stop_after=FLAGS.stop_after or None)
        return
    if extra_args:
        raise app.UsageError(f"unexpected arguments {extra_args}")
    from gsv_jax.train.optim import make_optimizer
    from gsv_jax.train.s1_task import S1Task, make_s1_data

    task = S1Task.from_config(config)
    tx, schedule = make_optimizer(config.optim)

    # -------------------------------------------------------------------------------------------
    # 3. ahead-of-time compile only
    if FLAGS.compile_only:
        _compile_only(config, task, tx, schedule)
        return
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (the run folder; training resumes from it)")

    # -------------------------------------------------------------------------------------------
    # 4. data and initial weights
    from gsv_jax.train.loop import LoopConfig, run
    from gsv_jax.train.mesh import mesh_from_config

    mesh = mesh_from_config(config)
    data = make_s1_data(config)
    init_params = None
    if FLAGS.init_from:
        from gsv_jax.convert.s1 import read_s1_checkpoint

        _, dims, init_params, info = read_s1_checkpoint(FLAGS.init_from)
        want = task.dims
        for f in ("vocab_size", "phoneme_vocab_size", "dim", "heads", "n_layer"):
            if getattr(dims, f) != getattr(want, f):
                raise app.UsageError(
                    f"--init-from {FLAGS.init_from}: {f}={getattr(dims, f)} but the config has {getattr(want, f)}; "
                    "use the matching preset (configs/s1_v1.py for v1 checkpoints, configs/s1_v2.py otherwise)")
        if jax.process_index() == 0:
            print(f"fine-tuning from {FLAGS.init_from} ({info})")

    # -------------------------------------------------------------------------------------------
    # 5. the loop
    cfg = LoopConfig.from_config(config.train)
    if jax.process_index() == 0:
        print(f"mesh {dict(mesh.shape)}; {data.batches_per_epoch} batches per epoch; "
              f"padded shapes (Tx, Ty): {sorted(data.shapes())}")
    res = run(task, tx, schedule, data, FLAGS.workdir, mesh, cfg, init_params=init_params,
              stop_after=FLAGS.stop_after or None)

    # -------------------------------------------------------------------------------------------
    # 6. export (the original's .ckpt, loadable by the original WebUI and by gsv_jax.load_s1)
    if jax.process_index() == 0 and not res.stopped_by_signal:
        step = int(jax.device_get(res.state.step))
        path = FLAGS.export or os.path.join(FLAGS.workdir, "export", f"s1-step{step}.ckpt")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        task.export_original(res.state.params, path, config, info=f"GPT-e{step}")
        print(f"exported {path}")


if __name__ == "__main__":
    if any(a in ("-h", "--help", "--helpshort") for a in sys.argv[1:]):  # absl would exit 1 after the help
        FLAGS(sys.argv[:1])
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    app.run(main)
