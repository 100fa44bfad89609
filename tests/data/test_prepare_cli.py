"""data/prepare.py as a user meets it: bad arguments give one line and exit code 2 (no traceback),
before any model is loaded; a finished run prints the path of its summary JSON."""
import importlib.util
import json
import pathlib

import pytest

from gsv_jax.data import prepare as prepare_lib

from .fakes import DEMO_LIST, fake_models

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_cli():
    spec = importlib.util.spec_from_file_location("prepare_cli", REPO / "data" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()

BAD = [  # (arguments, words the one-line message must contain); {d} is a scratch folder
    (["--out", "{d}/ds"], "--list is required to prepare a dataset"),
    (["--list", "{d}/missing.list", "--out", "{d}/ds"], "--list {d}/missing.list not found"),
    (["--list", "{d}", "--out", "{d}/ds"], "it is a folder; give the .list file"),
    (["--list", str(DEMO_LIST), "--out", "{d}/afile"], "--out {d}/afile is a file"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--wav-dir", "{d}/nowhere"], "--wav-dir {d}/nowhere: no such folder"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--chunk-items", "0"], "--chunk-items must be >= 1"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--chunk-seconds", "0"], "--chunk-seconds must be > 0"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--shard", "2/2"], "--shard 2/2: need n >= 1 and 0 <= i < n"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--shard", "x"], "--shard must look like i/n"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--stage", "text"], "this stage needs --bert <path>"),
    (["--list", str(DEMO_LIST), "--out", "{d}/ds", "--stage", "text", "--bert", "{d}/nobert"],
     "--bert {d}/nobert not found"),
    (["--import-original", "{d}/noexp", "--out", "{d}/ds"], "--import-original {d}/noexp: no such folder"),
    (["--import-original", "{d}", "--out", "{d}/ds"], "not a complete original experiment folder"),
    (["--export-original", "{d}/exp", "--out", "{d}/nods"], "no dataset there to export"),
]


@pytest.mark.parametrize(("argv", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_one_line_exit_2(tmp_path, capsys, argv, words):
    (tmp_path / "afile").write_text("x")
    assert cli.main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert words.format(d=tmp_path) in err, err


def test_summary_prints_the_path_of_its_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prepare_lib, "load_models", lambda **kw: fake_models(fake_text=True))
    out = tmp_path / "ds"
    assert cli.main(["--list", str(DEMO_LIST), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    path = out / "work" / "summary-s00000of00001.json"
    assert printed[-1] == f"summary: {path}"
    summary = json.loads(path.read_text())
    assert summary["stages"]["pack"]["new"] == summary["assigned"] > 0
