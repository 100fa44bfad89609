#!/usr/bin/env python
"""Label clips with ASR into a ``.list`` (docs/data.md, "ASR"); backends are optional installs.

    python data/asr.py clips/ --out clips.list                      # a folder of audio files
    python data/asr.py clips/clips.list --out corpus.list            # fill a data/slice.py skeleton
    python data/asr.py clips/ --out c.list --backend funasr --language zh
    python data/asr.py clips/ --out c.list --model /models/faster-whisper-large-v3 --compute-type int8

Backends: faster-whisper (``pip install faster-whisper``) or FunASR (``pip install funasr modelscope``).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="folder of audio files, or a .list skeleton whose empty texts are filled")
    p.add_argument("--out", help="output .list (default: <input folder name>.list beside the input)")
    p.add_argument("--backend", default="auto", choices=["auto", "faster-whisper", "funasr"])
    p.add_argument("--model", help="model size name or local model folder (backend default if omitted)")
    p.add_argument("--language", default="auto", help="zh, en, ja, ko, yue or auto (default auto)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compute-type", default="float32", help="faster-whisper precision: float32, float16, int8")
    p.add_argument("--speaker", help="speaker field (default: the input folder name)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from gsv_jax.data import asr

    try:
        run = asr.make_transcriber(args.backend, args.model, args.language, args.device, args.compute_type)
    except asr.ASRUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    inp = pathlib.Path(args.input)
    out = args.out or str(inp.with_suffix(".asr.list") if inp.suffix == ".list" else inp.parent / f"{inp.name}.list")
    res = asr.transcribe(inp, out, run, speaker=args.speaker)
    print(f"wrote {res['written']} lines to {res['list']}")
    for path, why in res["failed"].items():
        print(f"  failed: {path}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
