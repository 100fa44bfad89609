"""The trainable S2 codebook under data parallelism, and its place in checkpoints / exports
(docs/pretraining.md).

A codebook update on a batch sharded over 8 fake devices equals the single-device update on the
same global batch: codes exact, statistics and codebook to 1e-6 relative (only the order of the
float sums differs; the commit loss, a mean, 1e-5), and every device holds the same replicated codebook. Export and re-import
keep the learned codebook (fp32 training checkpoints bit-exact, fp16 exported weights to fp16).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gsv_jax.models.s2 import quantizer as Q

CFG = Q.CodebookConfig(bins=16, dim=32, kmeans_iters=10)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def clustered(seed, B=8, T=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, CFG.dim))
    x = centres[rng.integers(0, 10, size=(B, T))] + 0.3 * rng.normal(size=(B, T, CFG.dim))
    return x.astype(np.float32)


def fresh():
    return {"inited": jnp.zeros((1,)), "cluster_size": jnp.zeros((CFG.bins,)), "embed_avg": jnp.zeros((CFG.bins, CFG.dim))}


def three_steps(xs, key, x_sharding=None):
    """k-means init on the first batch, then EMA + expiry; returns the results of every step."""

    @jax.jit
    def step(x, embed, stats, k):
        if x_sharding is not None:
            x = jax.lax.with_sharding_constraint(x, x_sharding)
        r = Q.train_forward(x, embed, stats, CFG, key=k)
        return r, jax.grad(lambda x_: Q.train_forward(x_, embed, stats, CFG, key=k).commit_loss)(x)

    embed, stats, out = jnp.zeros((CFG.bins, CFG.dim)), fresh(), []
    for i, x in enumerate(xs):
        x = jnp.asarray(x) if x_sharding is None else jax.device_put(x, x_sharding)
        r, gx = step(x, embed, stats, jax.random.fold_in(key, i))
        embed, stats = r.embed, r.stats
        out.append((r, gx))
    return out


def test_sharded_update_equals_single_device():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices: tests/conftest.py sets them")
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    xs = [clustered(s) for s in (0, 1, 2)]
    key = jax.random.PRNGKey(3)
    single = three_steps(xs, key)
    sharded = three_steps(xs, key, NamedSharding(mesh, P("data")))
    for (a, ga), (b, gb) in zip(single, sharded):
        np.testing.assert_array_equal(np.asarray(a.codes), np.asarray(b.codes))
        np.testing.assert_array_equal(np.asarray(a.expired), np.asarray(b.expired))
        for k in Q.STATS:
            assert rel(b.stats[k], a.stats[k]) < 1e-6, k
        assert rel(b.embed, a.embed) < 1e-6
        assert rel(b.commit_loss, a.commit_loss) < 1e-5  # a mean over 1536 terms
        assert rel(gb, ga) < 1e-6
        # the codebook is one global array, the same on every device (no per-device statistics)
        assert b.embed.sharding.is_fully_replicated and b.stats["cluster_size"].sharding.is_fully_replicated
        shards = [np.asarray(s.data) for s in b.stats["embed_avg"].addressable_shards]
        assert len(shards) == 8 and all(np.array_equal(s, shards[0]) for s in shards)
    # statistics are global: the EMA counts of step 1 add up to the whole batch (8 * 6 rows)
    cs0 = np.asarray(single[0][0].stats["cluster_size"])
    assert cs0.sum() > 0 and np.isclose(np.asarray(sharded[1][0].stats["cluster_size"]).sum(),
                                        0.99 * cs0.sum() + 0.01 * 48, rtol=1e-6)


def test_export_and_reimport_keep_the_codebook(tmp_path):
    from gsv_jax import configs
    from gsv_jax.models.s2.synthesizer import S2ModelConfig
    from gsv_jax.train.s2_task import (
        S2Task,
        codebook_embed,
        flat_codebook,
        nest_codebook,
        with_codebook_embed,
    )
    from tests.conftest import golden_path

    cfg = S2ModelConfig.from_mapping(configs.load("s2_tiny").model, freeze_quantizer=False)
    task = S2Task(cfg, dropout=False)
    params, _ = task.params_from_original(golden_path("s2_train_tiny_G.pth"), golden_path("s2_train_tiny_D.pth"))
    K, D = codebook_embed(params["g"]).shape
    rng = np.random.default_rng(0)
    learned = {"inited": np.ones((1,), np.float32), "cluster_size": rng.uniform(0, 9, K).astype(np.float32),
               "embed_avg": rng.normal(size=(K, D)).astype(np.float32)}
    params = {**params, "g": with_codebook_embed(params["g"], rng.normal(size=(K, D)).astype(np.float32)),
              "codebook": nest_codebook(learned)}
    paths = task.export_original(params, tmp_path, step=7, epoch=2)
    back, _ = task.params_from_original(paths["G"], paths["D"])  # fp32 training checkpoint
    for k, v in learned.items():
        np.testing.assert_array_equal(flat_codebook(back["codebook"])[k], v)
    np.testing.assert_array_equal(codebook_embed(back["g"]), codebook_embed(params["g"]))
    weights, _ = task.params_from_original(paths["weights"])  # fp16 exported weights, as the original stores them
    for k, v in learned.items():
        np.testing.assert_array_equal(flat_codebook(weights["codebook"])[k], v.astype(np.float16).astype(np.float32))
    from gsv_jax.io.torch_io import load_torch_file

    sd = load_torch_file(paths["weights"])["weight"]
    pre = "quantizer.vq.layers.0._codebook."
    assert {pre + k for k in ("inited", "cluster_size", "embed", "embed_avg")} <= set(sd)
    assert load_torch_file(paths["weights"])["config"]["model"]["freeze_quantizer"] is False
