"""S2 (SoVITS v2) training speed: generator forward+backward and the full G+D step (JSON on stdout).

    python bench/s2_train.py [--batch 4] [--frames 200] [--repeats 3] [--config s2_v2] [--device cpu]
                             [--original /path/to/GPT-SoVITS --rounds 2]

Real v2 architecture, random weights (speed does not depend on values), batch 4, segment 20480
samples (32 frames); utterances of ``--frames`` spectrogram frames (200 = 4 s). fp32.
``--original``: the body of the original's ``s2_train.py`` loop on the same shapes
(``bench/original.py``), in separate processes interleaved with ours; ours / original / ratio.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def load_config(name_or_path):
    from gsv_jax import configs

    return configs.load(name_or_path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="s2_v2", help="a preset name (gsv_jax/configs/) or a config file")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--original", help="a GPT-SoVITS checkout: time its training step on the same work")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds with --original")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import compare

    if args.original and not args.child:
        if (args.batch, args.frames, pathlib.Path(args.config).name) != (4, 200, "s2_v2"):
            raise SystemExit("--original times the original at its fixed work: s2_v2, batch 4, 200 frames")
        child = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
        if args.device:
            child += ["--device", args.device]
        raw = compare.interleave(child, compare.original_cmd(args.original, "s2_train", args.repeats), args.rounds)
        report = {"bench": "s2_train", "work": "v2, batch 4, 200 frames, segment 20480, fp32",
                  "unit": "seconds per step (lower is better; ratio = original / ours)",
                  "device": raw["ours"][0]["device"]}
        for name in ("generator_step", "full_step"):
            report[name] = compare.summary([r[f"{name}_seconds"] for r in raw["ours"]],
                                           [r["s2_train"][name]["seconds"] for r in raw["original"]],
                                           higher_is_better=False)
        report.update(load_average_before_each_run=raw["load_average_before"],
                      load_average_after=raw["load_average_after"])
        print(json.dumps(report, indent=1))
        return
    device = compare.use_device(args.device)
    sys.path.insert(0, str(REPO))
    from gsv_jax.models.s2.synthesizer import S2ModelConfig
    from gsv_jax.train.s2_task import S2Task

    cfg = load_config(args.config)
    task = S2Task(S2ModelConfig.from_mapping(cfg.model), dropout=True)
    from flax.linen import meta

    from gsv_jax.inference.selftest import random_like

    # host-side random weights of the right shapes (a jitted Flax init of the full model compiles for minutes)
    shapes = jax.eval_shape(lambda r: meta.unbox(task.init_params(r)), jax.random.PRNGKey(0))
    params = jax.tree.map(jnp.asarray, random_like(shapes, 0))
    opt = jax.jit(task.tx.init)(params)
    B, T, c = args.batch, args.frames, task.config
    rs = np.random.RandomState(0)
    lens = np.linspace(T, int(T * 0.8), B).astype(np.int32)
    batch = {"ssl": rs.randn(B, T, c.ssl_dim).astype(np.float16),
             "wav": (0.1 * rs.randn(B, T * c.hop)).astype(np.float32), "wav_lens": lens * c.hop,
             "spec_lens": lens, "text": rs.randint(1, c.n_symbols, (B, 64)).astype(np.int32),
             "text_lens": np.full(B, 60, np.int32), "epoch": np.ones(B, np.int32)}
    rng = jax.random.PRNGKey(1)

    def g_only(pg, pd, b, r):
        def loss(p):
            out = task.g_forward(p, b, r)
            return task.g_loss(out, pd)[0]

        return jax.value_and_grad(loss)(pg)

    g_step = jax.jit(g_only)
    full = jax.jit(lambda p, o, b, r: task.gan_update(p, o, b, r))
    res = {"config": pathlib.Path(args.config).name, "batch": B, "frames": T, "segment_samples": c.segment_size * c.hop,
           "backend": jax.default_backend(), "device": device, "devices": jax.device_count(),
           "params_g": int(sum(x.size for x in jax.tree.leaves(params["g"]))),
           "params_d": int(sum(x.size for x in jax.tree.leaves(params["d"])))}
    for name, fn, call in (("generator_step", g_step, lambda: g_step(params["g"], params["d"], batch, rng)),
                           ("full_step", full, lambda: full(params, opt, batch, rng))):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        res[f"{name}_compile_plus_first_seconds"] = round(time.perf_counter() - t0, 2)
        times, cpus = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(call())
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        res[f"{name}_seconds"] = round(float(np.median(times)), 3)
        res[f"{name}_cpu_seconds"] = round(float(np.median(cpus)), 3)
        res[f"{name}_seconds_all"] = [round(t, 3) for t in times]
        print(json.dumps({name: res[f"{name}_seconds"]}), file=sys.stderr, flush=True)
    res["load_average"] = compare.load_average()
    print(json.dumps(res) if args.child else json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
