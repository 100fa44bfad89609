"""S2 v2ProPlus (speaker fusion, wide generator, real flow) against the original's golden vectors
(``../shared/golden/s2_v2ProPlus_tiny.*``), at the module level.

Tolerances (fp32 on CPU): latents and ``ge`` 1e-5 relative to each tensor's largest magnitude
(``sv_emb`` is a 20480-long dot product, so its projection gets 2e-5); waveforms 1e-4 absolute and,
because these random-weight waveforms are small (std 0.006; the noise moves them by max 9e-4,
relative L2 2e-2), also 1e-4 relative L2.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gsv_jax.models.s2.modules import sequence_mask
from gsv_jax.models.s2.synthesizer import S2ModelConfig, SynthesizerTrn, init_params
from tests.conftest import golden_path

REL = 1e-5
SV_REL = 2e-5
WAV_ABS = 1e-4
WAV_REL_L2 = 1e-4


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def s2():
    from gsv_jax.inference.s2 import load_s2

    return load_s2(golden_path("s2_v2ProPlus_tiny.pth"))


@pytest.fixture(scope="module")
def gold():
    return dict(np.load(golden_path("s2_v2ProPlus_tiny.npz")))


def _apply(s2, fn, *args):
    model = SynthesizerTrn(s2.config)
    return model.apply({"params": s2.infer_params}, *args, method=fn)


def _ref_ge(m, spec, n):
    mask = sequence_mask(jnp.asarray([n]), spec.shape[1])
    return m.ref_embedding(spec, mask)


def test_config_read_from_the_file(s2, gold):
    c = s2.config
    assert s2.version == str(gold["model_version"]) == "v2ProPlus"
    assert c.speaker_verification and c.gin_channels == 256 and c.sv_dim == 20480
    assert c.upsample_initial_channel == 96 and c.upsample_kernel_sizes == (20, 16, 8, 2, 2)
    p = s2.params
    assert p["sv_emb"]["weight"].shape == (256, 20480) and p["ge_to512"]["weight"].shape == (512, 256)
    assert p["prelu"]["weight"].shape == (256,) and p["dec"]["cond"]["weight"].shape[1] == 256


@pytest.mark.parametrize("k", [0, 1])
def test_speaker_fusion_per_reference(s2, gold, k):
    """ref_enc output, sv projection, PReLU(ge + sv) for each of the two references."""
    spec = gold["refer_spec"] if k == 0 else gold["multi_refer_spec_1"]
    sv = gold["sv_emb"] if k == 0 else gold["multi_sv_emb_1"]
    x = jnp.asarray(spec.transpose(0, 2, 1))

    def run(m):
        ge = _ref_ge(m, x, x.shape[1])
        return ge, m.sv_emb(jnp.asarray(sv)), m.fuse_speaker(ge, jnp.asarray(sv))

    ge, proj, fused = _apply(s2, run)
    assert rel_err(ge[0, 0], gold[f"multi_ge_{k}"][0, :, 0]) < REL
    assert rel_err(proj[0], gold[f"multi_sv_proj_{k}"][0]) < SV_REL
    assert rel_err(fused[0, 0], gold[f"multi_ge_sv_{k}"][0, :, 0]) < SV_REL
    if k == 0:  # the single-reference decode's values are the same reference's
        assert rel_err(fused[0, 0], gold["decode_ns0_ge_sv"][0, :, 0]) < SV_REL
        # PReLU really acts: some channels are negative before it (and scaled by their slope)
        pre = np.asarray(ge + proj[:, None])[0, 0]
        assert (pre < 0).any() and not np.allclose(np.asarray(fused)[0, 0], pre)


def test_text_condition_is_ge_to512(s2, gold):
    ge = jnp.asarray(gold["decode_ns0_ge_sv"].transpose(0, 2, 1))
    out = _apply(s2, lambda m: m.text_condition(ge))
    assert out.shape == (1, 1, 512)
    assert rel_err(out[0, 0], gold["decode_ns0_ge512"][0, :, 0]) < REL
    mean = jnp.asarray(gold["multi_ge_mean"].transpose(0, 2, 1))
    assert rel_err(_apply(s2, lambda m: m.text_condition(mean))[0, 0], gold["multi_ge512"][0, :, 0]) < REL


def test_prior_flow_and_decoder_stage_by_stage(s2, gold):
    """enc_p with ge512, the (non-identity) flow with the gin-wide ge, the 96-channel k=20 generator."""
    codes = jnp.asarray(gold["codes"][0], jnp.int32)
    text = jnp.asarray(gold["text"], jnp.int32)
    ge = jnp.asarray(gold["decode_ns0_ge_sv"].transpose(0, 2, 1))
    T, Tt = 2 * codes.shape[1], text.shape[1]

    def run(m):
        y_mask = jnp.ones((1, T, 1))
        t_mask = jnp.ones((1, Tt, 1))
        x = m.prior(m.quantized_from_codes(codes), y_mask, text, t_mask, m.text_condition(ge))
        m_p, logs_p = m.prior_stats(x, y_mask)
        z = m.flow_reverse(m_p, y_mask, ge)
        return x, m_p, logs_p, z, m.decode_wave(z, ge, y_mask)

    x, m_p, logs_p, z, wav = _apply(s2, run)
    for name, v in (("enc_p_x", x), ("m_p", m_p), ("logs_p", logs_p), ("z", z)):
        assert rel_err(np.asarray(v)[0].T, gold[f"decode_ns0_{name}"][0]) < REL, name
    # this golden's flow is not the identity: z differs from m_p well beyond the tolerance
    assert rel_err(gold["decode_ns0_z"], gold["decode_ns0_m_p"]) > 100 * REL
    ref = gold["decode_ns0_wav"][0, 0]
    w = np.asarray(wav)[0]
    assert w.shape == ref.shape == (40 * 640,)
    assert np.abs(w - ref).max() < WAV_ABS
    assert np.linalg.norm(w - ref) / np.linalg.norm(ref) < WAV_REL_L2


def test_missing_speaker_embedding_is_a_clear_error(s2, gold):
    x = jnp.asarray(gold["refer_spec"].transpose(0, 2, 1))
    with pytest.raises(ValueError, match="needs the speaker-verification embedding"):
        _apply(s2, lambda m: m.fuse_speaker(_ref_ge(m, x, x.shape[1]), None))


def _tiny_pro_config(**kw):
    base = dict(version="v2Pro", inter_channels=8, hidden_channels=192, filter_channels=16, n_heads=2, n_layers=2,
                resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3, 5),), upsample_initial_channel=32,
                gin_channels=32, sv_dim=24, segment_size=4, p_dropout=0.0)
    base.update(kw)
    return S2ModelConfig.from_mapping(base)


def test_training_forward_takes_the_embedding():
    """The training forward (``SynthesizerTrn.forward(..., sv_emb)``) fuses the utterances' embeddings:
    it changes every output that depends on ge, and a Pro model refuses to run without one."""
    from gsv_jax.inference.s2 import new_s2

    cfg = _tiny_pro_config()
    params = new_s2(cfg, fast=True).params  # numpy draws on the template's shapes: no compile of the initialiser
    assert params["sv_emb"]["weight"].shape == (32, 24) and params["prelu"]["weight"].shape == (32,)
    model = SynthesizerTrn(cfg, weight_norm=True, with_enc_q=True)
    rng = np.random.default_rng(0)
    T = 8
    args = (jnp.asarray(rng.standard_normal((2, T, 768)), jnp.float32),
            jnp.asarray(np.abs(rng.standard_normal((2, T, 1025))), jnp.float32), jnp.asarray([8, 6]),
            jnp.asarray(rng.integers(0, 732, (2, 5))), jnp.asarray([5, 3]))
    ids = jnp.zeros((2,), jnp.int32)
    sv = rng.standard_normal((2, 24)).astype(np.float32)
    a = model.apply({"params": params}, *args, slice_ids=ids, sv_emb=jnp.asarray(sv))
    b = model.apply({"params": params}, *args, slice_ids=ids, sv_emb=jnp.asarray(2 * sv))
    assert a["y_hat"].shape == (2, 4 * 640) and a["ge"].shape == (2, 1, 32)
    for k in ("ge", "x", "m_p", "z", "z_p", "y_hat"):
        assert not np.allclose(a[k], b[k]), k
    with pytest.raises(ValueError, match="needs the speaker-verification embedding"):
        model.apply({"params": params}, *args, slice_ids=ids)
    # the training-step forward reads the batch's sv_emb
    from gsv_jax.models.s2.training import generator_forward

    batch = {"ssl": args[0], "spec": args[1], "spec_lens": args[2], "text": args[3], "text_lens": args[4],
             "wav": jnp.zeros((2, T * 640)), "sv_emb": jnp.asarray(sv)}
    out = generator_forward(model, params, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(out["ge"], a["ge"], rtol=1e-6, atol=1e-6)
    assert out["y_hat"].shape == (2, 4 * 640)


def test_prelu_initialises_like_torch():
    cfg = _tiny_pro_config()
    shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))
    assert shapes["prelu"]["weight"].shape == (32,) and shapes["ge_to512"]["weight"].shape == (512, 32)
    from gsv_jax.models.s2.synthesizer import PReLU

    p = PReLU(4).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(p)[0], np.full(4, 0.25, np.float32))
    y = PReLU(2).apply({"params": {"weight": jnp.asarray([0.5, -2.0])}}, jnp.asarray([[-1.0, -1.0], [3.0, 3.0]]))
    np.testing.assert_array_equal(y, [[-0.5, 2.0], [3.0, 3.0]])
