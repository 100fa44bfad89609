"""Sharded training machinery on 8 fake CPU devices: mesh, sharded == single-device step,
restore onto another mesh, kill -9 + resume, loss falls on a tiny synthetic S1 dataset."""
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.data.pipeline import InMemoryS1Reader, S1BatchIterator, S1DataConfig
from gsv_jax.models.s1 import S1Dims
from gsv_jax.train import checkpoint as ckpt_lib
from gsv_jax.train.loop import LoopConfig, run
from gsv_jax.train.mesh import make_mesh, resolve_mesh_shape
from gsv_jax.train.optim import original_s1_schedule, scaled_adam
from gsv_jax.train.s1_task import S1Task
from gsv_jax.train.state import create_train_state, state_shardings, with_shardings
from gsv_jax.train.step import batch_shardings, jit_step, make_step_fn, to_device_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = S1Dims(vocab_size=1025, phoneme_vocab_size=732, dim=32, heads=4, n_layer=2, dropout_rate=0.0,
              corrected_mask=True)


def synthetic_items(n, seed=0, max_y=60):
    """Learnable toy pairs: the semantic sequence is a fixed function of the phonemes."""
    rs = np.random.RandomState(seed)
    items = []
    for i in range(n):
        nx = rs.randint(4, 14)
        ph = rs.randint(1, 40, nx).astype(np.int32)
        sem = np.repeat((ph * 7) % 50, 3)[:max_y].astype(np.int32)
        items.append({"name": f"s{i}", "phone_ids": ph, "bert": np.zeros((1024, nx), np.float16), "semantic": sem})
    return items


def tiny_data(batch_size, seed=0, n=24):
    cfg = S1DataConfig(batch_size=batch_size, seed=seed, y_buckets=(64,), x_buckets=(16,), num_threads=1)
    return S1BatchIterator(InMemoryS1Reader(synthetic_items(n)), cfg)


def test_mesh_fill_and_errors():
    assert resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    assert resolve_mesh_shape({"data": 1, "fsdp": -1, "tensor": 1}, 8) == (1, 8, 1)
    with pytest.raises(ValueError, match="at most one"):
        resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="does not divide"):
        resolve_mesh_shape({"data": 3, "fsdp": -1}, 8)
    m = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert dict(m.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def _numpy_params(task, seed=0):
    # host-made random parameters (cheaper than compiling the model's init twice)
    import flax.linen as nn

    rs = np.random.RandomState(seed)
    abstract = nn.meta.unbox(jax.eval_shape(task.init_params, jax.random.PRNGKey(0)))
    return jax.tree.map(lambda a: (rs.standard_normal(a.shape) * 0.2 + (1.0 if a.shape == (1,) else 0.0)).astype(np.float32),
                        abstract)


def _two_steps(mesh, batch, dims=TINY):
    # plain SGD: ScaledAdam's first steps move every element by ~lr*rms*sign(g), so elements whose
    # gradient is ~0 could flip sign between summation orders; SGD keeps the comparison at 1e-5.
    import optax

    task = S1Task(dims)
    sched = optax.constant_schedule(1e-3)
    tx = optax.sgd(sched)
    state, sh = create_train_state(task, tx, mesh, jax.random.PRNGKey(3), params=_numpy_params(task))
    spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
    b_sh = batch_shardings(spec, mesh)
    step = jit_step(make_step_fn(task, tx, sched), sh, b_sh, mesh)
    rng = jax.device_put(jax.random.PRNGKey(0), sh.rng)
    losses = []
    for _ in range(2):
        state, m = step(state, to_device_batch(batch, b_sh), rng)
        losses.append(float(m["loss"]))
    return losses, jax.device_get(state.params), state


def test_sharded_step_equals_single_device():
    batch = next(tiny_data(8))
    mesh8 = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    l8, p8, s8 = _two_steps(mesh8, batch)
    # the parameters really are split over fsdp and tensor
    qkv = s8.params["layers_0"]["attn"]["qkv_kernel"]
    assert qkv.sharding.spec[0] == "fsdp" and "tensor" in tuple(qkv.sharding.spec)
    assert len({str(s.index) for s in qkv.addressable_shards}) == 4
    l1, p1, _ = _two_steps(make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]), batch)
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_hash_dropout_stream():
    """The default dropout stream: keep rate right, key-dependent, and the sharded step with
    dropout on equals the single-device step (masks depend on global positions only)."""
    from gsv_jax.train.dropout_rng import dropout_key

    k = dropout_key(jax.random.PRNGKey(7))
    m = np.asarray(jax.jit(lambda k: jax.random.bernoulli(k, 0.9, (4, 8, 64, 64)))(k))
    assert abs(m.mean() - 0.9) < 0.005 and np.all(np.abs(m.reshape(4, -1).mean(1) - 0.9) < 0.01)
    m2 = np.asarray(jax.random.bernoulli(jax.random.fold_in(k, 1), 0.9, (4, 8, 64, 64)))
    assert abs((m == m2).mean() - 0.82) < 0.01  # independent masks agree on 0.9^2 + 0.1^2
    with pytest.raises(ValueError, match="dropout_rng"):
        S1Task(TINY, dropout_rng="fast")
    batch = next(tiny_data(8))
    dims = dataclasses.replace(TINY, dropout_rate=0.1)
    l8, p8, _ = _two_steps(make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), batch, dims)
    l1, p1, _ = _two_steps(make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]), batch, dims)
    l0, _, _ = _two_steps(make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]), batch, TINY)
    assert abs(l1[0] - l0[0]) > 1e-3 * abs(l0[0])  # dropout really is on
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_remat_gives_the_same_step():
    import optax

    from gsv_jax.train.state import TrainState

    task = S1Task(dataclasses.replace(TINY, dropout_rate=0.1))
    params = jax.tree.map(jnp.asarray, _numpy_params(task))
    tx, sched = optax.sgd(1e-3), optax.constant_schedule(1e-3)
    batch = next(tiny_data(4))
    out = []
    for remat in ("none", "dots"):
        st = TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
        out.append(jax.jit(make_step_fn(task, tx, sched, remat=remat))(st, batch, jax.random.PRNGKey(2)))
    np.testing.assert_allclose(float(out[0][1]["loss"]), float(out[1][1]["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(out[0][0].params), jax.tree.leaves(out[1][0].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="remat"):
        make_step_fn(task, tx, sched, remat="all")


def test_restore_onto_different_mesh(tmp_path):
    task = S1Task(TINY)
    tx = scaled_adam(original_s1_schedule())
    mesh_a = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    state, _ = create_train_state(task, tx, mesh_a, jax.random.PRNGKey(1), params=_numpy_params(task))
    ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), max_to_keep=2)
    ck.save(5, state, {"epoch": 0, "batch": 7})
    ck.close()
    mesh_b = make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    abstract, sh_b = state_shardings(task, tx, mesh_b, jax.random.PRNGKey(0))
    ck2 = ckpt_lib.Checkpointer(str(tmp_path / "ck"))
    restored, data = ck2.restore(with_shardings(abstract, sh_b))
    ck2.close()
    assert data == {"epoch": 0, "batch": 7}
    for a, b, s in zip(jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(sh_b)):
        np.testing.assert_array_equal(np.asarray(jax.device_get(a)), np.asarray(jax.device_get(b)))
        assert b.sharding == s
    emb = restored.params["text_embedding"]["embedding"]
    assert emb.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")


def test_unfinished_save_removed_synchronously_on_open(tmp_path):
    # a killed run leaves "<step>.orbax-checkpoint-tmp"; opening the folder twice in a row (as the
    # kill -9 test and a resumed train.py do) must remove it once, with no race between the two
    d = tmp_path / "ck"
    (d / "6.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
    (d / "6.orbax-checkpoint-tmp" / "state" / "blob").write_bytes(b"x" * 10)
    look = ckpt_lib.Checkpointer(str(d), clean_unfinished=False)
    assert (d / "6.orbax-checkpoint-tmp").exists() and look.all_steps() == []
    look.close()
    first = ckpt_lib.Checkpointer(str(d))
    assert not (d / "6.orbax-checkpoint-tmp").exists()
    assert first.all_steps() == []
    first.close()
    second = ckpt_lib.Checkpointer(str(d))
    second.save(1, {"w": np.arange(3.0)})
    second.close()
    assert second.all_steps() == [1]


def test_restoring_another_tree_names_the_problem(tmp_path):
    # e.g. an S2 checkpoint from before the codebook joined the training state
    d = str(tmp_path / "ck")
    old = ckpt_lib.Checkpointer(d, async_save=False)
    old.save(1, {"params": {"g": np.ones(3, np.float32)}})
    old.close()
    new = ckpt_lib.Checkpointer(d, async_save=False)
    abstract = {"params": {"g": jax.ShapeDtypeStruct((3,), jnp.float32),
                           "codebook": jax.ShapeDtypeStruct((4,), jnp.float32)}}
    with pytest.raises(ckpt_lib.CheckpointMismatch, match=r"step 1 does not hold this run's training state.*codebook.*--init-from"):
        new.restore(abstract)
    new.close()


def _read_losses(workdir):
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            out[r["step"]] = r["loss"]
    return out


@pytest.mark.slow
def test_kill9_then_resume_matches_uninterrupted(tmp_path):
    from tests.train.toy import ToyData, ToyTask

    steps = 14
    work = str(tmp_path / "killed")
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "tests.train.toy_run", work, str(steps), "3"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = os.path.join(work, "metrics.jsonl")
    deadline = time.time() + 900
    while time.time() < deadline:
        if os.path.exists(metrics) and len(pathlib.Path(metrics).read_text().splitlines()) >= 8:
            break
        if proc.poll() is not None:
            pytest.fail("training subprocess ended before it was killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _read_losses(work)
    assert max(before) < steps, "the run finished before the kill"
    ck = ckpt_lib.Checkpointer(os.path.join(work, "checkpoints"))
    saved = ck.all_steps()
    ck.close()
    assert saved and all(s % 3 == 0 for s in saved)
    # no half-written checkpoint: every step directory is a finalised orbax checkpoint
    entries = [e for e in os.listdir(os.path.join(work, "checkpoints")) if e.isdigit()]
    assert sorted(int(e) for e in entries) == sorted(saved)

    # resume in a fresh process-equivalent run (same code path as train.py) and finish
    sched = original_s1_schedule()
    cfg = LoopConfig(num_steps=steps, log_every=1, save_every=3, keep=2, progress_bar=False, tensorboard=False)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    res = run(ToyTask(), scaled_adam(sched), sched, ToyData(8), work, mesh, cfg)
    resumed = {h["step"]: h["loss"] for h in res.history}
    assert min(resumed) == max(saved) + 1 and max(resumed) == steps
    ref = run(ToyTask(), scaled_adam(sched), sched, ToyData(8), str(tmp_path / "ref"), mesh, cfg)
    reference = {h["step"]: h["loss"] for h in ref.history}
    for s, v in resumed.items():
        assert v == pytest.approx(reference[s], rel=1e-6), s
    for s, v in before.items():
        assert v == pytest.approx(reference[s], rel=1e-6), s


@pytest.mark.slow
def test_s1_loss_falls_on_tiny_synthetic_dataset(tmp_path):
    task = S1Task(dataclasses.replace(TINY, n_layer=1))
    sched = original_s1_schedule()
    cfg = LoopConfig(num_steps=240, log_every=40, save_every=1000, progress_bar=False, tensorboard=True)
    mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    res = run(task, scaled_adam(sched), sched, tiny_data(8), str(tmp_path / "run"), mesh, cfg)
    per_token = [h["loss"] / h["tokens"] for h in res.history]
    assert per_token[-1] < 0.5 * per_token[0], per_token
    assert os.listdir(tmp_path / "run" / "tb")  # TensorBoard events written
