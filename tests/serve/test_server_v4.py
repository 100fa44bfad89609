"""The HTTP server over a SoVITS v4 model folder (tiny golden S1/S2/vocoder in the original's
pretrained_models names, tiny BERT/HuBERT): audio at 48 kHz, ``sample_steps`` honoured, token
streaming falls back to one fragment per segment as the original does, and the original's
prompt-text refusal. A real uvicorn process (warm-up on), httpx, stopped by its PID."""
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from gsv_jax.inference import selftest
from tests.conftest import golden_path
from tests.serve.process import running_server
from tests.test_infer_cli_v3v4 import LAYOUT, SAMPLES, _put

pytest.importorskip("torch")  # the tiny Hugging Face folders are written by transformers

TOKENS = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.data.test_prepare_models import tiny_bert_folder, tiny_hubert_folder

    tmp = tmp_path_factory.mktemp("serve_v4")
    folder = tmp / "pretrained_v4"
    for name, src in {"chinese-roberta-wwm-ext-large": tiny_bert_folder(tmp / "bert"),
                      "chinese-hubert-base": tiny_hubert_folder(tmp / "hubert"),
                      "s1v3.ckpt": golden_path("s1_v2_tiny.ckpt")}.items():
        folder.mkdir(exist_ok=True)
        (folder / name).symlink_to(src)
    for name, src in LAYOUT["v4"].items():
        _put(golden_path(src), folder / name)
    ref = selftest.write_selftest_reference(tmp / "ref.wav")
    args = ["--model-dir", str(folder), "--max-new-tokens", str(TOKENS), "--max-batch", "1",
            "--compilation-cache", str(tmp / "cache"), "--log-level", "warning"]
    with running_server(args, tmp / "server.log") as (base, _):
        yield {"base": base, "ref": str(ref)}


def _body(server, **kw):
    body = {"text": "你好世界。", "text_lang": "zh", "ref_audio_path": server["ref"], "prompt_text": "这是参考音频。",
            "prompt_lang": "zh", "top_k": 1, "seed": 0, "text_split_method": "cut0", "sample_steps": 2}
    body.update(kw)
    return body


def test_health_names_v4(server):
    health = httpx.get(server["base"] + "/health").json()
    assert health["version"] == "v4"


def test_v4_answers_at_48k_and_sample_steps_change_the_audio(server):
    r = httpx.post(server["base"] + "/tts", json=_body(server), timeout=600)
    assert r.status_code == 200, r.text
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 48000
    # greedy tiny S1 never ends: exactly TOKENS tokens, then the 0.3 s fragment interval
    assert len(wav) == SAMPLES["v4"](TOKENS) + int(0.3 * sr)
    again = httpx.post(server["base"] + "/tts", json=_body(server), timeout=600)
    assert again.content == r.content  # same seed, same answer
    other = httpx.post(server["base"] + "/tts", json=_body(server, sample_steps=3), timeout=600)
    assert other.status_code == 200
    w3, _ = sf.read(io.BytesIO(other.content), dtype="float32")
    assert len(w3) == len(wav) and not np.allclose(w3, wav)


def test_token_streaming_falls_back_to_fragments_as_the_original(server):
    whole = httpx.post(server["base"] + "/tts", json=_body(server), timeout=600)
    with httpx.stream("POST", server["base"] + "/tts", json=_body(server, streaming_mode=2), timeout=600) as r:
        assert r.status_code == 200
        streamed = b"".join(r.iter_raw())
    # mode 1 (one fragment per segment): after the streaming header, the same samples as the whole file
    assert streamed[44:] == whole.content[44:]


def test_missing_prompt_text_is_the_originals_400(server):
    r = httpx.post(server["base"] + "/tts", json=_body(server, prompt_text=""), timeout=600)
    assert r.status_code == 400
    assert "prompt_text cannot be empty" in r.text


def test_sample_steps_out_of_range_is_400(server):
    r = httpx.post(server["base"] + "/tts", json=_body(server, sample_steps=0), timeout=60)
    assert r.status_code == 400 and "sample_steps" in r.json()["message"]
