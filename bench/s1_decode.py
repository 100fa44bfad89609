"""S1 decoding speed (prints JSON): v2 size, random weights, 100 phonemes + 150 prompt tokens,
200 new tokens (top_k 15, repetition penalty 1.35, EOS banned so all 200 are made).

    python bench/s1_decode.py [--original /path/to/GPT-SoVITS --rounds 3] [--precision fp32,bf16,int8]
                              [--quality] [--long 1500] [--no-batch8] [--device cpu]

Per precision: compile time, prefill, decode tokens/s at batch 1 (and including prefill, which is
what the original's figure counts), the aggregate at batch 8.  ``--quality``: reduced precision
against fp32 (teacher-forced top-1 agreement and max logit error of ``forward_logits`` on a batch
of 4 x (100 phonemes, 300 tokens); greedy tokens until the first difference).  ``--long N``: the
tokens/s curve of one batch-1 decode of N tokens (per 100 positions, timed at chunk ends).
``--original``: the original's ``infer_panel`` on the same work (``bench/original.py``), in
separate processes interleaved with ours, ``--rounds`` times; the ratio compares tokens/s
including prefill on both sides.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import itertools

import compare
import numpy as np


def inputs(batch, tx, tp, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 732, size=(batch, tx)).astype(np.int32),
            rng.normal(size=(batch, 1024, tx)).astype(np.float32),
            rng.integers(0, 1024, size=(batch, tp)).astype(np.int32))


def run(s1, batch, tx, tp, new, seed=0, top_k=15, on_chunk=None):
    x, bert, prompt = inputs(batch, tx, tp, seed)
    t0 = time.perf_counter()
    res = s1.decoder.generate(s1.params, x, [tx] * batch, bert, prompt, [tp] * batch, top_k=top_k, top_p=1.0,
                              temperature=1.0, repetition_penalty=1.35, max_new_tokens=new,
                              seeds=list(range(batch)), eos_ban_steps=new + 1, on_chunk=on_chunk)
    wall = time.perf_counter() - t0
    assert all(len(r) == new for r in res.tokens), [len(r) for r in res.tokens]
    return wall, res


def speed(s1, args):
    out = {}
    first, _ = run(s1, 1, args.phonemes, args.prompt, args.new)
    wall, res = run(s1, 1, args.phonemes, args.prompt, args.new, seed=1)
    t = res.timings
    out.update(b1_compile_s=round(first - wall, 2), b1_prefill_s=round(t["prefill_s"], 4),
               b1_decode_s=round(t["decode_s"], 3), b1_tokens_per_s=round(args.new / t["decode_s"], 2),
               b1_total_s=round(wall, 3), b1_tokens_per_s_incl_prefill=round(args.new / wall, 2),
               b1_tokens_per_cpu_s=round(args.new / t["decode_cpu_s"], 2))
    if not args.no_batch8:
        first8, _ = run(s1, 8, args.phonemes, args.prompt, args.new)
        wall8, r8 = run(s1, 8, args.phonemes, args.prompt, args.new, seed=1)
        out.update(b8_compile_s=round(first8 - wall8, 2), b8_prefill_s=round(r8.timings["prefill_s"], 4),
                   b8_decode_s=round(r8.timings["decode_s"], 3),
                   b8_aggregate_tokens_per_s=round(8 * args.new / r8.timings["decode_s"], 2))
        out["b8_over_b1"] = round(out["b8_aggregate_tokens_per_s"] / out["b1_tokens_per_s"], 2)
    return out


def quality(ref, s1, args):
    """Reduced precision ``s1`` against the fp32 model ``ref`` on the same weights."""
    rng = np.random.default_rng(7)
    b, tx, ty = 4, args.phonemes, 300
    x, bert, _ = inputs(b, tx, 1, 7)
    y = rng.integers(0, 1024, size=(b, ty)).astype(np.int32)
    lens = (np.full(b, tx), np.full(b, ty))
    want = ref.forward_logits(x, lens[0], y, lens[1], bert)
    got = s1.forward_logits(x, lens[0], y, lens[1], bert)
    g_ref = run(ref, 1, args.phonemes, args.prompt, args.new, seed=3, top_k=1)[1].tokens[0]
    g_got = run(s1, 1, args.phonemes, args.prompt, args.new, seed=3, top_k=1)[1].tokens[0]
    diff = np.nonzero(g_ref != g_got)[0]
    return {"teacher_forced_top1_agreement": round(float((got.argmax(-1) == want.argmax(-1)).mean()), 5),
            "positions": int(want.shape[0] * want.shape[1]),
            "max_abs_logit_error": round(float(np.abs(got - want).max()), 5),
            "max_abs_fp32_logit": round(float(np.abs(want).max()), 3),
            "greedy_tokens_until_first_difference": int(diff[0]) if len(diff) else f">= {len(g_ref)} (none)"}


def long_curve(s1, args):
    """Tokens/s per 100 positions of one batch-1 decode of ``args.long`` tokens (after a warm-up
    run that compiles every attention window)."""
    marks = []

    def on_chunk(tokens, n_out, done):
        marks.append((int(n_out[0]), time.perf_counter()))
        return False

    run(s1, 1, args.phonemes, args.prompt, args.long)  # compiles every window
    t0 = time.perf_counter()
    run(s1, 1, args.phonemes, args.prompt, args.long, on_chunk=on_chunk)
    marks = [(0, t0)] + marks
    curve, edges = {}, list(range(0, args.long + 1, 100))
    for lo, hi in itertools.pairwise(edges):
        pts = [m for m in marks if lo <= m[0] <= hi]
        if len(pts) >= 2:
            curve[f"{lo}-{hi}"] = round((pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1]), 2)

    def rate(lo, hi):
        pts = [m for m in marks if lo <= m[0] <= hi]
        return (pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1])

    at_200, late = rate(100, 300), rate(1000, 1500)
    return {"tokens_per_s_per_100": curve, "at_100_300": round(at_200, 2), "at_1000_1500": round(late, 2),
            "late_over_200": round(late / at_200, 3),
            "note": "the loop returns to the host every 16-token chunk here (on_chunk) to time it"}


def ours(args):
    dev = compare.use_device(args.device)
    import jax

    from gsv_jax.configs import s1_v2
    from gsv_jax.inference.s1 import S1
    from gsv_jax.models import s1 as m

    cfg = s1_v2.get_config()
    params = m.init_params(m.S1Dims.from_config(cfg.model), 0)
    out = {"bench": "s1_decode", "model": "v2 (24 layers, 512 wide, 16 heads), random weights",
           "phonemes": args.phonemes, "prompt_tokens": args.prompt, "new_tokens": args.new, "top_k": 15,
           "repetition_penalty": 1.35, "device": dev, "jax": jax.__version__, "cpu_count": os.cpu_count(),
           "machine": platform.machine(), "load_average_start": compare.load_average()}
    fp32 = None
    for p in args.precision.split(","):
        s1 = S1(cfg, params, precision=p)
        out[p] = speed(s1, args)
        out[p]["dequant_in_step"] = s1.decoder.dequant_in_step
        if p == "fp32":
            fp32 = s1
        elif args.quality:
            fp32 = fp32 or S1(cfg, params)
            out[p]["quality_vs_fp32"] = quality(fp32, s1, args)
        print(json.dumps({p: out[p]}), file=sys.stderr, flush=True)
    if args.long:
        out["long"] = long_curve(fp32 or S1(cfg, params), args)
    out["load_average_end"] = compare.load_average()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--phonemes", type=int, default=100)
    ap.add_argument("--prompt", type=int, default=150)
    ap.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, int8")
    ap.add_argument("--quality", action="store_true", help="reduced precision vs fp32 (agreement, errors)")
    ap.add_argument("--long", type=int, default=0, help="also the tokens/s curve of one decode this long")
    ap.add_argument("--no-batch8", action="store_true")
    ap.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--original", help="a GPT-SoVITS checkout: time its infer_panel on the same work")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --original")
    ap.add_argument("--repeats", type=int, default=2, help="original's timed calls per round")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from gsv_jax.inference.s1_decoder import check_precision

    for p in args.precision.split(","):
        check_precision(p)
    if args.child or not args.original:
        res = ours(args)
        print(json.dumps(res) if args.child else json.dumps(res, indent=1))
        return
    child = [sys.executable, os.path.abspath(__file__), "--child", "--new", str(args.new), "--phonemes",
             str(args.phonemes), "--prompt", str(args.prompt), "--precision", args.precision, "--no-batch8"]
    if args.device:
        child += ["--device", args.device]
    raw = compare.interleave(child, compare.original_cmd(args.original, "s1", args.repeats), args.rounds)
    theirs = [r["s1"]["tokens_per_second"] for r in raw["original"]]
    report = {"bench": "s1_decode", "work": "batch 1, 200 new tokens after 100 phonemes + 150 prompt, incl. prefill",
              "unit": "tokens/s (higher is better)", "device": raw["ours"][0]["device"],
              "load_average_before_each_run": raw["load_average_before"],
              "load_average_after": raw["load_average_after"],
              "original_torch_threads": raw["original"][0]["threads"]}
    for p in args.precision.split(","):
        mine = [r[p]["b1_tokens_per_s_incl_prefill"] for r in raw["ours"]]
        report[p] = compare.summary(mine, theirs, higher_is_better=True)
        report[p]["ours_decode_only"] = compare.stats([r[p]["b1_tokens_per_s"] for r in raw["ours"]])
    report["original_seconds_all"] = [r["s1"]["seconds_all"] for r in raw["original"]]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
