"""Pretraining S2 with the codebook learned (``freeze_quantizer=False``): a run killed with
``kill -9`` and resumed from its last checkpoint equals an uninterrupted run, codebook included
(k-means initialisation on the first batch, then EMA statistics and expiry draws every step), and
the learned codebook survives export and re-import (docs/pretraining.md).

The killed run is this file run as a script (``python -m tests.train.test_pretrain_resume WORKDIR``),
on the tiny S2 of ``test_s2_train`` (8 fake devices, data 2 x fsdp 2 x tensor 2), with a
checkpoint every step. Three compiles of the GAN step: minutes on 2 cores, hence ``heavy``.
"""
import os
import re
import signal
import subprocess
import sys
import time

if __name__ == "__main__":  # the killed run: fake devices before JAX starts (conftest does it for pytest)
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import numpy as np
import pytest

from gsv_jax.train.loop import LoopConfig, run
from gsv_jax.train.mesh import mesh_from_config
from gsv_jax.train.s2_task import S2Task, codebook_embed, flat_codebook
from tests.train.test_s2_train import REPO, data_iter, tiny_config

STEPS = 6


def pretrain_config():
    config = tiny_config(steps=STEPS)
    config.model.freeze_quantizer = False
    return config


def _killed_run(work, kill_after: int) -> list[int]:
    """Train in a subprocess, ``kill -9`` it once it reports step ``kill_after``; the steps it reported."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.train.test_pretrain_resume", str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(REPO))
    seen, output = [], []
    try:
        for line in proc.stdout:
            output.append(line)
            m = re.fullmatch(r"step (\d+)", line.strip())  # our own lines (the loop logs "step N: ...")
            if m:
                seen.append(int(m.group(1)))
                if seen[-1] >= kill_after:
                    break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # an early end (e.g. the kernel's OOM killer) shows as a negative returncode and the output
    assert seen and seen[-1] >= kill_after, (seen, proc.returncode, "".join(output[-30:]))
    return seen


@pytest.mark.heavy
def test_kill9_resume_with_learned_codebook_equals_uninterrupted(tmp_path):
    config = pretrain_config()
    task = S2Task.from_config(config)
    assert task.trainable_quantizer
    mesh = mesh_from_config(config)
    cfg = LoopConfig.from_config(config.train)
    work = tmp_path / "killed"
    _killed_run(work, kill_after=3)
    time.sleep(0.1)
    straight = run(task, task.tx, lambda s: 0.0, data_iter(config), str(tmp_path / "straight"), mesh, cfg)
    rest = run(task, task.tx, lambda s: 0.0, data_iter(config), str(work), mesh, cfg)
    first = rest.history[0]["step"]
    # resumed after the k-means initialisation (step 1) and before the end
    assert 2 <= first <= STEPS and rest.history[-1]["step"] == STEPS, [h["step"] for h in rest.history]
    for key in ("loss", "loss_mel", "kl_ssl", "codebook_perplexity", "codes_used_fraction"):
        np.testing.assert_allclose([h[key] for h in rest.history], [h[key] for h in straight.history[first - 1:]],
                                   rtol=1e-5, err_msg=key)
    a, b = jax.device_get(straight.state.params), jax.device_get(rest.state.params)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, err_msg=jax.tree_util.keystr(path))
    # the codebook was learned (not the frozen statistics): initialised, uneven EMA counts, and the
    # rows of live codes (EMA count >= 2; the others were just replaced by batch rows) are the EMA
    # means embed_avg / smoothed counts
    cb = flat_codebook(b["codebook"])
    assert np.asarray(cb["inited"]).item() == 1.0 and np.ptp(cb["cluster_size"]) > 0.1, cb["cluster_size"][:8]
    n = cb["cluster_size"].sum()
    smoothed = (cb["cluster_size"] + 1e-5) / (n + cb["cluster_size"].size * 1e-5) * n
    live = cb["cluster_size"] >= 2
    assert live.any() and not live.all(), int(live.sum())
    np.testing.assert_allclose(codebook_embed(b["g"])[live], (cb["embed_avg"] / smoothed[:, None])[live],
                               rtol=1e-4, atol=1e-5)

    # export (the original's G_*.pth + the fp16 weights) and re-import keep this learned codebook
    paths = task.export_original(b, tmp_path / "export", STEPS, 1)
    back, _ = task.params_from_original(paths["G"], paths["D"])
    for k, v in flat_codebook(b["codebook"]).items():
        np.testing.assert_array_equal(flat_codebook(back["codebook"])[k], v, err_msg=k)
    np.testing.assert_array_equal(codebook_embed(back["g"]), codebook_embed(b["g"]))
    weights, _ = task.params_from_original(paths["weights"])
    np.testing.assert_array_equal(codebook_embed(weights["g"]),
                                  codebook_embed(b["g"]).astype(np.float16).astype(np.float32))


if __name__ == "__main__":
    jax.config.update("jax_default_matmul_precision", "highest")
    config = pretrain_config()
    config.train.save_every = 1
    task = S2Task.from_config(config)
    run(task, task.tx, lambda s: 0.0, data_iter(config), sys.argv[1], mesh_from_config(config),
        LoopConfig.from_config(config.train), on_log=lambda s, m: print(f"step {s}", flush=True))
