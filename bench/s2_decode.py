"""Benchmark S2 decode: real v2 architecture, random weights, 200 semantic tokens (8 s of audio),
100 phonemes, a 3 s reference. Prints JSON: compile (first call) time and steady-state RTF.

    python bench/s2_decode.py [--repeats 5] [--tokens 200] [--phones 100] [--ref-seconds 3] [--device cpu]
                              [--original /path/to/GPT-SoVITS --rounds 3]

``--original``: the original's ``SynthesizerTrn.decode`` on the same shapes (``bench/original.py``),
in separate processes interleaved with ours; prints ours / original / ratio of the median RTF.
"""
import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


import jax
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--phones", type=int, default=100)
    ap.add_argument("--ref-seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--original", help="a GPT-SoVITS checkout: time its SynthesizerTrn.decode on the same work")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --original")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import compare

    if args.original and not args.child:
        if (args.tokens, args.phones, args.ref_seconds, args.batch) != (200, 100, 3.0, 1):
            raise SystemExit("--original times the original at its fixed shapes: 200 tokens, 100 phones, 3 s, batch 1")
        child = [sys.executable, __file__, "--child", "--repeats", str(args.repeats)]
        if args.device:
            child += ["--device", args.device]
        raw = compare.interleave(child, compare.original_cmd(args.original, "s2_decode", args.repeats), args.rounds)
        report = {"bench": "s2_decode", "work": "decode 200 codes (8 s), 100 phonemes, 3 s reference, fp32",
                  "unit": "RTF (lower is better; ratio = original / ours)", "device": raw["ours"][0]["device"],
                  **compare.summary([r["rtf"] for r in raw["ours"]], [r["s2_decode"]["rtf"] for r in raw["original"]],
                                    higher_is_better=False),
                  "ours_seconds_all": [r["steady_seconds_all"] for r in raw["ours"]],
                  "original_seconds_all": [r["s2_decode"]["seconds_all"] for r in raw["original"]],
                  "load_average_before_each_run": raw["load_average_before"],
                  "load_average_after": raw["load_average_after"]}
        print(json.dumps(report, indent=1))
        return
    device = compare.use_device(args.device)

    from gsv_jax import configs
    from gsv_jax.inference.s2 import new_s2
    from gsv_jax.models.s2.synthesizer import S2ModelConfig

    cfg = S2ModelConfig.from_mapping(configs.load("s2_v2").model)

    t0 = time.perf_counter()
    s2 = new_s2(cfg, seed=0, with_enc_q=False, fast=True)
    _ = s2.device_params
    init_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    B = args.batch
    codes = rng.integers(0, 1024, (B, args.tokens))
    phones = rng.integers(0, cfg.n_symbols, (B, args.phones))
    frames = int(args.ref_seconds * 32000) // 640
    ref = np.abs(rng.standard_normal((1, 1025, frames))).astype(np.float32)

    t0 = time.perf_counter()
    wavs = s2.decode(codes, phones, [ref], noise_scale=0.5, seed=0)
    first_s = time.perf_counter() - t0
    audio_s = len(wavs[0]) / 32000.0

    times, cpus = [], []
    for i in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        wavs = s2.decode(codes, phones, [ref], noise_scale=0.5, seed=i)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    steady = float(np.median(times))
    cpu = float(np.median(cpus))
    print((json.dumps if args.child else lambda o: json.dumps(o, indent=1))({
        "bench": "s2_decode", "config": "s2_v2 (random weights)", "backend": jax.default_backend(), "device": device,
        "cpu_count": os.cpu_count(), "batch": B, "tokens": args.tokens, "phones": args.phones,
        "ref_frames": frames, "audio_seconds": audio_s, "init_seconds": round(init_s, 3),
        "first_call_seconds": round(first_s, 3), "compile_seconds": round(first_s - steady, 3),
        "steady_seconds_median": round(steady, 4), "steady_seconds_all": [round(t, 4) for t in times],
        "rtf": round(steady / (audio_s * B), 4),
        # the box is shared: CPU seconds per decode, and the RTF they imply on 2 otherwise idle cores
        "cpu_seconds_median": round(cpu, 3), "rtf_if_2_idle_cores": round(cpu / 2 / (audio_s * B), 4),
        "load_average": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
