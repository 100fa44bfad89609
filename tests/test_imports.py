"""Every module of the package imports, and every command line answers ``--help``.

In CI (``.ci/run``) this runs in a fresh virtual environment built from setup.cfg alone, so a
dependency the code imports but setup.cfg does not declare fails here with its module name.
"""
import importlib
import pathlib
import pkgutil
import subprocess
import sys

import pytest

import gsv_jax

REPO = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    names = ["gsv_jax"]
    for info in pkgutil.walk_packages(gsv_jax.__path__, prefix="gsv_jax."):
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def test_the_walk_sees_the_whole_package():
    # a broken walk (e.g. a package without __init__.py) would make the import test below vacuous
    files = {p for p in (REPO / "gsv_jax").rglob("*.py") if (p.parent / "__init__.py").exists()}
    assert len(MODULES) == len(files), sorted(set(map(str, files)) - set(MODULES))
    assert {"gsv_jax.data.format", "gsv_jax.io.torch_io", "gsv_jax.inference.tts", "gsv_jax.text.chinese"} <= set(
        MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)


# Command lines: ``--help`` imports the script's top level (and whatever it imports before parsing)
# and must exit 0 listing its options, in a clean interpreter.
CLIS = [
    ["infer.py"],
    ["train.py"],
    ["data/prepare.py"],
    ["data/asr.py"],
    ["data/slice.py"],
    ["-m", "gsv_jax.convert"],
]


@pytest.mark.parametrize("cli", CLIS, ids=[" ".join(c) for c in CLIS])
def test_command_line_help(cli):
    proc = subprocess.run([sys.executable, *cli, "--help"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--help" in proc.stdout, proc.stdout[-2000:]  # argparse and absl both list it
