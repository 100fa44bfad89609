"""``train.py`` errors a user meets: each is ONE line on stderr and exit status 2, before any slow work
(no model is built, nothing is compiled). ``main()`` runs in-process (fast); one subprocess checks the
real command line."""
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gsv_jax import configs
from tests.conftest import golden_path
from tests.train.test_train_cli import PHONES, _s2_experiment

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_cli():
    if "train" not in sys.modules:  # absl flags are global: import train.py once per process
        spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["train"] = module
        spec.loader.exec_module(module)
    return sys.modules["train"]


@pytest.fixture
def run(train_cli, capsys):
    def call(*args):
        code = train_cli.main(["train.py", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def _s1_experiment(exp, n=4, semantic_len=20):
    from gsv_jax.io.torch_io import save_torch_file

    (exp / "3-bert").mkdir(parents=True)
    rs = np.random.RandomState(0)
    text, sem = [], ["item_name\tsemantic_audio"]
    for i in range(n):
        text.append(f"u{i}.wav\t{PHONES}\t[2, 2, 2, 2]\t你好世界")
        save_torch_file(rs.randn(1024, 8).astype(np.float16), exp / "3-bert" / f"u{i}.wav.pt")
        sem.append(f"u{i}.wav\t" + " ".join(str(v) for v in rs.randint(0, 1024, semantic_len)))
    (exp / "2-name2text.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    (exp / "6-name2semantic.tsv").write_text("\n".join(sem) + "\n", encoding="utf-8")
    return exp


def _one_error_line(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_negative_batch_size(run, tmp_path):
    exp = _s1_experiment(tmp_path / "exp")
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}",
                       "--config.train.batch_size=-1")
    _one_error_line(code, err, "--config.train.batch_size=-1", "positive integer")
    assert not (tmp_path / "run").exists()  # nothing was started


def test_workdir_that_is_a_file(run, tmp_path):
    exp = _s1_experiment(tmp_path / "exp")
    work = tmp_path / "run.txt"
    work.write_text("not a folder")
    code, _, err = run("--config", "s1_tiny", "--workdir", str(work), f"--config.data.exp_dir={exp}")
    _one_error_line(code, err, str(work), "is a file")
    code, _, err = run("--config", "s1_tiny", "--workdir", str(work / "sub"), f"--config.data.exp_dir={exp}")
    _one_error_line(code, err, "cannot be created")


def test_unknown_config_key_says_what_was_meant(run, tmp_path):
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path), "--config.train.batchsize=4")
    _one_error_line(code, err, "--config.train.batchsize", "did you mean 'batch_size'")
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path), "--config.optimm.lr=1")
    _one_error_line(code, err, "did you mean 'optim'")
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path), "--config.train.batch_size=abc")
    _one_error_line(code, err, "batch_size", "abc")


def test_missing_config_and_data_and_init_from(run, tmp_path):
    code, _, err = run("--config", "configs/s2_v2.py", "--workdir", str(tmp_path))
    _one_error_line(code, err, "configs/s2_v2.py", "--config s2_v2", "gsv_jax/configs/", *configs.presets())
    code, _, err = run("--workdir", str(tmp_path))
    _one_error_line(code, err, "--config is required", "s2_v2")
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path / "run"))
    _one_error_line(code, err, "--config.data.exp_dir", "--config.data.dataset")
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path / "run"),
                       f"--config.data.dataset={tmp_path / 'none'}")
    _one_error_line(code, err, "--config.data.dataset=", "no such folder")
    exp = _s1_experiment(tmp_path / "exp")
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}",
                       "--init-from", str(tmp_path / "missing.ckpt"))
    _one_error_line(code, err, "--init-from", "missing.ckpt", "no such file")
    assert not (tmp_path / "run").exists()


def test_every_item_filtered_out(run, tmp_path):
    # 1400 semantic tokens = 56 s > max_sec 54: the original's filter drops every item
    exp = _s1_experiment(tmp_path / "exp", semantic_len=1400)
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}")
    _one_error_line(code, err, "training data:", "no training item survives")
    exp2 = tmp_path / "exp2"
    _s2_experiment(exp2, n=2)  # 40 and 43 frames: outside the only bucket (200, 300]
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path / "run2"), f"--config.data.exp_dir={exp2}",
                       "--config.data.boundaries=(200, 300)")
    _one_error_line(code, err, "training data:", "no usable S2 item")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_init_from_a_checkpoint_of_another_architecture(run, tmp_path):
    exp = _s1_experiment(tmp_path / "exp")
    code, _, err = run("--config", "s1_v2", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}",
                       "--init-from", str(golden_path("s1_v2_tiny.ckpt")))
    _one_error_line(code, err, "--init-from", "dim=64 but the config has 512", "--config s1_v2")
    exp2 = tmp_path / "exp2"
    _s2_experiment(exp2, n=2)
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path / "run2"), f"--config.data.exp_dir={exp2}",
                       "--config.data.boundaries=(32, 64)", "--init-from", str(golden_path("s1_v2_tiny.ckpt")))
    _one_error_line(code, err, "--init-from", "GPT (S1")


def test_s2_takes_at_most_two_init_files_and_s1_one(run, tmp_path):
    exp = _s1_experiment(tmp_path / "exp")
    g = str(golden_path("s1_v2_tiny.ckpt"))
    code, _, err = run("--config", "s1_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}",
                       "--init-from", g, g)
    _one_error_line(code, err, "--init-from takes one S1 .ckpt")
    code, _, err = run("--config", "s2_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.exp_dir={exp}",
                       "--init-from", g, g, g)
    _one_error_line(code, err, "--init-from takes a generator and optionally a discriminator")


def test_the_command_line_exits_2_with_one_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "train.py", "--config", "s2_tiny", "--workdir", str(tmp_path),
                        "--config.train.batch_size=-1"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == ["error: --config.train.batch_size=-1: must be a positive integer"]
