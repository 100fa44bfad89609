"""infer.py with SoVITS v3/v4 model folders in the original's pretrained_models names (tiny golden
S1/S2/vocoders, tiny Hugging Face BERT/HuBERT folders): the file is written at the model's rate (24 kHz
v3, 48 kHz v4) with the right length, and the v3/v4 refusals come as one line with exit code 2
before the slow loads (no prompt text, a mismatched vocoder, a LoRA without its base, bad --sample-steps).

The two end-to-end runs are subprocesses sharing one compilation cache (the second reuses the S1,
BERT, HuBERT and CFM programs; only its vocoder is new)."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import soundfile as sf

from gsv_jax.inference import selftest
from tests.conftest import REPO, golden_path
from tests.test_infer_cli import _load_infer

pytest.importorskip("torch")  # the tiny Hugging Face folders are written by transformers

N = 18  # --max-new-tokens
SAMPLES = {"v3": lambda n: int(2 * n * 1.875) * 256, "v4": lambda n: 4 * n * 480}
LAYOUT = {"v3": {"s2Gv3.pth": "s2Gv3_tiny.pth", "models--nvidia--bigvgan_v2_24khz_100band_256x": "bigvgan_v3_tiny"},
          "v4": {"gsv-v4-pretrained/s2Gv4.pth": "s2Gv4_tiny.pth",
                 "gsv-v4-pretrained/vocoder.pth": "vocoder_v4_tiny.pth"}}


def _put(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from tests.data.test_prepare_models import tiny_bert_folder, tiny_hubert_folder

    d = tmp_path_factory.mktemp("v3v4cli")
    shared = {"chinese-roberta-wwm-ext-large": tiny_bert_folder(d / "bert"),
              "chinese-hubert-base": tiny_hubert_folder(d / "hubert"), "s1v3.ckpt": golden_path("s1_v2_tiny.ckpt")}
    folders = {}
    for version, files in LAYOUT.items():
        folder = folders[version] = d / f"pretrained_{version}"
        for name, src in shared.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).symlink_to(src)
        for name, src in files.items():
            _put(golden_path(src), folder / name)
    ref = selftest.write_selftest_reference(d / "ref.wav")
    return {"dir": d, "folders": folders, "ref": ref}


def _argv(work, version, out, **over):
    args = {"--model-dir": str(work["folders"][version]), "--ref": str(work["ref"]), "--ref-text": "这是参考音频。",
            "--ref-lang": "zh", "--text": "你好世界。", "--text-lang": "zh", "--out": str(out),
            "--max-new-tokens": str(N), "--top-k": "1", "--sample-steps": "2"}
    args.update(over)
    return [a for k, v in args.items() if v is not None for a in (k, v)] + ["-q"]


@pytest.mark.parametrize("version, rate", [("v3", 24000), ("v4", 48000)])
def test_infer_writes_the_models_rate(work, version, rate):
    out = work["dir"] / f"out_{version}.wav"
    env = dict(os.environ, XDG_CACHE_HOME=str(work["dir"] / "cache"))
    res = subprocess.run([sys.executable, str(REPO / "infer.py"), *_argv(work, version, out)], capture_output=True,
                         text=True, timeout=600, env=env, cwd=work["dir"])
    assert res.returncode == 0, res.stdout + res.stderr
    info = sf.info(str(out))
    assert info.samplerate == rate and info.channels == 1
    assert f"at {rate} Hz" in res.stdout
    # greedy with the tiny golden S1: no end token, so the segment has exactly --max-new-tokens tokens
    assert "without ending: [1]" in res.stdout, res.stdout
    assert info.frames == SAMPLES[version](N) + int(0.3 * rate)


@pytest.fixture
def cli(monkeypatch):
    """infer.py in-process; S1/BERT/HuBERT loading fails the test (the refusals come before them)."""
    import gsv_jax

    for name in ("load_s1", "load_bert", "load_hubert"):
        monkeypatch.setattr(gsv_jax, name, lambda *a, _n=name: pytest.fail(f"{_n} ran before the refusal"))
    return _load_infer()


def _refused(cli, capsys, argv, words):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert re.search(words, err), err


def test_v3v4_refusals_before_loading(work, cli, capsys, monkeypatch):
    import gsv_jax

    out = work["dir"] / "never.wav"

    with monkeypatch.context() as m:  # from a look at the file: not even the SoVITS model is loaded
        m.setattr(gsv_jax, "load_s2", lambda *a, **k: pytest.fail("load_s2 ran before the prompt check"))
        _refused(cli, capsys, _argv(work, "v4", out, **{"--ref-text": ""}),
                 r"s2Gv4\.pth is a SoVITS v3/v4 model: prompt_text cannot be empty when using SoVITS v3/v4")
        _refused(cli, capsys, _argv(work, "v3", out, **{"--sample-steps": "0"}), r"--sample-steps must be >= 1")
    # a v3 model with the v4 vocoder (folder and flag)
    mixed = work["dir"] / "mixed"
    shutil.copytree(work["folders"]["v3"], mixed, symlinks=True)
    shutil.rmtree(mixed / "models--nvidia--bigvgan_v2_24khz_100band_256x")
    _put(golden_path("vocoder_v4_tiny.pth"), mixed / "gsv-v4-pretrained" / "vocoder.pth")
    _refused(cli, capsys, _argv(work, "v3", out, **{"--model-dir": str(mixed)}),
             r"mismatched models: .*s2Gv3\.pth is v3, which needs the BigVGAN vocoder folder .* holds the v4 vocoder")
    _refused(cli, capsys, _argv(work, "v4", out, **{"--vocoder": str(golden_path("bigvgan_v3_tiny"))}),
             r"mismatched models: .* is v4 but the vocoder .*bigvgan_v3_tiny is the v3 one \(24000 Hz\)")
    # a LoRA fine-tune as s2.pth without its base: names the base and the flag
    lora = work["dir"] / "lora"
    shutil.copytree(work["folders"]["v3"], lora, symlinks=True)
    (lora / "s2Gv3.pth").unlink()
    shutil.copy(golden_path("s2Gv3_lora_tiny.pth"), lora / "s2.pth")
    _refused(cli, capsys, _argv(work, "v3", out, **{"--model-dir": str(lora)}),
             r"v3 LoRA fine-tune, which needs its base model s2Gv3\.pth .*--sovits-base")
    assert not out.exists()
