"""The S2 conv formulations that differ from XLA's own (polyphase transposed conv, phase-packed
grouped conv with its custom gradients, the frequency-domain resblock convs) against plain
``lax.conv_general_dilated`` and its autodiff, in float64 numpy terms: relative error < 1e-5 (fp32
sums in another order)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gsv_jax.models.s2.modules import conv_transpose_polyphase, grouped_conv1d, polyphase_kernel
from gsv_jax.models.s2.spectral_conv import kernel_spectrum, spectral_block, spectral_conv1d


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
    ahead = conv_transpose_polyphase(x, w, u, p, groups=g, kernel=polyphase_kernel(w, u, p, g))
    np.testing.assert_array_equal(np.asarray(ahead), np.asarray(got))


def _ref_dilated(x, w, d, p):
    return lax.conv_general_dilated(x, w, (1,), [(p, p)], rhs_dilation=(d,), dimension_numbers=("NHC", "HIO", "NHC"),
                                    precision="highest")


# (batch, length, in, out, taps, dilation, padding, block): HiFi-GAN's "same" convs (d 1/3/5, k 7/11),
# lengths that fill no whole block, unequal channels, a padding that shortens the output, the shortest block
SPECTRAL_CASES = [(2, 37, 8, 5, 11, 1, 5, 32), (1, 100, 16, 16, 7, 3, 9, 64), (3, 1000, 12, 7, 11, 5, 25, 64),
                  (2, 333, 8, 8, 11, 5, 3, 32), (1, 9, 4, 6, 7, 1, 3, 12), (2, 64, 6, 6, 3, 1, 1, 4)]


@pytest.mark.parametrize("B,T,cin,cout,k,d,p,n", SPECTRAL_CASES)
def test_spectral_conv_forward_and_gradients(B, T, cin, cout, k, d, p, n):
    rng = np.random.default_rng(T * k + d)
    x = jnp.asarray(rng.standard_normal((B, T, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, cin, cout)) / np.sqrt(k * cin), jnp.float32)
    want = _ref_dilated(x, w, d, p)
    y = spectral_conv1d(x, w, d, p, n)
    assert y.shape == want.shape
    assert _rel(y, want) < 1e-5
    ahead = spectral_conv1d(x, w, d, p, n, kernel_spectrum(w, n))
    assert _rel(ahead, want) < 1e-5
    dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    _, vjp = jax.vjp(lambda a, b: spectral_conv1d(a, b, d, p, n), x, w)
    _, vjp_ref = jax.vjp(lambda a, b: _ref_dilated(a, b, d, p), x, w)
    (dx, dw), (dx_ref, dw_ref) = vjp(dy), vjp_ref(dy)
    assert _rel(dx, dx_ref) < 1e-5
    assert _rel(dw, dw_ref) < 1e-5


def test_spectral_conv_block_too_short_is_refused():
    with pytest.raises(ValueError, match="block 16 too short for 11 taps"):
        spectral_conv1d(jnp.zeros((1, 50, 4)), jnp.zeros((11, 4, 4)), 1, 5, 16)


def test_spectral_conv1d_module_refuses_strided_or_grouped():
    from gsv_jax.models.s2.modules import Conv1d

    for kw in ({"stride": 2}, {"groups": 2}):
        with pytest.raises(ValueError, match="needs stride 1 and groups 1"):
            Conv1d(4, 4, 11, padding=5, spectral_block=64, **kw).init(jax.random.PRNGKey(0), jnp.zeros((1, 40, 4)))


def test_spectral_block_choice():
    """The measured table: direct for k = 3 and 16 channels, 32-sample blocks at 256 channels."""
    assert [spectral_block(c, 3) for c in (16, 64, 256)] == [0, 0, 0]
    assert [spectral_block(c, 7) for c in (32, 64, 128, 256)] == [0, 0, 64, 32]
    assert [spectral_block(c, 11) for c in (16, 32, 64, 128, 256)] == [0, 64, 64, 64, 32]


def _to_xla_layout(tree):
    return {k: _to_xla_layout(v) if isinstance(v, dict) else (jnp.transpose(v, (2, 1, 0)) if k == "weight" and v.ndim == 3 else v)
            for k, v in tree.items()}


@pytest.mark.slow
def test_full_size_generator_spectral_equals_direct():
    """The v2 HiFi-GAN at full width (512 -> 16 channels, kernels 3/7/11): the frequency-domain
    resblock convs, with and without the prepared constants, give the direct result on a padded
    batch, and the short row equals its solo run (masks hold through the spectral convs)."""
    import flax

    from gsv_jax.models.s2.generator import Generator, prepare_generator

    rates, kernels = (10, 8, 2, 2, 2), (16, 16, 8, 2, 2)
    T, short = 7, 5
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((2, T, 192)), jnp.float32)
    mask = (np.arange(T)[None, :, None] < np.array([T, short])[:, None, None]).astype(np.float32)

    def gen(spectral):
        return Generator(192, (3, 7, 11), ((1, 3, 5),) * 3, rates, 512, kernels, 0, weight_norm=False,
                         spectral_convs=spectral)

    params = flax.linen.meta.unbox(gen(False).init(jax.random.PRNGKey(0), z, None, mask)["params"])
    # unit-gain weights, so the signal neither vanishes nor saturates tanh through 5 stages
    params = jax.tree_util.tree_map(lambda w: w / (np.std(w) * np.sqrt(w.size / w.shape[0] * 2)) if w.ndim == 3 else w, params)
    prepared = prepare_generator(_to_xla_layout(params), rates, kernels)
    assert "spectrum" in prepared["resblocks_2"]["convs1_0"] and "resblocks_0" not in prepared  # k = 11 yes, k = 3 no

    run = jax.jit(lambda g, v, z, m: g.apply(v, z, None, m), static_argnums=0)
    want = np.asarray(run(gen(False), {"params": params}, z, mask))
    assert 0.05 < np.abs(want).max() < 0.999
    for variables in ({"params": params}, {"params": params, "prepared": prepared}):
        got = np.asarray(run(gen(True), variables, z, mask))
        assert np.abs(got - want).max() < 1e-5
    solo = np.asarray(run(gen(True), {"params": params, "prepared": prepared}, z[1:, :short], mask[1:, :short]))
    assert np.abs(solo[0] - got[1, :solo.shape[1]]).max() < 1e-5
