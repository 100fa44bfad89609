"""S1 reduced precision (docs/performance.md "S1 reduced precision"): bf16 / int8 weight storage
against the exact fp32 model on the golden tiny checkpoint, and the one-line error for a bad name."""
import jax
import numpy as np
import pytest

import gsv_jax
from gsv_jax.inference.s1_decoder import Int8Kernel, S1Decoder

# max |logit - fp32 logit| / max |fp32 logit| allowed per precision (measured on this checkpoint:
# bf16 2.0e-3, int8 5.2e-3); top-1 agreement of the teacher-forced logits at least 95 %
TOL = {"bf16": 1e-2, "int8": 2e-2}


@pytest.fixture(scope="module")
def models():
    from tests.conftest import golden_path

    path = golden_path("s1_v2_tiny.ckpt")
    return {p: gsv_jax.load_s1(path, precision=p) for p in ("fp32", "bf16", "int8")}, dict(
        np.load(golden_path("s1_v2_tiny.npz")))


def _train(g):
    return g["train_x"], g["train_x_lens"], g["train_y"], g["train_y_lens"], g["train_bert"]


def test_stored_forms(models):
    m, _ = models
    for p in ("bf16", "int8"):
        assert m[p].precision == p
    kernel = m["fp32"].params["layers_0"]["linear1"]["kernel"]
    assert kernel.dtype == np.float32
    assert m["bf16"].params["layers_0"]["linear1"]["kernel"].dtype == jax.numpy.bfloat16
    q = m["int8"].params["layers_0"]["attn"]["out_kernel"]
    assert isinstance(q, Int8Kernel) and q.q.dtype == np.int8 and q.scale.shape == (1, 1, kernel.shape[0])
    assert m["int8"].params["audio_embedding"]["embedding"].dtype == np.float32  # only kernels change
    # float_params: the fp32 tree back, within one quantisation step per channel
    back = m["int8"].float_params()["layers_0"]["linear1"]["kernel"]
    assert np.abs(np.asarray(back) - np.asarray(kernel)).max() <= np.abs(np.asarray(kernel)).max() / 127


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_forward_agrees_with_fp32(models, precision):
    m, g = models
    want = m["fp32"].forward_logits(*_train(g))
    got = m[precision].forward_logits(*_train(g))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < err <= TOL[precision], err  # > 0: the weights really are stored at lower precision
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.95


def test_generate_runs_and_dequant_placement_agrees(models):
    m, g = models
    rows = m["bf16"].generate(g["infer_x"], g["infer_bert"], g["infer_prompt"], top_k=1, max_new_tokens=24, seed=0)
    assert len(rows) == 1 and 1 <= len(rows[0]) <= 24
    s1 = m["int8"]
    rows = s1.generate(g["infer_x"], g["infer_bert"], g["infer_prompt"], top_k=1, max_new_tokens=24, seed=0)
    assert len(rows) == 1 and 1 <= len(rows[0]) <= 24
    # dequantising once per decode call (CPU default) or inside every step: the same tokens
    x, bert, prompt = g["infer_x"], g["infer_bert"], g["infer_prompt"]
    outs = []
    for in_step in (False, True):
        dec = S1Decoder(s1.dims, dequant_in_step=in_step)
        res = dec.generate(s1.params, x, [x.shape[1]], bert, prompt, [prompt.shape[1]], top_k=1,
                           max_new_tokens=24, seeds=0, record_logits=True)
        outs.append(res)
    np.testing.assert_array_equal(outs[0].tokens[0], outs[1].tokens[0])
    np.testing.assert_allclose(outs[0].step_logits, outs[1].step_logits, atol=1e-4, rtol=0)


def test_fp32_is_the_exact_default(models):
    m, g = models
    from tests.conftest import golden_path

    default = gsv_jax.load_s1(golden_path("s1_v2_tiny.ckpt"))
    assert default.precision == "fp32"
    np.testing.assert_array_equal(default.forward_logits(*_train(g)), m["fp32"].forward_logits(*_train(g)))


def test_save_from_int8_writes_fp32(models, tmp_path):
    m, _ = models
    gsv_jax.save_s1_torch(m["int8"], tmp_path / "q.ckpt")
    back = gsv_jax.load_s1(tmp_path / "q.ckpt")
    assert back.precision == "fp32" and back.params["layers_0"]["linear1"]["kernel"].dtype == np.float32


def test_bad_precision_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of fp32, bf16, int8 \(got 'fp16'\)"):
        gsv_jax.load_s1(tmp_path / "missing.ckpt", precision="fp16")  # not FileNotFoundError: checked first
    with pytest.raises(ValueError, match="precision must be one of"):
        from gsv_jax import configs
        from gsv_jax.inference.s1 import S1

        S1.random(configs.load("s1_v2"), precision="int4")


def test_to_precision_and_infer_flag(models, capsys):
    m, _ = models
    q = m["fp32"].to_precision("int8")
    assert q.precision == "int8" and isinstance(q.params["predict"]["kernel"], Int8Kernel)
    import infer

    with pytest.raises(SystemExit) as e:  # refused by the parser, before any model is loaded
        infer.main(["--precision", "fp16", "--selftest"])
    assert e.value.code == 2 and "--precision: invalid choice: 'fp16'" in capsys.readouterr().err
    assert infer.build_parser().parse_args(["--precision", "int8"]).precision == "int8"
