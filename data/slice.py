#!/usr/bin/env python
"""Cut long recordings into clips at silences (the original's slicer, docs/data.md "Slicer").

    python data/slice.py recordings/ --out datasets/raw_clips           # webui defaults
    python data/slice.py talk.wav --out clips --threshold -40 --min-length 5000 --shard 0/4

Writes ``<out>/<input name>_<start>_<end>.wav`` (32 kHz int16, sample offsets at 32 kHz) and a
``.list`` skeleton ``<out>/<out name>.list`` with lines ``<abs clip path>|<speaker>|<LANG>|`` whose
text is filled by ``data/asr.py`` (or by hand).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="an audio file or a folder of them (processed in sorted order)")
    p.add_argument("--out", required=True, help="output folder for the clips")
    p.add_argument("--threshold", type=float, default=-34.0, help="silence threshold in dB (default -34)")
    p.add_argument("--min-length", type=int, default=4000, help="minimum clip length in ms (default 4000)")
    p.add_argument("--min-interval", type=int, default=300, help="minimum silence to cut at, ms (default 300)")
    p.add_argument("--hop-size", type=int, default=10, help="RMS hop in ms (default 10)")
    p.add_argument("--max-sil-kept", type=int, default=500, help="silence kept around a cut, ms (default 500)")
    p.add_argument("--max", type=float, default=0.9, dest="max_amp", help="loudness target peak (default 0.9)")
    p.add_argument("--alpha", type=float, default=0.25, help="share of the normalised clip in the mix (default 0.25)")
    p.add_argument("--shard", default="0/1", help="i/n: process files [i::n] (default 0/1)")
    p.add_argument("--speaker", help="speaker field of the .list (default: the output folder name)")
    p.add_argument("--lang", default="ZH", help="LANG field of the .list skeleton (default ZH)")
    p.add_argument("--list", help="path of the .list skeleton (default <out>/<out name>.list; '-' for none)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from gsv_jax.data import slicer
    from gsv_jax.data.prepare import parse_shard

    shard, num_shards = parse_shard(args.shard)
    cfg = slicer.SlicerConfig(args.threshold, args.min_length, args.min_interval, args.hop_size, args.max_sil_kept)
    res = slicer.slice_files(args.input, args.out, cfg, max_amp=args.max_amp, alpha=args.alpha, shard=shard,
                             num_shards=num_shards, speaker=args.speaker, lang=args.lang,
                             list_path=None if args.list == "-" else (args.list or ""))
    print(f"{len(res['clips'])} clips from {res['files']} file(s) in {args.out}" +
          (f"; list skeleton {res['list']}" if res["list"] else ""))
    for path, why in res["failed"].items():
        print(f"  failed: {path}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
