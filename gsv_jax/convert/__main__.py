"""Convert GPT-SoVITS weights between the original PyTorch files and this project's checkpoints.

  python -m gsv_jax.convert to-jax   s1bert.ckpt  models/v2/s1.gsv       # S1: original .ckpt -> ours (one file)
  python -m gsv_jax.convert to-jax   s2G2333k.pth models/v2/s2           # S2: original .pth  -> ours (a folder)
  python -m gsv_jax.convert to-torch models/v2/s1.gsv  mine.ckpt          # ours -> original .ckpt (GPT WebUI)
  python -m gsv_jax.convert to-torch models/v2/s2      mine.pth           # ours -> original exported .pth

Which model a file holds is detected from its contents. Loading either format is equally
possible everywhere (``gsv_jax.load_s1`` / ``load_s2`` and ``infer.py`` read both), so converting
is only needed to hand weights to the other world. Every write is atomic and follows the umask.

``--verify`` re-reads the written file and compares every tensor with the model that was written
(bit for bit, in the stored dtype; an export also in the source's key order). A native S2 folder
keeps the source's config fields and key order, so to-jax then to-torch gives the original back.
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


def convert(src, dst, direction: str, *, verify: bool = False) -> tuple[str, str | None]:
    """Convert ``src`` to ``dst``; returns ``(kind, what --verify checked or None)``."""
    import gsv_jax

    src, dst = pathlib.Path(src), pathlib.Path(dst)
    if direction not in ("to-jax", "to-torch"):
        raise ValueError(f"unknown direction {direction!r}; use to-jax or to-torch")
    if src.resolve() == dst.resolve():
        raise ValueError(f"source and destination are the same path ({src}); give another destination")
    kind = _kind(src)
    if direction == "to-torch" and dst.is_dir():
        raise ValueError(f"{dst} is a folder; to-torch writes one file (e.g. {dst / ('model.ckpt' if kind == 's1' else 'model.pth')})")
    if direction == "to-jax" and kind == "s1" and dst.is_dir():
        raise ValueError(f"{dst} is a folder; an S1 checkpoint of ours is one file (e.g. {dst / 's1.gsv'})")
    if direction == "to-jax" and kind == "s2" and dst.exists() and not dst.is_dir():
        raise ValueError(f"{dst} is a file; an S2 checkpoint of ours is a folder")
    if kind == "s1":
        model = gsv_jax.load_s1(src)
        model.save(dst) if direction == "to-jax" else gsv_jax.save_s1_torch(model, dst)
    else:
        model = gsv_jax.load_s2(src)
        model.save(dst) if direction == "to-jax" else gsv_jax.save_s2_torch(model, dst)
    return kind, (verify_written(kind, direction, model, dst) if verify else None)


def _leaves(tree) -> dict:
    import jax
    import numpy as np

    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _compare(want: dict, got: dict, where, *, ordered: bool) -> int:
    """Every tensor equal in name, dtype, shape and bits; raises naming the first difference."""
    import numpy as np

    if (list(want) if ordered else sorted(want)) != (list(got) if ordered else sorted(got)):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise VerifyError(f"{where}: tensor names differ from the model written"
                          + (f" (missing {missing[:3]}, unexpected {extra[:3]})" if missing or extra
                             else " (same names, another order)"))
    for k, a in want.items():
        b = got[k]
        if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            raise VerifyError(f"{where}: tensor {k} differs ({a.dtype}{list(a.shape)} written, "
                              f"{b.dtype}{list(b.shape)} read back)")
    return len(want)


class VerifyError(ValueError):
    """The written file does not read back as the model that was written."""


def verify_written(kind: str, direction: str, model, dst: pathlib.Path) -> str:
    """Re-read ``dst`` and compare every tensor with ``model``; returns a one-line account."""
    import gsv_jax
    from gsv_jax.io.torch_io import load_torch_file

    if direction == "to-torch":  # the file's own tensors, in the stored dtype and order
        if kind == "s1":
            import jax
            import numpy as np

            from gsv_jax.convert import s1 as conv_s1

            want = conv_s1.params_to_state_dict(jax.tree.map(np.asarray, model.params), model.dims)
        else:
            want = model.state_dict()
        n = _compare(dict(want), dict(load_torch_file(dst)["weight"]), dst, ordered=True)
        return f"verified: re-read {dst}, {n} tensors identical to the model (fp16, same order)"
    back = gsv_jax.load_s1(dst) if kind == "s1" else gsv_jax.load_s2(dst)
    n = _compare(_leaves(model.params), _leaves(back.params), dst, ordered=False)
    if kind == "s2":
        n += _compare(_leaves(model.buffers), _leaves(back.buffers), dst, ordered=False)
        if back.key_order != model.key_order or back.config != model.config:
            raise VerifyError(f"{dst}: the stored config or key order differs from the model written")
        if (back.hparams.to_dict() if back.hparams else None) != (model.hparams.to_dict() if model.hparams else None):
            raise VerifyError(f"{dst}: the stored original config (hparams) differs from the model written")
    elif back.config.to_dict() != model.config.to_dict():
        raise VerifyError(f"{dst}: the stored config differs from the model written")
    return f"verified: re-read {dst}, {n} tensors identical to the model (float32), config equal"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gsv_jax.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direction", choices=["to-jax", "to-torch"],
                   help="to-jax: original PyTorch file -> our checkpoint; to-torch: ours (or original) -> original format")
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("dst", type=pathlib.Path)
    p.add_argument("--verify", action="store_true",
                   help="re-read the written file and compare every tensor with the model written")
    args = p.parse_args(argv)
    try:
        kind, checked = convert(args.src, args.dst, args.direction, verify=args.verify)
    except (FileNotFoundError, ValueError) as e:  # CheckpointError and VerifyError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"converted {kind.upper()} {args.src} -> {args.dst}")
    print(checked or "not re-read (add --verify to re-read it and compare every tensor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
