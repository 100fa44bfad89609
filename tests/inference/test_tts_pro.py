"""Synthesis with a v2ProPlus model (tiny random S1/S2/BERT/HuBERT, the tiny golden SV model): each
reference's speaker embedding as the original's TTS.py computes it, per-reference embeddings reaching
decode, the cache, the model folder's ``sv/`` file, missing-SV errors, and ``infer.py`` end to end.

Tolerance: the reference embedding vs the golden ``compute_embedding3`` of the 32 kHz -> 16 kHz
resample, 1e-4 relative to its largest magnitude; TTS decode vs a direct ``S2.decode`` 1e-6 absolute
(same programs, same inputs).
"""
import shutil

import numpy as np
import pytest
import soundfile as sf

import gsv_jax
from gsv_jax.inference import selftest
from gsv_jax.inference import tts as synth
from tests.conftest import golden_path

GREEDY = dict(top_k=1, noise_scale=0.0, max_new_tokens=8, seed=0)


@pytest.fixture(scope="module")
def sv():
    return gsv_jax.load_sv(golden_path("sv_eres2netv2_tiny.ckpt"))


def tiny_pro_s2(sv_dim: int):
    from gsv_jax.inference.s2 import new_s2
    from gsv_jax.models.s2.synthesizer import S2ModelConfig

    cfg = S2ModelConfig(**{**selftest.TINY_S2, "version": "v2ProPlus", "gin_channels": 64, "sv_dim": sv_dim,
                           "upsample_initial_channel": 96, "upsample_kernel_sizes": (20, 16, 8, 2, 2),
                           "p_dropout": 0.0})
    return new_s2(cfg, 0, with_enc_q=False, fast=True)


@pytest.fixture(scope="module")
def tts(sv):
    return synth.TTS(selftest.tiny_s1(), tiny_pro_s2(sv.dim), selftest.tiny_bert(), selftest.tiny_hubert(),
                     compilation_cache=False, sv=sv)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    main = selftest.write_selftest_reference(d / "main.wav")
    t = np.arange(int(3.2 * 32000)) / 32000
    aux = d / "aux.wav"
    sf.write(str(aux), (0.2 * np.sin(2 * np.pi * 310 * t) * np.sin(2 * np.pi * 1.3 * t)).astype(np.float32), 32000)
    return main, aux


def test_reference_embedding_as_the_original(tts, tmp_path):
    """32 kHz clip -> peak rule -> torchaudio-style 32k->16k resample -> fbank -> forward3 (the golden's
    ``embed_from_32k`` is ``compute_embedding3`` of exactly that resample)."""
    g = dict(np.load(golden_path("sv_eres2netv2_tiny.npz")))
    path = tmp_path / "ref32k.wav"
    sf.write(str(path), np.round(g["resample_in_32k"][0] * 32768).astype(np.int16), 32000, subtype="PCM_16")
    ref = tts.reference(path, need_prompt=False)
    assert ref.sv_emb.shape == (1, 1280) and ref.spec.shape[:2] == (1, 1025)
    want = g["embed_from_32k"]
    assert np.abs(ref.sv_emb - want).max() < 1e-4 * np.abs(want).max()


def test_each_reference_decodes_with_its_own_embedding(tts, refs):
    main, aux = refs
    r_main, r_aux = tts.reference(main), tts.reference(aux, need_prompt=False)
    assert not np.allclose(r_main.sv_emb, r_aux.sv_emb)
    codes = (np.arange(12) * 37 % 1024).astype(np.int32)
    phones = np.array([5, 60, 120, 33, 200, 18, 77], np.int32)
    for specs, svs in (([r_main.spec], [r_main.sv_emb]), ([r_main.spec, r_aux.spec], [r_main.sv_emb, r_aux.sv_emb])):
        got = tts.decode_tokens([synth.S2Row(codes, phones, specs, 0)], noise_scale=0.0)[0]
        want = tts.s2.decode(codes[None], phones[None], specs, noise_scale=0.0, sv_emb=svs)[0]
        assert np.abs(got - want).max() < 1e-6
    one = tts.decode_tokens([synth.S2Row(codes, phones, [r_main.spec], 0)], noise_scale=0.0)[0]
    assert np.abs(got - one).max() > 1e-4  # the auxiliary reference takes part in the average
    # the streaming decoder (server streaming modes) fuses the same embeddings: one final push = decode
    from gsv_jax.inference.streaming import StreamDecoder

    specs = [r_main.spec, r_aux.spec]
    dec = StreamDecoder(tts.s2, phones, specs, noise_scale=0.0, sv_emb=tts.speaker_embeddings(specs))
    streamed = dec.push(codes, True)
    assert streamed.shape == got.shape and np.abs(streamed - got).max() < 1e-5
    with pytest.raises(ValueError, match="needs the speaker embedding"):
        StreamDecoder(tts.s2, phones, specs, noise_scale=0.0)


def test_synthesize_with_aux_reference_and_cached_embeddings(tts, refs, monkeypatch):
    main, aux = refs
    wav, sr = tts.synthesize("你好世界。", "zh", main, "这是参考音频。", "zh", aux_refs=[aux], **GREEDY)
    assert sr == 32000 and wav.dtype == np.float32 and np.all(np.isfinite(wav))
    assert len(wav) == 8 * 2 * 640 + int(0.3 * 32000)
    calls = []
    monkeypatch.setattr(tts.sv, "embed", lambda *a, **k: calls.append(1))
    again, _ = tts.synthesize("你好世界。", "zh", main, "这是参考音频。", "zh", aux_refs=[aux], **GREEDY)
    np.testing.assert_array_equal(wav, again)
    assert calls == []  # both embeddings came from the reference cache
    solo, _ = tts.synthesize("你好世界。", "zh", main, "这是参考音频。", "zh", **GREEDY)
    assert not np.array_equal(solo, wav)


def test_pro_model_without_sv_is_a_clear_error(tts, tmp_path, sv):
    with pytest.raises(ValueError, match="needs the speaker-verification model.*load_sv"):
        synth.TTS(tts.s1, tts.s2, tts.bert, tts.hubert, compilation_cache=False)
    other = tiny_pro_s2(20480)
    with pytest.raises(ValueError, match="gives 1280-d embeddings but the SoVITS model's sv_emb takes 20480"):
        synth.TTS(tts.s1, other, tts.bert, tts.hubert, compilation_cache=False, sv=sv)
    # a model folder without sv/: the message names the file and where it goes (before BERT/HuBERT load)
    folder = tmp_path / "models"
    folder.mkdir()
    gsv_jax.save_s2_torch(tts.s2, folder / "s2.pth")
    (folder / "s1.ckpt").write_bytes(b"not read")
    (folder / "chinese-roberta-wwm-ext-large").mkdir()
    (folder / "chinese-hubert-base").mkdir()
    with pytest.raises(synth.MissingModelFiles, match=r"v2ProPlus, which needs .*pretrained_eres2netv2w24s4ep4\.ckpt"
                                                      r".*models/sv/pretrained_eres2netv2w24s4ep4\.ckpt"):
        synth.TTS.from_folder(folder, compilation_cache=False)
    assert synth.resolve_model_folder(folder)["sv"] is None
    (folder / "sv").mkdir()
    shutil.copy(golden_path("sv_eres2netv2_tiny.ckpt"), folder / "sv" / synth.SV_FILE)
    assert synth.resolve_model_folder(folder)["sv"] == folder / "sv" / synth.SV_FILE


def test_infer_cli_with_a_pro_model_folder(tts, refs, tmp_path):
    """infer.py --model-dir with the original's layout (s1, s2 with head 06, the two HF folders, sv/)."""
    pytest.importorskip("torch")
    from gsv_jax.inference.s1 import save_s1_torch
    from tests.data.test_prepare_models import tiny_bert_folder, tiny_hubert_folder
    from tests.test_infer_cli import _load_infer

    folder = tmp_path / "models"
    folder.mkdir()
    save_s1_torch(tts.s1, folder / "s1.ckpt")
    gsv_jax.save_s2_torch(tts.s2, folder / "s2.pth")
    tiny_bert_folder(folder / "chinese-roberta-wwm-ext-large")
    tiny_hubert_folder(folder / "chinese-hubert-base")
    (folder / "sv").mkdir()
    shutil.copy(golden_path("sv_eres2netv2_tiny.ckpt"), folder / "sv" / synth.SV_FILE)
    out = tmp_path / "out.wav"
    infer = _load_infer()
    argv = ["--model-dir", str(folder), "--ref", str(refs[0]), "--ref-text", "今天天气很好。", "--ref-lang", "zh",
            "--text", "你好世界。", "--text-lang", "zh", "--aux-ref", str(refs[1]), "--out", str(out),
            "--max-new-tokens", "8", "--top-k", "1", "--noise-scale", "0", "--no-compile-cache", "-q"]
    assert infer.main(argv) == 0
    wav, sr = sf.read(str(out))
    assert sr == 32000 and len(wav) == 8 * 2 * 640 + int(0.3 * 32000)
    shutil.rmtree(folder / "sv")
    assert infer.main(argv) == 2  # missing SV file: one-line error, exit 2
