"""Benchmark the feature extractors against transformers' PyTorch models on this machine.

BERT phone features for a 60-character Mandarin sentence and HuBERT features for 10 s of audio,
full-size configs (chinese-roberta-wwm-ext-large, chinese-hubert-base) with random weights, fp32.
Prints one JSON object: steady-state seconds per call (median of --repeats, torch and JAX calls
interleaved so both see the same background load), wall and process CPU time, the speed-ups,
the one-off compile time separately, and the 1-minute load average around the timings. Needs
torch (test extra) for the comparison.

    python bench/features.py [--repeats 5] [--only bert|hubert]
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

SENTENCE = (
    "今天天气很好，我们一起去公园散步吧。春天来了，花儿都开了，小鸟在树上唱歌，"
    "孩子们在草地上奔跑，大家都很开心，真是太好了！"
)


def timed(fn, repeats):
    """Median wall-clock and median process CPU seconds per call. On a shared machine the CPU
    time (all threads of this process) is the steadier measure of the work done."""
    return timed_pair([fn], repeats)[0]


def timed_pair(fns, repeats):
    """:func:`timed` for several functions, their calls interleaved (a, b, a, b, ...) so that
    each sees the same background load on a shared machine."""
    wall, cpu = [[] for _ in fns], [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def load_avg():
    return round(os.getloadavg()[0], 2)


def report(what, t_torch, t_jax, t_first, got, want, load_before, **extra):
    return {
        "what": what,
        **extra,
        "load_avg_1min": [load_before, load_avg()],  # before and after this model's timings
        "torch_s": round(t_torch[0], 4),
        "jax_s": round(t_jax[0], 4),
        "speedup": round(t_torch[0] / t_jax[0], 2),
        "torch_cpu_s": round(t_torch[1], 4),
        "jax_cpu_s": round(t_jax[1], 4),
        "speedup_cpu_time": round(t_torch[1] / t_jax[1], 2),
        "jax_compile_s": round(t_first - t_jax[0], 2),
        "max_rel_err_vs_torch": float(np.abs(got - want).max() / np.abs(want).max()),
    }


def bench_bert(repeats):
    import torch
    import transformers

    from gsv_jax.api.features import BertFeatures
    from gsv_jax.convert import hf
    from gsv_jax.models import bert as bert_lib

    assert len(SENTENCE) == 60
    word2ph = [1 if ch in "，。！" else 2 for ch in SENTENCE]
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(**bert_lib.LARGE)).eval()
    with tempfile.TemporaryDirectory() as d:  # a vocab with every character of the sentence
        chars = sorted(set(SENTENCE))
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
        pathlib.Path(d, "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizerFast(vocab=str(pathlib.Path(d, "vocab.txt")))

    def torch_features():
        inputs = tokenizer(SENTENCE, return_tensors="pt")
        with torch.inference_mode():
            res = model(**inputs, output_hidden_states=True)
            res = torch.cat(res["hidden_states"][-3:-2], -1)[0][1:-1]
            return torch.cat([res[i].repeat(word2ph[i], 1) for i in range(len(word2ph))], 0).T.numpy()

    want = torch_features()
    cfg = bert_lib.bert_config()
    params = hf.bert_params({k: v.numpy() for k, v in model.state_dict().items()}, cfg)
    bert = BertFeatures(cfg, params, tokenizer)
    t0 = time.perf_counter()
    got = bert.phone_features(SENTENCE, word2ph)
    t_first = time.perf_counter() - t0
    load = load_avg()
    t_torch, t_jax = timed_pair([torch_features, lambda: bert.phone_features(SENTENCE, word2ph)], repeats)
    return report(
        "BERT phone features, 60 characters (62 tokens, bucket 64), chinese-roberta-wwm-ext-large geometry",
        t_torch, t_jax, t_first, got, want, load, phones=int(got.shape[1]),
    )


def bench_hubert(repeats):
    import torch
    import transformers

    from gsv_jax.api.features import HubertFeatures
    from gsv_jax.convert import hf
    from gsv_jax.models import hubert as hubert_lib

    torch.manual_seed(0)
    model = transformers.HubertModel(transformers.HubertConfig()).eval()  # HuBERT-base geometry
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(160000)).astype(np.float32)

    def torch_features():
        with torch.inference_mode():
            return model(torch.from_numpy(wav)[None])["last_hidden_state"].transpose(1, 2).numpy()

    want = torch_features()
    cfg = hubert_lib.hubert_config()
    params = hf.hubert_params({k: v.numpy() for k, v in model.state_dict().items()}, cfg)
    hubert = HubertFeatures(cfg, params)
    t0 = time.perf_counter()
    got = np.asarray(hubert(wav))
    t_first = time.perf_counter() - t0
    load = load_avg()
    t_torch, t_jax = timed_pair([torch_features, lambda: hubert(wav).block_until_ready()], repeats)
    return report(
        "HuBERT features, 10 s at 16 kHz (bucket 10.4 s), chinese-hubert-base geometry",
        t_torch, t_jax, t_first, got, want, load, frames=int(got.shape[-1]),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["bert", "hubert"])
    args = ap.parse_args()
    import jax
    import torch

    out = {
        "machine": {"cpus": os.cpu_count(), "jax_backend": jax.default_backend(),
                    "torch_threads": torch.get_num_threads(), "load_avg_1min": load_avg()},
        "dtype": "float32",
    }
    if args.only in (None, "bert"):
        out["bert"] = bench_bert(args.repeats)
    if args.only in (None, "hubert"):
        out["hubert"] = bench_hubert(args.repeats)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
