#!/usr/bin/env python
"""Prepare a training dataset from a ``wav|speaker|LANG|text`` list (docs/data.md).

    python data/prepare.py --list corpus.list --out datasets/corpus \
        --bert models/chinese-roberta-wwm-ext-large --hubert models/chinese-hubert-base \
        --sovits models/s2G2333k.pth
    python data/prepare.py ... --stage text            # one stage at a time (text, audio, semantic, pack)
    python data/prepare.py ... --shard 3/8             # worker 3 of 8 (processes or hosts)
    python data/prepare.py --import-original logs/exp --out datasets/exp     # from the original's folder
    python data/prepare.py --export-original logs/exp --out datasets/corpus  # to the original's folder

Reruns skip finished items; the summary lists skipped items with reasons.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", help="annotation file: one 'wav_path|speaker|LANG|text' per line")
    p.add_argument("--out", required=True, help="dataset folder (created; also holds work/ for resuming)")
    p.add_argument("--wav-dir", help="read audio from WAV_DIR/<basename> instead of the paths in the list")
    p.add_argument("--bert", help="chinese-roberta-wwm-ext-large Hugging Face folder (text stage)")
    p.add_argument("--hubert", help="chinese-hubert-base Hugging Face folder (audio stage)")
    p.add_argument("--sovits", help="S2 (SoVITS) generator weights .pth (semantic stage)")
    p.add_argument("--sv", help="v2Pro/v2ProPlus: the speaker-verification model pretrained_eres2netv2w24s4ep4.ckpt "
                                "(sv stage: one speaker embedding per utterance; 'all' then includes it)")
    p.add_argument("--version", default="v2", choices=["v1", "v2"], help="symbol table of the phone ids (v2 for every model but v1)")
    p.add_argument("--stage", action="append", choices=["text", "audio", "semantic", "sv", "pack", "all"],
                   help="stage(s) to run, repeatable (default: all = text, audio, semantic, [sv with --sv,] pack)")
    p.add_argument("--shard", default="0/1", help="i/n: this worker's share of the utterances (default 0/1)")
    p.add_argument("--chunk-items", type=int, default=64, help="items per resumable chunk (default 64)")
    p.add_argument("--chunk-seconds", type=float, default=120.0, help="publish a chunk at least this often")
    p.add_argument("--batch-size", type=int, default=1,
                   help="clips per HuBERT call (padded batch, same results; >1 pays off on accelerators)")
    p.add_argument("--retry-failed", action="store_true", help="try items that failed in an earlier run again")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--import-original", metavar="EXP_DIR",
                   help="convert the original's logs/<exp> folder (2-name2text.txt, 3-bert, 4-cnhubert, "
                        "5-wav32k, 6-name2semantic.tsv) into a dataset at --out")
    p.add_argument("--export-original", metavar="EXP_DIR",
                   help="write the dataset at --out as the original's logs/<exp> folder")
    p.add_argument("--half", action="store_true", help="export .pt features in fp16 (as the original with is_half)")
    p.add_argument("--num-shards", type=int, default=1, help="shards written by --import-original")
    return p


def check_args(args) -> None:
    """Cheap checks before any model or file is touched; each message names the flag and the fix."""
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the dataset")
    if args.export_original:
        if not out.is_dir():
            raise FileNotFoundError(f"--out {out}: no dataset there to export (prepare one first)")
        return
    if args.import_original:
        if not pathlib.Path(args.import_original).is_dir():
            raise FileNotFoundError(f"--import-original {args.import_original}: no such folder "
                                    "(give the original's logs/<experiment> folder)")
        if args.num_shards < 1:
            raise ValueError(f"--num-shards must be >= 1, got {args.num_shards}")
    elif not args.list:
        raise ValueError("--list is required to prepare a dataset: an annotation file with one "
                         "'wav_path|speaker|LANG|text' per line (see data/demo/demo.list)")
    if args.list and not pathlib.Path(args.list).is_file():
        raise FileNotFoundError(f"--list {args.list} not found" +
                                (" (it is a folder; give the .list file)" if pathlib.Path(args.list).is_dir() else ""))
    if args.import_original:
        return
    if args.wav_dir and not pathlib.Path(args.wav_dir).is_dir():
        raise FileNotFoundError(f"--wav-dir {args.wav_dir}: no such folder")
    for flag, value, ok in (("--chunk-items", args.chunk_items, args.chunk_items >= 1),
                            ("--batch-size", args.batch_size, args.batch_size >= 1),
                            ("--chunk-seconds", args.chunk_seconds, args.chunk_seconds > 0)):
        if not ok:
            raise ValueError(f"{flag} must be {'> 0' if flag == '--chunk-seconds' else '>= 1'}, got {value}")


def run(args) -> None:
    from gsv_jax.data import original_layout, prepare

    check_args(args)
    if args.import_original:
        n = original_layout.import_original(args.import_original, args.out, version=args.version,
                                            num_shards=args.num_shards, list_path=args.list,
                                            progress=not args.no_progress)
        print(f"imported {n['items']} items into {args.out}; skipped {len(n['skipped'])}")
        for name, why in list(n["skipped"].items())[:20]:
            print(f"  {name}: {why}")
        return
    if args.export_original:
        n = original_layout.export_original(args.out, args.export_original, half=args.half,
                                            progress=not args.no_progress)
        print(f"exported {n} items to {args.export_original}")
        return
    shard, num_shards = prepare.parse_shard(args.shard)
    stages = args.stage or ["all"]
    if "all" in stages:
        stages = ["text", "audio", "semantic"] + (["sv"] if args.sv else []) + ["pack"]
    models = prepare.load_models(bert=args.bert, hubert=args.hubert, sovits=args.sovits, sv=args.sv)
    summary = prepare.prepare(args.list, args.out, models, stages=stages, shard=shard, num_shards=num_shards,
                              wav_dir=args.wav_dir, version=args.version, chunk_items=args.chunk_items,
                              chunk_seconds=args.chunk_seconds, retry_failed=args.retry_failed,
                              progress=not args.no_progress, batch_size=args.batch_size,
                              meta={"models": {"bert": args.bert, "hubert": args.hubert, "sovits": args.sovits,
                                               **({"sv": args.sv} if args.sv else {})}})
    print(prepare.format_summary(summary))
    print(f"summary: {summary['summary_path']}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as e:  # bad arguments and unreadable inputs: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
