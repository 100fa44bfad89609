"""``python train.py`` end to end, as users run it: the original's prepared experiment folders,
fine-tuning from original-format weights, auto-resume from ``--workdir``, export at the end."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import golden_path

REPO = pathlib.Path(__file__).resolve().parents[2]
PHONES = "n i3 h ao3 sh i4 j ie4"  # v2 symbols, word2ph [2, 2, 2, 2]


def _train(args, devices=2, timeout=900):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def jax_leaf_count(tree):
    return len(jax.tree.leaves(tree))


def fp16(tree):
    return jax.tree.map(lambda a: np.asarray(a).astype(np.float16), tree)


def saved_params(workdir, step):
    """The parameters the run itself saved at ``step`` (its orbax checkpoint, read onto one device)."""
    import logging

    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax warns about per-item metadata files
    path = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
    ckpt = ocp.StandardCheckpointer()
    tree = ckpt.metadata(path).item_metadata.tree
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state = ckpt.restore(path, jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), tree))
    assert int(state["step"]) == step
    return jax.device_get(state["params"])


def assert_same_tree(got, want, *, what, rtol=0.0, atol=0.0):
    assert jax.tree.structure(got) == jax.tree.structure(want), what
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=rtol, atol=atol,
                                   err_msg=f"{what}{jax.tree_util.keystr(path)}")


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _s2_experiment(exp, n=6):
    import soundfile as sf

    from gsv_jax.io.torch_io import save_torch_file

    (exp / "4-cnhubert").mkdir(parents=True)
    (exp / "5-wav32k").mkdir()
    rs = np.random.RandomState(0)
    lines = []
    for i in range(n):
        frames = 40 + 3 * i
        t = np.arange(frames * 640) / 32000.0
        x = sum(np.sin(2 * np.pi * (110 + 15 * i) * h * t) / h for h in range(1, 6))
        sf.write(exp / "5-wav32k" / f"u{i}.wav", (x / np.abs(x).max() * 0.5 * 32767).astype(np.int16), 32000,
                 subtype="PCM_16")
        save_torch_file((rs.randn(1, 768, 2 * frames) * 0.5).astype(np.float16), exp / "4-cnhubert" / f"u{i}.wav.pt")
        lines.append(f"u{i}.wav\t{PHONES}\t[2, 2, 2, 2]\t你好世界")
    (exp / "2-name2text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_s2_fine_tune_resume_and_export(tmp_path):
    """train.py S2: fine-tune from the golden G/D (original training-checkpoint layout) on an
    original experiment folder, stop, resume to a later step, export loadable weights."""
    exp, work = tmp_path / "exp", tmp_path / "run"
    _s2_experiment(exp)
    common = ["--config", "s2_tiny", "--workdir", str(work),
              "--init-from", str(golden_path("s2_train_tiny_G.pth")), str(golden_path("s2_train_tiny_D.pth")),
              f"--config.data.exp_dir={exp}", "--config.train.batch_size=2", "--config.train.log_every=1",
              "--config.train.save_every=2", "--config.model.segment_size=8", "--config.data.boundaries=(32, 64)",
              "--config.train.progress_bar=False", "--config.train.tensorboard=False",
              "--config.train.disc_width_div=1"]
    out = _train(common + ["--config.train.num_steps=2"])
    assert "fine-tuning from" in out and "mesh {'data': 2" in out
    first = _metrics(work)
    assert [m["step"] for m in first] == [1, 2] and all(np.isfinite(m["loss"]) for m in first)
    out = _train(common + ["--config.train.num_steps=3"])
    assert "resumed from" in out and "fine-tuning from" not in out  # the checkpoint wins over --init-from
    steps = [m["step"] for m in _metrics(work)]
    assert steps == [1, 2, 3], steps
    export = work / "export"
    assert {p.name for p in export.iterdir()} >= {"G_2.pth", "D_2.pth", "G_3.pth", "D_3.pth"}
    import gsv_jax
    from gsv_jax.train.s2_task import S2Task
    from tests.train.test_s2_train import tiny_config

    s2 = gsv_jax.load_s2(next(export.glob("gsv_jax_e*_s3.pth")))
    assert s2.version == "v2"
    config = tiny_config()
    config.train.disc_width_div = 1  # the golden D, as trained above
    task = S2Task.from_config(config)
    back, info = task.params_from_original(export / "G_3.pth", export / "D_3.pth")
    assert set(back) == {"g", "d", "codebook"} and info["iteration"] >= 1  # codebook: the quantizer statistics
    # the exported G/D (fp32) hold exactly what the run saved at that step (tolerance: the weight-norm
    # g/v split and fold of the export, fp32 rounding), and training moved them away from --init-from
    trained = saved_params(work, 3)
    assert_same_tree(back, trained, what="G_3/D_3 vs checkpoint 3 ", rtol=1e-6, atol=1e-6)
    assert_same_tree(task.params_from_original(export / "G_2.pth", export / "D_2.pth")[0], saved_params(work, 2),
                     what="G_2/D_2 vs checkpoint 2 ", rtol=1e-6, atol=1e-6)
    init, _ = task.params_from_original(golden_path("s2_train_tiny_G.pth"), golden_path("s2_train_tiny_D.pth"))
    moved = [float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())
             for a, b in zip(jax.tree.leaves(trained["g"]), jax.tree.leaves(init["g"]))]
    assert max(moved) > 1e-4, "three steps did not change the generator"
    # the fp16 inference weights are the trained generator rounded to fp16 (enc_q is not exported)
    trained_g = {k: v for k, v in trained["g"].items() if k != "enc_q"}
    weights, _ = task.params_from_original(next(export.glob("gsv_jax_e*_s3.pth")))
    assert_same_tree({k: v for k, v in weights["g"].items() if k != "enc_q"}, trained_g,
                     what="exported weights vs checkpoint 3 ", rtol=2e-3, atol=2e-4)


@pytest.mark.slow
def test_s1_train_from_original_folder_and_export(tmp_path):
    from gsv_jax.io.torch_io import save_torch_file

    exp, work = tmp_path / "exp", tmp_path / "run"
    (exp / "3-bert").mkdir(parents=True)
    rs = np.random.RandomState(0)
    text, sem = [], ["item_name\tsemantic_audio"]
    for i in range(8):
        text.append(f"u{i}.wav\t{PHONES}\t[2, 2, 2, 2]\t你好世界")
        save_torch_file(rs.randn(1024, 8).astype(np.float16), exp / "3-bert" / f"u{i}.wav.pt")
        sem.append(f"u{i}.wav\t" + " ".join(str(v) for v in rs.randint(0, 1024, 20 + i)))
    (exp / "2-name2text.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    (exp / "6-name2semantic.tsv").write_text("\n".join(sem) + "\n", encoding="utf-8")
    out = _train(["--config", "s1_tiny.py", "--workdir", str(work), f"--config.data.exp_dir={exp}",
                  "--config.train.batch_size=4", "--config.train.accum_steps=1", "--config.train.num_steps=3",
                  "--config.train.log_every=1", "--config.train.progress_bar=False",
                  "--config.train.tensorboard=False"])
    assert [m["step"] for m in _metrics(work)] == [1, 2, 3], out[-2000:]
    ckpts = list((work / "export").glob("*.ckpt"))
    assert len(ckpts) == 1
    import gsv_jax

    s1 = gsv_jax.load_s1(ckpts[0])  # the exported original-format .ckpt loads back
    assert jax_leaf_count(s1.params) > 0
    # ... and holds exactly the parameters the run saved at its last step, rounded to fp16 as the original stores them
    from gsv_jax.convert.s1 import read_s1_checkpoint

    _, _, exported, info = read_s1_checkpoint(ckpts[0])
    trained = saved_params(work, 3)
    assert_same_tree(exported, fp16(trained), what="s1 export vs checkpoint 3 ")
    assert info == "GPT-e3"


def test_train_help_lists_the_flags():
    r = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0
    for flag in ("--config", "--workdir", "--init_from", "compile_only", "--stop_after", "s2_v2.py"):
        assert flag in r.stdout
