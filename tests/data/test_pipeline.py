"""S1 input pipeline: the original's filters, few static shapes, host shards, checkpointable
position; readers for our dataset format and the original's experiment folder; optimiser bits."""
import numpy as np
import optax
import pytest

from gsv_jax.data.pipeline import InMemoryS1Reader, S1BatchIterator, S1DataConfig, epoch_plan, filter_items


def _items(n, seed=0):
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        ny = int(rs.randint(20, 400))
        nx = max(2, int(ny * rs.uniform(0.2, 0.8)))
        out.append({"name": f"u{i}", "phone_ids": rs.randint(0, 732, nx).astype(np.int32),
                    "bert": rs.standard_normal((1024, nx)).astype(np.float16),
                    "semantic": rs.randint(0, 1024, ny).astype(np.int32)})
    return out


def test_filters_as_original():
    cfg = S1DataConfig()
    ph = np.array([10, 10, 600, 100, 10, 50])
    sem = np.array([25, 2000, 1300, 25, 100, 50])
    # kept: 0 (10 ph/s); dropped: 1 (>1350 tokens), 2 (>540 phones), 3 (100 ph/s > 25), 4 (2.5 ph/s < 3)
    # 5: 25 ph/s (kept, the bound is inclusive)
    kept = filter_items(ph, sem, cfg)
    assert sorted(set(kept.tolist())) == [0, 5]
    assert len(kept) == 2 * 50  # fewer than 100 survivors: repeated max(2, 100 // n) times


def test_static_shapes_and_loss_len():
    it = S1BatchIterator(InMemoryS1Reader(_items(200)), S1DataConfig(batch_size=8, seed=3))
    shapes = it.shapes()
    assert len(shapes) <= 8  # few compiled shapes
    for _ in range(10):
        b = next(it)
        tx, ty = b["x"].shape[1], b["y"].shape[1]
        assert (tx, ty) in shapes and b["bert"].shape == (8, 1024, tx)
        assert (b["loss_len"] == b["y_lens"].max() + 1).all()
        for r in range(8):  # right padding as the original collate: 0 for phonemes, 1024 for semantic
            assert (b["x"][r, b["x_lens"][r]:] == 0).all() and (b["y"][r, b["y_lens"][r]:] == 1024).all()
            assert not b["bert"][r, :, b["x_lens"][r]:].any()


def test_host_shards_partition_the_global_batch_and_state_resumes():
    items = _items(120)
    cfg = S1DataConfig(batch_size=8, seed=1)
    full = S1BatchIterator(InMemoryS1Reader(items), cfg)
    hosts = [S1BatchIterator(InMemoryS1Reader(items), cfg, h, 2) for h in range(2)]
    for _ in range(3):
        g = next(full)
        parts = [next(h) for h in hosts]
        for k in g:
            np.testing.assert_array_equal(g[k], np.concatenate([p[k] for p in parts]))
    state = full.get_state()
    want = [next(full) for _ in range(2)]
    again = S1BatchIterator(InMemoryS1Reader(items), cfg)
    again.set_state(state)
    for w in want:
        got = next(again)
        for k in w:
            np.testing.assert_array_equal(w[k], got[k])


def test_epochs_reshuffle_with_seed():
    items = _items(100)
    cfg = S1DataConfig(batch_size=4, seed=0)
    sem = np.array([len(i["semantic"]) for i in items])
    idx = np.arange(100)
    a0, a1 = epoch_plan(idx, sem, cfg, 0), epoch_plan(idx, sem, cfg, 1)
    assert [x.tolist() for x in a0] == [x.tolist() for x in epoch_plan(idx, sem, cfg, 0)]
    assert [x.tolist() for x in a0] != [x.tolist() for x in a1]
    assert sorted(np.concatenate(a0).tolist())[:100] != []  # every batch full size
    assert all(len(x) == 4 for x in a0)
    assert set(np.concatenate(a0).tolist()) == set(range(100))


def test_reads_our_dataset_format(tmp_path):
    fmt = pytest.importorskip("gsv_jax.data.format")
    items = _items(12)
    with fmt.DatasetWriter(tmp_path / "ds", shard=0, num_shards=1) as w:
        for it in items:
            w.add(dict(it, lang="zh", ssl=np.zeros((768, 4), np.float16), wav32k=np.zeros(640, np.int16)))
    reader = fmt.open_dataset(tmp_path / "ds")
    it = S1BatchIterator(reader, S1DataConfig(batch_size=4, seed=0, num_threads=2))
    b = next(it)
    names = {i["name"] for i in items}
    assert b["x"].shape[0] == 4 and len(names) == 12
    np.testing.assert_array_equal(reader.lengths("semantic"), [len(i["semantic"]) for i in items])


def test_reads_original_experiment_folder(tmp_path):
    from gsv_jax.data.original_s1 import OriginalS1Folder
    from gsv_jax.io.torch_io import save_torch_file

    exp = tmp_path / "exp"
    (exp / "3-bert").mkdir(parents=True)
    (exp / "2-name2text.txt").write_text(
        "a.wav\tn i3 h ao3\t[2, 2]\t你好\n"
        "b.wav\tHH AH0 L OW1\t[4]\thello\n"
        "broken line without tabs\n", encoding="utf-8")
    (exp / "6-name2semantic.tsv").write_text(
        "item_name\tsemantic_audio\na.wav\t1 2 3 4 5 6\nb.wav\t7 8 9\nmissing.wav\t1 2\n", encoding="utf-8")
    feat = np.arange(1024 * 4, dtype=np.float16).reshape(1024, 4)
    save_torch_file(feat, exp / "3-bert" / "a.wav.pt")
    r = OriginalS1Folder(str(exp))
    assert len(r) == 2
    a, b = r[0], r[1]
    assert a["name"] == "a.wav" and a["phone_ids"].dtype == np.int32 and len(a["phone_ids"]) == 4
    np.testing.assert_array_equal(a["bert"], feat)
    assert not b["bert"].any() and b["bert"].shape == (1024, 4)  # no BERT file (non-zh): zeros
    np.testing.assert_array_equal(b["semantic"], [7, 8, 9])
    np.testing.assert_array_equal(r.lengths("semantic"), [6, 3])


def test_adamw_warmup_cosine_schedule():
    from gsv_jax.train.optim import warmup_cosine

    s = warmup_cosine(1e-3, warmup_steps=10, total_steps=110, init_lr=0.0, end_lr=1e-5)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(5e-4)
    assert float(s(10)) == pytest.approx(1e-3)
    assert float(s(60)) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=1e-5)
    assert float(s(110)) == pytest.approx(1e-5) and float(s(500)) == pytest.approx(1e-5)
    with pytest.raises(ValueError):
        warmup_cosine(1e-3, 10, 5)


def test_grad_accumulation_equals_big_batch():
    import flax.linen as nn
    import jax

    from gsv_jax.train.state import TrainState
    from gsv_jax.train.step import make_step_fn
    from tests.train.toy import ToyData, ToyTask

    task = ToyTask()
    params = nn.meta.unbox(task.init_params(jax.random.PRNGKey(0)))
    tx = optax.sgd(0.1)
    batch = next(ToyData(8))
    st = TrainState(step=np.int32(0), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0))

    def det_loss(p, b, r, train):  # dropout off so both paths see the same function
        return ToyTask.loss_fn(task, p, b, r, False)

    task.loss_fn = det_loss
    one = jax.jit(make_step_fn(task, tx, optax.constant_schedule(0.1)))(st, batch, jax.random.PRNGKey(1))
    acc = jax.jit(make_step_fn(task, tx, optax.constant_schedule(0.1), accum_steps=2, accum_reduce="mean"))(
        st, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(float(one[1]["loss"]), float(acc[1]["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one[0].params), jax.tree.leaves(acc[0].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
