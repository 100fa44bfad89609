"""Trainable S2 codebook vs the original (golden ``s2_vq_train_tiny.npz``, docs/pretraining.md).

Part 1 (the quantizer alone, 32 codes): k-means, initialisation from the first batch, three EMA
updates with dead-code expiry, codes, straight-through output, commitment loss and its gradient,
with the original's random draws injected. Tolerances as the README: codes / masks / k-means
assignments exact, k-means means, ``embed``, ``embed_avg``, ``cluster_size``, ``quantized``,
``grad_x`` 1e-6 relative to the tensor's largest magnitude, commit losses 1e-5 relative.
Part 2 (one ``s2_train.py`` iteration with ``freeze_quantizer=False``) is in the last test: losses
1e-4 relative, gradients 1e-3 relative to the largest magnitude, norms 1e-4 relative.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.models.s2 import quantizer as Q

K = 32
CFG = Q.CodebookConfig(bins=K, dim=768)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@pytest.fixture(scope="module")
def g():
    from tests.conftest import golden_path

    return dict(np.load(golden_path("s2_vq_train_tiny.npz")))


def rows_of(x):
    """Golden ``(B, 768, T)`` -> channels-last ``(B, T, 768)`` (rows ``b * T + t`` after reshape)."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 1)))


def expire_draw(g, p, i):
    """The expiry draw ``draw{i}`` of case ``p`` as the ``[K]`` rows of the expired codes in order."""
    kind = str(g[p + "draw_kinds"][i])
    v = g[f"{p}draw{i}_{kind}"]
    return jnp.asarray(np.concatenate([v, np.zeros(K, np.int64)])[:K], jnp.int32)


def stats_of(g, p):
    return {k: jnp.asarray(g[p + k]) for k in Q.STATS}


def check_forward(g, p, r):
    np.testing.assert_array_equal(np.asarray(r.codes), g[p + "codes"][0])
    assert rel(np.transpose(np.asarray(r.quantized), (0, 2, 1)), g[p + "quantized"]) < 1e-6
    assert rel(r.commit_loss, g[p + "commit_loss"]) < 1e-5
    np.testing.assert_array_equal(np.asarray(r.expired), g[p + "expired"])
    np.testing.assert_array_equal(np.asarray(r.stats["inited"]), g[p + "after/inited"])
    for k in ("cluster_size", "embed_avg"):
        assert rel(r.stats[k], g[p + "after/" + k]) < 1e-6, k
    assert rel(r.embed, g[p + "after/embed"]) < 1e-6


def test_kmeans_direct(g):
    p = "kmeans_direct/"
    n_clusters, iters, frames, _batch = (int(v) for v in g[p + "args"])
    sub = g[p + "samples"][g[p + "draw0_randperm"][:frames]]
    means, bins, assign = Q.kmeans(jnp.asarray(sub), n_clusters, iters, jnp.asarray(g[p + "draw1_randperm"][:n_clusters]),
                                   return_assignments=True)
    np.testing.assert_array_equal(np.asarray(assign), g[p + "assign"])
    np.testing.assert_array_equal(np.asarray(bins), g[p + "bins"])
    assert rel(means, g[p + "means"]) < 1e-6


@pytest.mark.parametrize("case", ["init_perm", "init_randint"])
def test_kmeans_init_from_first_batch(g, case):
    p = case + "/"
    x = rows_of(g[p + "x"])
    rows = jnp.asarray(x.reshape(-1, 768))
    seeds = jnp.asarray(g[p + "kmeans_seed_idx"])
    np.testing.assert_array_equal(g[p + "kmeans_seed_idx"], g[f"{p}draw0_{g[p + 'draw_kinds'][0]}"][:K])
    # the 50 passes, each assignment exact (init_randint: 15 duplicate seeds, ties -> first index)
    means, bins, assign = Q.kmeans(rows, K, 50, seeds, return_assignments=True)
    np.testing.assert_array_equal(np.asarray(assign), g[p + "kmeans_assign"])
    np.testing.assert_array_equal(np.asarray(bins), g[p + "after_init/cluster_size"])  # bins of the last pass
    assert rel(means, g[p + "after_init/embed"]) < 1e-6
    embed0, stats0 = Q.init_state(rows, jnp.zeros((K, 768)), {k: jnp.zeros_like(v) for k, v in stats_of(
        g, p + "after/").items()}, {"kmeans_sub": jnp.arange(rows.shape[0]), "kmeans_seed": seeds}, CFG)
    assert rel(embed0, g[p + "after_init/embed"]) < 1e-6
    np.testing.assert_array_equal(np.asarray(stats0["embed_avg"]), np.asarray(embed0))  # means, not means * bins
    np.testing.assert_array_equal(np.asarray(stats0["cluster_size"]), g[p + "after_init/cluster_size"])
    np.testing.assert_array_equal(np.asarray(stats0["inited"]), g[p + "after_init/inited"])
    # the same forward continues with the new codebook: assignment, EMA, expiry (draw1)
    fresh = {"inited": jnp.zeros((1,)), "cluster_size": jnp.zeros((K,)), "embed_avg": jnp.zeros((K, 768))}
    r = jax.jit(lambda x_, d: Q.train_forward(x_, jnp.zeros((K, 768)), fresh, CFG, draws=d))(
        jnp.asarray(x), {"kmeans_seed": seeds, "expire": expire_draw(g, p, 1)})
    check_forward(g, p, r)
    assert int(g[p + "code_ties"]) == (9 if case == "init_randint" else 0)


def test_ema_updates_and_straight_through(g):
    embed, stats = jnp.asarray(g["ema/initial/embed"]), stats_of(g, "ema/initial/")

    def objective(x, embed, stats, R, d):
        r = Q.train_forward(x, embed, stats, CFG, draws=d)
        return jnp.sum(r.quantized * R) + r.commit_loss, r

    step = jax.jit(jax.value_and_grad(objective, has_aux=True))
    for i in (1, 2, 3):
        p = f"ema/step{i}/"
        x = jnp.asarray(rows_of(g[p + "x"]))
        (_, r), grad = step(x, embed, stats, jnp.asarray(rows_of(g[p + "R"])), {"expire": expire_draw(g, p, 0)})
        check_forward(g, p, r)
        # straight-through: d/dx = R + 2 (x - quantized) / numel
        assert rel(np.transpose(np.asarray(grad), (0, 2, 1)), g[p + "grad_x"]) < 1e-6
        embed, stats = r.embed, r.stats
    assert np.count_nonzero(g["ema/step1/expired"]) == 15


def test_expiry_draw_switches_with_the_count():
    """``sample_vectors``: a permutation when the batch has at least as many rows as expired codes,
    draws with replacement otherwise (here: 4 rows, 31 expired codes)."""
    d = {"expire_perm": jnp.arange(K, dtype=jnp.int32) % 4, "expire_randint": jnp.full((K,), 3, jnp.int32)}
    assert int(Q.expire_rows(d, 4, 4)[0]) == 0
    assert int(Q.expire_rows(d, 31, 4)[0]) == 3
    draws = Q.make_draws(jax.random.PRNGKey(1), 40, CFG)
    assert sorted(np.asarray(draws["expire_perm"]).tolist()) == list(range(K)) or len(
        set(np.asarray(draws["expire_perm"]).tolist())) == K  # distinct rows
    np.testing.assert_array_equal(np.asarray(draws["kmeans_sub"]), np.arange(40))  # N <= frames: no sub-sample


def test_identical_codes_tie_to_the_first_index():
    e = np.random.default_rng(0).normal(size=(K, 768)).astype(np.float32)
    e[[5, 9, 30]] = e[20]  # three later duplicates of row 20 and one earlier one (5)
    x = np.stack([e[20], e[9] + 1e-3, e[3]])
    np.testing.assert_array_equal(np.asarray(Q.nearest_code(jnp.asarray(x), jnp.asarray(e))), [5, 5, 3])
    np.testing.assert_array_equal(np.asarray(Q._first_identical(jnp.asarray(e)))[[5, 9, 20, 30, 3]], [5, 5, 5, 5, 3])


def test_code_usage():
    u = jax.device_get(Q.code_usage(jnp.array([[0, 1], [2, 3]]), 8))
    np.testing.assert_allclose(u["codebook_perplexity"], 4.0, rtol=1e-6)
    assert float(u["codes_used_fraction"]) == 0.5


def test_frozen_golden_iteration_is_the_s2_train_one(g):
    """``freeze_quantizer=True`` is the ``s2_train_tiny`` iteration tests/train/test_s2_golden.py checks."""
    from tests.conftest import golden_path

    t = np.load(golden_path("s2_train_tiny.npz"))
    for k in ("loss_gen_all", "loss_mel", "loss_kl", "grad_norm_g"):
        assert float(g["s2_fq1/" + k]) == float(t[k]), k
    np.testing.assert_array_equal(g["s2_fq1/enc_q_noise"], t["enc_q_noise"])
    assert float(g["s2_fq1/kl_ssl"]) == 0.0


@pytest.fixture(scope="module")
def s2_trainable(g):
    from gsv_jax import configs
    from gsv_jax.models.s2.synthesizer import S2ModelConfig
    from gsv_jax.train.s2_task import S2Task, golden_batch_from_torch_layout
    from tests.conftest import golden_path

    t = np.load(golden_path("s2_train_tiny.npz"))
    cfg = S2ModelConfig.from_mapping(configs.load("s2_tiny").model, freeze_quantizer=False)
    task = S2Task(cfg, dropout=False)
    params, _ = task.params_from_original(golden_path("s2_train_tiny_G.pth"), golden_path("s2_train_tiny_D.pth"))
    p = "s2_fq0/"
    T = lambda x: np.swapaxes(np.asarray(x), 1, 2)
    step = jax.jit(lambda p_, o, b, n, u, d: task.gan_update(p_, o, b, None, enc_q_noise=n, rand_slice_u=u,
                                                             vq_draws=d, full_aux=True))
    new, _, m = step(params, task.tx.init(params), golden_batch_from_torch_layout(t), T(g[p + "enc_q_noise"]),
                     g[p + "rand_slice_u"], {"expire": jnp.asarray(g[p + "expire_randint"], jnp.int32)})
    return dict(task=task, params=params, new=jax.device_get(new), m=jax.device_get(m))


@pytest.mark.slow
def test_generator_iteration_with_trainable_quantizer(g, s2_trainable):
    from gsv_jax.train.s2_task import PRETRAIN_FROZEN_PREFIXES, codebook_embed, flat_codebook, param_labels

    p, m, new = "s2_fq0/", s2_trainable["m"], s2_trainable["new"]
    out, aux = m["out"], m["aux_g"]
    np.testing.assert_array_equal(out["ids"], g[p + "ids_slice"])
    np.testing.assert_array_equal(out["codes"], g[p + "codes"][0])
    np.testing.assert_allclose(out["y_hat"], g[p + "y_hat"][:, 0], atol=1e-4)
    assert rel(aux["kl_ssl"], g[p + "kl_ssl"]) < 1e-5
    assert rel(m["aux_d"]["loss_disc"], g[p + "loss_disc"]) < 1e-4
    for k in ("loss_mel", "loss_kl", "loss_fm", "loss_gen", "loss_gen_all"):
        assert rel(aux[k], g[p + k]) < 1e-4, k
    # ssl_proj learns (straight-through + commitment), with the original's gradient
    assert rel(m["grad_norm_g"], g[p + "grad_norm_g"]) < 1e-4
    gw, gb = m["grads_g"]["ssl_proj"]["weight"], m["grads_g"]["ssl_proj"]["bias"]
    assert rel(np.linalg.norm(gw), g[p + "ssl_proj_weight_grad_norm"]) < 1e-4
    assert rel(gb, g[p + "ssl_proj_bias_grad"]) < 1e-3
    assert rel(gw[:8, :, 0], g[p + "ssl_proj_weight_grad_k0_rows0_7"]) < 1e-3
    labels = param_labels(s2_trainable["params"], PRETRAIN_FROZEN_PREFIXES)
    assert labels["g"]["ssl_proj"]["weight"] == "g_base"
    assert not np.array_equal(new["g"]["ssl_proj"]["weight"], s2_trainable["params"]["g"]["ssl_proj"]["weight"])
    # the codebook after the forward: EMA of the hit codes, every code expired (counts start at 1)
    cb = flat_codebook(new["codebook"])
    assert rel(cb["cluster_size"], g[p + "cb_cluster_size_after"]) < 1e-6
    hit = g[p + "cb_hit_codes"]
    assert rel(cb["embed_avg"][hit], g[p + "cb_embed_avg_after_hit"]) < 1e-6
    before = flat_codebook(s2_trainable["params"]["codebook"])["embed_avg"]
    others = np.setdiff1d(np.arange(1024), hit)
    np.testing.assert_allclose(cb["embed_avg"][others], np.float32(0.99) * before[others], rtol=1e-6)
    embed = codebook_embed(new["g"])
    ssl_rows = rows_of(g[p + "ssl_proj_out"]).reshape(-1, 768)
    # every code expired: the rows are our ssl_proj outputs, hence the latents' 1e-5 (not the codebook's 1e-6)
    assert rel(embed, ssl_rows[g[p + "expire_randint"]]) < 1e-5
    np.testing.assert_allclose(np.sum(np.asarray(embed, np.float64)), g[p + "cb_embed_after_sum64"], rtol=1e-5)
    assert float(cb["inited"][0]) == float(g[p + "cb_inited_after"]) == 1.0
