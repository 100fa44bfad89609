"""Benchmark SoVITS v3/v4 synthesis: official architecture (DiT 1024 x 22, BigVGAN / the 48 kHz
vocoder), random weights, a target of ``--seconds`` of audio from a 3 s reference prompt, the
original's sequential chunking. Prints JSON: first call (compile) and steady-state seconds, split
into encoder + CFM and vocoder, and the real-time factor.

    python bench/v3v4_decode.py --version v4 [--steps 8] [--seconds 8] [--repeats 2]
                                [--original /path/to/GPT-SoVITS --rounds 2] [--device cpu]

``--original``: the original's same work (``bench/original_v3v4.py``: ``decode_encp``, ``CFM.inference``
per chunk, the vocoder) in separate processes interleaved with ours; prints ours / original / ratio
of the median steady-state seconds and the compile time (our first call minus steady) separately.
"""
import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", choices=["v3", "v4"], default="v4")
    ap.add_argument("--steps", type=int, default=None, help="sample steps (default: 32 for v3, 8 for v4)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--phones", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--original", help="a GPT-SoVITS checkout: time its v3/v4 synthesis on the same work")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds with --original")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import compare

    if args.original and not args.child:
        same = ["--version", args.version, "--seconds", str(args.seconds), "--phones", str(args.phones),
                "--repeats", str(args.repeats)] + (["--steps", str(args.steps)] if args.steps else [])
        ours = [sys.executable, __file__, "--child", *same] + (["--device", args.device] if args.device else [])
        theirs = [sys.executable, str(pathlib.Path(__file__).with_name("original_v3v4.py")), "--repo", args.original,
                  *same]
        raw = compare.interleave(ours, theirs, args.rounds)
        o = raw["ours"][0]
        report = {"bench": "v3v4_decode", "version": args.version, "sample_steps": o["sample_steps"],
                  "work": f"{o['audio_seconds']} s of audio from a 3 s prompt, encoder + CFM + vocoder, fp32",
                  "unit": "seconds, steady state (lower is better; ratio = original / ours)", "device": o["device"],
                  **compare.summary([r["steady_s"] for r in raw["ours"]], [r["steady_s"] for r in raw["original"]],
                                    higher_is_better=False),
                  "ours_compile_s": [round(r["first_call_s"] - r["steady_s"], 2) for r in raw["ours"]],
                  "ours_rtf": [r["rtf"] for r in raw["ours"]], "original_rtf": [r["rtf"] for r in raw["original"]],
                  "original_first_call_s": [r.get("first_call_s") for r in raw["original"]],
                  "load_average_before_each_run": raw["load_average_before"],
                  "load_average_after": raw["load_average_after"]}
        print(json.dumps(report, indent=1))
        return
    device = compare.use_device(args.device)

    from gsv_jax.audio import norm_spec
    from gsv_jax.inference.v3 import new_s2_v3, new_vocoder

    s2, voc = new_s2_v3(args.version), new_vocoder(args.version)
    steps = args.steps or s2.default_steps
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1024, (1, int(args.seconds * 25)))
    phones = rng.integers(0, 732, (1, args.phones))
    ref_codes = rng.integers(0, 1024, (1, int(3.3 * 25)))
    ref_phones = rng.integers(0, 732, (1, 30))
    spec = np.abs(rng.standard_normal((1, 1025, 150))).astype(np.float32)
    mel_fps = 24000 / 256 if args.version == "v3" else 100
    ref_mel = np.asarray(norm_spec(rng.standard_normal((1, 100, int(3 * mel_fps))).astype(np.float32) - 6))

    def run():
        t0 = time.perf_counter()
        wav, mel = s2.synthesize_chunked(codes, phones, ref_codes, ref_phones, spec, ref_mel, vocoder=voc,
                                         sample_steps=steps, seed=0, return_mel=True)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        voc(mel)
        return wav, total, time.perf_counter() - t1

    wav, first, _ = run()
    times = [run() for _ in range(args.repeats)]
    audio_s = wav.shape[0] / s2.sampling_rate
    total = min(t[1] for t in times)
    vocoder_s = min(t[2] for t in times)
    print(json.dumps({"version": args.version, "device": device, "sample_steps": steps, "audio_seconds": round(audio_s, 2),
                      "first_call_s": round(first, 2), "steady_s": round(total, 2),
                      "vocoder_s": round(vocoder_s, 2), "cfm_and_encoder_s": round(total - vocoder_s, 2),
                      "rtf": round(total / audio_s, 3)}))


if __name__ == "__main__":
    main()
