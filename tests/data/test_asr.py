"""ASR labelling: backend selection, the message when none is installed, .list output (fake backends)."""
import importlib.machinery
import subprocess
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from gsv_jax.data import asr


def _fake_module(monkeypatch, name, **attrs):
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)


class _Seg:
    def __init__(self, text):
        self.text = text


class FakeWhisper:
    calls: ClassVar[list] = []

    def __init__(self, model, device, compute_type):
        self.model = model

    def transcribe(self, path, **kw):
        FakeWhisper.calls.append(kw)
        if "bad" in path:
            raise RuntimeError("decode error")
        lang = "zh" if "zh" in path else "en"
        return iter([_Seg(" hello"), _Seg(" there ")]), types.SimpleNamespace(language=lang)


class FakeFunASR:
    def __init__(self, **kw):
        self.kw = kw

    def generate(self, input):
        return [{"text": "你好"}]


def test_message_when_no_backend(monkeypatch, tmp_path):
    monkeypatch.setattr(asr, "installed_backends", list)
    with pytest.raises(asr.ASRUnavailable, match="pip install faster-whisper"):
        asr.make_transcriber()
    with pytest.raises(asr.ASRUnavailable, match="'funasr' is not installed"):
        asr.make_transcriber("funasr")
    env_has = [b for b in asr.BACKENDS if importlib.util.find_spec(asr._MODULES[b])]
    if not env_has:  # the CLI exits with status 2 and the install hint
        repo = __import__("pathlib").Path(__file__).resolve().parents[2]
        res = subprocess.run([sys.executable, str(repo / "data" / "asr.py"), str(tmp_path)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 2 and "no ASR backend is installed" in res.stderr


def test_whisper_backend_writes_list_and_reports_failures(monkeypatch, tmp_path):
    _fake_module(monkeypatch, "faster_whisper", WhisperModel=FakeWhisper)
    monkeypatch.setattr(asr, "installed_backends", lambda: ["faster-whisper"])
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a_en.wav", "b_zh.wav", "c_bad.wav"):
        sf.write(clips / name, np.zeros(1600, np.float32), 16000)
    (clips / "notes.txt").write_text("not audio")
    run = asr.make_transcriber()
    res = asr.transcribe(clips, tmp_path / "out.list", run, progress=False)
    assert res["written"] == 2 and list(res["failed"]) == [str((clips / "c_bad.wav").resolve())]
    lines = (tmp_path / "out.list").read_text().splitlines()
    assert lines == [f"{(clips / 'a_en.wav').resolve()}|clips|EN|hello there",
                     f"{(clips / 'b_zh.wav').resolve()}|clips|ZH|hello there"]
    assert FakeWhisper.calls[0]["beam_size"] == 5 and FakeWhisper.calls[0]["vad_filter"] is True
    assert FakeWhisper.calls[0]["vad_parameters"] == {"min_silence_duration_ms": 700}


def test_zh_is_redone_with_funasr_and_skeleton_filled(monkeypatch, tmp_path):
    _fake_module(monkeypatch, "faster_whisper", WhisperModel=FakeWhisper)
    _fake_module(monkeypatch, "funasr", AutoModel=FakeFunASR)
    monkeypatch.setattr(asr, "installed_backends", lambda: ["faster-whisper", "funasr"])
    skeleton = tmp_path / "sk.list"
    skeleton.write_text("/x/a_zh.wav|me|ZH|\n/x/b_en.wav|me||\n/x/c.wav|me|JA|already labelled\n")
    res = asr.transcribe(skeleton, tmp_path / "full.list", asr.make_transcriber(), progress=False)
    assert res["written"] == 3
    assert (tmp_path / "full.list").read_text().splitlines() == [
        "/x/a_zh.wav|me|ZH|你好", "/x/b_en.wav|me|EN|hello there", "/x/c.wav|me|JA|already labelled"]
    # an explicit zh language with FunASR installed picks FunASR directly
    run = asr.make_transcriber(language="zh")
    assert run("/x/any.wav") == ("你好", "zh")
    with pytest.raises(ValueError, match="unknown ASR backend"):
        asr.make_transcriber("kaldi")
