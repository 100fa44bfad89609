"""SoVITS v3/v4 files, LoRA fine-tunes and vocoder files (``../shared/golden/s2Gv3_tiny.pth``,
``s2Gv4_tiny.pth``, ``s2Gv3_lora_tiny.pth``, ``bigvgan_v3_tiny/``, ``vocoder_v4_tiny.pth``).

LoRA merge: equal to the original's merged weights (``v3_lora_tiny.npz``) to 1e-6 relative;
export round trip: fp16 values identical to the file's.
"""
import numpy as np
import pytest

from tests.conftest import golden_path


def test_detection_full_files():
    from gsv_jax.convert import v3 as conv

    for v in ("v3", "v4"):
        sd, hps, meta = conv.read_v3_file(golden_path(f"s2G{v}_tiny.pth"))
        assert meta["version"] == v and not meta["lora"] and meta["head"] == b"PK"
        assert len(sd) == 205
        cfg = conv.config_from_state_dict(sd, hps, v)
        assert (cfg["dit_dim"], cfg["dit_depth"], cfg["dit_heads"], cfg["dit_conv_layers"]) == (64, 2, 2, 2)
        assert (cfg["model_dim"], cfg["wns1_layers"], cfg["n_symbols"]) == (64, 2, 732)


def test_detection_lora_file():
    from gsv_jax.convert import v3 as conv

    sd, _, meta = conv.read_v3_file(golden_path("s2Gv3_lora_tiny.pth"))
    g = np.load(golden_path("v3_lora_tiny.npz"))
    assert meta["head"] == bytes(g["file_head"]) == b"03"
    assert meta["version"] == "v3" and meta["lora"] and meta["lora_rank"] == int(g["lora_rank"]) == 4
    assert len(sd) == 62


def test_lora_merge_equals_original():
    from gsv_jax.convert import v3 as conv

    base, _, _ = conv.read_v3_file(golden_path("s2Gv3_tiny.pth"))
    lora, _, meta = conv.read_v3_file(golden_path("s2Gv3_lora_tiny.pth"))
    merged = conv.merge_lora(base, lora, meta["lora_rank"])
    g = np.load(golden_path("v3_lora_tiny.npz"))
    keys = [k for k in g.files if k.startswith("merged/")]
    assert len(keys) == 8
    for k in keys:
        ref = g[k]
        got = np.asarray(merged[k[len("merged/"):]], np.float32)
        assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max(), k
        assert not np.array_equal(got, np.asarray(base[k[len("merged/"):]], np.float32))
    # non-LoRA keys replace the base values; the DiT's other weights stay the base's
    np.testing.assert_array_equal(merged["bridge.0.weight"], lora["bridge.0.weight"])
    np.testing.assert_array_equal(merged["cfm.estimator.proj_out.weight"], base["cfm.estimator.proj_out.weight"])
    assert not any("lora_" in k or "base_model" in k for k in merged)


def test_lora_without_base_names_it():
    from gsv_jax.convert.v3 import LoraBaseError
    from gsv_jax.inference.v3 import load_s2_v3

    with pytest.raises(LoraBaseError, match=r"base=.*s2Gv3\.pth"):
        load_s2_v3(golden_path("s2Gv3_lora_tiny.pth"))


def test_lora_with_wrong_base_refused():
    from gsv_jax.convert.v3 import LoraBaseError
    from gsv_jax.inference.v3 import load_s2_v3

    with pytest.raises(LoraBaseError, match="v3 LoRA but .* v4 model"):
        load_s2_v3(golden_path("s2Gv3_lora_tiny.pth"), base=golden_path("s2Gv4_tiny.pth"))
    with pytest.raises(ValueError, match="only for LoRA"):
        load_s2_v3(golden_path("s2Gv3_tiny.pth"), base=golden_path("s2Gv3_tiny.pth"))


def test_not_a_v3_file_refused():
    from gsv_jax.convert import v3 as conv
    from gsv_jax.io.torch_io import CheckpointError

    with pytest.raises(CheckpointError, match="not a SoVITS v3/v4 model"):
        conv.read_v3_file(golden_path("s2_v2_tiny.pth"))
    with pytest.raises(CheckpointError, match="not the v4 vocoder"):
        conv.read_vocoder_v4(golden_path("s2_v2_tiny.pth"))
    with pytest.raises(CheckpointError, match="config.json and bigvgan_generator.pt"):
        conv.read_bigvgan(golden_path("s2_v2_tiny.pth").parent)


def test_export_round_trip(tmp_path):
    from gsv_jax.convert import v3 as conv
    from gsv_jax.inference.v3 import load_s2_v3, save_s2_v3_torch

    src = golden_path("s2Gv4_tiny.pth")
    s2 = load_s2_v3(src)
    out = tmp_path / "exported.pth"
    save_s2_v3_torch(s2, out)
    a, _, _ = conv.read_v3_file(src)
    b, hps, meta = conv.read_v3_file(out)
    assert meta["version"] == "v4" and not meta["lora"] and meta["head"] == b"PK"
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert hps["model"]["version"] == "v4"


def test_merged_lora_exports_as_full_model(tmp_path):
    from gsv_jax.convert import v3 as conv
    from gsv_jax.inference.v3 import load_s2_v3, save_s2_v3_torch

    s2 = load_s2_v3(golden_path("s2Gv3_lora_tiny.pth"), base=golden_path("s2Gv3_tiny.pth"))
    assert s2.lora["rank"] == 4
    save_s2_v3_torch(s2, tmp_path / "merged.pth")
    sd, _, meta = conv.read_v3_file(tmp_path / "merged.pth")
    assert not meta["lora"] and len(sd) == 205
    g = np.load(golden_path("v3_lora_tiny.npz"))
    k = "cfm.estimator.transformer_blocks.0.attn.to_q.weight"
    assert np.abs(sd[k].astype(np.float32) - g["merged/" + k]).max() < 2e-3  # fp16 storage of the merge
