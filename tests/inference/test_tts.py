"""End-to-end synthesis on tiny random models: TTS API, infer.py, determinism, compile counts, bad input."""
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import soundfile as sf

from gsv_jax.inference import selftest
from gsv_jax.inference import tts as synth

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GREEDY = dict(top_k=1, noise_scale=0.0, max_new_tokens=24, seed=0)


class CompileCounter:
    """Counts XLA backend compilations while active."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        self.active = False

    def _on_event(self, name, *args, **kwargs):
        if self.active and name == "/jax/core/compile/backend_compile_duration":
            self.count += 1

    def __enter__(self):
        self.count, self.active = 0, True
        return self

    def __exit__(self, *exc):
        self.active = False


@pytest.fixture(scope="module")
def tts():
    return selftest.tiny_tts()


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return selftest.write_selftest_reference(tmp_path_factory.mktemp("ref") / "ref.wav")


def test_synthesize_shape_rate_and_determinism(tts, ref):
    text = "今天天气很不错。我们一起去公园散步吧！"
    t0 = time.perf_counter()
    wav, sr, t = tts.synthesize(text, "zh", ref, "这是参考音频。", "zh", cut="cut5", return_timings=True, **GREEDY)
    wall = time.perf_counter() - t0
    assert sr == 32000 and wav.dtype == np.float32 and wav.ndim == 1
    assert not hasattr(tts, "last_timings")  # timings belong to the call, not the shared object
    assert t["segments"] == 2
    # each segment: tokens * 2 frames * 640 samples, plus 0.3 s pause; greedy tiny model never hits EOS here
    per_segment = 24 * 2 * 640 + int(0.3 * 32000)
    assert len(wav) == 2 * per_segment
    assert np.all(np.isfinite(wav)) and np.abs(wav).max() <= 1.0
    again, _, t2 = tts.synthesize(text, "zh", ref, "这是参考音频。", "zh", cut="cut5", return_timings=True, **GREEDY)
    np.testing.assert_array_equal(wav, again)
    stages = ("frontend", "bert", "hubert", "s1", "s2")
    assert all(t[k] > 0.0 for k in stages), t
    # the stages are disjoint parts of the call: together no more than its wall time
    assert sum(t[k] for k in stages) <= wall, (t, wall)
    assert t["audio_seconds"] == pytest.approx(len(wav) / sr)
    # the second call finds text and reference in the caches: no BERT, no HuBERT work at all
    assert t2["bert"] == 0.0 and t2["hubert"] < 0.05 * t["hubert"], (t, t2)
    assert t["no_eos_segments"] == [1, 2]  # the greedy tiny model hits the 24-token bound in both


def test_batched_segments_equal_solo(tts, ref):
    """Segments generated and decoded in one padded batch equal the same segments synthesized alone."""
    a, b = "我们一起去公园散步吧！", "今天天气很不错真好。"
    both, _ = tts.synthesize(a + b, "zh", ref, "这是参考音频。", "zh", cut="cut5", batch_size=2, **GREEDY)
    alone_a, _ = tts.synthesize(a, "zh", ref, "这是参考音频。", "zh", cut="cut0", **GREEDY)
    alone_b, _ = tts.synthesize(b, "zh", ref, "这是参考音频。", "zh", cut="cut0", **GREEDY)
    assert len(both) == len(alone_a) + len(alone_b)
    np.testing.assert_allclose(both[: len(alone_a)], alone_a, atol=1e-4)
    np.testing.assert_allclose(both[len(alone_a):], alone_b, atol=1e-4)


def test_second_similar_sentence_compiles_nothing(tts, ref):
    kw = dict(GREEDY, cut="cut0")
    tts.synthesize("你好世界，今天很好。", "zh", ref, "这是参考音频。", "zh", **kw)
    with CompileCounter() as cc:
        tts.synthesize("我们今天很不错啊。", "zh", ref, "这是参考音频。", "zh", **kw)
    assert cc.count == 0


def test_reference_free_and_mixed_language(tts, ref, monkeypatch):
    from gsv_jax import text as text_lib

    seen = []
    clean_text = text_lib.clean_text
    monkeypatch.setattr(text_lib, "clean_text", lambda s, lang, **kw: seen.append((s, lang)) or clean_text(s, lang, **kw))

    def no_hubert(*a):
        raise AssertionError("reference-free synthesis ran HuBERT")

    monkeypatch.setattr(tts, "hubert", no_hubert)
    wav, sr, t = tts.synthesize("Hello world, 你好。", "auto", ref, "", "zh", return_timings=True, **GREEDY)
    # "auto" split the text by language and each part went through its own frontend
    assert {lang for _, lang in seen} == {"en", "zh"}, seen
    assert any("Hello" in s for s, lang in seen if lang == "en") and any("你好" in s for s, lang in seen if lang == "zh")
    # reference-free: no prompt tokens; the greedy tiny S1 generates its 24-token bound per segment
    # (2 frames of 640 samples each at 32 kHz), each segment followed by the 0.3 s pause
    per_segment = 24 * 2 * 640 + int(0.3 * sr)
    assert sr == 32000 and t["segments"] >= 1 and len(wav) == t["segments"] * per_segment
    speech = wav[:24 * 2 * 640]
    assert np.all(np.isfinite(wav)) and np.abs(wav).max() <= 1.0
    assert np.sqrt(np.mean(speech ** 2)) > 1e-3, "silent output"


def test_bad_inputs(tts, ref, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        tts.synthesize("你好。", "zh", tmp_path / "missing.wav", "参考。", "zh")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(32000 * 2, np.float32) + 0.01, 32000)
    with pytest.raises(ValueError, match="3-10 s"):
        tts.synthesize("你好。", "zh", short, "参考。", "zh")
    with pytest.raises(ValueError, match="empty"):
        tts.synthesize("", "zh", ref, "参考。", "zh")
    with pytest.raises(ValueError, match="unknown target language"):
        tts.synthesize("你好。", "xx", ref, "参考。", "zh")
    with pytest.raises(ValueError, match="split method"):
        tts.synthesize("你好。", "zh", ref, "参考。", "zh", cut="cut9")


def test_mismatched_versions():
    s1 = selftest.tiny_s1()
    s1.config.model.phoneme_vocab_size = 512  # a v1 GPT
    with pytest.raises(ValueError, match="mismatched models"):
        synth.TTS(s1, selftest.tiny_s2(), None, None, compilation_cache=False)


def test_missing_model_files_message(tmp_path):
    (tmp_path / "s1.ckpt").write_bytes(b"x")
    with pytest.raises(synth.MissingModelFiles) as e:
        synth.resolve_model_folder(tmp_path)
    msg = str(e.value)
    assert "s2.pth" in msg and "chinese-roberta-wwm-ext-large" in msg and "chinese-hubert-base" in msg
    assert "s1.ckpt" not in msg.split("Expected layout")[0]


def test_infer_cli_selftest_and_errors(tmp_path):
    out = tmp_path / "self.flac"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "infer.py", "--selftest", "-q", "--out", str(out), "--max-new-tokens", "16"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RTF" in r.stdout
    data, sr = sf.read(out)
    assert sr == 32000 and len(data) > 0
    r = subprocess.run([sys.executable, "infer.py", "--model-dir", str(tmp_path / "nothing"), "--ref", str(out),
                        "--text", "你好"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr and "s2.pth" in r.stderr
    r = subprocess.run([sys.executable, "infer.py", "--help"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "--repetition-penalty" in r.stdout


_SECOND_PROCESS = r"""
import json, sys
import jax
import numpy as np
from gsv_jax.inference import selftest
traces = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **k: traces.append(name) if name == "/jax/core/compile/tracing_duration" else None)
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **k: compiles.append(name) if name == "/jax/core/compile/backend_compile_duration" else None)
tts = selftest.tiny_tts(0, compilation_cache=sys.argv[1])
ref = selftest.write_selftest_reference(sys.argv[2])
before = len(traces)
wav, sr = tts.synthesize("你好，这是一个自检。", "zh", ref, "这是参考音频的文字。", "zh", top_k=1, noise_scale=0.0,
                         max_new_tokens=24, seed=0)
model_traces = sum(tts.s1.decoder.trace_counts.values())
print(json.dumps({"wav": float(np.abs(wav).sum()), "n": len(wav), "model_traces": model_traces,
                  "compiles": len(compiles)}))
"""


def test_second_process_loads_stored_programs(tmp_path):
    """With the compilation cache on, a second process runs S1/S2/BERT/HuBERT from the stored
    programs: the S1 decoder is never traced, almost nothing is compiled, and the audio is identical."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(tmp_path / "cache"), str(tmp_path / "ref.wav")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["model_traces"] >= 2 and second["model_traces"] == 0
    assert second["wav"] == first["wav"] and second["n"] == first["n"]
    names = {p.name.split("-")[0] for p in (tmp_path / "cache" / "programs").glob("*.xla")}
    assert {"s1_prefill", "s1_decode", "s2_decode", "s2_ref_embedding", "s2_extract_latent", "bert", "hubert"} <= names
    assert second["compiles"] < first["compiles"]


def test_noisy_segments_equal_solo_and_do_not_depend_on_batch_size(tts, ref):
    """Each segment draws its own noise and sampling stream (seed + index), so batching changes nothing."""
    text = "我们一起去公园散步吧！今天天气很不错真好。"
    kw = dict(top_k=3, noise_scale=0.5, max_new_tokens=24, seed=7, cut="cut5")
    batched, _ = tts.synthesize(text, "zh", ref, "这是参考音频。", "zh", batch_size=2, **kw)
    one_by_one, _ = tts.synthesize(text, "zh", ref, "这是参考音频。", "zh", batch_size=1, **kw)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    other_seed, _ = tts.synthesize(text, "zh", ref, "这是参考音频。", "zh", batch_size=2, **dict(kw, seed=8))
    assert not np.allclose(other_seed[: len(batched)], batched[: len(other_seed)], atol=1e-3)


def test_token_bound_follows_the_checkpoint_max_sec(tts):
    """The original's early_stop_num = 50 * max_sec (stop once more were made), capped at 1500 steps."""
    assert tts.max_sec == 54 and tts.max_new_tokens == 1500
    assert tts.token_budget(None) == 1500 and tts.token_budget(5000) == 1500 and tts.token_budget(24) == 24
    old = tts.s1.config.data
    try:
        tts.s1.config.data = dict(old.to_dict(), max_sec=0.2)  # 50 * 0.2 = 10 -> 11 new tokens at most
        assert tts.max_new_tokens == 11
        wav, sr, t = tts.synthesize("今天天气很不错。", "zh", selftest_ref(tts), "", "zh", top_k=1, noise_scale=0.0,
                                    cut="cut0", return_timings=True)
        assert len(wav) == 11 * 2 * 640 + int(0.3 * sr) and t["no_eos_segments"] == [1]
    finally:
        tts.s1.config.data = old
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        tts.token_budget(0)


def selftest_ref(tts):
    if not hasattr(selftest_ref, "path"):
        import tempfile

        selftest_ref.path = selftest.write_selftest_reference(tempfile.mkdtemp() + "/r.wav")
    return selftest_ref.path


def test_caches_are_bounded_lru():
    cache = synth.LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    with pytest.raises(ValueError, match="capacity"):
        synth.LRUCache(0)


def test_threads_share_one_tts(tts, ref):
    """Four threads synthesizing at once (shared caches, concurrent jitted calls) get their solo answers."""
    import concurrent.futures

    texts = ["你好世界。", "今天很好。", "我们一起去。", "天气不错啊。"]
    kw = dict(GREEDY, cut="cut0")
    solo = [tts.synthesize(t, "zh", ref, "这是参考音频。", "zh", **kw)[0] for t in texts]
    tts.clear_caches()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda t: tts.synthesize(t, "zh", ref, "这是参考音频。", "zh", **kw)[0], texts))
    for a, b in zip(solo, together):
        np.testing.assert_allclose(a, b, atol=1e-5)
