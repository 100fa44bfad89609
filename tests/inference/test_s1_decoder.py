"""Sampling rules (statistics with fixed seeds) and the on-device decode loop on a tiny random S1."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.inference.s1_decoder import EOS_BAN_STEPS, S1Decoder, repetition_penalty, sample
from gsv_jax.models import s1 as m

EOS = 1024
N = 4000  # draws per statistical test


@jax.jit
def _draws(logits, seen, key, step, top_k, top_p, temperature, rp):
    """N independent samples from the same logits row (one row per draw)."""
    q = jax.random.exponential(key, (N, logits.shape[-1]))
    rows = jnp.broadcast_to(logits, (N, logits.shape[-1]))
    return sample(rows, jnp.broadcast_to(seen, rows.shape), q, step, top_k=top_k, top_p=top_p,
                  temperature=temperature, rp=rp, eos=EOS)


def _logits(seed=0, scale=2.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(1025,)).astype(np.float32) * scale)


def _run(logits, *, seen=None, step=20, top_k=1025, top_p=1.0, temperature=1.0, rp=1.0, seed=0):
    seen = jnp.zeros((1025,), bool) if seen is None else seen
    tok, greedy = _draws(logits, seen, jax.random.PRNGKey(seed), jnp.int32(step), jnp.int32(top_k),
                         jnp.float32(top_p), jnp.float32(temperature), jnp.float32(rp))
    return np.asarray(tok), np.asarray(greedy)


def test_top_k_never_outside_k_best():
    logits = _logits(1)
    tok, _ = _run(logits, top_k=15)
    best = set(np.argsort(-np.asarray(logits))[:15].tolist())
    assert set(tok.tolist()) <= best
    assert len(set(tok.tolist())) >= 10  # and it does sample among them


def test_top_p_inside_nucleus():
    logits = _logits(2, scale=3.0)
    p = np.asarray(jax.nn.softmax(logits))
    order = np.argsort(-p)
    cum = np.cumsum(p[order])
    nucleus = set(order[: max(1, int(np.sum(cum <= 0.5)))].tolist())  # entries crossing 0.5 are removed
    tok, _ = _run(logits, top_p=0.5)
    assert set(tok.tolist()) <= nucleus and len(set(tok.tolist())) > 1


def test_temperature_matches_softmax_statistics():
    logits = jnp.asarray(np.array([2.0, 1.0, 0.0, -1.0] + [-30.0] * 1021, np.float32))
    for t in (0.5, 1.0, 2.0):
        tok, _ = _run(logits, temperature=t, seed=int(t * 10))
        want = np.asarray(jax.nn.softmax(logits / t))[:4]
        freq = np.bincount(tok, minlength=1025)[:4] / N
        # 4000 draws: binomial std <= 0.008; allow 4.5 std
        np.testing.assert_allclose(freq, want, atol=0.036)
    cold, _ = _run(logits, temperature=1e-9)
    assert (cold == 0).all()  # temperature -> 0 is greedy


def test_eos_banned_before_step_11_and_argmax_stop_rule():
    logits = _logits(3).at[EOS].set(50.0)
    for step in (0, EOS_BAN_STEPS - 1):
        tok, greedy = _run(logits, step=step)
        assert (tok != EOS).all() and (greedy != EOS).all()
    tok, greedy = _run(logits, step=EOS_BAN_STEPS)
    assert (greedy == EOS).all() and (tok == EOS).all()


def test_repetition_penalty_math_and_greedy_sees_penalised_logits():
    x = jnp.asarray(np.array([[-2.0, 3.0, 0.5, 1.0]], np.float32))
    seen = jnp.asarray(np.array([[True, True, False, False]]))
    np.testing.assert_allclose(np.asarray(repetition_penalty(x, seen, 1.35)), [[-2.7, 3.0 / 1.35, 0.5, 1.0]], rtol=1e-6)
    logits = jnp.zeros((1025,)).at[7].set(3.0).at[8].set(2.5)
    seen = jnp.zeros((1025,), bool).at[7].set(True)
    tok, greedy = _run(logits, seen=seen, rp=1.35, top_k=1)
    assert (greedy == 8).all() and (tok == 8).all()  # 3/1.35 < 2.5


# ---------------------------------------------------------------------------------------------
# the decode loop on a tiny random model

DIMS = m.S1Dims(phoneme_vocab_size=60, dim=32, heads=4, n_layer=2)


@pytest.fixture(scope="module")
def tiny():
    params = jax.tree.map(jnp.asarray, m.init_params(DIMS, 1))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 60, size=(3, 30)).astype(np.int32)
    bert = rng.normal(size=(3, 1024, 30)).astype(np.float32)
    prompt = rng.integers(0, 1024, size=(3, 20)).astype(np.int32)
    return params, x, bert, prompt, S1Decoder(DIMS, min_window=128)


def test_batch_rows_equal_solo_runs_and_no_recompilation(tiny):
    params, x, bert, prompt, dec = tiny
    x_lens, p_lens = np.array([30, 12, 21]), np.array([20, 7, 13])
    kw = dict(top_k=15, top_p=1.0, temperature=1.0, repetition_penalty=1.35, max_new_tokens=40, seeds=5)
    batch = dec.generate(params, x, x_lens, bert, prompt, p_lens, **kw)
    counts = dict(dec.trace_counts)
    for i in range(3):
        solo = dec.generate(params, x[i:i + 1, : x_lens[i]], x_lens[i:i + 1], bert[i:i + 1, :, : x_lens[i]],
                            prompt[i:i + 1, : p_lens[i]], p_lens[i:i + 1], **kw)
        np.testing.assert_array_equal(batch.tokens[i], solo.tokens[0])
        assert len(solo.tokens[0]) >= EOS_BAN_STEPS
    # other lengths inside the same buckets, other sampling settings and max_new -> no new compile
    dec.generate(params, x[:, :25], np.array([25, 3, 9]), bert[:, :, :25], prompt[:, :9], np.array([9, 1, 4]),
                 top_k=3, top_p=0.8, temperature=0.7, repetition_penalty=1.0, max_new_tokens=33, seeds=[1, 2, 3])
    solo_counts = dict(dec.trace_counts)
    dec.generate(params, x[:1, :5], [5], bert[:1, :, :5], prompt[:1, :3], [3], top_k=2, max_new_tokens=17, seeds=9)
    assert dict(dec.trace_counts) == solo_counts
    assert counts["prefill"] == 1 and counts["decode"] == 1  # one compile each for the batch


def test_max_new_tokens_early_stop_and_reference_free(tiny):
    params, x, bert, _prompt, dec = tiny
    res = dec.generate(params, x[:1], [30], bert[:1], None, [0], top_k=5, max_new_tokens=13, seeds=0)
    assert len(res.tokens[0]) == 13 and not res.eos_stop[0]
    assert (res.tokens[0] < EOS).all()


def test_eos_rule_stops_after_step_11(tiny):
    """A model whose head always prefers EOS: EOS is removed for steps 0..10, then stops at step 11."""
    params, x, bert, prompt, dec = tiny
    p = jax.tree.map(np.array, params)
    c = np.linspace(-1, 1, 32).astype(np.float32)
    p["layers_1"]["norm2"]["scale"][:] = 0.0
    p["layers_1"]["norm2"]["bias"][:] = c  # every hidden state is c
    p["predict"]["kernel"][:] = 0.0
    p["predict"]["kernel"][:, EOS] = 10 * c  # EOS logit 10|c|^2 > 0 = all others
    res = dec.generate(p, x, [30, 8, 1], bert, prompt, [20, 4, 0], top_k=15, max_new_tokens=40, seeds=3)
    assert [len(t) for t in res.tokens] == [EOS_BAN_STEPS] * 3 and res.eos_stop.all()


def test_top_k_pivot_equals_the_sorted_kth_value_on_both_paths():
    # k <= TOP_K_FAST takes lax.top_k, larger k the full sort: both must keep exactly the entries
    # >= the k-th largest value of the row (ties at the pivot kept), as the original's sort does
    from gsv_jax.inference.s1_decoder import TOP_K_FAST, first_argmax, top_k_filter

    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.standard_normal((3, 1025)), rng.integers(0, 6, (3, 1025))]).astype(np.float32)
    rows[0, :5] = -np.inf
    f = jax.jit(top_k_filter)
    for k in (1, 2, 15, TOP_K_FAST, TOP_K_FAST + 1, 600, 1025, 5000):
        pivot = -np.sort(-rows, axis=-1)[:, min(k, 1025) - 1: min(k, 1025)]
        want = np.where(rows < pivot, -np.inf, rows)
        np.testing.assert_array_equal(np.asarray(f(jnp.asarray(rows), jnp.int32(k))), want, err_msg=f"top_k={k}")
    np.testing.assert_array_equal(np.asarray(first_argmax(jnp.asarray(rows))), np.argmax(rows, axis=-1))
