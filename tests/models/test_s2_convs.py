"""The S2 conv formulations that differ from XLA's own (polyphase transposed conv, phase-packed
grouped conv with its custom gradients) against plain ``lax.conv_general_dilated`` and its autodiff,
in float64 numpy terms: relative error < 1e-5 (fp32 sums in another order)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gsv_jax.models.s2.modules import conv_transpose_polyphase, grouped_conv1d


def _ref_grouped(x, w, stride, padding, groups):
    return lax.conv_general_dilated(x, w, (stride,), [(padding, padding)], dimension_numbers=("NHC", "HIO", "NHC"),
                                    feature_group_count=groups, precision="highest")


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# (in, out, kernel, stride, groups, padding, length): the scale discriminator's layers (narrowed) + edge cases
CASES = [(16, 64, 41, 4, 4, 20, 2048), (64, 256, 41, 4, 16, 20, 515), (32, 32, 41, 4, 8, 20, 77),
         (8, 16, 5, 1, 2, 2, 33), (12, 6, 7, 3, 3, 0, 50), (4, 8, 3, 2, 4, 1, 9)]


@pytest.mark.parametrize("cin,cout,k,s,g,p,T", CASES)
def test_grouped_conv_forward_and_gradients(cin, cout, k, s, g, p, T):
    rng = np.random.default_rng(k * T + g)
    x = jnp.asarray(rng.standard_normal((2, T, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, cin // g, cout)) / np.sqrt(k * cin / g), jnp.float32)
    y = grouped_conv1d(x, w, s, p, g)
    want = _ref_grouped(x, w, s, p, g)
    assert y.shape == want.shape
    assert _rel(y, want) < 1e-5
    dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    _, vjp = jax.vjp(lambda a, b: grouped_conv1d(a, b, s, p, g), x, w)
    _, vjp_ref = jax.vjp(lambda a, b: _ref_grouped(a, b, s, p, g), x, w)
    (dx, dw), (dx_ref, dw_ref) = vjp(dy), vjp_ref(dy)
    assert _rel(dx, dx_ref) < 1e-5
    assert _rel(dw, dw_ref) < 1e-5


@pytest.mark.parametrize("cin,cout,k,u,p,g", [(8, 4, 16, 10, 3, 1), (6, 6, 2, 2, 0, 1), (8, 12, 41, 4, 20, 4)])
def test_conv_transpose_polyphase_equals_zero_stuffed(cin, cout, k, u, p, g):
    rng = np.random.default_rng(cin * k)
    x = jnp.asarray(rng.standard_normal((2, 23, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((cin, cout // g, k)), jnp.float32)  # torch ConvTranspose1d layout
    got = conv_transpose_polyphase(x, w, u, p, groups=g)
    # torch's definition: zero-stuff the input, pad by k-1-p, correlate with the flipped kernel
    wf = jnp.flip(w, -1).reshape(g, cin // g, cout // g, k).transpose(3, 1, 0, 2).reshape(k, cin // g, cout)
    want = lax.conv_general_dilated(x, wf, (1,), [(k - 1 - p, k - 1 - p)], lhs_dilation=(u,),
                                    dimension_numbers=("NHC", "HIO", "NHC"), feature_group_count=g,
                                    precision="highest")
    assert got.shape == want.shape == (2, 22 * u - 2 * p + k, cout)
    assert _rel(got, want) < 1e-5
