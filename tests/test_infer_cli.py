"""infer.py as a user meets it: every cheap check fails with one line and exit code 2 before any
model is loaded; ``--selftest`` writes nothing into the current folder; a segment that never ends
is reported by number; the summary gives the model load time."""
import importlib.util
import logging
import pathlib
import tempfile

import numpy as np
import pytest
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load_infer():
    spec = importlib.util.spec_from_file_location("infer_cli", REPO / "infer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


infer = _load_infer()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    tone = lambda s: (0.1 * np.sin(np.arange(int(32000 * s)) / 10)).astype(np.float32)
    sf.write(d / "ok.wav", tone(4), 32000)
    sf.write(d / "ok44k.flac", (0.1 * np.sin(np.arange(44100 * 5) / 10)).astype(np.float32), 44100)
    sf.write(d / "zero.wav", np.zeros(32000 * 4, np.float32), 32000)
    sf.write(d / "short.wav", tone(2), 32000)
    sf.write(d / "long.wav", tone(11), 32000)
    sf.write(d / "tiny.wav", tone(0.03), 32000)
    (d / "junk.wav").write_text("not audio")
    (d / "latin1.txt").write_bytes("café olé".encode("latin-1"))
    (d / "bom.txt").write_bytes("\ufeff你好世界。".encode())
    (d / "afile").write_text("x")
    return d


@pytest.fixture
def no_models(monkeypatch):
    """Any attempt to load models fails the test: the checks must come first."""
    def refuse(args):
        raise AssertionError("models were loaded before the arguments were checked")
    monkeypatch.setattr(infer, "_load_tts", refuse)


def _base(files, **over):
    args = {"--model-dir": str(files / "models"), "--ref": str(files / "ok.wav"), "--ref-text": "参考音频。",
            "--text": "你好世界。", "--out": str(files / "out" / "x.wav")}
    args.update(over)
    return [a for k, v in args.items() if v is not None for a in (k, v)]


BAD = [  # (options changed from _base, words the one-line message must contain)
    ({"--out": "/proc/x.wav"}, "cannot write in /proc"),
    ({"--out": "{d}/afile/x.wav"}, "is a file, not a folder"),
    ({"--out": "{d}/afile/sub/x.wav"}, "is a file, not a folder"),
    ({"--out": "{d}/x.mp4"}, "unknown audio type '.mp4'"),
    ({"--out": "{d}/x"}, "unknown audio type '(no extension)'"),
    ({"--out": "{d}/folder.wav"}, "is a folder; give a file name"),
    ({"--text": ""}, "text to speak is empty"),
    ({"--text": "   \n"}, "text to speak is empty"),
    ({"--text": "。。。！"}, "nothing to speak"),
    ({"--text": None}, "nothing to say: give --text or --text-file"),
    ({"--text": None, "--text-file": "{d}/latin1.txt"}, "latin1.txt is not UTF-8 text (byte 0xe9 at offset 3)"),
    ({"--text": None, "--text-file": "{d}/missing.txt"}, "--text-file {d}/missing.txt not found"),
    ({"--text-lang": "xx"}, "--text-lang 'xx' is not a language code"),
    ({"--ref-lang": "jp"}, "--ref-lang 'jp' is not a language code"),
    ({"--speed": "0"}, "--speed must be > 0"),
    ({"--speed": "-1"}, "--speed must be > 0"),
    ({"--top-k": "0"}, "--top-k must be >= 1"),
    ({"--top-p": "0"}, "--top-p must be in (0, 1]"),
    ({"--top-p": "1.5"}, "--top-p must be in (0, 1]"),
    ({"--temperature": "-1"}, "--temperature must be > 0"),
    ({"--temperature": "0"}, "--temperature must be > 0"),
    ({"--temperature": "nan"}, "--temperature must be > 0"),
    ({"--repetition-penalty": "0"}, "--repetition-penalty must be > 0"),
    ({"--batch-size": "0"}, "--batch-size must be >= 1"),
    ({"--pause": "-1"}, "--pause must be >= 0"),
    ({"--noise-scale": "-0.5"}, "--noise-scale must be >= 0"),
    ({"--max-new-tokens": "0"}, "--max-new-tokens must be >= 1"),
    ({"--ref": None}, "give a reference clip with --ref"),
    ({"--ref": "{d}/missing.wav"}, "--ref {d}/missing.wav not found"),
    ({"--ref": "{d}"}, "(it is a folder)"),
    ({"--ref": "{d}/junk.wav"}, "is not audio that soundfile can read"),
    ({"--ref": "{d}/zero.wav"}, "is silent (every sample is zero)"),
    ({"--ref": "{d}/short.wav"}, "3-10 s range; choose a clip between 3 and 10 seconds): --ref {d}/short.wav is 2.00 s"),
    ({"--ref": "{d}/long.wav"}, "is 11.00 s"),
    ({"--ref": "{d}/tiny.wav", "--ref-text": ""}, "too short"),  # reference-free: no 3-10 s rule, but a spectrogram
    ({"--aux-ref": "{d}/zero.wav"}, "--aux-ref {d}/zero.wav is silent"),
    ({"--aux-ref": "{d}/missing.wav"}, "--aux-ref {d}/missing.wav not found"),
]


@pytest.mark.parametrize(("change", "words"), BAD, ids=[" ".join(f"{k}={v}" for k, v in c.items()) for c, _ in BAD])
def test_bad_input_one_line_exit_2_before_models(files, no_models, capsys, change, words):
    (files / "folder.wav").mkdir(exist_ok=True)
    change = {k: (v.format(d=files) if v is not None else None) for k, v in change.items()}
    assert infer.main(_base(files, **change)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert words.format(d=files) in err, err
    assert not (files / "out").exists()  # nothing written, no folder created


def test_good_inputs_reach_the_model_loader(files, no_models, capsys):
    """The checks do not refuse what is fine: a 44.1 kHz flac, a BOM'd UTF-8 file, .ogg/.flac outputs
    in folders that do not exist yet, reference-free mode with a short clip's sibling."""
    for change in ({"--ref": str(files / "ok44k.flac")},
                   {"--text": None, "--text-file": str(files / "bom.txt")},
                   {"--out": str(files / "new" / "deeper" / "x.ogg")},
                   {"--out": str(files / "x.FLAC"), "--ref-text": "", "--ref-lang": "not-used-when-ref-free"},
                   {"--text-lang": "auto", "--aux-ref": str(files / "ok.wav")}):
        with pytest.raises(AssertionError, match="models were loaded"):
            infer.main(_base(files, **change))
    assert not (files / "new").exists()
    assert infer.read_text(infer.build_parser().parse_args(["--text-file", str(files / "bom.txt")])) == "你好世界。"


def test_missing_models_message(files, capsys):
    assert infer.main(_base(files)) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "s2.pth" in err


def test_selftest_uses_a_temporary_folder_and_reports_load_time_and_capped_segments(
        tmp_path, monkeypatch, capsys, caplog):
    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    args = infer.build_parser().parse_args(["--selftest", "-q", "--max-new-tokens", "8", "--no-compile-cache"])
    with caplog.at_level(logging.WARNING):
        summary = infer.run(args)
    assert list(cwd.iterdir()) == []  # nothing in the current folder
    out = pathlib.Path(summary["out"])
    assert out.parent.parent == scratch and out.name == "out.wav"
    data, sr = sf.read(out)
    assert sr == 32000 and len(data) > 0
    assert summary["load_seconds"] > 0 and "models loaded in" in capsys.readouterr().out
    # random weights never emit EOS: every segment hits the cap and is named in a warning
    assert summary["no_eos_segments"] == [1]
    assert any("segment 1 of 1" in r.getMessage() and "max_new_tokens=8" in r.getMessage() for r in caplog.records)

    # with --out: only that file is written; the scratch folder (reference, tokenizer) is removed
    target = tmp_path / "given" / "self.flac"
    before = set(scratch.iterdir())
    infer.run(infer.build_parser().parse_args(["--selftest", "-q", "--max-new-tokens", "8", "--no-compile-cache",
                                               "--out", str(target)]))
    assert target.is_file() and set(scratch.iterdir()) == before and list(cwd.iterdir()) == []
