"""S1 model: training forward and DPO forward against the original's golden numbers (s1_v2_tiny)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.convert.s1 import read_s1_checkpoint
from gsv_jax.models import s1 as m
from gsv_jax.nn.positional import sine_table


@pytest.fixture(scope="module")
def tiny(request):
    from tests.conftest import golden_path

    _, dims, params, _ = read_s1_checkpoint(golden_path("s1_v2_tiny.ckpt"))
    return dims, params, dict(np.load(golden_path("s1_v2_tiny.npz")))


def _forward_old(dims, params, g):
    fn = jax.jit(lambda p, *a: m.S1Model(dims).apply({"params": p}, *a, method=m.S1Model.forward_old))
    return fn(params, g["train_x"], g["train_x_lens"], g["train_y"], g["train_y_lens"], g["train_bert"])


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_forward_old_matches_golden(tiny):
    dims, params, g = tiny
    logits, targets = _forward_old(dims, params, g)
    assert logits.shape == g["fwd_old_logits"].shape
    assert _rel(logits, g["fwd_old_logits"]) < 1e-5  # tolerance: 1e-5 relative to the largest logit
    loss = m.cross_entropy_sum(logits, targets)
    np.testing.assert_allclose(float(loss), float(g["fwd_old_loss"]), rtol=1e-5)
    assert float(m.top3_accuracy(logits, targets)) == pytest.approx(float(g["fwd_old_acc"]), abs=1e-7)
    # targets: real tokens, then EOS at every position >= y_len
    t = np.asarray(targets)
    assert t.shape == (2, g["train_y"].shape[1] + 1)
    assert (t[1, g["train_y_lens"][1]:] == 1024).all() and (t[1, : g["train_y_lens"][1]] == g["train_y"][1, : g["train_y_lens"][1]]).all()


def test_forward_dpo_matches_golden(tiny):
    dims, params, g = tiny
    fn = jax.jit(lambda p, *a: m.S1Model(dims).apply({"params": p}, *a, method=m.S1Model.forward_dpo))
    out = fn(params, g["train_x"], g["train_x_lens"], g["train_y"], g["train_y_lens"], g["train_bert"],
             g["fwd_dpo_reject_y"], g["fwd_dpo_reject_y_lens"])
    logits, targets, r_logits, _r_targets = out
    assert _rel(logits, g["fwd_dpo_logits"]) < 1e-5
    assert _rel(r_logits, g["fwd_dpo_reject_logits"]) < 1e-5
    loss = m.cross_entropy_sum(logits, targets) + m.dpo_loss(*out)
    np.testing.assert_allclose(float(loss), float(g["fwd_dpo_loss"]), rtol=1e-5)


def test_top3_accuracy_against_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 1025)).astype(np.float32)
    targets = rng.integers(0, 1025, size=(3, 7))
    targets[:, :3] = np.argsort(-logits[:, :3], axis=-1)[:, :, 1]  # rank-2 hits
    targets[0, 5] = 1024  # ignored
    top3 = np.argsort(-logits, axis=-1)[..., :3]
    use = targets != 1024
    want = ((top3 == targets[..., None]).any(-1) & use).sum() / use.sum()
    assert float(m.top3_accuracy(jnp.asarray(logits), jnp.asarray(targets))) == pytest.approx(want)
    assert want > 0.4


def test_padding_quirk_and_corrected_mask(tiny):
    """Quirk (default): a short row's logits depend on the batch padding.  Corrected: they equal the
    row run alone."""
    dims, params, g = tiny
    b, xl, yl = 1, int(g["train_x_lens"][1]), int(g["train_y_lens"][1])
    solo = {k: g[k][b:b + 1] for k in ("train_x", "train_y", "train_bert")}
    solo = {"train_x": solo["train_x"][:, :xl], "train_y": solo["train_y"][:, :yl],
            "train_bert": solo["train_bert"][:, :, :xl], "train_x_lens": np.array([xl]), "train_y_lens": np.array([yl])}
    ref, _ = _forward_old(dims, params, solo)
    quirk, _ = _forward_old(dims, params, g)
    fixed_dims = m.S1Dims(**{**dims.__dict__, "corrected_mask": True})
    fixed, _ = _forward_old(fixed_dims, params, g)
    assert _rel(fixed[b, : yl + 1], ref[0]) < 1e-5
    assert _rel(quirk[b, : yl + 1], ref[0]) > 1e-2
    # full-length rows are unaffected by the option
    assert _rel(fixed[0], np.asarray(quirk[0])) < 1e-6


def test_sine_table_values():
    pe = sine_table(4000, 64)
    assert pe.dtype == np.float32 and pe.shape == (4000, 64)
    p, i = 1234, 5
    div = np.float32(np.exp(np.float32(2 * i) * np.float32(-np.log(10000.0) / 64)))
    np.testing.assert_allclose(pe[p, 2 * i], np.sin(np.float32(p) * div), atol=1e-6)
    np.testing.assert_allclose(pe[p, 2 * i + 1], np.cos(np.float32(p) * div), atol=1e-6)


def test_init_shapes_logical_axes_and_training_mode():
    dims = m.S1Dims(phoneme_vocab_size=40, dim=32, heads=4, n_layer=2)
    boxed = m.init_params(dims, 0, boxed=True)
    spec = nn.get_partition_spec(boxed)
    assert spec["layers_0"]["attn"]["qkv_kernel"] == jax.sharding.PartitionSpec("embed", None, "heads", "kv")
    assert spec["layers_1"]["linear1"]["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")
    assert spec["predict"]["kernel"] == jax.sharding.PartitionSpec("embed", "vocab")
    params = nn.meta.unbox(boxed)
    assert params["layers_0"]["attn"]["qkv_kernel"].shape == (32, 3, 4, 8)
    assert float(params["text_position"]["alpha"][0]) == 1.0
    assert np.array_equal(params["layers_0"]["linear1"]["kernel"], params["layers_1"]["linear1"]["kernel"])
    assert abs(np.abs(params["layers_0"]["linear1"]["kernel"]).max() - 32 ** -0.5) < 0.01
    assert abs(params["audio_embedding"]["embedding"].std() - 1.0) < 0.05
    n = sum(x.size for x in jax.tree.leaves(params))
    # the original's count for this size: 7 top tensors + 12 per layer
    d, v, vp = 32, 1025, 40
    want = vp * d + d * 1024 + d + 1 + v * d + 1 + v * d + 2 * (3 * d * d + 3 * d + d * d + d + 8 * d * d + 4 * d + d + 4 * d)
    assert n == want
    # dropout is active in training mode and off by default
    x = jnp.ones((1, 5), jnp.int32)
    args = (x, jnp.array([5]), x, jnp.array([5]), jnp.ones((1, 1024, 5)))
    model = m.S1Model(dims)
    fwd = jax.jit(lambda p, r, *a: (
        model.apply({"params": p}, *a, method=m.S1Model.forward_old)[0],
        model.apply({"params": p}, *a, deterministic=False, method=m.S1Model.forward_old, rngs={"dropout": r})[0]))
    key = jax.random.key(1, impl="rbg")  # rbg: much faster to compile than threefry on CPU
    a, c = fwd(params, key, *args)
    b, _ = fwd(params, key, *args)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_full_size_parameter_count():
    from gsv_jax.configs import s1_v1, s1_v2

    for cfg, want in ((s1_v2, 77_606_402), (s1_v1, 77_493_762)):
        dims = m.S1Dims.from_config(cfg.get_config().model)
        shapes = m.param_shapes(dims)
        assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == want


def test_make_reject_y_rules():
    rng = np.random.default_rng(3)
    y = np.array([[5, 6, 7, 8, 1024, 1024], [1, 2, 3, 4, 5, 6]])
    seen = set()
    for _ in range(30):
        r, lens = m.make_reject_y(y, np.array([4, 6]), rng)
        assert r.shape == (2, lens.max())
        for row, n, orig in zip(r, lens, y):
            seen.add(n > len(orig))
            assert (row[n:] == 0).all()
            assert n != len(orig) or (row[:n] == orig).all()
    assert seen == {True, False}


def test_logical_activation_constraints_shard_the_batch():
    """Under a mesh and logical-axis rules the activations follow the rules; numbers unchanged."""
    from jax.sharding import Mesh

    dims = m.S1Dims(phoneme_vocab_size=40, dim=32, heads=4, n_layer=1)
    params = m.init_params(dims, 0)
    x = jnp.ones((2, 5), jnp.int32)

    def fwd(p):
        return m.S1Model(dims).apply({"params": p}, x, jnp.array([5, 3]), x, jnp.array([5, 4]),
                                     jnp.ones((2, 1024, 5)), method=m.S1Model.forward_old)[0]

    plain = jax.jit(fwd)(params)
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    rules = (("batch", "data"), ("length", None), ("embed", None), ("vocab", None))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        sharded = jax.jit(fwd)(params)
    assert sharded.sharding.spec[0] == "data"
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), atol=1e-6)
