"""SoVITS v3/v4 through ``TTS`` (tiny golden S1/S2/vocoders, tiny random BERT/HuBERT): output rate and
length (24 kHz v3, 48 kHz v4), the reference mel as ``TTS.py`` computes it (cached), the missing
prompt text and mismatched-vocoder errors, the model folder (original names, a LoRA with its base),
``sample_steps``, batched segments == solo, compile counts; heavy: a segment longer than one chunk and
the joined-segments variant.

Tolerances: TTS vs the direct ``S2V3`` calls it wraps 1e-5 absolute (same programs); batched vs
solo segments 1e-4 absolute (padded CFM rows and vocoder rows are masked; fp32 reduction order).
"""
import shutil

import numpy as np
import pytest
import soundfile as sf

import gsv_jax
from gsv_jax.inference import selftest, v3
from gsv_jax.inference import tts as synth
from tests.conftest import golden_path
from tests.inference.test_tts import CompileCounter

REF_TEXT = "这是参考音频。"
# greedy, a fixed token count (the tiny golden S1 emits no EOS) and few CFM steps: fast and deterministic
N = 18  # tokens per segment: 67 (v3) / 72 (v4) mel frames, one shape bucket with 17 tokens
KW = dict(top_k=1, max_new_tokens=N, sample_steps=2, seed=3, cut="cut0")
#: output samples of n tokens: floor(2n · 1.875) mel frames x 256 (v3), 4n x 480 (v4)
SAMPLES = {"v3": lambda n: int(2 * n * 1.875) * 256, "v4": lambda n: 4 * n * 480}
FILES = {"v3": ("s2Gv3_tiny.pth", "bigvgan_v3_tiny"), "v4": ("s2Gv4_tiny.pth", "vocoder_v4_tiny.pth")}
ORIGINAL_NAMES = {"v3": ("s2Gv3.pth", "models--nvidia--bigvgan_v2_24khz_100band_256x"),
                  "v4": ("gsv-v4-pretrained/s2Gv4.pth", "gsv-v4-pretrained/vocoder.pth")}


@pytest.fixture(scope="module")
def parts():
    return {"s1": gsv_jax.load_s1(golden_path("s1_v2_tiny.ckpt")), "bert": selftest.tiny_bert(),
            "hubert": selftest.tiny_hubert()}


@pytest.fixture(scope="module")
def vocoders():
    return {v: gsv_jax.load_vocoder(golden_path(FILES[v][1])) for v in FILES}


@pytest.fixture(scope="module")
def models(parts, vocoders):
    out = {}
    for v in FILES:
        s2 = gsv_jax.load_s2(golden_path(FILES[v][0]))
        out[v] = synth.TTS(parts["s1"], s2, parts["bert"], parts["hubert"], vocoder=vocoders[v],
                           compilation_cache=False)
    return out


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    # 44.1 kHz stereo: the mel path resamples from the file's own rate and averages the channels
    d = tmp_path_factory.mktemp("ref")
    mono = sf.read(str(selftest.write_selftest_reference(d / "mono.wav", sr=44100)))[0]
    path = d / "ref44k.wav"
    sf.write(str(path), np.stack([mono, 0.5 * mono], 1).astype(np.float32), 44100)
    return path


@pytest.mark.parametrize("version, rate", [("v3", 24000), ("v4", 48000)])
def test_rate_length_and_the_wrapped_calls(models, ref, version, rate):
    tts = models[version]
    assert tts.sample_rate == rate == tts.vocoder.sampling_rate and tts.steps(None) == {"v3": 32, "v4": 8}[version]
    wav, sr = tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **KW)
    assert sr == rate and wav.dtype == np.float32 and np.all(np.isfinite(wav))
    assert len(wav) == SAMPLES[version](N) + int(0.3 * rate)
    # the reference mel: TTS.py's (raw file rate, channel mean, resample, mel_fn, norm_spec), cached
    r = tts.reference(ref)
    raw, raw_sr = sf.read(str(ref), dtype="float32")
    np.testing.assert_allclose(r.mel, v3.reference_mel(raw.T, raw_sr, version), atol=1e-6)
    assert tts.reference(ref) is r
    # = the engine's own chunked synthesis with the same prompt, tokens and noise
    job = tts.prepare("你好世界。", "zh", ref, REF_TEXT, "zh", cut="cut0")
    tokens, _ = tts.generate_tokens(job.s1_rows(3), synth.Sampling(top_k=1), max_new_tokens=N)
    fea_frames = tts.s2.encode(tokens[0], job.targets[0].ids, job.cfm_prompt[0]).shape[1]
    noise = [v3.chunk_noise(3, 0, job.cfm_prompt[2].shape[1] + fea_frames)]
    want = tts.s2.synthesize_chunked(tokens[0], job.targets[0].ids, r.prompt_codes, job.prompt.ids, r.spec, r.mel,
                                     vocoder=tts.vocoder, sample_steps=2, noises=noise)
    np.testing.assert_allclose(wav[: len(want)], want, atol=1e-5)



def test_sample_steps_reach_the_sampler(models, ref, monkeypatch):
    """Default steps from the registry (32 v3, 8 v4), or the caller's (each count is its own compiled
    loop, so the spy runs 2 steps whatever it was given)."""
    def spy(tts, seen):
        cfm = tts.s2.cfm
        return lambda *a: seen.append(a[3]) or cfm(*a[:3], 2, *a[4:])

    for version, default in (("v3", 32), ("v4", 8)):
        tts, seen = models[version], []
        monkeypatch.setattr(tts.s2, "cfm", spy(tts, seen))
        tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **{**KW, "sample_steps": None})
        tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **{**KW, "sample_steps": 5})
        assert seen == [default, 5]


def test_prompt_tokens_of_the_reference(models):
    """S2V3.extract_latent (HuBERT features -> the reference's prompt tokens) = the golden ``extract_latent``."""
    g = np.load(golden_path("v3_tiny.npz"))
    np.testing.assert_array_equal(models["v3"].s2.extract_latent(g["latent_ssl"]), g["latent_codes"][0])


def test_prompt_text_is_required_before_any_work(models, ref, monkeypatch):
    tts = models["v4"]
    monkeypatch.setattr(tts, "hubert", lambda *a: pytest.fail("HuBERT ran before the prompt-text check"))
    with pytest.raises(ValueError, match="prompt_text cannot be empty when using SoVITS v3/v4"):
        tts.synthesize("你好世界。", "zh", ref, "", "zh", **KW)
    with pytest.raises(ValueError, match="sample_steps must be an integer >= 1"):
        tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **{**KW, "sample_steps": 0})
    codes, phones = np.arange(8, dtype=np.int32), np.arange(5, 12, dtype=np.int32)
    with pytest.raises(ValueError, match=r"rows need their CFM prompt: S2Row\(\.\.\., prompt=prepared\.cfm_prompt\)"):
        tts.decode_tokens([synth.S2Row(codes, phones, [], 0)])


def test_mismatched_or_missing_vocoder(models, parts, vocoders):
    s2v3 = models["v3"].s2
    with pytest.raises(ValueError, match=r"mismatched models: the SoVITS model is v3 but the vocoder .* is the v4 one "
                                         r"\(48000 Hz\); v3 needs models--nvidia--bigvgan_v2_24khz_100band_256x"):
        synth.TTS(parts["s1"], s2v3, parts["bert"], parts["hubert"], vocoder=vocoders["v4"], compilation_cache=False)
    with pytest.raises(ValueError, match=r"v4 model needs its vocoder"):
        synth.TTS(parts["s1"], models["v4"].s2, parts["bert"], parts["hubert"], compilation_cache=False)
    tts = models["v3"]
    with pytest.raises(ValueError, match="mismatched models"):  # a weights switch keeps the old models
        tts.replace_models(s2=models["v4"].s2)
    assert tts.s2 is s2v3 and tts.version == "v3"


def _folder(tmp_path, version, *, vocoder_of=None, lora=False):
    """The original's pretrained_models names: s2Gv3.pth / gsv-v4-pretrained/s2Gv4.pth, the vocoder
    of ``vocoder_of`` (default: the model's), a LoRA as s2.pth beside its base."""
    folder = tmp_path / f"models_{version}{'_lora' if lora else ''}"
    (folder / "gsv-v4-pretrained").mkdir(parents=True)
    for name in ("s1v3.ckpt",):
        shutil.copy(golden_path("s1_v2_tiny.ckpt"), folder / name)
    (folder / "chinese-roberta-wwm-ext-large").mkdir()
    (folder / "chinese-hubert-base").mkdir()
    shutil.copy(golden_path(FILES[version][0]), folder / ORIGINAL_NAMES[version][0])
    if lora:
        shutil.copy(golden_path("s2Gv3_lora_tiny.pth"), folder / "s2.pth")
    voc = vocoder_of or version
    src, dst = golden_path(FILES[voc][1]), folder / ORIGINAL_NAMES[voc][1]
    (shutil.copytree if voc == "v3" else shutil.copy)(src, dst)
    return folder


@pytest.fixture
def fake_loaders(monkeypatch, parts):
    """S1/BERT/HuBERT from memory (the folder test is about S2, its base and the vocoder)."""
    monkeypatch.setattr(gsv_jax, "load_s1", lambda p: parts["s1"])
    monkeypatch.setattr(gsv_jax, "load_bert", lambda p: parts["bert"])
    monkeypatch.setattr(gsv_jax, "load_hubert", lambda p: parts["hubert"])


def test_model_folders(tmp_path, fake_loaders, models, ref):
    for version in ("v3", "v4"):
        parts = synth.resolve_model_folder(_folder(tmp_path, version))
        assert parts["gpt"].name == "s1v3.ckpt" and parts["sovits"] == parts["model_dir"] / ORIGINAL_NAMES[version][0]
        tts = synth.TTS.from_folder(parts["model_dir"], compilation_cache=False)
        assert tts.version == version and tts.vocoder.version == version
    with pytest.raises(ValueError, match=r"mismatched models: the SoVITS model .*s2Gv3\.pth is v3, which needs the "
                                         r"BigVGAN vocoder folder .* holds the v4 vocoder .*vocoder\.pth"):
        synth.TTS.from_folder(_folder(tmp_path / "x", "v3", vocoder_of="v4"), compilation_cache=False)
    # a LoRA fine-tune (s2.pth) merged onto the base found beside it; without the base: which file, where
    folder = _folder(tmp_path / "lora", "v3", lora=True)
    tts = synth.TTS.from_folder(folder, compilation_cache=False)
    assert tts.s2.lora["rank"] == 4 and tts.s2.lora["base"].endswith("s2Gv3.pth")
    wav, sr = tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **KW)
    base, _ = models["v3"].synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **KW)
    assert sr == 24000 and wav.shape == base.shape and np.abs(wav - base).max() > 1e-4  # the LoRA changes it
    (folder / "s2Gv3.pth").unlink()
    with pytest.raises(synth.MissingModelFiles, match=r"is a v3 LoRA fine-tune, which needs its base model s2Gv3\.pth"
                                                      r".*--sovits-base"):
        synth.TTS.from_folder(folder, compilation_cache=False)
    # both official models and no s2.pth: the user chooses
    both = _folder(tmp_path / "both", "v4")
    shutil.copy(golden_path("s2Gv3_tiny.pth"), both / "s2Gv3.pth")
    with pytest.raises(synth.MissingModelFiles, match="holds several SoVITS models"):
        synth.resolve_model_folder(both)


def test_batched_segments_equal_solo(models, ref):
    """Two segments decoded as padded CFM/vocoder batches equal each one alone (v4: its vocoder
    compiles in a fraction of BigVGAN's time; the batching code is the same for v3)."""
    tts = models["v4"]
    kw = dict(KW, cut="cut5")
    a, b = "你好世界，", "我们今天很好。"
    both, _ = tts.synthesize(a + b, "zh", ref, REF_TEXT, "zh", batch_size=2, **{**kw, "seed": 3})
    alone_a, _ = tts.synthesize(a, "zh", ref, REF_TEXT, "zh", **{**kw, "seed": 3})
    alone_b, _ = tts.synthesize(b, "zh", ref, REF_TEXT, "zh", **{**kw, "seed": 4})
    assert len(both) == len(alone_a) + len(alone_b)
    np.testing.assert_allclose(both[: len(alone_a)], alone_a, atol=1e-4)
    np.testing.assert_allclose(both[len(alone_a):], alone_b, atol=1e-4)


@pytest.mark.heavy
def test_long_segment_chunks_and_the_joined_variant(models, ref):
    """A segment longer than one chunk (T_chunk - T_min frames) = the golden-tested sequential chunks;
    ``join_segments`` = ``synthesize_batched`` with the same inputs (new shape buckets: ~25 s of compiles)."""
    tts = models["v4"]
    a, b = "你好世界，", "我们今天很好。"
    kw = dict(KW, cut="cut5")
    both, _ = tts.synthesize(a + b, "zh", ref, REF_TEXT, "zh", batch_size=2, **kw)
    joined, _ = tts.synthesize(a + b, "zh", ref, REF_TEXT, "zh", batch_size=2, join_segments=True, **kw)
    assert joined.shape == both.shape and np.abs(joined - both).max() > 1e-3
    job = tts.prepare(a + b, "zh", ref, REF_TEXT, "zh", cut="cut5")
    tokens, _ = tts.generate_tokens(job.s1_rows(3), synth.Sampling(top_k=1), max_new_tokens=N)
    r = job.ref
    want = tts.s2.synthesize_batched(tokens, [t.ids for t in job.targets], r.prompt_codes, job.prompt.ids, r.spec,
                                     r.mel, vocoder=tts.vocoder, sample_steps=2, seed=3)
    pause = int(0.3 * 48000)
    np.testing.assert_allclose(joined[: len(want[0])], want[0], atol=1e-5)
    np.testing.assert_allclose(joined[len(want[0]) + pause: -pause], want[1], atol=1e-5)

    # S2 of a long segment (given tokens: S1 may end early)
    t_min = job.cfm_prompt[2].shape[1]
    chunk_len = tts.s2.T_chunk - t_min
    n_tokens = int(np.ceil(chunk_len / 4)) + 3  # v4: 4 mel frames per token -> 2 chunks
    codes = (np.arange(n_tokens) * 37 % 1024).astype(np.int32)
    row = synth.S2Row(codes, job.targets[0].ids, job.specs, 7, job.cfm_prompt)
    wav = tts.decode_tokens([row], sample_steps=2)[0]
    assert len(wav) == n_tokens * 1920
    noises = [v3.chunk_noise(7, 0, t_min + chunk_len), v3.chunk_noise(7, 1, t_min + 4 * n_tokens - chunk_len)]
    want = tts.s2.synthesize_chunked(codes, row.phones, r.prompt_codes, job.prompt.ids, r.spec, r.mel,
                                     vocoder=tts.vocoder, sample_steps=2, noises=noises)
    np.testing.assert_allclose(wav, want, atol=1e-5)


def test_second_similar_segment_compiles_nothing(models, ref):
    """18 and 17 tokens: 72 and 68 mel frames, one shape bucket for every program (v4)."""
    tts = models["v4"]
    tts.synthesize("你好世界。", "zh", ref, REF_TEXT, "zh", **KW)
    with CompileCounter() as cc:
        wav, _ = tts.synthesize("我们今天很好。", "zh", ref, REF_TEXT, "zh", **{**KW, "max_new_tokens": N - 1, "seed": 5})
    assert cc.count == 0 and len(wav) == SAMPLES["v4"](N - 1) + int(0.3 * 48000)
