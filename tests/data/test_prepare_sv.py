"""The speaker-embedding stage (v2Pro/v2ProPlus, the original's 2-get-sv.py -> 7-sv_cn) on the demo corpus:
one embedding per utterance from the stored 32 kHz clip at 16 kHz, resumable, packed, in the original
layout both ways, and read by the S2 training pipelines. Text/HuBERT/quantizer are the fast fakes; the SV
model is the tiny golden ERes2NetV2 (1280-d) through the real loader."""
import numpy as np
import pytest

import gsv_jax
from gsv_jax import audio
from gsv_jax.data import original_layout
from gsv_jax.data.format import open_dataset
from gsv_jax.data.prepare import prepare
from tests.conftest import golden_path

from .fakes import DEMO_LIST, fake_models

STAGES = ("text", "audio", "semantic", "sv", "pack")


@pytest.fixture(scope="module")
def sv():
    return gsv_jax.load_sv(golden_path("sv_eres2netv2_tiny.ckpt"))


def _models(sv, calls=None):
    base = fake_models(fake_text=True)

    def get(stage):
        m = base(stage)

        def embed(w):
            if calls is not None:
                calls.append(len(w))
            return sv.embed(w)

        m.sv_embed = embed
        return m

    return get


def test_sv_stage_packs_and_resumes(tmp_path, sv):
    calls = []
    s = prepare(DEMO_LIST, tmp_path, _models(sv, calls), stages=STAGES, progress=False)
    n = s["stages"]["sv"]["new"]
    assert n == s["assigned"] > 0 and not s["stages"]["sv"]["failed"] and len(calls) == n
    ds = open_dataset(tmp_path)
    item = ds[0]
    assert item["sv_emb"].shape == (1280,) and item["sv_emb"].dtype == np.float32
    # as 2-get-sv.py: int16 clip / 32768 -> Resample(32000, 16000) -> compute_embedding3
    want = sv.embed(audio.resample_sinc(item["wav32k"].astype(np.float32) / 32768, 32000, 16000))
    np.testing.assert_allclose(item["sv_emb"], want, rtol=1e-6, atol=1e-6)
    again = prepare(DEMO_LIST, tmp_path, _models(sv, calls), stages=STAGES, progress=False)
    assert again["stages"]["sv"]["new"] == 0 and again["stages"]["sv"]["already_done"] == n and len(calls) == n
    # packing again later without --sv keeps the embeddings in the dataset
    prepare(DEMO_LIST, tmp_path, _models(sv), stages=("pack",), progress=False)
    assert "sv_emb" in open_dataset(tmp_path)[0]


def test_sv_stage_waits_for_audio(tmp_path, sv):
    s = prepare(DEMO_LIST, tmp_path, _models(sv), stages=("sv",), progress=False)
    assert s["stages"]["sv"]["new"] == 0 and all("audio stage not run yet" in r
                                                 for r in s["stages"]["sv"]["blocked"].values())


def test_original_layout_7_sv_cn_both_ways_and_training_readers(tmp_path, sv):
    from gsv_jax.data.s2_pipeline import OriginalS2Folder, collate
    from gsv_jax.io.torch_io import load_torch_file

    prepare(DEMO_LIST, tmp_path / "ds", _models(sv), stages=STAGES, progress=False)
    ds = open_dataset(tmp_path / "ds")
    exp = tmp_path / "exp"
    original_layout.export_original(tmp_path / "ds", exp, progress=False)
    first = ds[0]
    t = load_torch_file(exp / "7-sv_cn" / f"{first['name']}.pt")
    assert t.shape == (1, 1280) and t.dtype == np.float32  # what 2-get-sv.py saves ([1, 20480] real size)
    np.testing.assert_array_equal(t[0], first["sv_emb"])
    back = original_layout.import_original(exp, tmp_path / "back", list_path=DEMO_LIST, progress=False)
    assert back["items"] == len(ds) and not back["skipped"], back
    got = {x["name"]: x for x in open_dataset(tmp_path / "back")}
    np.testing.assert_array_equal(got[first["name"]]["sv_emb"], first["sv_emb"])
    # the original's folder as an S2 training source for a Pro model: items carry sv_emb into the batch
    folder = OriginalS2Folder(exp, "v2Pro")
    item = folder[0]
    assert item["sv_emb"].shape == (1280,)
    batch = collate([item, folder[1]], 400)
    assert batch["sv_emb"].shape == (2, 1280)
    (exp / "7-sv_cn" / f"{item['name']}.pt").unlink()
    assert len(OriginalS2Folder(exp, "v2Pro")) == len(folder) - 1  # items without an embedding are left out
    import shutil

    shutil.rmtree(exp / "7-sv_cn")
    with pytest.raises(FileNotFoundError, match="7-sv_cn not found.*2-get-sv.py"):
        OriginalS2Folder(exp, "v2ProPlus")
    assert len(OriginalS2Folder(exp, "v2")) == len(folder)
