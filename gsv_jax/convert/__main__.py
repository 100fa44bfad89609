"""Convert GPT-SoVITS weights between the original PyTorch files and this project's checkpoints.

  python -m gsv_jax.convert to-jax   s1bert.ckpt  models/v2/s1.gsv       # S1: original .ckpt -> ours (one file)
  python -m gsv_jax.convert to-jax   s2G2333k.pth models/v2/s2           # S2: original .pth  -> ours (a folder)
  python -m gsv_jax.convert to-torch models/v2/s1.gsv  mine.ckpt          # ours -> original .ckpt (GPT WebUI)
  python -m gsv_jax.convert to-torch models/v2/s2      mine.pth           # ours -> original exported .pth

Which model a file holds is detected from its contents. Loading either format is equally
possible everywhere (``gsv_jax.load_s1`` / ``load_s2`` and ``infer.py`` read both), so converting
is only needed to hand weights to the other world. Every write is atomic.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from gsv_jax.io.torch_io import CheckpointError


def _kind(path: pathlib.Path) -> str:
    """"s1" or "s2" from the file's contents."""
    from gsv_jax.inference import s1 as s1_api
    from gsv_jax.inference import s2 as s2_api

    if path.is_dir():
        if (path / s2_api.OWN_CONFIG).exists():
            return "s2"
        raise CheckpointError(f"{path} is a folder without {s2_api.OWN_CONFIG}: not a checkpoint of ours")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    with open(path, "rb") as f:
        head = f.read(len(s1_api.NATIVE_MAGIC))
    if head == s1_api.NATIVE_MAGIC:
        return "s1"
    from gsv_jax.io.torch_io import load_torch_file

    obj = load_torch_file(path)
    weights = obj.get("weight") if isinstance(obj, dict) else None
    if isinstance(weights, dict) and any(k.startswith("model.ar_") for k in weights):
        return "s1"
    if isinstance(obj, dict) and ("weight" in obj or "model" in obj):
        return "s2"
    raise CheckpointError(f"{path}: neither GPT (S1) nor SoVITS (S2) weights")


def convert(src, dst, direction: str) -> str:
    import gsv_jax

    src, dst = pathlib.Path(src), pathlib.Path(dst)
    kind = _kind(src)
    if kind == "s1":
        model = gsv_jax.load_s1(src)
        model.save(dst) if direction == "to-jax" else gsv_jax.save_s1_torch(model, dst)
    else:
        model = gsv_jax.load_s2(src)
        model.save(dst) if direction == "to-jax" else gsv_jax.save_s2_torch(model, dst)
    return kind


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gsv_jax.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direction", choices=["to-jax", "to-torch"],
                   help="to-jax: original PyTorch file -> our checkpoint; to-torch: ours (or original) -> original format")
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("dst", type=pathlib.Path)
    args = p.parse_args(argv)
    try:
        kind = convert(args.src, args.dst, args.direction)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"converted {kind.upper()} {args.src} -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
