"""The HTTP server end to end: a real uvicorn process on 127.0.0.1 over tiny random models, a real
httpx client. One server per file (module fixture), stopped by its PID."""
import concurrent.futures
import io
import json
import shutil
import struct
import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from gsv_jax.inference import selftest
from tests.serve.process import running_server

TOKENS = 40  # the server's --max-new-tokens: random weights rarely end on their own
GREEDY = {"top_k": 1, "seed": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    ref = selftest.write_selftest_reference(tmp / "alice.wav")
    (tmp / "voices.json").write_text(json.dumps(
        {"alice": {"ref_audio_path": "alice.wav", "prompt_text": "这是参考音频。", "prompt_lang": "zh"}}))
    args = ["--selftest", "--voices", str(tmp / "voices.json"), "--max-new-tokens", str(TOKENS),
            "--max-text-length", "300", "--max-upload-mb", "1", "--max-batch", "4",
            "--compilation-cache", str(tmp / "cache"), "--log-level", "warning"]
    with running_server(args, tmp / "server.log") as (base, proc):
        yield {"base": base, "proc": proc, "tmp": tmp, "ref": ref}


def _q(server, **kw):
    q = {"text": "今天天气很不错。", "text_lang": "zh", "ref_audio_path": str(server["ref"]),
         "prompt_text": "这是参考音频。", "prompt_lang": "zh", **GREEDY}
    q.update(kw)
    return q


def _pcm(wav_bytes: bytes) -> np.ndarray:
    data, sr = sf.read(io.BytesIO(wav_bytes), dtype="int16")
    assert sr == 32000
    return data


def _stream(server, **kw):
    """(header bytes, list of (seconds since start, bytes) as they arrive)."""
    pieces = []
    t0 = time.perf_counter()
    with httpx.stream("POST", server["base"] + "/tts", json=_q(server, **kw), timeout=600) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            pieces.append((time.perf_counter() - t0, chunk))
    return pieces


def test_health_voices_and_page(server):
    h = httpx.get(server["base"] + "/health").json()
    assert h["status"] == "ok" and h["version"] == "v2" and h["sample_rate"] == 32000
    assert "zh" in h["languages"] and set(h["voices"]) == {"default", "alice"}
    assert {"wav", "raw", "ogg", "flac"} <= set(h["media_types"]) and h["active_requests"] == 0
    assert httpx.get(server["base"] + "/voices").json()["alice"] == {"prompt_text": "这是参考音频。", "prompt_lang": "zh"}
    page = httpx.get(server["base"] + "/").text
    assert "<form" in page and 'fetch("/tts"' in page and 'fetch("/voices")' in page


def test_get_and_post_give_the_same_wav(server):
    g = httpx.get(server["base"] + "/tts", params=_q(server), timeout=300)
    p = httpx.post(server["base"] + "/tts", json=_q(server), timeout=300)
    assert g.status_code == p.status_code == 200
    assert g.headers["content-type"] == "audio/wav" and g.content == p.content
    pcm = _pcm(g.content)
    assert len(pcm) == TOKENS * 2 * 640 + int(0.3 * 32000)  # one segment at the token bound + the pause
    assert np.abs(pcm).max() > 0


def test_media_types(server):
    wav = _pcm(httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content)
    raw = httpx.post(server["base"] + "/tts", json=_q(server, media_type="raw"), timeout=300)
    assert raw.headers["content-type"] == "audio/raw"
    np.testing.assert_array_equal(np.frombuffer(raw.content, "<i2"), wav)
    flac = httpx.post(server["base"] + "/tts", json=_q(server, media_type="flac"), timeout=300)
    np.testing.assert_array_equal(sf.read(io.BytesIO(flac.content), dtype="int16")[0], wav)
    ogg = httpx.post(server["base"] + "/tts", json=_q(server, media_type="ogg"), timeout=300)
    data, sr = sf.read(io.BytesIO(ogg.content), dtype="float32")
    assert sr == 32000 and abs(len(data) - len(wav)) < 2048  # lossy, same length
    aac = httpx.post(server["base"] + "/tts", json=_q(server, media_type="aac"), timeout=300)
    if shutil.which("ffmpeg"):
        assert aac.status_code == 200 and len(aac.content) > 100
    else:
        assert aac.status_code == 400 and "ffmpeg" in aac.json()["message"]


def test_streaming_mode_1_fragments_concatenate_to_the_whole_file(server):
    text = "今天天气很不错。我们一起去公园散步吧！你好世界。"
    whole = _pcm(httpx.post(server["base"] + "/tts", json=_q(server, text=text), timeout=300).content)
    pieces = _stream(server, text=text, streaming_mode=1)
    body = b"".join(c for _, c in pieces)
    assert body[:4] == b"RIFF" and struct.unpack("<I", body[4:8])[0] == 0xFFFFFFFF  # length unknown
    assert body[36:40] == b"data" and struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    np.testing.assert_array_equal(np.frombuffer(body[44:], "<i2"), whole)
    assert len(pieces) >= 3 and pieces[1][0] < pieces[-1][0]  # fragments arrive one by one


@pytest.mark.parametrize("mode", [2, 3])
def test_token_streaming_arrives_in_chunks(server, mode):
    text = "今天天气很不错我们一起去公园散步吧。"
    pieces = _stream(server, text=text, streaming_mode=mode)  # 16-token chunks: 16 + 16 + 8
    body = b"".join(c for _, c in pieces)
    pcm = np.frombuffer(body[44:], "<i2")
    expected = TOKENS * 2 * 640 + int(0.3 * 32000)
    assert abs(len(pcm) - expected) <= 2 * 640 * 4  # SOLA moves each joint by < 320 samples
    if mode == 3:  # fixed 16-token chunks: audio arrives before the segment's last token is generated
        assert len(pieces) >= 3 and pieces[1][0] < pieces[-1][0]
    # streamed with true=1 (bool) as the original allows
    assert httpx.post(server["base"] + "/tts", json=_q(server, streaming_mode=True), timeout=300).status_code == 200


def test_concurrent_requests_equal_their_solo_answers(server):
    texts = ["今天天气很不错。", "我们一起去公园。", "你好世界啊。", "这是一个自检。"]
    solo = [_pcm(httpx.post(server["base"] + "/tts", json=_q(server, text=t), timeout=300).content) for t in texts]
    before = httpx.get(server["base"] + "/health").json()["stats"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        together = list(pool.map(
            lambda t: _pcm(httpx.post(server["base"] + "/tts", json=_q(server, text=t), timeout=300).content), texts))
    after = httpx.get(server["base"] + "/health").json()["stats"]
    for a, b in zip(solo, together):
        assert len(a) == len(b)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 4  # padding changes float sums by ~1e-5
    rows, batches = after["s1_rows"] - before["s1_rows"], after["s1_batches"] - before["s1_batches"]
    assert rows == 4 and batches < 4  # at least two requests shared an S1 batch


def test_multipart_upload_equals_a_server_path(server):
    by_path = httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content
    fields = {k: str(v) for k, v in _q(server).items() if k != "ref_audio_path"}
    with open(server["ref"], "rb") as f:
        up = httpx.post(server["base"] + "/tts", data=fields, files={"ref_audio": ("me.wav", f, "audio/wav")}, timeout=300)
    assert up.status_code == 200 and up.content == by_path


def test_voices_and_openai_speech(server):
    by_voice = httpx.post(server["base"] + "/tts", json={"text": "今天天气很不错。", "text_lang": "zh", "voice": "alice",
                                                          **GREEDY}, timeout=300)
    assert by_voice.status_code == 200
    for fmt, ctype in (("wav", "audio/wav"), ("pcm", "audio/pcm"), ("flac", "audio/flac")):
        r = httpx.post(server["base"] + "/v1/audio/speech", json={"model": "tts-1", "input": "今天天气很不错。",
                                                                  "voice": "alice", "response_format": fmt,
                                                                  "language": "zh"}, timeout=300)
        assert r.status_code == 200 and r.headers["content-type"] == ctype and len(r.content) > 1000
    r = httpx.post(server["base"] + "/v1/audio/speech", json={"input": "你好。", "voice": "bob"})
    assert r.status_code == 400 and "bob" in r.json()["error"]["message"]


def _bad(r, *words):
    assert r.status_code == 400, r.text
    msg = json.dumps(r.json(), ensure_ascii=False)
    assert "message" in r.json() and all(w in msg for w in words), msg


def test_bad_inputs_get_400_with_the_original_shape(server, tmp_path):
    base = server["base"] + "/tts"
    q = _q(server)
    _bad(httpx.post(base, json={k: v for k, v in q.items() if k != "text"}), "text is required")
    _bad(httpx.post(base, json={**q, "text": ""}), "text is required")
    _bad(httpx.post(base, json={k: v for k, v in q.items() if k != "text_lang"}), "text_lang is required")
    _bad(httpx.post(base, json={**q, "text_lang": "xx"}), "text_lang: xx is not supported")
    _bad(httpx.post(base, json={**q, "prompt_lang": "xx"}), "prompt_lang: xx is not supported")
    _bad(httpx.post(base, json={**q, "text_split_method": "cut9"}), "text_split_method:cut9")
    _bad(httpx.post(base, json={**q, "streaming_mode": 7}), "streaming_mode must be 0, 1, 2, 3")
    _bad(httpx.get(base, params={**q, "streaming_mode": "often"}), "streaming_mode must be 0, 1, 2, 3")
    _bad(httpx.post(base, json={**q, "media_type": "mp4"}), "media_type: mp4")
    _bad(httpx.post(base, json={**q, "media_type": "flac", "streaming_mode": 2}), "cannot be streamed")
    _bad(httpx.post(base, json={**q, "text": "你好" * 200}), "too long", "300")
    _bad(httpx.post(base, json={**q, "top_k": 0}), "top_k must be >= 1")
    _bad(httpx.post(base, json={**q, "top_k": "many"}), "top_k")
    _bad(httpx.post(base, content=b"{not json", headers={"content-type": "application/json"}), "not JSON")
    _bad(httpx.post(base, json={**q, "voice": "nobody"}), "voice: nobody")
    _bad(httpx.post(base, json={**q, "ref_audio_path": str(tmp_path / "missing.wav")}), "tts failed", "not found")
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    _bad(httpx.post(base, json={**q, "ref_audio_path": str(short)}), "tts failed", "3-10")
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all")
    _bad(httpx.post(base, json={**q, "ref_audio_path": str(text_file)}), "tts failed")
    fields = {k: str(v) for k, v in q.items() if k != "ref_audio_path"}
    _bad(httpx.post(base, data=fields, files={"ref_audio": ("x.wav", b"garbage" * 10, "audio/wav")}), "tts failed")
    _bad(httpx.post(base, data=fields, files={"ref_audio": ("x.wav", b"0" * (1024 * 1024 + 10), "audio/wav")}),
         "larger than 1 MB")
    _bad(httpx.get(server["base"] + "/set_gpt_weights"), "gpt weight path is required")
    _bad(httpx.get(server["base"] + "/set_gpt_weights", params={"weights_path": str(tmp_path / "no.ckpt")}),
         "change gpt weight failed", "does not exist")
    _bad(httpx.get(server["base"] + "/set_sovits_weights", params={"weights_path": str(text_file)}),
         "change sovits weight failed")
    _bad(httpx.get(server["base"] + "/set_refer_audio", params={"refer_audio_path": str(short)}),
         "set refer audio failed")
    _bad(httpx.get(server["base"] + "/control"), "command is required")
    # and it keeps serving
    assert httpx.post(base, json=q, timeout=300).status_code == 200
    assert httpx.get(server["base"] + "/health").json()["active_requests"] == 0


def test_disconnect_mid_stream_frees_the_request(server):
    text = "今天天气很不错。我们一起去公园散步吧！你好世界。这是一个自检。"
    with httpx.stream("POST", server["base"] + "/tts", json=_q(server, text=text, streaming_mode=3),
                      timeout=300) as r:
        first = next(r.iter_raw())
        assert first[:4] == b"RIFF"
    # the client is gone; the others are served and the request's rows are dropped
    assert httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).status_code == 200
    deadline = time.monotonic() + 60
    while httpx.get(server["base"] + "/health").json()["active_requests"] != 0:
        assert time.monotonic() < deadline, "the disconnected request was never released"
        time.sleep(0.2)


def test_weights_switch_waits_for_running_requests(server, tmp_path):
    from gsv_jax.inference.s1 import save_s1_torch
    from gsv_jax.inference.s2 import save_s2_torch

    before = httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content
    other_gpt, same_gpt = tmp_path / "other.ckpt", tmp_path / "same.ckpt"
    save_s1_torch(selftest.tiny_s1(1), other_gpt)
    save_s1_torch(selftest.tiny_s1(0), same_gpt)
    done = {}

    def long_stream():
        _stream(server, text="今天天气很不错。我们一起去公园散步吧！你好世界。", streaming_mode=1)
        done["stream"] = time.perf_counter()

    t = threading.Thread(target=long_stream)
    t.start()
    deadline = time.monotonic() + 120
    while "stream" not in done and httpx.get(server["base"] + "/health").json()["active_requests"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = httpx.get(server["base"] + "/set_gpt_weights", params={"weights_path": str(other_gpt)}, timeout=300)
    done["switch"] = time.perf_counter()
    t.join()
    assert r.json() == {"message": "success"}
    assert done["switch"] >= done["stream"] - 0.5  # it waited for the running request
    changed = httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content
    assert changed != before
    assert httpx.get(server["base"] + "/set_gpt_weights", params={"weights_path": str(same_gpt)},
                     timeout=300).json() == {"message": "success"}
    assert httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content == before
    sovits = tmp_path / "s2.pth"
    save_s2_torch(selftest.tiny_s2(0), sovits)
    assert httpx.get(server["base"] + "/set_sovits_weights", params={"weights_path": str(sovits)},
                     timeout=300).json() == {"message": "success"}
    wav = _pcm(httpx.post(server["base"] + "/tts", json=_q(server), timeout=300).content)
    diff = np.abs(wav.astype(int) - _pcm(before).astype(int))  # the same weights through an fp16 export
    assert len(wav) == len(_pcm(before)) and diff.mean() < 16 and diff.max() < 1024


def test_set_refer_audio_sets_the_default_voice(server, tmp_path):
    other = selftest.write_selftest_reference(tmp_path / "other.wav", seconds=4.0)
    r = httpx.get(server["base"] + "/set_refer_audio", params={"refer_audio_path": str(other)}, timeout=300)
    assert r.json() == {"message": "success"}
    q = {k: v for k, v in _q(server).items() if k != "ref_audio_path"}
    by_default = httpx.post(server["base"] + "/tts", json=q, timeout=300)
    by_path = httpx.post(server["base"] + "/tts", json={**q, "ref_audio_path": str(other)}, timeout=300)
    assert by_default.status_code == 200 and by_default.content == by_path.content


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine: the page's API calls are tested "
                    "by test_health_voices_and_page and test_multipart_upload_equals_a_server_path")
def test_web_page_in_a_headless_browser(server, tmp_path):
    url = server["base"] + "/?voice=alice&text_lang=zh&top_k=1&autorun=1&text=" + httpx.QueryParams(
        {"t": "今天天气很不错。"})["t"]
    r = subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=120000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=300)
    dom = r.stdout
    assert "done:" in dom and "audio/wav" in dom, (dom[-2000:], r.stderr[-2000:])


def test_control_exit_stops_the_server(server):
    _bad(httpx.get(server["base"] + "/control", params={"command": "reboot"}), "restart or exit")
    assert httpx.get(server["base"] + "/control", params={"command": "exit"}).json() == {"message": "success"}
    server["proc"].wait(30)
