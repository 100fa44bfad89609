"""Benchmark end-to-end synthesis: full-size models (S1 v2, S2 v2, chinese-roberta-large BERT,
chinese-hubert-base) with random weights, a 3-sentence Mandarin paragraph, a 5 s reference.

The models are written once (not timed) as a model folder in the ORIGINAL file formats (``s1.ckpt``,
``s2.pth``, Hugging Face folders for BERT and HuBERT), and every run loads it with
``TTS.from_folder`` as a user does.  Each measurement is a fresh process:

  * cold         persistent compilation cache off (everything compiles);
  * cold_cached  persistent compilation cache filled by an earlier process;
  * warm         the second synthesis of the same paragraph in the cold process, with the per-TTS
                 text/BERT/reference caches cleared, so it redoes every stage.

``cold_start_seconds`` is what the first request costs on top of the work itself: loading the
model folder + (first synthesis - warm synthesis), i.e. loading, tracing, compiling and first-use
overheads.  ``time_to_audio_seconds`` (load + first synthesis) is reported beside it.  Random
weights never emit EOS, so every segment is capped at --tokens new tokens (default 100, i.e. 4 s
of speech per segment).  The original's ``TTS_infer_pack`` pipeline is not run here yet (its
Mandarin frontend needs the G2PW model, which it downloads); compare the stages with
``bench/s1_decode.py``, ``s2_decode.py`` and ``features.py --original``.  Needs torch + transformers
(dev extra) only to write the random Hugging Face folders.

    python bench/e2e.py [--tokens 100] [--models DIR] [--device cpu] [--version v2|v2ProPlus]

``--version v2ProPlus``: the SoVITS model is a full-size random v2ProPlus (preset ``s2_v2proplus``:
gin 1024, 768 decoder channels, the speaker fusion) written with its head ``06``, and the model
folder gains a full-size random ERes2NetV2 as ``sv/pretrained_eres2netv2w24s4ep4.ckpt`` (the
original's layout); the reference's speaker embedding is then part of the reference stage (reported
under ``hubert``, with the reference's spectrogram and prompt tokens). S1 is the same v2 model.
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


def write_random_sv(path: pathlib.Path, seed: int = 0) -> None:
    """A full-size ERes2NetV2 (w24 s4 ep4) state dict with random weights, stored as the original's
    plain ``torch.save(state_dict)``: convs N(0, 2/fan_in) (He), BatchNorm at its torch defaults."""
    import numpy as np

    from gsv_jax.convert.sv import expected_shapes
    from gsv_jax.io.torch_io import save_torch_file
    from gsv_jax.models.sv import sv_config

    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in expected_shapes(sv_config()).items():
        field = key.rsplit(".", 1)[1]
        if field == "num_batches_tracked":
            state[key] = np.zeros((), np.int64)
        elif len(shape) > 1:
            state[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)
        else:  # biases, BN weight/bias/mean/var
            state[key] = np.full(shape, 1.0 if field in ("weight", "running_var") else 0.0, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch_file(state, path)


def write_model_folder(folder: pathlib.Path, version: str = "v2") -> pathlib.Path:
    """Full-size random models in the original formats (skipped when already there)."""
    if (folder / "done").exists():
        done = (folder / "done").read_text().strip()
        if done not in ("ok", version) or (done == "ok" and version != "v2"):
            raise SystemExit(f"{folder} holds a {'v2' if done == 'ok' else done} model folder, not {version}: "
                             f"use another --models folder")
        return folder

    import torch
    import transformers

    from gsv_jax.inference.s1 import S1, save_s1_torch
    from gsv_jax.inference.s2 import new_s2, save_s2_torch
    from gsv_jax.inference.selftest import _VOCAB
    from gsv_jax.models.s2.synthesizer import S2ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    from gsv_jax import configs

    save_s1_torch(S1.random(configs.load("s1_v2"), 0), folder / "s1.ckpt")
    if version == "v2ProPlus":
        s2_cfg = S2ModelConfig.from_mapping(configs.load("s2_v2proplus").model)
        from gsv_jax.inference.tts import SV_FILE

        write_random_sv(folder / "sv" / SV_FILE)
    else:
        s2_cfg = S2ModelConfig()
    save_s2_torch(new_s2(s2_cfg, seed=0, with_enc_q=False, fast=True), folder / "s2.pth")
    torch.manual_seed(0)
    vocab = _VOCAB + sorted(set(PARAGRAPH + "这是一段用来测试的参考音频。") - set(_VOCAB))
    vocab += [f"[unused{i}]" for i in range(21128 - len(vocab))]
    bert_dir = folder / "chinese-roberta-wwm-ext-large"
    bcfg = transformers.BertConfig(vocab_size=21128, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                   intermediate_size=4096, max_position_embeddings=512, type_vocab_size=2)
    transformers.BertForMaskedLM(bcfg).save_pretrained(bert_dir, safe_serialization=True)
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt")).save_pretrained(bert_dir)
    hubert_dir = folder / "chinese-hubert-base"
    transformers.HubertModel(transformers.HubertConfig()).save_pretrained(hubert_dir, safe_serialization=True)
    (folder / "done").write_text(f"{version}\n")
    return folder


def run_once(args) -> dict:
    """Inside a child process: build, synthesize twice, report both."""
    sys.path.insert(0, str(REPO / "bench"))
    import compare

    device = compare.use_device(args.device)
    from gsv_jax.inference.selftest import write_selftest_reference
    from gsv_jax.inference.tts import TTS

    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    tts = TTS.from_folder(args.models, compilation_cache=str(workdir / "jax_cache") if args.cache else False)
    out = {"load_seconds": round(time.perf_counter() - t0, 2), "load_cpu_seconds": round(time.process_time() - c0, 2),
           "device": device, "sovits_version": tts.s2.version}
    ref = write_selftest_reference(workdir / "ref.wav", seconds=5.0)
    for name in ("first", "second"):
        tts.clear_caches()
        t0, c0 = time.perf_counter(), time.process_time()
        wav, sr, t = tts.synthesize(PARAGRAPH, "zh", ref, "这是一段用来测试的参考音频。", "zh", cut="cut5",
                                 top_k=15, repetition_penalty=1.35, max_new_tokens=args.tokens, noise_scale=0.5,
                                 seed=0, batch_size=8, return_timings=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                     "audio_seconds": round(len(wav) / sr, 2),
                     "rtf": round(wall / (len(wav) / sr), 4), "segments": t["segments"],
                     "stages": {k: round(t[k], 2) for k in ("frontend", "bert", "hubert", "s1", "s2")}}
    return out


def child(models, workdir, cache: bool, tokens: int, device=None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--models", str(models), "--workdir", str(workdir),
           "--tokens", str(tokens)] + (["--device", device] if device else [])
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
    ap.add_argument("--models", help="a model folder to write the random models to / reuse (default: a temp dir)")
    ap.add_argument("--device", default=None, help="cpu, gpu or tpu (default: JAX's default device)")
    ap.add_argument("--version", choices=["v2", "v2ProPlus"], default="v2",
                    help="SoVITS model: v2, or v2ProPlus (+ a random speaker-verification model in sv/)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_once(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        t0 = time.perf_counter()
        models = write_model_folder(pathlib.Path(args.models) if args.models else tmp / "models", args.version)
        setup = time.perf_counter() - t0
        cold = child(models, tmp / "a", cache=False, tokens=args.tokens, device=args.device)
        fill = child(models, tmp / "b", cache=True, tokens=args.tokens, device=args.device)
        cached = child(models, tmp / "b", cache=True, tokens=args.tokens, device=args.device)
    warm = cold["second"]
    audio = warm["audio_seconds"]
    segments = warm["segments"]
    report = {"device": cold["device"], "sovits_version": cold["sovits_version"], "audio_seconds": audio,
        "paragraph_chars": len(PARAGRAPH), "segments": segments, "tokens_per_segment": args.tokens,
        "cold": cold["first"], "cold_cached": cached["first"], "cache_filling_run": fill["first"], "warm": warm,
        "cold_start_seconds": round(cold["load_seconds"] + cold["first"]["wall_seconds"] - warm["wall_seconds"], 2),
        "cold_start_cached_seconds": round(cached["load_seconds"] + cached["first"]["wall_seconds"]
                                           - warm["wall_seconds"], 2),
        "time_to_audio_seconds": round(cold["load_seconds"] + cold["first"]["wall_seconds"], 2),
        "time_to_audio_cached_seconds": round(cached["load_seconds"] + cached["first"]["wall_seconds"], 2),
        "load_seconds": {"cold": cold["load_seconds"], "cold_cached": cached["load_seconds"]},
        "model_folder_setup_seconds": round(setup, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
