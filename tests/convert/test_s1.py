"""S1 checkpoint converter: key map both ways, v1/v2 detection, and clear errors."""
import numpy as np
import pytest

from gsv_jax.convert import s1 as conv
from gsv_jax.io.torch_io import CheckpointError, load_torch_file, save_torch_file
from gsv_jax.models import s1 as m

DIMS = {"v1": m.S1Dims(phoneme_vocab_size=512, dim=32, heads=4, n_layer=2),
        "v2": m.S1Dims(phoneme_vocab_size=732, dim=32, heads=4, n_layer=2)}


def _config(dims):
    return {"model": {"vocab_size": 1025, "phoneme_vocab_size": dims.phoneme_vocab_size, "embedding_dim": dims.dim,
                      "hidden_dim": dims.dim, "head": dims.heads, "n_layer": dims.n_layer, "EOS": 1024,
                      "linear_units": 4 * dims.dim, "dropout": 0, "random_bert": 0}, "data": {"max_sec": 54}}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_round_trip_and_version_detection(version, tmp_path):
    dims = DIMS[version]
    params = m.init_params(dims, 4)
    path = tmp_path / "g.ckpt"
    conv.write_s1_checkpoint(path, params, dims, _config(dims), info="GPT-e3")
    raw = load_torch_file(path)
    assert raw["info"] == "GPT-e3" and len(raw["weight"]) == 7 + 12 * dims.n_layer
    assert all(v.dtype == np.float16 for v in raw["weight"].values())
    # torch layout: in_proj rows Q|K|V, heads contiguous; Linear weights [out, in]
    w = raw["weight"]["model.h.layers.1.self_attn.in_proj_weight"].astype(np.float32)
    qkv = params["layers_1"]["attn"]["qkv_kernel"]  # [D, 3, H, hd]
    np.testing.assert_allclose(w[32 + 8:32 + 16, 5], qkv[5, 1, 1, :], atol=1e-3)  # K, head 1, input 5
    assert raw["weight"]["model.bert_proj.weight"].shape == (32, 1024)
    _cfg, got_dims, back, _info = conv.read_s1_checkpoint(path)
    assert got_dims == dims and conv.version_of(got_dims) == version
    fp16 = conv.params_to_state_dict(params, dims)
    again = conv.params_to_state_dict(back, dims)
    for k in fp16:
        np.testing.assert_array_equal(fp16[k], again[k])


def test_shape_inference_without_config(tmp_path):
    dims = m.S1Dims(phoneme_vocab_size=512, dim=32, heads=16, n_layer=3)
    save_torch_file({"weight": conv.params_to_state_dict(m.init_params(dims, 0), dims)}, tmp_path / "bare.ckpt")
    _, got, _, _ = conv.read_s1_checkpoint(tmp_path / "bare.ckpt")
    assert got == dims and conv.version_of(got) == "v1"


def test_errors_name_the_problem(tmp_path):
    dims = DIMS["v2"]
    state = conv.params_to_state_dict(m.init_params(dims, 0), dims)
    bad = dict(state)
    del bad["model.h.layers.1.linear2.bias"]
    bad["model.h.layers.1.extra.weight"] = np.zeros(3, np.float16)
    save_torch_file({"weight": bad, "config": _config(dims)}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=r"missing keys \[model.h.layers.1.linear2.bias\].*unexpected keys \[model.h.layers.1.extra.weight\]"):
        conv.read_s1_checkpoint(tmp_path / "bad.ckpt")
    wrong = _config(dims)
    wrong["model"]["phoneme_vocab_size"] = 512
    save_torch_file({"weight": state, "config": wrong}, tmp_path / "wrong.ckpt")
    with pytest.raises(CheckpointError, match="phoneme_vocab_size=512"):
        conv.read_s1_checkpoint(tmp_path / "wrong.ckpt")
    save_torch_file({"weight": {"enc_p.proj.weight": np.zeros((2, 2), np.float16)}, "config": {}}, tmp_path / "s2.pth")
    with pytest.raises(CheckpointError, match="SoVITS"):
        conv.read_s1_checkpoint(tmp_path / "s2.pth")
    save_torch_file([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="not an S1"):
        conv.read_s1_checkpoint(tmp_path / "list.ckpt")


def test_real_sovits_file_given_as_gpt(golden):
    with pytest.raises(CheckpointError, match="SoVITS"):
        conv.read_s1_checkpoint(golden("s2_v2_tiny.pth"))
