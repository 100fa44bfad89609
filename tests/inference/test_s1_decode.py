"""Full-size v2 S1 with random weights: KV-cache decoding gives the logits of a full recompute."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.configs import s1_v2
from gsv_jax.inference.s1_decoder import S1Decoder
from gsv_jax.models import s1 as m


@pytest.mark.slow
def test_kv_cache_decode_equals_full_recompute():
    dims = m.S1Dims.from_config(s1_v2.get_config().model)
    params = jax.tree.map(jnp.asarray, m.init_params(dims, 0))
    dec = S1Decoder(dims, chunk=8)
    rng = np.random.default_rng(0)
    tx, tp, new = 20, 10, 20
    x = rng.integers(0, 732, size=(1, tx)).astype(np.int32)
    bert = rng.normal(size=(1, 1024, tx)).astype(np.float32)
    prompt = rng.integers(0, 1024, size=(1, tp)).astype(np.int32)
    res = dec.generate(params, x, [tx], bert, prompt, [tp], top_k=15, repetition_penalty=1.35,
                       max_new_tokens=new, seeds=0, record_logits=True)
    toks = res.tokens[0]
    assert len(toks) == new  # EOS is impossible before step 11 and unlikely after with random weights
    tx_pad, p_pad, cache_len = dec.plan(tx, tp, new)
    xp = np.zeros((1, tx_pad), np.int32)
    xp[:, :tx] = x
    bp = np.zeros((1, 1024, tx_pad), np.float32)
    bp[:, :, :tx] = bert
    worst = 0.0
    # steps inside the first chunk (recent buffer), right after a flush, and in the third chunk
    for i in (1, 7, 8, 9, 17, 19):
        y = np.concatenate([prompt[0], toks[:i]])
        yp = np.zeros((1, p_pad), np.int32)
        yp[0, : len(y)] = y
        full = dec._prefill(params, xp, np.array([tx]), bp, yp, np.array([len(y)]), cache_len=cache_len, record=True)
        worst = max(worst, float(np.abs(np.asarray(full.logits[0]) - res.step_logits[0, i]).max()))
    assert worst < 1e-4, worst
