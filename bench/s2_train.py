"""S2 (SoVITS v2) training speed: generator forward+backward and the full G+D step (JSON on stdout).

    python bench/s2_train.py [--batch 4] [--frames 200] [--repeats 3] [--config s2_v2]

Real v2 architecture, random weights (speed does not depend on values), batch 4, segment 20480
samples (32 frames); utterances of ``--frames`` spectrogram frames (200 = 4 s). fp32 on the
default backend. The original on the same 2-core CPU (PyTorch, fp32): 11.7 s per generator step
and 18.6 s per full step.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
ORIGINAL = {"generator_step_seconds": 11.7, "full_step_seconds": 18.6}


def load_config(name_or_path):
    from gsv_jax import configs

    return configs.load(name_or_path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="s2_v2", help="a preset name (gsv_jax/configs/) or a config file")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import sys

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
           "backend": jax.default_backend(), "devices": jax.device_count(),
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
        res[f"{name}_speedup_vs_original"] = round(ORIGINAL[f"{name}_seconds"] / float(np.median(times)), 2)
        print(json.dumps({name: res[f"{name}_seconds"]}), file=sys.stderr, flush=True)
    res["original_seconds"] = ORIGINAL
    res["load_average"] = [round(x, 2) for x in __import__("os").getloadavg()]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
