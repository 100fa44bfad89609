"""Train S1 (text -> semantic tokens) or S2 (SoVITS GAN) from one CPU to a TPU pod slice (docs/training.md).

    python train.py --config s1_v2 --workdir runs/exp1 \\
        --config.data.exp_dir=logs/myexp --config.train.batch_size=32
    python train.py --config s1_v2 --workdir runs/ft --init-from s1v3.ckpt ...        # fine-tune
    python train.py --config s2_v2 --workdir runs/s2 --config.data.exp_dir=logs/myexp \\
        --init-from s2G2333k.pth s2D2333k.pth                                # S2 fine-tune (G [D])
    python train.py --config s1_v2 --compile-only --topology v5e-16 \\
        --config.mesh.fsdp=-1 --config.mesh.data=1                          # does it fit? (no TPU needed)

``--config`` takes a preset shipped in ``gsv_jax/configs/`` (``s1_v1``, ``s1_v2``, ``s1_tiny``,
``s2_v1``, ``s2_v2``, ``s2_tiny``) or the path of a config file; overrides use ml_collections syntax
(``--config.train.batch_size=32``); ``--help`` lists the flags. This file only parses the flags, picks
the task from ``config.train.task`` (``gsv_jax/train/task.py``) and dispatches to its ``train`` or
``compile_only``. A problem the user can fix (a bad value, a missing file, no usable data) prints
one line on stderr and exits with status 2, before any slow work.
"""
from __future__ import annotations

import difflib
import os
import sys

from absl import flags
from ml_collections import config_flags

# dashed spellings are accepted: --init-from, --compile-only, --fake-devices
_DASHED = {"--init-from": "--init_from", "--compile-only": "--compile_only", "--fake-devices": "--fake_devices",
           "--no-compile-only": "--nocompile_only", "--hbm-gib": "--hbm_gib", "--stop-after": "--stop_after"}

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "a preset shipped in gsv_jax/configs/ (s1_v1, s1_v2, s1_tiny, s2_v1, s2_v2, s2_tiny; "
    "e.g. --config s2_v2.py or s2_v2) or the path of a config file", lock_config=True)
flags.DEFINE_string("workdir", None, "run folder: checkpoints/, tb/, metrics.jsonl, export/ (resumes from it)")
flags.DEFINE_string("init_from", None, "original S1 .ckpt to fine-tune from (used when workdir has no checkpoint); "
                    "S2: G.pth [D.pth] (original G_*/D_*.pth or pretrained s2G/s2D)")
flags.DEFINE_bool("compile_only", False, "compile the sharded train step (S1 or S2), print memory/FLOPs per "
                  "device (and, with --topology, the step time at the chip's peak bf16 rate), exit")
flags.DEFINE_string("topology", None, "TPU topology for --compile-only, e.g. v5e-16, v5e:4x4, v4-32, v5p-64, v6e-8 "
                    "(needs `pip install libtpu`; no TPU hardware)")
flags.DEFINE_integer("fake_devices", 0, "--compile-only without --topology: number of fake CPU devices")
flags.DEFINE_integer("tx", 0, "--compile-only: padded phoneme length (S1 default: the largest x bucket; "
                     "S2 default: 25 phonemes per second of audio)")
flags.DEFINE_integer("ty", 0, "--compile-only: padded semantic length (S1, default: the largest y bucket) or "
                     "spectrogram frames at 50 per second (S2, default: the largest length bucket)")
flags.DEFINE_float("hbm_gib", 0.0, "--compile-only: device memory to check against (default: by topology, 16 for v5e)")
flags.DEFINE_string("export", None, "where to write the final weights: S1 an original .ckpt (default "
                    "<workdir>/export/s1-step<N>.ckpt), S2 a folder (default <workdir>/export)")
flags.DEFINE_integer("stop_after", 0, "stop after this many updates in this invocation (0 = run to num_steps)")
FLAGS = flags.FLAGS


class ArgumentError(Exception):
    """A command-line problem (printed as one line, exit status 2)."""


def normalise_argv(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        head, sep, tail = a.partition("=")
        out.append(_DASHED.get(head, head) + sep + tail)
    return out


def _flag_value(argv: list[str], name: str) -> tuple[int, str | None]:
    """(index, value) of ``--name=value`` / ``--name value`` in argv; (-1, None) when absent."""
    for i, a in enumerate(argv):
        if a.startswith(f"--{name}="):
            return i, a.split("=", 1)[1]
        if a == f"--{name}":
            return i, argv[i + 1] if i + 1 < len(argv) else ""
    return -1, None


def _use_fake_devices(argv: list[str]):
    """--compile-only without --topology compiles for N fake CPU devices; XLA must know N before jax starts."""
    n = _flag_value(argv, "fake_devices")[1]
    if n and n.isdigit() and int(n) > 0:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={int(n)}").strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _resolve_config(argv: list[str]) -> list[str]:
    """``--config NAME`` (a shipped preset) -> ``--config <its file>``; a missing file is an ArgumentError."""
    from gsv_jax import configs

    i, value = _flag_value(argv, "config")
    if value is None or not value:
        raise ArgumentError(f"--config is required: a shipped preset ({', '.join(configs.presets())}; "
                            "e.g. --config s2_v2) or the path of a config file")
    name, colon, arg = value.partition(":")  # ml_collections' "file.py:argument"
    try:
        path = configs.resolve(name)
    except FileNotFoundError as e:
        raise ArgumentError(str(e)) from None
    argv = list(argv)
    resolved = str(path) + colon + arg
    if argv[i] == "--config":
        argv[i + 1] = resolved
    else:
        argv[i] = "--config=" + resolved
    return argv


def _check_overrides(argv: list[str]):
    """Every ``--config.a.b=...`` names a key of the config (ml_collections' own error is a traceback)."""
    from gsv_jax import configs

    overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if not overrides:
        return
    path = _flag_value(argv, "config")[1].partition(":")[0]
    try:
        config = configs.load(path)
    except Exception as e:  # a user's config file that fails to load
        raise ArgumentError(f"--config {path}: could not load it ({type(e).__name__}: {e})") from e
    for key in overrides:
        node, where = config, "config"
        for part in key.split("."):
            if hasattr(node, "keys") and part in node:
                node, where = node[part], f"{where}.{part}"
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node, where = node[int(part)], f"{where}.{part}"
            else:
                keys = sorted(node.keys()) if hasattr(node, "keys") else []
                close = difflib.get_close_matches(part, keys, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                listing = f"(keys of {where}: {', '.join(keys)})" if keys else f"({where} has no sub-keys)"
                raise ArgumentError(f"--config.{key}: {where} has no key {part!r}; {hint}{listing}")


def _one_line(message) -> str:
    return " ".join(str(message).split())


def parse_flags(argv: list[str]) -> list[str]:
    """Parse ``argv`` into FLAGS (a clean slate each call); returns the positional arguments."""
    argv = _resolve_config(argv)
    _check_overrides(argv)
    FLAGS.unparse_flags()
    for name in [n for n in FLAGS if n.startswith("config.")]:  # overrides of an earlier parse (main() in tests)
        delattr(FLAGS, name)
    saved, sys.argv = sys.argv, argv  # ml_collections finds the --config.* overrides in sys.argv
    try:
        return FLAGS(argv)[1:]
    except flags.Error as e:
        raise ArgumentError(_one_line(e)) from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # raised by ml_collections' overrides
        raise ArgumentError(f"bad --config override: {_one_line(e)}") from None
    finally:
        sys.argv = saved


def dispatch(positional: list[str]) -> None:
    """Pick the task from ``config.train.task`` and run its ``compile_only`` or ``train``."""
    from absl import logging as absl_logging

    from gsv_jax.train.mesh import maybe_initialize_distributed
    from gsv_jax.train.task import task_class

    config = _CONFIG.value
    if "train" not in config:
        raise ArgumentError("the config has no 'train' section; start from a shipped preset (e.g. --config s1_v2)")
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every file at INFO
    task = task_class(config.train.get("task", "s1"))
    init_from = [p for p in (FLAGS.init_from or "").split(",") if p] + positional  # S2: --init-from G.pth D.pth
    if FLAGS.compile_only:
        from gsv_jax.train.aot import compile_only

        task.check_config(config, None, (), data=False)
        compile_only(task, config, topology=FLAGS.topology, tx_len=FLAGS.tx, ty_len=FLAGS.ty, hbm_gib=FLAGS.hbm_gib)
        return
    if not FLAGS.workdir:
        raise ArgumentError("--workdir is required (the run folder; training resumes from it)")
    task.check_config(config, FLAGS.workdir, init_from)
    maybe_initialize_distributed()
    task.train(config, FLAGS.workdir, init_from, stop_after=FLAGS.stop_after or None, export_path=FLAGS.export)


def main(argv: list[str] | None = None) -> int:
    argv = normalise_argv(list(sys.argv if argv is None else argv))
    if any(a in ("-h", "--help", "--helpshort") for a in argv[1:]):
        from absl import app

        FLAGS.unparse_flags()
        FLAGS(argv[:1])
        app.usage(shorthelp=True, writeto_stdout=True)
        return 0
    _use_fake_devices(argv)
    from gsv_jax.train.checkpoint import CheckpointMismatch
    from gsv_jax.train.task import TrainingSetupError

    try:
        dispatch(parse_flags(argv))
    except (ArgumentError, TrainingSetupError, CheckpointMismatch) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
