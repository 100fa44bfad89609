"""S2 training pieces against ``s2_train_tiny.npz``: the training checkpoint ``G_*.pth`` (with enc_q)
loads, and the generator forward (ref encoder on the padded batch, quantizer in eval mode, enc_p,
enc_q with the injected noise, flow forward, segment slice, HiFi-GAN) reproduces the original.

Tolerances (golden README): latents 1e-5 relative to each tensor's largest magnitude; ``y_hat`` 1e-4 absolute.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gsv_jax
from tests.conftest import golden_path

REL = 1e-5


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def g_model():
    return gsv_jax.load_s2(golden_path("s2_train_tiny_G.pth"))


def test_training_checkpoint_loads_with_enc_q(g_model):
    s2 = g_model
    assert s2.version == "v2"
    assert "enc_q" in s2.params and "weight_g" in s2.params["enc_q"]["enc"]["in_layers_15"]
    tiny = gsv_jax.load_s2(golden_path("s2_v2_tiny.pth"))
    # the architecture inferred from shapes equals the stored config of the exported tiny model
    assert s2.config == tiny.config
    # the exported weights are the G file's weights without enc_q
    sd_g, sd_e = s2.state_dict(), tiny.state_dict()
    assert sd_g.keys() == sd_e.keys()
    assert all(np.array_equal(sd_g[k], sd_e[k]) for k in sd_g)


@pytest.mark.slow
def test_generator_forward_matches_training_golden(g_model):
    from gsv_jax.models.s2.synthesizer import SynthesizerTrn, rand_slice_ids

    g = dict(np.load(golden_path("s2_train_tiny.npz")))
    model = SynthesizerTrn(g_model.config, weight_norm=True, with_enc_q=True, exact_ref_lengths=False)
    ids = rand_slice_ids(jnp.asarray(g["rand_slice_u"]), jnp.asarray(g["spec_lens"]), 32)
    np.testing.assert_array_equal(np.asarray(ids), g["ids_slice"])
    tr = lambda a: jnp.asarray(np.swapaxes(a, 1, 2))
    params = jax.tree_util.tree_map(jnp.asarray, g_model.params)
    out = jax.jit(lambda p: model.apply(
        {"params": p}, tr(g["ssl"]), tr(g["spec"]), jnp.asarray(g["spec_lens"]), jnp.asarray(g["text"]),
        jnp.asarray(g["text_lens"]), enc_q_noise=tr(g["enc_q_noise"]), slice_ids=ids))(params)
    back = lambda a: np.swapaxes(np.asarray(a), 1, 2)
    assert rel_err(back(out["ge"]), g["ge"]) < REL
    np.testing.assert_array_equal(back(out["mask"]), g["z_mask"])
    for k, ref in [("x", "enc_p_x"), ("m_p", "m_p"), ("logs_p", "logs_p"), ("m_q", "m_q"), ("logs_q", "logs_q"),
                   ("z", "z"), ("z_p", "z_p")]:
        assert rel_err(back(out[k]), g[ref]) < REL, k
    assert np.abs(np.asarray(out["y_hat"]) - g["y_hat"][:, 0]).max() < 1e-4
