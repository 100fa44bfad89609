"""The S2 flow's forward direction (the one training uses) with non-zero coupling outputs.

The original zero-initialises every coupling layer's ``post`` conv, and the training goldens kept
that, so there the flow is the identity. Here ``post`` gets random weights: forward then reverse
gives the input back (valid frames; padded frames of the transformed half are zeroed by the mask,
as in the original), and forward equals a direct numpy evaluation of the coupling equations
(``x1 <- m(x0) + x1 * mask``, then a channel flip; ``m = post(WN(pre(x0) * mask)) * mask``) with
weight norm folded by hand. Tolerances: 1e-5 absolute (fp32, values of order 1).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.models.s2.modules import ResidualCouplingBlock

C, H, KS, NL, NF, GIN = 8, 12, 5, 4, 4, 6
B, T = 2, 17


@pytest.fixture(scope="module")
def setup():
    flow = ResidualCouplingBlock(C, H, KS, 1, NL, NF, GIN, weight_norm=True)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, C)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=(B, 1, GIN)).astype(np.float32))
    mask = (np.arange(T)[None, :] < np.array([T, T - 5])[:, None]).astype(np.float32)[..., None]
    params = nn.meta.unbox(flow.init(jax.random.PRNGKey(0), x, jnp.asarray(mask), g)["params"])
    params = jax.tree.map(np.asarray, params)
    for i in range(NF):
        post = params[f"flows_{2 * i}"]["post"]
        assert not np.any(post["weight"]) and not np.any(post["bias"])  # the original's zero init
        post["weight"] = (0.5 * rng.normal(size=post["weight"].shape)).astype(np.float32)
        post["bias"] = (0.2 * rng.normal(size=post["bias"].shape)).astype(np.float32)
    return flow, params, np.asarray(x), np.asarray(g), mask


def conv(x, p, dilation=1, padding=0):
    """torch Conv1d on channels-last numpy ``x [B, T, in]`` with ``weight [out, in, k]`` (or WN g/v)."""
    if "weight_v" in p:
        v = p["weight_v"].astype(np.float64)
        w = v * p["weight_g"] / np.sqrt(np.sum(v * v, axis=(1, 2), keepdims=True))
    else:
        w = p["weight"].astype(np.float64)
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    t_out = xp.shape[1] - dilation * (k - 1)
    out = sum(np.einsum("btc,oc->bto", xp[:, j * dilation: j * dilation + t_out], w[:, :, j]) for j in range(k))
    return out + p["bias"]


def wn(h, mask, g, p):
    out = np.zeros_like(h)
    cond = conv(g, p["cond_layer"])
    for i in range(NL):
        x_in = conv(h, p[f"in_layers_{i}"], 1, (KS - 1) // 2) + cond[:, :, 2 * H * i: 2 * H * (i + 1)]
        acts = np.tanh(x_in[..., :H]) / (1 + np.exp(-x_in[..., H:]))
        rs = conv(acts, p[f"res_skip_layers_{i}"])
        if i < NL - 1:
            h = (h + rs[..., :H]) * mask
            out = out + rs[..., H:]
        else:
            out = out + rs
    return out * mask


def forward_by_hand(params, x, mask, g):
    x = x.astype(np.float64)
    for i in range(NF):
        p = params[f"flows_{2 * i}"]
        x0, x1 = x[..., : C // 2], x[..., C // 2:]
        h = conv(x0, p["pre"]) * mask
        m = conv(wn(h, mask, g, p["enc"]), p["post"]) * mask
        x = np.concatenate([x0, m + x1 * mask], -1)[..., ::-1]
    return x


def test_forward_matches_the_coupling_equations(setup):
    flow, params, x, g, mask = setup
    z = np.asarray(flow.apply({"params": params}, x, mask, g, reverse=False))
    want = forward_by_hand(params, x, mask, g)
    np.testing.assert_allclose(z, want, atol=1e-5)
    assert np.abs(z - x).max() > 0.5  # not the identity flow of the goldens


def test_forward_then_reverse_is_the_identity(setup):
    flow, params, x, g, mask = setup
    z = flow.apply({"params": params}, x, mask, g, reverse=False)
    back = np.asarray(flow.apply({"params": params}, z, mask, g, reverse=True))
    valid = mask[..., 0] > 0
    np.testing.assert_allclose(back[valid], x[valid], atol=1e-5)
    # and reverse then forward
    again = np.asarray(flow.apply({"params": params}, flow.apply({"params": params}, x, mask, g, reverse=True),
                                  mask, g, reverse=False))
    np.testing.assert_allclose(again[valid], x[valid], atol=1e-5)
