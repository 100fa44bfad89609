"""Micro-benchmark of XLA CPU flags on HiFi-GAN-shaped 1-D convolutions (channels-last).

Each flag setting runs in a fresh subprocess (XLA_FLAGS is read once, when JAX initialises) and
reports the CPU time (process_time: user+sys of all threads) of the steady-state jitted call,
best and median of --repeats, plus max |diff| against the default setting.  Prints JSON.

    python bench/xla_flags.py [--kind conv|matvec] [--scale 8] [--repeats 3] [--only default,ynn_conv]

Fusion-type flags take lower-case names (e.g. ynn: individual_convolution,individual_dot; xnn/onednn:
dot,eltwise,reduce); a wrong name makes JAX abort at start-up with the flag help.  Measured on jaxlib
0.10.2 (2 shared cores, 2026-11-23): no setting gave >15% less CPU time on either kind, and all but
fast_math gave bit-identical outputs, so none is adopted.

--scale divides the generator's real lengths (8 s of 32 kHz audio: T = 256k at 16 channels).
"""
import argparse
import json
import os
import subprocess
import sys

SETTINGS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "ynn_conv": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
    "ynn_conv_dot": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution,individual_dot",
    "xnn_dot_eltwise": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise",
    "xnn_graph_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "onednn_dot_eltwise": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "vec512": "--xla_cpu_prefer_vector_width=512",
}

# (channels, length at 8 s) of the v2 generator stages after each upsampling (hop 10*8*2*2*2).
STAGES = [(256, 4000), (128, 32000), (64, 64000), (32, 128000), (16, 256000)]


def child(scale, repeats):
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    xs, ws = [], []
    for c, t in STAGES:
        xs.append(jnp.asarray(rng.standard_normal((1, max(t // scale, 64), c)), jnp.float32))
        ws.append([jnp.asarray(rng.standard_normal((k, c, c)) / np.sqrt(k * c), jnp.float32)
                   for k in (3, 7, 11)])

    def stage(x, w3):
        # one MRF block: kernels 3/7/11, dilations 1/3/5 with leaky relu + residual, summed
        out = 0.0
        for w in w3:
            h = x
            for d in (1, 3, 5):
                k = w.shape[0]
                y = jax.lax.conv_general_dilated(
                    jax.nn.leaky_relu(h, 0.1), w, (1,), [((k - 1) * d // 2,) * 2], rhs_dilation=(d,),
                    dimension_numbers=("NWC", "WIO", "NWC"))
                h = h + y
            out = out + h
        return out / 3.0

    f = jax.jit(lambda xs, ws: [stage(x, w) for x, w in zip(xs, ws)])
    if os.environ.get("XB_KIND") == "matvec":
        # S1-decode-like step: 24 layers of batch-1 matvecs (qkv 512x1536, out 512x512, mlp 512x2048x512)
        ws = [[jnp.asarray(rng.standard_normal(s) / np.sqrt(s[0]), jnp.float32)
               for s in ((512, 1536), (512, 512), (512, 2048), (2048, 512))] for _ in range(24)]
        xs = jnp.asarray(rng.standard_normal((1, 512)), jnp.float32)

        def step(x, ws):
            for wq, wo, w1, w2 in ws:
                x = x + (x @ wq)[:, :512] @ wo
                x = x + jax.nn.relu(x @ w1) @ w2
                x = x / jnp.linalg.norm(x)
            return [x]

        def many(x, ws):  # 20 sequential steps, like token-by-token decoding
            return jax.lax.fori_loop(0, 20, lambda i, x: step(x, ws)[0], x)

        f = jax.jit(lambda xs, ws: [many(xs, ws)])
    t0 = time.perf_counter()
    ref = jax.block_until_ready(f(xs, ws))
    compile_s = time.perf_counter() - t0
    cpu = []
    for _ in range(repeats):
        c0 = time.process_time()
        jax.block_until_ready(f(xs, ws))
        cpu.append(time.process_time() - c0)
    np.save(os.environ["XB_OUT"], np.concatenate([np.asarray(r).ravel() for r in ref]))
    print(json.dumps({"compile_s": round(compile_s, 2), "cpu_best_s": round(min(cpu), 3),
                      "cpu_median_s": round(sorted(cpu)[len(cpu) // 2], 3)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--kind", default="conv", choices=["conv", "matvec"])
    args = ap.parse_args()
    if args.child:
        return child(args.scale, args.repeats)
    import numpy as np

    results, ref = {}, None
    names = args.only.split(",") if args.only else list(SETTINGS)
    for name in names:
        env = dict(os.environ, XLA_FLAGS=SETTINGS[name], XB_OUT=f"/tmp/xb_{os.getpid()}_{name}.npy",
                   XB_KIND=args.kind)
        p = subprocess.run([sys.executable, __file__, "--child", "--scale", str(args.scale),
                            "--repeats", str(args.repeats)], env=env, capture_output=True, text=True)
        if p.returncode:
            results[name] = {"flags": SETTINGS[name], "error": p.stderr.strip().splitlines()[-1][:300]}
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        out = np.load(env["XB_OUT"])
        os.remove(env["XB_OUT"])
        if ref is None:
            ref = out
        r["max_abs_diff_vs_first"] = float(np.max(np.abs(out - ref)))
        r["flags"] = SETTINGS[name]
        results[name] = r
        print(name, r, file=sys.stderr, flush=True)
    print(json.dumps({"kind": args.kind, "scale": args.scale, "repeats": args.repeats, "results": results}, indent=1))


if __name__ == "__main__":
    main()
