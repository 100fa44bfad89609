"""S2 GAN step vs one iteration of the original ``s2_train.py`` (golden ``s2_train_tiny.*``, docs/training.md).

G and D start from the golden ``.pth`` files (fp16 values -> fp32); the two random draws of the
generator forward (``enc_q_noise``, ``rand_slice_u``) are injected. One jitted ``gan_update`` is
run once per module and every check reads its outputs. Tolerances are the README's:
latents ~1e-5 relative, ``y_hat`` 1e-4 absolute, losses 1e-4 relative, D logits 1e-4 absolute,
gradients 1e-3 relative to each tensor's largest magnitude, gradient norms 1e-4 relative, parameters
after the AdamW steps 1e-7 absolute (elements whose gradient is ~0 excepted: their sign can flip).
"""
import pathlib

import jax
import numpy as np
import pytest

from gsv_jax.convert.s2 import path_to_torch_key
from gsv_jax.convert.s2_discriminator import (
    discriminator_params_to_state_dict,
    discriminator_state_dict_to_params,
    torch_key,
)
from gsv_jax.io.trees import flatten
from gsv_jax.models.s2.synthesizer import S2ModelConfig
from gsv_jax.train.s2_task import S2Task, golden_batch_from_torch_layout

REPO = pathlib.Path(__file__).resolve().parents[2]


def load_config(name):
    from gsv_jax import configs

    return configs.load(name)


def T(x):
    return np.swapaxes(np.asarray(x), 1, 2)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@pytest.fixture(scope="module")
def run(request):
    from tests.conftest import golden_path

    g = np.load(golden_path("s2_train_tiny.npz"))
    gp, dp = golden_path("s2_train_tiny_G.pth"), golden_path("s2_train_tiny_D.pth")
    task = S2Task(S2ModelConfig.from_mapping(load_config("s2_tiny").model), dropout=False)
    params, info = task.params_from_original(gp, dp)
    opt = task.tx.init(params)
    batch = golden_batch_from_torch_layout(g)
    step = jax.jit(lambda p, o, b, n, u: task.gan_update(p, o, b, None, enc_q_noise=n, rand_slice_u=u, full_aux=True))
    new_params, _new_opt, m = step(params, opt, batch, T(g["enc_q_noise"]), g["rand_slice_u"])
    m = jax.device_get(m)
    return dict(g=g, task=task, params=params, info=info, new=jax.device_get(new_params), m=m, batch=batch)


def test_start_state(run):
    assert run["info"]["iteration"] == 0
    # frozen pieces and groups as the original builds them
    from gsv_jax.train.s2_task import param_labels

    labels = flatten(param_labels(run["params"]))
    counts = {}
    for path, lab in labels.items():
        if path[0] == "g" and path[1] == "enc_p" and lab == "g_low":
            key = path[2]
            counts[key] = counts.get(key, 0) + 1
    assert counts == {"text_embedding": 1, "encoder_text": 36, "mrte": 14}
    assert {path_to_torch_key(p[1:]) for p, lab in labels.items() if lab == "g_frozen"} == {
        "ssl_proj.weight", "ssl_proj.bias", "quantizer.vq.layers.0._codebook.embed"}
    # torch puts ssl_proj (no gradient, never updated) in its 487-tensor base group; here it is "frozen"
    assert sum(lab == "g_base" for lab in labels.values()) == 487 - 2


def test_latents_and_outputs(run):
    g, out = run["g"], run["m"]["out"]
    np.testing.assert_array_equal(out["ids"], g["ids_slice"])
    for k in ("z", "z_p", "m_p", "logs_p", "m_q", "logs_q"):
        assert rel(T(out[k]), g[k]) < 1e-5, k
    assert rel(T(out["ge"]), g["ge"]) < 1e-5
    assert rel(T(out["x"]), g["enc_p_x"]) < 1e-5
    np.testing.assert_array_equal(T(out["mask"]), g["z_mask"])
    np.testing.assert_allclose(out["y_hat"], g["y_hat"][:, 0], atol=1e-4)
    np.testing.assert_array_equal(out["y_slice"], g["y_slice"][:, 0])
    assert rel(T(out["y_mel"]), g["y_mel"]) < 1e-5
    assert rel(T(out["y_hat_mel"]), g["y_hat_mel"]) < 1e-4


def test_discriminator_outputs(run):
    g, m = run["g"], run["m"]
    for i in range(6):
        for step, aux, side in (("dstep", "aux_d", "d"), ("gstep", "aux_g", "g")):
            np.testing.assert_allclose(m[aux][f"{side}_real"][i], g[f"{step}_d_real_{i}"], atol=1e-4)
            np.testing.assert_allclose(m[aux][f"{side}_fake"][i], g[f"{step}_d_fake_{i}"], atol=1e-4)


def test_losses(run):
    g, m = run["g"], run["m"]
    for k in ("loss_disc", "losses_disc_r", "losses_disc_g"):
        assert rel(m["aux_d"][k], g[k]) < 1e-4, k
    for k in ("loss_gen_all", "loss_gen", "losses_gen", "loss_fm", "fm_terms", "loss_mel", "loss_kl"):
        assert rel(m["aux_g"][k], g[k]) < 1e-4, k
    assert float(m["aux_g"]["kl_ssl"]) == float(g["kl_ssl"]) == 0.0


def test_gradients(run):
    g, m = run["g"], run["m"]
    assert rel(m["grad_norm_g"], g["grad_norm_g"]) < 1e-4
    assert rel(m["grad_norm_d"], g["grad_norm_d"]) < 1e-4
    gg = {path_to_torch_key(k): v for k, v in flatten(m["grads_g"]).items()}
    gd = {torch_key(k): v for k, v in flatten(m["grads_d"]).items()}
    n = 0
    for k in g.files:
        if k.startswith("g_grad/"):
            assert rel(gg[k[7:]], g[k]) < 1e-3, k
            n += 1
        elif k.startswith("d_grad/"):
            assert rel(gd[k[7:]], g[k]) < 1e-3, k
            n += 1
    assert n == 20
    mods = ("enc_p", "dec", "enc_q", "flow", "ref_enc")
    per_mod = [np.sqrt(sum(np.sum(np.square(np.asarray(v, np.float64))) for v in jax.tree.leaves(m["grads_g"][k])))
               for k in mods]
    # ours add up to the golden global norm (sqrt of the sum of squares = grad_norm_g to 1e-4), but
    # the golden per-module figures do not (they give 2701.9, not 2704.06: enc_q and enc_p are short
    # by norms of ~104 and ~26, tensors the recording left out), hence 2e-3 on those two here
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(per_mod))), g["grad_norm_g"], rtol=1e-4)
    np.testing.assert_allclose(per_mod, g["g_grad_norm_per_module"], rtol=2e-3)
    np.testing.assert_allclose([per_mod[1], per_mod[3], per_mod[4]], g["g_grad_norm_per_module"][[1, 3, 4]],
                               rtol=1e-4)
    per_d = [np.sqrt(sum(np.sum(np.square(np.asarray(v, np.float64)))
                         for v in jax.tree.leaves(m["grads_d"][f"discriminators_{i}"]))) for i in range(6)]
    # Same for the discriminators: ours add up to the golden global norm (1e-4), the golden
    # per-discriminator figures do not (sqrt of their sum of squares is 6.90218, its grad_norm_d
    # 6.90315), so each is compared at 5e-4.
    np.testing.assert_allclose(np.sqrt(np.sum(np.square(per_d))), g["grad_norm_d"], rtol=1e-4)
    np.testing.assert_allclose(per_d, g["d_grad_norm_per_disc"], rtol=5e-4)
    # ssl_proj gets no gradient (frozen quantizer path)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(m["grads_g"]["ssl_proj"]))


def test_parameters_after_update(run):
    g, new, m = run["g"], run["new"], run["m"]
    pg = {path_to_torch_key(k): v for k, v in flatten(new["g"]).items()}
    pd = {torch_key(k): v for k, v in flatten(new["d"]).items()}
    gg = {path_to_torch_key(k): v for k, v in flatten(m["grads_g"]).items()}
    gd = {torch_key(k): v for k, v in flatten(m["grads_d"]).items()}
    n = 0
    for k in g.files:
        for prefix, params, grads in (("g_after/", pg, gg), ("d_after/", pd, gd)):
            if k.startswith(prefix):
                name = k[len(prefix):]
                err = np.abs(np.asarray(params[name], np.float64) - g[k])
                ok = err <= 1e-7 + 1e-6 * np.abs(g[k])
                if name in grads:  # an element with |grad| ~ 0 may move the other way
                    ok |= np.abs(np.asarray(grads[name])) < 1e-7
                else:  # frozen: untouched
                    np.testing.assert_array_equal(params[name], g[prefix.replace("after", "before") + name])
                assert ok.all(), (name, err.max())
                n += 1
    assert n == 21


def test_discriminator_keys_round_trip(golden):
    from gsv_jax.io.torch_io import load_torch_file

    sd = load_torch_file(golden("s2_train_tiny_D.pth"))["model"]
    p = discriminator_state_dict_to_params(sd)
    back = discriminator_params_to_state_dict(p, np.float16)
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
