"""Benchmark end-to-end synthesis: full-size models (S1 v2, S2 v2, chinese-roberta-large BERT,
chinese-hubert-base) with random weights, a 3-sentence Mandarin paragraph, a 5 s reference.

Prints JSON: wall time per stage (frontend, bert, hubert, s1, s2) and RTF for
  * cold         a fresh process, persistent compilation cache off (everything compiles);
  * cold_cached  a fresh process whose persistent compilation cache was filled by an earlier run;
  * warm         the second synthesis in the same process.
Random weights never emit EOS, so every segment is capped at --tokens new tokens (default 100,
i.e. 4 s of speech per segment); the original's pipeline on the same work is estimated from its
measured S1 speed (16.8 tokens/s) and S2 RTF (0.476) on this machine.

    python bench/e2e.py [--tokens 100]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARAGRAPH = ("今天的天气非常好，阳光明媚，我们决定去公园散步。"
             "公园里有很多人在跑步和放风筝，孩子们笑得很开心。"
             "傍晚的时候，我们坐在湖边，看着夕阳慢慢落下。")
ORIGINAL_S1_TOKENS_PER_S = 16.8
ORIGINAL_S2_RTF = 0.476


def build_tts(workdir: pathlib.Path, cache: bool):
    import jax
    import ml_collections

    from gsv_jax.api.features import BertFeatures, HubertFeatures
    from gsv_jax.api.s1 import S1
    from gsv_jax.models import bert as bert_lib
    from gsv_jax.models import hubert as hubert_lib
    from gsv_jax.models.s2.synthesizer import S2ModelConfig
    from gsv_jax.api.s2 import new_s2
    from gsv_jax.selftest import _tokenizer, _unbox, random_like
    from gsv_jax.synth import TTS

    import importlib.util

    spec = importlib.util.spec_from_file_location("s1_v2", REPO / "configs" / "s1_v2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s1_config = mod.get_config()
    s1 = S1.random(s1_config, 0)
    s2 = new_s2(S2ModelConfig(), seed=0, with_enc_q=False, fast=True)
    import jax.numpy as jnp

    bcfg = bert_lib.bert_config()
    ids = jnp.zeros((1, 4), jnp.int32)
    bshapes = jax.eval_shape(lambda: bert_lib.Bert(bcfg).init(jax.random.PRNGKey(0), ids, jnp.ones((1, 4), jnp.int32)))
    bert = BertFeatures(bcfg, random_like(_unbox(bshapes["params"]), 1), _tokenizer(workdir / "bert"))
    hcfg = hubert_lib.hubert_config()
    wav = jnp.zeros((1, 3200), jnp.float32)
    hshapes = jax.eval_shape(lambda: hubert_lib.Hubert(hcfg).init(jax.random.PRNGKey(0), wav, jnp.array([3200])))
    hubert = HubertFeatures(hcfg, random_like(_unbox(hshapes["params"]), 2))
    return TTS(s1, s2, bert, hubert, compilation_cache=str(workdir / "jax_cache") if cache else False)


def run_once(args) -> dict:
    """Inside a child process: build, synthesize twice, report both."""
    from gsv_jax.selftest import write_selftest_reference

    workdir = pathlib.Path(args.workdir)
    t0 = time.perf_counter()
    tts = build_tts(workdir, cache=args.cache)
    build = time.perf_counter() - t0
    ref = write_selftest_reference(workdir / "ref.wav", seconds=5.0)
    out = {"build_seconds": round(build, 2)}
    for name in ("first", "second"):
        t0 = time.perf_counter()
        wav, sr = tts.synthesize(PARAGRAPH, "zh", ref, "这是一段用来测试的参考音频。", "zh", cut="cut5",
                                 top_k=15, repetition_penalty=1.35, max_new_tokens=args.tokens, noise_scale=0.5,
                                 seed=0, batch_size=8)
        wall = time.perf_counter() - t0
        t = tts.last_timings
        out[name] = {"wall_seconds": round(wall, 2), "audio_seconds": round(len(wav) / sr, 2),
                     "rtf": round(wall / (len(wav) / sr), 4), "segments": t["segments"],
                     "stages": {k: round(t[k], 2) for k in ("frontend", "bert", "hubert", "s1", "s2")}}
    return out


def child(workdir, cache: bool, tokens: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--workdir", str(workdir), "--tokens", str(tokens)]
    if cache:
        cmd.append("--cache")
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100, help="new semantic tokens per segment")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cold = child(tmp / "a", cache=False, tokens=args.tokens)
        fill = child(tmp / "b", cache=True, tokens=args.tokens)
        cached = child(tmp / "b", cache=True, tokens=args.tokens)
    warm = cold["second"]
    audio = warm["audio_seconds"]
    segments = warm["segments"]
    tokens = segments * args.tokens
    original_wall = tokens / ORIGINAL_S1_TOKENS_PER_S + ORIGINAL_S2_RTF * audio
    report = {
        "paragraph_chars": len(PARAGRAPH), "segments": segments, "tokens_per_segment": args.tokens,
        "cold": cold["first"], "cold_cached": cached["first"], "cache_filling_run": fill["first"], "warm": warm,
        "cold_start_seconds": cold["first"]["wall_seconds"] + cold["build_seconds"],
        "cold_start_cached_seconds": cached["first"]["wall_seconds"] + cached["build_seconds"],
        "original_estimate": {"wall_seconds": round(original_wall, 2), "rtf": round(original_wall / audio, 4),
                              "basis": "S1 16.8 tokens/s + S2 RTF 0.476 (BERT/HuBERT not counted)"},
        "speedup_warm_vs_original": round(original_wall / warm["wall_seconds"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
