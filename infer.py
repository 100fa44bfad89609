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
import math
import os
import pathlib
import shutil
import sys
import tempfile
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="GPT-SoVITS text-to-speech in JAX: reference clip + text -> speech at the model's rate "
                    "(32 kHz; v3 24 kHz, v4 48 kHz).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Model folder layout: s1.ckpt, s2.pth, chinese-roberta-wwm-ext-large/, chinese-hubert-base/ "
               "(original PyTorch files as they are); v3/v4 also their vocoder (and a LoRA's base model). "
               "See docs/synthesis.md, 'The model folder', and docs/v3v4.md.")
    m = p.add_argument_group("models")
    m.add_argument("--model-dir", type=pathlib.Path, help="folder holding the four model parts")
    m.add_argument("--gpt", type=pathlib.Path, help="S1 (GPT) weights: original .ckpt or our own checkpoint")
    m.add_argument("--sovits", type=pathlib.Path, help="S2 (SoVITS) weights: original .pth or our own checkpoint")
    m.add_argument("--bert", type=pathlib.Path, help="chinese-roberta-wwm-ext-large Hugging Face folder")
    m.add_argument("--hubert", type=pathlib.Path, help="chinese-hubert-base Hugging Face folder")
    m.add_argument("--sv", type=pathlib.Path,
                   help="v2Pro/v2ProPlus: speaker-verification model pretrained_eres2netv2w24s4ep4.ckpt "
                        "(default: <model-dir>/sv/)")
    m.add_argument("--vocoder", type=pathlib.Path,
                   help="v3/v4: the vocoder, models--nvidia--bigvgan_v2_24khz_100band_256x/ (v3) or vocoder.pth (v4) "
                        "(when not given: looked for in <model-dir>)")
    m.add_argument("--sovits-base", type=pathlib.Path,
                   help="v3/v4 LoRA fine-tunes: the full model they were trained from, s2Gv3.pth / s2Gv4.pth "
                        "(when not given: looked for in <model-dir>)")
    m.add_argument("--no-compile-cache", action="store_true", help="do not use the persistent JAX compilation cache")
    m.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"],
                   help="S1 (GPT) weights: fp32 (exact), bf16, or int8 weight-only (see docs/performance.md)")

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
    io.add_argument("--out", type=pathlib.Path, default=None,
                    help="output file: .wav, .flac or .ogg (by extension); default out.wav "
                         "(--selftest: out.wav in a new temporary folder)")

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
    s.add_argument("--noise-scale", type=float, default=0.5, help="S2 prior noise (v1/v2/v2Pro*; unused by v3/v4)")
    s.add_argument("--sample-steps", type=int, default=None,
                   help="v3/v4: CFM sampling steps (when not given: the model's, 32 for v3, 8 for v4)")
    s.add_argument("--join-segments", action="store_true",
                   help="v3/v4: join a batch's segments into overlapping chunks re-joined with SOLA, as the "
                        "original's TTS.run with parallel_infer (default: each segment on its own, batched)")
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


OUT_EXTENSIONS = (".wav", ".flac", ".ogg")


def check_sampling(args) -> None:
    """The numeric options, before anything is loaded (each message names the flag and its range)."""
    checks = [
        (args.top_k >= 1, f"--top-k must be >= 1 (1 = greedy), got {args.top_k}"),
        (0.0 < args.top_p <= 1.0, f"--top-p must be in (0, 1] (1 = off), got {args.top_p}"),
        (args.temperature > 0.0, f"--temperature must be > 0 (1 = as trained), got {args.temperature}"),
        (args.repetition_penalty > 0.0, f"--repetition-penalty must be > 0 (1 = off), got {args.repetition_penalty}"),
        (args.speed > 0.0, f"--speed must be > 0 (1 = as spoken; the original offers 0.6-1.65), got {args.speed}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.pause >= 0.0, f"--pause must be >= 0 seconds, got {args.pause}"),
        (args.noise_scale >= 0.0, f"--noise-scale must be >= 0, got {args.noise_scale}"),
        (args.sample_steps is None or args.sample_steps >= 1,
         f"--sample-steps must be >= 1 (v3 default 32, v4 default 8), got {args.sample_steps}"),
        (args.max_new_tokens is None or args.max_new_tokens >= 1,
         f"--max-new-tokens must be >= 1 (25 tokens = 1 s of speech), got {args.max_new_tokens}"),
    ]
    for ok, message in checks:
        if not ok:  # NaN fails every comparison, so it lands here too
            raise ValueError(message)


def check_output(out: pathlib.Path) -> None:
    """A file name with a known audio extension in a folder we can write (or create) — checked by
    writing a probe file, which also catches /proc, read-only mounts and a parent that is a file."""
    if out.suffix.lower() not in OUT_EXTENSIONS:
        raise ValueError(f"--out {out}: unknown audio type {out.suffix or '(no extension)'!r}; "
                         f"end the file name in {', '.join(OUT_EXTENSIONS)}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'out.wav'}")
    folder = out.absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent  # missing folders are created after synthesis
    if not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is a file, not a folder; choose another output path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write in {folder} ({e.strerror or e}); "
                         "choose a folder you can write to") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} exists and is read-only; remove it or choose another name")


def read_text(args) -> str:
    if args.text_file is not None:
        path = args.text_file
        if not path.is_file():
            raise FileNotFoundError(f"--text-file {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
        try:
            return path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is dropped
        except UnicodeDecodeError as e:
            raise ValueError(f"--text-file {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                             f"{e.start}); save it as UTF-8 and retry") from None
    if args.text is not None:
        return args.text
    raise ValueError("nothing to say: give --text or --text-file")


def known_languages() -> tuple:
    """Every language code some model version accepts (the model's own list is checked after loading)."""
    from gsv_jax import families

    codes: list = []
    for fam in families.FAMILIES.values():
        codes += [c for c in fam.ui_languages if c not in codes]
    return tuple(codes)


def check_language(code: str, flag: str, known: tuple) -> None:
    if code not in known:
        raise ValueError(f"{flag} {code!r} is not a language code; use one of {' '.join(known)}")


def check_reference(path: pathlib.Path | None, flag: str, *, need_prompt: bool) -> None:
    """Exists, decodes, is not silent and (when its text gives a prompt) lasts 3-10 s — read from the
    file header and samples only, with the same bounds as ``TTS.reference``."""
    if path is None:
        raise ValueError("give a reference clip with --ref (3-10 s of the target voice)")
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    import numpy as np
    import soundfile as sf

    from gsv_jax.inference.tts import HUBERT_SR, REF_MAX_SAMPLES_16K, REF_MIN_SAMPLES_16K, REF_RANGE_MESSAGE

    try:
        info = sf.info(str(path))
        samples = sf.read(str(path), dtype="float32", always_2d=True)[0]
    except (RuntimeError, sf.SoundFileError) as e:  # LibsndfileError is a RuntimeError
        raise ValueError(f"{flag} {path} is not audio that soundfile can read ({e}); "
                         "convert it to .wav or .flac") from None
    if need_prompt:
        n16 = math.ceil(info.frames * HUBERT_SR / info.samplerate)  # the length after resampling to 16 kHz
        if not REF_MIN_SAMPLES_16K <= n16 <= REF_MAX_SAMPLES_16K:
            raise ValueError(f"{REF_RANGE_MESSAGE}: {flag} {path} is {info.frames / info.samplerate:.2f} s")
    elif info.frames * 32000 < 2048 * info.samplerate:
        raise ValueError(f"{flag} {path} is too short ({info.frames / info.samplerate:.3f} s); use 3-10 s of speech")
    if not np.any(samples):
        raise ValueError(f"{flag} {path} is silent (every sample is zero); use a recording of the target voice")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{flag} {path} holds NaN/inf samples; re-export the clip")


def check_inputs(args) -> str:
    """Every check that needs no model, in the order a user would fix them; returns the text."""
    from gsv_jax.text import segmentation

    check_sampling(args)
    if args.out is not None or not args.selftest:
        check_output(args.out or pathlib.Path("out.wav"))
    if args.selftest:
        return args.text or "你好，这是一个自检。Hello world!"
    known = known_languages()
    check_language(args.text_lang, "--text-lang", known)
    text = read_text(args)
    if not text.strip():
        raise ValueError("the text to speak is empty; give some text with --text or --text-file")
    segmentation.prepare_segments(text, args.text_lang, args.cut)  # raises when nothing is speakable
    ref_free = not args.ref_text.strip()
    if not ref_free:
        check_language(args.ref_lang, "--ref-lang", known)
    check_reference(args.ref, "--ref", need_prompt=not ref_free)
    for aux in args.aux_ref:
        check_reference(aux, "--aux-ref", need_prompt=False)
    return text


def _parts(args) -> dict:
    """The model files: given one by one and/or found in --model-dir (explicit ones win)."""
    from gsv_jax.inference.tts import MissingModelFiles, resolve_model_folder

    given = {"gpt": args.gpt, "sovits": args.sovits, "bert": args.bert, "hubert": args.hubert, "sv": args.sv,
             "vocoder": args.vocoder, "sovits_base": args.sovits_base}
    if args.model_dir is not None:
        return resolve_model_folder(args.model_dir, **given)
    four = ("gpt", "sovits", "bert", "hubert")
    if not any(given[k] for k in four):
        raise MissingModelFiles("no models given: pass --model-dir <folder> (or --gpt/--sovits/--bert/--hubert). "
                                "Run `python infer.py --selftest` to check the installation without models.")
    missing = [f"--{k}" for k in four if given[k] is None]
    if missing:
        raise MissingModelFiles(f"missing {', '.join(missing)} (give all four, or --model-dir)")
    return given


def check_prompt_for_model(args, parts: dict) -> None:
    """v3/v4 need the reference text: refused from a look at the SoVITS file, before loading anything."""
    from gsv_jax.inference.tts import NO_PROMPT_TEXT, peek_decoder

    if not args.ref_text.strip() and peek_decoder(parts["sovits"]) == "cfm":
        raise ValueError(f"{parts['sovits']} is a SoVITS v3/v4 model: {NO_PROMPT_TEXT}")


def _load_tts(args):
    from gsv_jax.inference.tts import TTS

    parts = _parts(args)
    check_prompt_for_model(args, parts)  # a cheap look at the SoVITS file first
    return TTS.from_paths(**parts, compilation_cache=not args.no_compile_cache)


def run(args) -> dict:
    import numpy as np
    import soundfile as sf

    text = check_inputs(args)  # before the models: a bad argument costs no loading time
    scratch = None
    t0 = time.perf_counter()
    if args.selftest:
        from gsv_jax.inference.selftest import tiny_tts, write_selftest_reference

        scratch = pathlib.Path(tempfile.mkdtemp(prefix="gsv_selftest_"))  # nothing lands in the current folder
        out = args.out or scratch / "out.wav"
        tts = tiny_tts(folder=scratch / "tokenizer")
        ref = write_selftest_reference(scratch / "selftest_ref.wav")
        kw = dict(text_lang="auto", ref_wav_path=ref, ref_text="这是参考音频。", ref_lang="zh")
    else:
        out = args.out or pathlib.Path("out.wav")
        if not args.quiet:
            print("loading models ...", file=sys.stderr, flush=True)
        tts = _load_tts(args)
        if args.precision != "fp32":
            tts.s1 = tts.s1.to_precision(args.precision)
        kw = dict(text_lang=args.text_lang, ref_wav_path=args.ref, ref_text=args.ref_text, ref_lang=args.ref_lang,
                  aux_refs=args.aux_ref)
    load = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        result = tts.synthesize(text, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                                repetition_penalty=args.repetition_penalty, speed=args.speed, cut=args.cut,
                                noise_scale=args.noise_scale, seed=args.seed, batch_size=args.batch_size,
                                pause=args.pause, sample_steps=args.sample_steps, join_segments=args.join_segments,
                                max_new_tokens=args.max_new_tokens or (100 if args.selftest else 1500),
                                progress=_progress_printer(args.quiet), return_timings=True, **kw)
        wall = time.perf_counter() - t0
    finally:
        if scratch is not None and args.out is not None:
            shutil.rmtree(scratch, ignore_errors=True)  # only the reference and tokenizer were there
    wav, sr = result[0], result[1]
    timings = result[2]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), np.asarray(wav, np.float32), sr)
    except (OSError, RuntimeError) as e:  # checked before loading, but the disk can fill or change since
        raise ValueError(f"cannot write {out} ({e}); the synthesis is lost, choose another --out") from None
    seconds = len(wav) / sr
    summary = {"out": str(out), "audio_seconds": round(seconds, 3), "wall_seconds": round(wall, 3),
               "load_seconds": round(load, 3), "rtf": round(wall / max(seconds, 1e-9), 4),
               "stages": {k: round(v, 3) for k, v in timings.items() if isinstance(v, float)},
               "no_eos_segments": list(timings.get("no_eos_segments", []))}
    print(f"wrote {out}: {seconds:.2f} s of audio at {sr} Hz in {wall:.2f} s (RTF {summary['rtf']:.3f}); "
          f"models loaded in {load:.2f} s")
    print("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary["stages"].items() if k != "audio_seconds"))
    if summary["no_eos_segments"]:
        print(f"segments that reached --max-new-tokens without ending: {summary['no_eos_segments']}"
              + (" (expected with the self-test's random weights)" if args.selftest else ""))
    return summary


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        run(args)
    except (FileNotFoundError, ValueError) as e:  # includes MissingModelFiles and CheckpointError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
