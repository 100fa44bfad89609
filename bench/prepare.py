#!/usr/bin/env python
"""Dataset-preparation throughput per stage with full-size random-weight models; prints JSON.

    python bench/prepare.py [--clips 12] [--min-sec 3] [--max-sec 8]

Models: chinese-roberta-wwm-ext-large sized BERT (24 x 1024), chinese-hubert-base sized HuBERT
(12 x 768) and the v2 S2 quantizer, all random (init_params of our model code, no downloads).
Corpus: synthetic vowel-like clips (data/demo/make_demo.py's synthesiser) with 20-character
Mandarin labels. Each stage runs twice over the corpus into fresh folders: the first run
includes XLA compilation for the length buckets ("cold"), the second is the steady state
("warm") that a long preparation sees. Reported per stage: clips/s and audio-hours per hour of
wall time; ``bound_by`` names the slowest warm stage.
"""
import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

SENTENCES = [
    "今天天气很好我们一起去公园散步吧，",
    "这是一个用来测试数据准备速度的句子。",
    "春天来了花儿都开了小鸟在树上唱歌！",
    "他每天早上六点起床然后去跑步锻炼。",
]


def make_corpus(folder: pathlib.Path, n: int, lo: float, hi: float, seed: int = 0) -> tuple[pathlib.Path, float]:
    import soundfile as sf

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data" / "demo"))
    from make_demo import make_clip

    rng = np.random.default_rng(seed)
    lines, total = [], 0.0
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        target = rng.uniform(lo, hi)
        vowels = "".join(rng.choice(list("aeiou"), size=max(2, int(target / 0.21))))
        y = make_clip(32000, vowels, rng)
        sf.write(folder / "wavs" / f"b{i:04d}.wav", y, 32000, subtype="PCM_16")
        total += len(y) / 32000
        lines.append(f"wavs/b{i:04d}.wav|bench|ZH|{SENTENCES[i % len(SENTENCES)]}")
    lst = folder / "bench.list"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lst, total


def build_models(vocab_dir: pathlib.Path, stages=("text", "audio", "semantic")):
    import jax
    from transformers import BertTokenizer

    from gsv_jax import text
    from gsv_jax.data.prepare import Models
    from gsv_jax.inference.features import BertFeatures, HubertFeatures
    from gsv_jax.inference.s2 import S2
    from gsv_jax.models import bert as bert_lib
    from gsv_jax.models import hubert as hubert_lib
    from gsv_jax.models.s2.synthesizer import S2ModelConfig, init_params

    chars = sorted(set("".join(SENTENCES)) | set(",.!?…-"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    (vocab_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(vocab_dir / "vocab.txt"))
    t0 = time.perf_counter()
    models = Models(clean_text=text.clean_text, to_ids=text.cleaned_text_to_sequence)
    sizes = {}
    if "text" in stages:
        bcfg = bert_lib.bert_config()
        bert = BertFeatures(bcfg, bert_lib.init_params(bcfg), tok)
        models.bert, sizes["bert_params"] = bert.phone_features, _count(bert.params)
    # the audio stage's output feeds the semantic stage, so both need HuBERT
    hcfg = hubert_lib.hubert_config()
    hubert = HubertFeatures(hcfg, hubert_lib.init_params(hcfg))
    models.hubert, models.hubert_batch, sizes["hubert_params"] = hubert, hubert.features, _count(hubert.params)
    scfg = S2ModelConfig()
    s2 = S2(scfg, init_params(scfg, jax.random.PRNGKey(0), with_enc_q=False))
    models.extract_latent, sizes["s2_params"] = s2.extract_latent, _count(s2.params)
    init_s = time.perf_counter() - t0
    return models, init_s, sizes


def _count(tree) -> int:
    import jax

    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(tree)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--min-sec", type=float, default=3.0)
    ap.add_argument("--max-sec", type=float, default=8.0)
    ap.add_argument("--stages", default="text,audio,semantic", help="comma-separated subset to time")
    ap.add_argument("--batch-size", type=int, default=1, help="clips per HuBERT call")
    ap.add_argument("--compare-batch", type=int, default=0, help="also time the audio stage with this batch size")
    args = ap.parse_args()

    from gsv_jax.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        lst, audio_s = make_corpus(tmp / "corpus", args.clips, args.min_sec, args.max_sec)
        stages = [x for x in args.stages.split(",") if x]
        models, init_s, sizes = build_models(tmp, stages)
        # warm the text frontend's dictionaries outside the timings (a one-off per process)
        models.clean_text("你好。", "zh", "v2")
        results = {}
        for run in ("cold", "warm"):
            out = tmp / f"out_{run}"
            run_stages = [x for x in ("text", "audio", "semantic") if x in stages or (x == "audio" and "semantic" in stages)]
            for stage in run_stages + (["pack"] if len(run_stages) == 3 else []):
                t0 = time.perf_counter()
                s = prepare(lst, out, lambda _s: models, stages=[stage], progress=False, batch_size=args.batch_size)
                wall = time.perf_counter() - t0
                st = s["stages"][stage]
                n = st["new"] if stage != "pack" else args.clips
                assert not st["failed"], st["failed"]
                results.setdefault(stage, {})[run] = {
                    "seconds": round(wall, 3),
                    "clips_per_s": round(n / wall, 3),
                    "audio_hours_per_hour": round(audio_s / wall, 2),
                }
        if args.compare_batch > 1:
            for run in ("cold", "warm"):
                t0 = time.perf_counter()
                s = prepare(lst, tmp / f"out_b{run}", lambda _s: models, stages=["audio"], progress=False,
                            batch_size=args.compare_batch)
                wall = time.perf_counter() - t0
                assert not s["stages"]["audio"]["failed"]
                results.setdefault(f"audio_batch{args.compare_batch}", {})[run] = {
                    "seconds": round(wall, 3), "clips_per_s": round(args.clips / wall, 3),
                    "audio_hours_per_hour": round(audio_s / wall, 2)}
        warm = {k: v["warm"]["clips_per_s"] for k, v in results.items() if k in ("text", "audio", "semantic")}
        bound = min(warm, key=warm.get)
        total_warm = sum(v["warm"]["seconds"] for k, v in results.items() if not k.startswith("audio_batch"))
        report = {
            "bench": "prepare",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_1min_at_end": round(os.getloadavg()[0], 1)},
            "batch_size": args.batch_size,
            "corpus": {"clips": args.clips, "audio_seconds": round(audio_s, 2),
                       "mean_clip_seconds": round(audio_s / args.clips, 2), "text": "20-char Mandarin lines"},
            "models": {**sizes, "init_seconds": round(init_s, 1), "weights": "random, full size"},
            "stages": results,
            "pipeline_warm": {"clips_per_s": round(args.clips / total_warm, 3),
                              "audio_hours_per_hour": round(audio_s / total_warm, 2)},
            "bound_by": bound,
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
