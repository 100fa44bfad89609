#!/usr/bin/env python
"""Synthesize speech with GPT-SoVITS weights, jitted in JAX.

Example:
  python infer.py --model-dir models/v2 --ref ref.wav --ref-text "参考音频的文字。" --ref-lang zh \\
                  --text "你好，世界。" --text-lang zh --out out.wav
  python infer.py --selftest          # the whole path on tiny random weights (no model files needed)
"""
from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="GPT-SoVITS text-to-speech in JAX: reference clip + text -> 32 kHz speech.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Model folder layout: s1.ckpt, s2.pth, chinese-roberta-wwm-ext-large/, chinese-hubert-base/ "
               "(original PyTorch files as they are). See docs/synthesis.md, 'The model folder'.")
    m = p.add_argument_group("models")
    m.add_argument("--model-dir", type=pathlib.Path, help="folder holding the four model parts")
    m.add_argument("--gpt", type=pathlib.Path, help="S1 (GPT) weights: original .ckpt or our own checkpoint")
    m.add_argument("--sovits", type=pathlib.Path, help="S2 (SoVITS) weights: original .pth or our own checkpoint")
    m.add_argument("--bert", type=pathlib.Path, help="chinese-roberta-wwm-ext-large Hugging Face folder")
    m.add_argument("--hubert", type=pathlib.Path, help="chinese-hubert-base Hugging Face folder")
    m.add_argument("--no-compile-cache", action="store_true", help="do not use the persistent JAX compilation cache")

    io = p.add_argument_group("input and output")
    io.add_argument("--ref", type=pathlib.Path, help="reference audio, 3-10 s (any format soundfile reads)")
    io.add_argument("--ref-text", default="", help="what the reference says; empty = reference-free mode")
    io.add_argument("--ref-lang", default="zh", help="language of the reference text")
    io.add_argument("--aux-ref", type=pathlib.Path, action="append", default=[],
                    help="extra reference audio for timbre (repeatable)")
    io.add_argument("--text", help="text to speak")
    io.add_argument("--text-file", type=pathlib.Path, help="read the text to speak from this UTF-8 file")
    io.add_argument("--text-lang", default="zh",
                    help="language code: zh en ja ko yue auto auto_yue all_zh all_ja all_yue all_ko")
    io.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out.wav"),
                    help="output file; .wav or .flac (by extension)")

    s = p.add_argument_group("sampling and synthesis")
    s.add_argument("--top-k", type=int, default=15)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--repetition-penalty", type=float, default=1.35)
    s.add_argument("--speed", type=float, default=1.0, help="speech rate factor (applied inside the decoder)")
    s.add_argument("--cut", default="cut1", choices=["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"],
                   help="text split method: cut0 none, cut1 every 4 sentences, cut2 ~50 chars, cut3 '。', "
                        "cut4 '.', cut5 every punctuation mark")
    s.add_argument("--batch-size", type=int, default=8, help="segments generated and decoded together")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise-scale", type=float, default=0.5)
    s.add_argument("--pause", type=float, default=0.3, help="seconds of silence after each fragment")
    s.add_argument("--max-new-tokens", type=int, default=None,
                   help="cap on semantic tokens per segment (25 per second of speech); default 1500 (100 in --selftest)")

    p.add_argument("--selftest", action="store_true",
                   help="run the whole path on tiny random weights (seconds, no downloads) and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def _progress_printer(quiet: bool):
    if quiet:
        return lambda stage, done, total: None
    from tqdm import tqdm

    bars = {}

    def report(stage, done, total):
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>9}", unit="seg", leave=True, file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return report


def _load_tts(args):
    from gsv_jax.inference.tts import TTS, MissingModelFiles

    cache = not args.no_compile_cache
    explicit = [args.gpt, args.sovits, args.bert, args.hubert]
    if any(explicit):
        if not all(explicit) and args.model_dir is None:
            names = [n for n, v in zip(("--gpt", "--sovits", "--bert", "--hubert"), explicit) if v is None]
            raise MissingModelFiles(f"missing {', '.join(names)} (give all four, or --model-dir)")
        if args.model_dir is not None:
            from gsv_jax.inference.tts import resolve_model_folder

            parts = resolve_model_folder(args.model_dir)
            for k, v in zip(("gpt", "sovits", "bert", "hubert"), explicit):
                if v is not None:
                    parts[k] = v
            return TTS.from_paths(**parts, compilation_cache=cache)
        return TTS.from_paths(args.gpt, args.sovits, args.bert, args.hubert, compilation_cache=cache)
    if args.model_dir is None:
        raise MissingModelFiles("no models given: pass --model-dir <folder> (or --gpt/--sovits/--bert/--hubert). "
                                "Run `python infer.py --selftest` to check the installation without models.")
    return TTS.from_folder(args.model_dir, compilation_cache=cache)


def run(args) -> dict:
    import numpy as np
    import soundfile as sf

    if args.selftest:
        from gsv_jax.inference.selftest import tiny_tts, write_selftest_reference

        tts = tiny_tts()
        ref_dir = pathlib.Path(args.out).resolve().parent
        ref = write_selftest_reference(ref_dir / "selftest_ref.wav")
        text = args.text or "你好，这是一个自检。Hello world!"
        kw = dict(text_lang="auto", ref_wav_path=ref, ref_text="这是参考音频。", ref_lang="zh")
    else:
        if args.text_file is not None:
            if not args.text_file.is_file():
                raise FileNotFoundError(f"text file {args.text_file} not found")
            text = args.text_file.read_text(encoding="utf-8")
        elif args.text is not None:
            text = args.text
        else:
            raise ValueError("nothing to say: give --text or --text-file")
        if args.ref is None:
            raise ValueError("give a reference clip with --ref (3-10 s of the target voice)")
        if not args.ref.is_file():
            raise FileNotFoundError(f"reference audio {args.ref} not found")
        tts = _load_tts(args)
        kw = dict(text_lang=args.text_lang, ref_wav_path=args.ref, ref_text=args.ref_text, ref_lang=args.ref_lang,
                  aux_refs=args.aux_ref)
    if args.out.suffix.lower() not in (".wav", ".flac"):
        raise ValueError(f"output {args.out}: use a .wav or .flac file name")
    t0 = time.perf_counter()
    wav, sr = tts.synthesize(text, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                             repetition_penalty=args.repetition_penalty, speed=args.speed, cut=args.cut,
                             noise_scale=args.noise_scale, seed=args.seed, batch_size=args.batch_size,
                             pause=args.pause, max_new_tokens=args.max_new_tokens or (100 if args.selftest else 1500),
                             progress=_progress_printer(args.quiet), **kw)
    wall = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(args.out), np.asarray(wav, np.float32), sr)
    seconds = len(wav) / sr
    summary = {"out": str(args.out), "audio_seconds": round(seconds, 3), "wall_seconds": round(wall, 3),
               "rtf": round(wall / max(seconds, 1e-9), 4),
               "stages": {k: round(v, 3) for k, v in tts.last_timings.items() if isinstance(v, float)}}
    print(f"wrote {args.out}: {seconds:.2f} s of audio at {sr} Hz in {wall:.2f} s (RTF {summary['rtf']:.3f})")
    print("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary["stages"].items() if k != "audio_seconds"))
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
