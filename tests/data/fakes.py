"""Deterministic stand-ins for the feature models (fast; shapes as the real ones)."""
import time
import zlib

import numpy as np

from gsv_jax.data.prepare import Models

DEMO_LIST = __import__("pathlib").Path(__file__).resolve().parents[2] / "data" / "demo" / "demo.list"


def fake_bert(norm_text, word2ph):
    seed = zlib.crc32(norm_text.encode())
    rows = np.random.default_rng(seed).normal(size=(len(word2ph), 1024)).astype(np.float32)
    return np.repeat(rows, np.asarray(word2ph), axis=0).T


def fake_hubert(wav16k, delay=0.0):
    if delay:
        time.sleep(delay)
    wav = np.asarray(wav16k, np.float32)
    t = max(1, len(wav) // 320)
    frames = wav[: t * 320].reshape(t, 320)
    base = np.sqrt((frames**2).mean(axis=1))  # frame energy, so features depend on the audio
    return (base[None, None, :] * np.linspace(0.5, 1.5, 768)[None, :, None]).astype(np.float32)  # [1, 768, T]


def fake_extract_latent(ssl):
    ssl = np.asarray(ssl)
    t = ssl.shape[-1] // 2
    return (np.abs(ssl[:, :1, : 2 * t : 2] * 1000).astype(np.int64) % 1024)  # [1, 1, T/2]


def fake_clean_text(text, lang, version):
    """One 'a1' phone per character (a valid v2 symbol); skips the slow real frontends."""
    norm = text.strip()
    return ["a1"] * len(norm), ([1] * len(norm) if lang in ("zh", "yue") else None), norm


def fake_hubert_batch(wavs):
    if any(len(w) > 30000 for w in wavs):
        raise ValueError("batch too long")  # exercises the per-item fallback
    return [fake_hubert(w)[0] for w in wavs]


def fake_models(hubert_delay=0.0, fake_text=False, batched=False):
    from gsv_jax import text

    def get(stage):
        clean = fake_clean_text if fake_text else text.clean_text
        return Models(clean_text=clean, to_ids=text.cleaned_text_to_sequence, bert=fake_bert,
                      hubert=lambda w: fake_hubert(w, hubert_delay), extract_latent=fake_extract_latent,
                      hubert_batch=fake_hubert_batch if batched else None)

    return get
