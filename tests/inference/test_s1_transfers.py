"""No per-token host round trip in S1 decoding (docs/performance.md "On accelerators"): the decode
loop runs on the device for a whole attention window; the host sees it once per window (or once
per chunk when streaming), and the compiled loop itself moves nothing to the host."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.inference.s1_decoder import S1Decoder
from gsv_jax.models import s1 as m

DIMS = m.S1Dims(phoneme_vocab_size=60, dim=32, heads=4, n_layer=2)
NEW = 200


@pytest.fixture(scope="module")
def guarded():
    """One decoder for the module (its programs compile once), with a fresh call log per test."""
    dec, calls = _guarded_decoder()
    yield dec, calls


@pytest.fixture
def decoder(guarded):
    dec, calls = guarded
    calls.clear()
    return dec, calls


def _guarded_decoder():
    dec = S1Decoder(DIMS)
    calls = []
    real = dec._decode

    def guarded(*args, **kwargs):
        # every argument is already on the device: the call and the loop inside may not touch the host
        with jax.transfer_guard("disallow"):
            out = real(*args, **kwargs)
            jax.block_until_ready(out)
        calls.append(kwargs["window"])
        return out

    dec._decode = guarded
    return dec, calls


def _generate(dec, on_chunk=None):
    rng = np.random.default_rng(0)
    params = jax.tree.map(jnp.asarray, m.init_params(DIMS, 0))
    x = rng.integers(0, 60, (2, 20)).astype(np.int32)
    bert = rng.normal(size=(2, 1024, 20)).astype(np.float32)
    prompt = rng.integers(0, 1024, (2, 30)).astype(np.int32)
    return dec.generate(params, x, [20, 17], bert, prompt, [30, 25], top_k=5, max_new_tokens=NEW, seeds=[0, 1],
                        eos_ban_steps=NEW + 1, on_chunk=on_chunk)


def test_one_host_round_trip_per_window(decoder):
    dec, calls = decoder
    res = _generate(dec)
    assert [len(r) for r in res.tokens] == [NEW, NEW]
    # prefix 32 + 32 columns: windows 256 (192 steps) then 512; 200 tokens -> 2 device loops
    assert calls == [256, 512], calls
    assert res.timings["steps"] == 208  # whole 16-step chunks


def test_streaming_returns_once_per_chunk_not_per_token(decoder):
    dec, calls = decoder
    seen = []
    res = _generate(dec, on_chunk=lambda tokens, n_out, done: seen.append(int(n_out[0])) or False)
    assert [len(r) for r in res.tokens] == [NEW, NEW]
    assert len(calls) == len(seen) == -(-NEW // dec.chunk)  # 13 chunks of 16 for 200 tokens
    assert seen[:3] == [16, 32, 48]


def test_compiled_loop_has_no_host_callbacks():
    dec = S1Decoder(DIMS)
    b, cache_len, window = 1, 256, 256
    params = jax.tree.map(jnp.asarray, m.init_params(DIMS, 0))
    state = dec._prefill.jitted(params, np.zeros((b, 32), np.int32), np.array([20], np.int32),
                                np.zeros((b, 1024, 32), np.float32), np.zeros((b, 32), np.int32),
                                np.array([30], np.int32), cache_len=cache_len, record=False)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.zeros((b,), jnp.uint32))
    scalars = (jnp.int32(5), jnp.float32(1.0), jnp.float32(1.0), jnp.float32(1.35), jnp.int32(11))
    hlo = dec._decode.jitted.lower(params, state, keys, jnp.array([30], jnp.int32), jnp.int32(64), jnp.int32(100),
                                   jnp.int32(192), *scalars, window=window, record=False).as_text()
    assert "while" in hlo  # the loop is inside the program
    for host_op in ("callback", "outfeed", "send", "recv"):
        assert host_op not in hlo.lower(), host_op
