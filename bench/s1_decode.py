"""S1 decoding speed (prints JSON): v2 size, random weights, 100 phonemes + 150 prompt tokens,
200 new tokens (top_k 15, repetition penalty 1.35, EOS banned so all 200 are made).

    python bench/s1_decode.py [--batch8] [--new 200]

Reports compile time (first call minus a steady call), prefill time and decode tokens/s at
batch 1, and the aggregate tokens/s at batch 8.  The original PyTorch code: 16.8 tokens/s at
batch 1 on a 2-core CPU (fp32).
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.configs import s1_v2
from gsv_jax.inference.s1_decoder import S1Decoder
from gsv_jax.models import s1 as m


def run(dec, params, batch, tx, tp, new, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 732, size=(batch, tx)).astype(np.int32)
    bert = rng.normal(size=(batch, 1024, tx)).astype(np.float32)
    prompt = rng.integers(0, 1024, size=(batch, tp)).astype(np.int32)
    t0 = time.perf_counter()
    res = dec.generate(params, x, [tx] * batch, bert, prompt, [tp] * batch, top_k=15, top_p=1.0, temperature=1.0,
                       repetition_penalty=1.35, max_new_tokens=new, seeds=list(range(batch)), eos_ban_steps=new + 1)
    wall = time.perf_counter() - t0
    assert all(len(r) == new for r in res.tokens), [len(r) for r in res.tokens]
    return wall, res.timings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--phonemes", type=int, default=100)
    ap.add_argument("--prompt", type=int, default=150)
    ap.add_argument("--no-batch8", action="store_true")
    args = ap.parse_args()
    dims = m.S1Dims.from_config(s1_v2.get_config().model)
    params = jax.tree.map(jnp.asarray, m.init_params(dims, 0))
    dec = S1Decoder(dims)
    out = {"bench": "s1_decode", "model": "v2 (24 layers, 512 wide, 16 heads), random weights, fp32",
           "phonemes": args.phonemes, "prompt_tokens": args.prompt, "new_tokens": args.new,
           "top_k": 15, "repetition_penalty": 1.35, "backend": jax.default_backend(),
           "devices": len(jax.devices()), "cpu_count": os.cpu_count(), "machine": platform.machine()}
    first, _ = run(dec, params, 1, args.phonemes, args.prompt, args.new)
    wall, t = run(dec, params, 1, args.phonemes, args.prompt, args.new, seed=1)
    out.update({
        "b1_compile_s": round(first - wall, 2),
        "b1_prefill_s": round(t["prefill_s"], 4),
        "b1_decode_s": round(t["decode_s"], 3),
        "b1_tokens_per_s": round(args.new / t["decode_s"], 2),
        "b1_decode_cpu_s": round(t["decode_cpu_s"], 3),
        "b1_tokens_per_cpu_s": round(args.new / t["decode_cpu_s"], 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "b1_total_s": round(wall, 3),
        "speedup_vs_original_16.8": round(args.new / t["decode_s"] / 16.8, 2),
        "compiles": dict(dec.trace_counts),
    })
    if not args.no_batch8:
        first8, _ = run(dec, params, 8, args.phonemes, args.prompt, args.new)
        wall8, t8 = run(dec, params, 8, args.phonemes, args.prompt, args.new, seed=1)
        out.update({"b8_compile_s": round(first8 - wall8, 2), "b8_prefill_s": round(t8["prefill_s"], 4),
                    "b8_decode_s": round(t8["decode_s"], 3),
                    "b8_aggregate_tokens_per_s": round(8 * args.new / t8["decode_s"], 2),
                    "b8_decode_cpu_s": round(t8["decode_cpu_s"], 3),
                    "b8_aggregate_tokens_per_cpu_s": round(8 * args.new / t8["decode_cpu_s"], 2),
                    "load_average_1min_end": round(os.getloadavg()[0], 2)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
