"""Benchmark the feature extractors against transformers' PyTorch models on this machine.

BERT phone features for a 60-character Mandarin sentence and HuBERT features for 10 s of audio,
full-size configs (chinese-roberta-wwm-ext-large, chinese-hubert-base) with random weights, fp32;
with ``--original``, also the v2Pro/v2ProPlus speaker embedding (``sv``) of a 5 s reference:
the original's ``SV.compute_embedding3`` (its ``eres2net/kaldi.py`` fbank + ``ERes2NetV2.forward3``,
baseWidth 24, scale 4, expansion 4, random weights) vs ``gsv_jax.load_sv(...).embed``.

Each side runs alone in its own process, one after the other (never both at once, never both in
one process: torch's and XLA's thread pools in one process slow each other down). The torch
process builds the random model, writes it as a Hugging Face folder (``save_pretrained`` + a
vocab), times the original's feature code and saves its output; the JAX process loads that folder
the way users do (``gsv_jax.load_bert`` / ``load_hubert``), times the first call (compile) and the
steady state, and saves its output. Prints one JSON object: median seconds per call (wall and
process CPU), the speed-ups, the compile time, the max relative difference of the outputs, and
the 1-minute load average before each side. Needs torch (test extra).

    python bench/features.py [--repeats 7] [--only bert|hubert|sv] [--device cpu]
                             [--original /path/to/GPT-SoVITS --rounds 3]

``--original``: the torch side loads HuBERT with the original's ``CNHubert`` class and calls its
``.model`` as ``TTS_infer_pack`` does (BERT: the body of its ``get_bert_feature``); the two sides
then run ``--rounds`` times, interleaved, each in a fresh process, and the report gives
ours / original / ratio of the median seconds with min and max. ``sv`` has no transformers
counterpart and runs only with ``--original`` (the torch side writes the random state dict as a
plain ``.ckpt``, the layout of ``pretrained_eres2netv2w24s4ep4.ckpt``, which our side loads).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCE = (
    "今天天气很好，我们一起去公园散步吧。春天来了，花儿都开了，小鸟在树上唱歌，"
    "孩子们在草地上奔跑，大家都很开心，真是太好了！"
)
WORD2PH = [1 if ch in "，。！" else 2 for ch in SENTENCE]
WAV_SECONDS = 10.0
SV_SECONDS = 5.0  # a typical reference clip (the original asks for 3-10 s)


def load_avg():
    return round(os.getloadavg()[0], 2)


def timed(fn, repeats):
    """Median wall-clock and median process CPU seconds (all threads) per call."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": round(statistics.median(wall), 4), "cpu_s": round(statistics.median(cpu), 4),
            "all_wall_s": [round(w, 4) for w in wall]}


def test_wav(seconds=WAV_SECONDS):
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def torch_sv(folder, original):
    """The original's ``SV`` (``GPT_SoVITS/sv.py``) with a random full-size ERes2NetV2 saved to
    ``folder/sv.ckpt``; returns ``compute_embedding3``'s body on a ``[1, N]`` tensor."""
    import torch

    if not original:
        raise SystemExit("the sv benchmark runs the original's GPT_SoVITS/sv.py: pass --original /path/to/GPT-SoVITS")
    sys.path.insert(0, os.path.join(os.path.abspath(original), "GPT_SoVITS", "eres2net"))
    import kaldi as Kaldi
    from ERes2NetV2 import ERes2NetV2

    model = ERes2NetV2(baseWidth=24, scale=4, expansion=4).eval()  # as SV.__init__
    torch.save(model.state_dict(), folder / "sv.ckpt")
    wav = torch.from_numpy(test_wav(SV_SECONDS))[None]

    def features():
        with torch.no_grad():
            feat = torch.stack([Kaldi.fbank(w.unsqueeze(0), num_mel_bins=80, sample_frequency=16000, dither=0)
                                for w in wav])
            return model.forward3(feat)[0].numpy()

    return features


# --- the torch side (its own process) ------------------------------------------------------------
def torch_side(model_name, folder, repeats, original=None):
    import torch
    import transformers

    from gsv_jax.models import bert as bert_lib

    torch.manual_seed(0)
    folder = pathlib.Path(folder)
    if model_name == "sv":
        features = torch_sv(folder, original)
    elif model_name == "bert":
        assert len(SENTENCE) == 60
        model = transformers.BertForMaskedLM(transformers.BertConfig(**bert_lib.LARGE)).eval()
        chars = sorted(set(SENTENCE))  # a vocab with every character of the sentence
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
        model.save_pretrained(folder)
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        tokenizer = transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt"))
        tokenizer.save_pretrained(folder)

        def features():  # the original's get_bert_feature
            inputs = tokenizer(SENTENCE, return_tensors="pt")
            with torch.inference_mode():
                res = model(**inputs, output_hidden_states=True)
                res = torch.cat(res["hidden_states"][-3:-2], -1)[0][1:-1]
                return torch.cat([res[i].repeat(WORD2PH[i], 1) for i in range(len(WORD2PH))], 0).T.numpy()
    else:
        if not (folder / "model.safetensors").exists() and not (folder / "pytorch_model.bin").exists():
            transformers.HubertModel(transformers.HubertConfig()).save_pretrained(folder)  # HuBERT-base geometry
            transformers.Wav2Vec2FeatureExtractor().save_pretrained(folder)
        if original:  # the original's loader, as TTS_infer_pack.TTS builds it
            sys.path.insert(0, os.path.join(os.path.abspath(original), "GPT_SoVITS"))
            from feature_extractor.cnhubert import CNHubert

            model = CNHubert(str(folder)).eval().model
        else:
            model = transformers.HubertModel.from_pretrained(folder).eval()
        wav = torch.from_numpy(test_wav())[None]

        def features():
            with torch.inference_mode():
                return model(wav)["last_hidden_state"].transpose(1, 2).numpy()

    np.save(folder / "torch_out.npy", features())  # also the warm-up call
    load = load_avg()
    return {"load_avg_1min": load, "threads": torch.get_num_threads(), **timed(features, repeats)}


# --- the JAX side (its own process) --------------------------------------------------------------
def jax_side(model_name, folder, repeats, device=None):
    import jax

    import gsv_jax

    sys.path.insert(0, str(REPO / "bench"))
    import compare

    dev = compare.use_device(device)

    folder = pathlib.Path(folder)
    if model_name == "sv":
        sv = gsv_jax.load_sv(folder / "sv.ckpt")
        wav = test_wav(SV_SECONDS)

        def features():
            return sv.embed(wav)
    elif model_name == "bert":
        bert = gsv_jax.load_bert(folder)

        def features():
            return np.asarray(bert.phone_features(SENTENCE, WORD2PH))
    else:
        hubert = gsv_jax.load_hubert(folder)
        wav = test_wav()

        def features():
            return np.asarray(hubert(wav))
    t0 = time.perf_counter()
    out = features()
    first = time.perf_counter() - t0
    np.save(folder / "jax_out.npy", out)
    load = load_avg()
    res = timed(features, repeats)
    return {"load_avg_1min": load, "backend": jax.default_backend(), "device": dev, "first_call_s": round(first, 3),
            "compile_s": round(first - res["wall_s"], 3), **res}


def run_side(side, model_name, folder, repeats, original=None, device=None):
    cmd = [sys.executable, __file__, "--side", side, "--only", model_name, "--folder", folder,
           "--repeats", str(repeats)]
    if original and side == "torch":
        cmd += ["--original", original]
    if device and side == "jax":
        cmd += ["--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        hint = " (torch is the test extra: pip install -e '.[dev]')" if "No module named 'torch'" in out.stderr else ""
        raise SystemExit(f"the {side} side of the {model_name} benchmark failed{hint}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


WHAT = {
    "bert": "BERT phone features, 60 characters (62 tokens), chinese-roberta-wwm-ext-large geometry",
    "hubert": f"HuBERT features, {WAV_SECONDS:g} s at 16 kHz, chinese-hubert-base geometry",
    "sv": f"speaker embedding (Kaldi fbank + ERes2NetV2 forward3, w24 s4 ep4), {SV_SECONDS:g} s at 16 kHz",
}
ORIGINAL_CODE = {"bert": "the original's get_bert_feature", "hubert": "the original's CNHubert",
                 "sv": "the original's SV.compute_embedding3 (eres2net/kaldi.py + ERes2NetV2)"}


def compare(model_name, repeats, rounds=1, original=None, device=None):
    ts, js = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):  # interleaved: torch, jax, torch, jax, ...
            ts.append(run_side("torch", model_name, folder, repeats, original))
            js.append(run_side("jax", model_name, folder, repeats, device=device))
        want, got = np.load(f"{folder}/torch_out.npy"), np.load(f"{folder}/jax_out.npy")
    t, j = ts[-1], js[-1]
    if rounds > 1 or original:
        sys.path.insert(0, str(REPO / "bench"))
        import compare as cmp

        t["all_rounds_wall_s"] = [x["wall_s"] for x in ts]
        j["all_rounds_wall_s"] = [x["wall_s"] for x in js]
        return {"what": WHAT[model_name], "unit": "seconds per call (ratio = original / ours)",
                "original_code": ORIGINAL_CODE[model_name] if original else "transformers",
                **cmp.summary([x["wall_s"] for x in js], [x["wall_s"] for x in ts], higher_is_better=False),
                "load_avg_before_each": [(a["load_avg_1min"], b["load_avg_1min"]) for a, b in zip(ts, js)],
                "jax_compile_s": j["compile_s"], "device": j["device"],
                "max_rel_err_vs_torch": float(np.abs(got - want).max() / np.abs(want).max())}
    return {
        "what": WHAT[model_name],
        "output_shape": list(got.shape),
        "torch": t,
        "jax": j,
        "speedup": round(t["wall_s"] / j["wall_s"], 2),
        "speedup_cpu_time": round(t["cpu_s"] / j["cpu_s"], 2),
        "max_rel_err_vs_torch": float(np.abs(got - want).max() / np.abs(want).max()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--only", choices=["bert", "hubert", "sv"])
    ap.add_argument("--side", choices=["torch", "jax"], help=argparse.SUPPRESS)  # child processes
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--device", default=None, help="JAX side on cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--original", help="a GPT-SoVITS checkout: the torch side runs its feature code")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3 with --original, else 1)")
    args = ap.parse_args()
    if args.side == "torch":
        print(json.dumps(torch_side(args.only, args.folder, args.repeats, args.original)))
        return
    if args.side == "jax":
        print(json.dumps(jax_side(args.only, args.folder, args.repeats, args.device)))
        return
    rounds = args.rounds or (3 if args.original else 1)
    out = {"machine": {"cpus": os.cpu_count(), "load_avg_1min": load_avg()}, "dtype": "float32",
           "method": "each side alone in its own process, torch first, then JAX"}
    if args.only == "sv" and not args.original:
        ap.error("--only sv times the original's GPT_SoVITS/sv.py: add --original /path/to/GPT-SoVITS")
    for name in ("bert", "hubert", "sv"):
        if args.only == name or (args.only is None and (name != "sv" or args.original)):
            out[name] = compare(name, args.repeats, rounds, args.original, args.device)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
