"""The family registry: every record complete and consistent; detection maps each golden file to its family."""
import dataclasses
import importlib.util

import numpy as np
import pytest

from gsv_jax import families
from gsv_jax.convert import s1 as conv_s1
from gsv_jax.convert import s2 as conv_s2
from gsv_jax.io.torch_io import load_torch_file
from tests.conftest import REPO

OPTIONAL = {"s2_preset", "head", "lora_head", "sample_steps"}


@pytest.mark.parametrize("name", families.VERSIONS)
def test_record_is_complete(name):
    f = families.family(name)
    assert f.name == name
    for field in dataclasses.fields(f):
        value = getattr(f, field.name)
        if field.name not in OPTIONAL and field.name not in ("supported", "hashes", "extra_models", "periods"):
            assert value not in (None, "", ()), f"{name}.{field.name} is empty"
    assert f.symbols in ("v1", "v2") and (REPO / f"gsv_jax/text/data/symbols_{f.symbols}.json").exists()
    assert set(f.languages) <= set(f.ui_languages)
    assert f.sample_rate in (24000, 32000, 48000) and f.ref_sample_rate == 32000 and f.spec_hop == 640
    assert f.decoder in ("hifigan", "cfm")
    assert (f.decoder == "cfm") == (f.sample_steps is not None) == (f.periods == ())
    # the presets and modules it names exist (modules of families not ported yet may still be missing)
    assert (REPO / f"configs/{f.s1_preset}.py").exists() or (REPO / f"gsv_jax/configs/{f.s1_preset}.py").exists()
    if f.supported:
        assert importlib.util.find_spec(f.converter) is not None
        assert importlib.util.find_spec(f.model_module) is not None
        if f.s2_preset:
            assert (REPO / f"configs/{f.s2_preset}.py").exists() or (
                REPO / f"gsv_jax/configs/{f.s2_preset}.py").exists()


def test_heads_and_hashes_are_unique():
    heads = [h for f in families.FAMILIES.values() for h in (f.head, f.lora_head) if h]
    assert len(heads) == len(set(heads)) == 7 and b"PK" not in heads
    hashes = [h for f in families.FAMILIES.values() for h in f.hashes]
    assert len(hashes) == len(set(hashes)) == 6


def test_unknown_version_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model version 'v9'; known: v1, v2, v2Pro"):
        families.family("v9")


def _shapes(path):
    obj = load_torch_file(path)
    sd = obj.get("weight") or obj.get("model") or obj
    return {k: tuple(np.shape(v)) for k, v in sd.items()}, obj


@pytest.mark.parametrize("name, version, lora", [
    ("s2_v2_tiny.pth", "v2", False),
    ("s2_train_tiny_G.pth", "v2", False),
    ("s2_v2ProPlus_tiny.pth", "v2ProPlus", False),
    ("s2Gv3_tiny.pth", "v3", False),
    ("s2Gv4_tiny.pth", "v4", False),
    ("s2Gv3_lora_tiny.pth", "v3", True),
])
def test_detection_maps_each_golden_file_to_its_family(golden, name, version, lora):
    path = golden(name)
    shapes, obj = _shapes(path)
    head, digest = families.head_digest(path)
    stored = getattr(getattr(obj.get("config"), "model", None), "version", None)
    assert families.detect_s2(shapes, head, digest, stored) == (version, lora)
    if version in ("v2", "v2ProPlus"):  # through the converter's reader as well
        _sd, _hps, meta = conv_s2.read_s2_file(path)
        assert meta["detected_version"] == version


def test_detection_by_shape_alone():
    base = {"enc_p.text_embedding.weight": (732, 192), "dec.conv_pre.weight": (512, 192, 7)}
    assert families.detect_s2(base) == ("v2", False)
    assert families.detect_s2({**base, "enc_p.text_embedding.weight": (322, 192)}) == ("v1", False)
    assert families.detect_s2({**base, "sv_emb.weight": (1024, 20480)}) == ("v2Pro", False)
    assert families.detect_s2({**base, "sv_emb.weight": (1024, 20480),
                               "dec.conv_pre.weight": (768, 192, 7)}) == ("v2ProPlus", False)
    assert families.detect_s2({"cfm.estimator.proj_out.weight": (100, 1024)}) == ("v3", False)
    assert families.detect_s2({"cfm.x": (1,)}, head=b"04") == ("v4", True)
    # the official files are known by the md5 of their first 8 KiB, whatever their head
    assert families.detect_s2(base, digest="66b313e39455b57ab1b0bc0b239c9d0a") == ("v2ProPlus", False)


def test_s1_layout_detection(golden):
    assert families.detect_s1(512) == "v1" and families.detect_s1(732) == "v2"
    _cfg, dims, _params, _info = conv_s1.read_s1_checkpoint(golden("s1_v2_tiny.ckpt"))
    assert conv_s1.version_of(dims) == "v2"
    with pytest.raises(ValueError, match="600 rows matches no family"):
        families.detect_s1(600)
