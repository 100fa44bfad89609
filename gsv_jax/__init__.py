"""gsv-jax: GPT-SoVITS in JAX/Flax.

The public API is imported lazily so that ``import gsv_jax`` stays cheap and one area
(say, the text frontend) can be used without loading the others.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # S1 (text -> semantic tokens)
    "S1": "gsv_jax.inference.s1",
    "load_s1": "gsv_jax.inference.s1",
    "save_s1_torch": "gsv_jax.inference.s1",
    # S2 (SoVITS)
    "S2": "gsv_jax.inference.s2",
    "load_s2": "gsv_jax.inference.s2",
    "save_s2_torch": "gsv_jax.inference.s2",
    # v3 / v4 vocoders and their mel front end
    "load_vocoder": "gsv_jax.inference.v3",
    "vocoder_mel": "gsv_jax.inference.v3",
    # speaker verification (v2Pro / v2ProPlus)
    "load_sv": "gsv_jax.inference.sv",
    # feature extractors
    "load_bert": "gsv_jax.inference.features",
    "load_hubert": "gsv_jax.inference.features",
    # audio front
    "spectrogram": "gsv_jax.audio",
    "mel_spectrogram": "gsv_jax.audio",
    # end to end
    "TTS": "gsv_jax.inference.tts",
}

__all__ = sorted(_EXPORTS) + ["text"]  # noqa: PLE0605 - the lazy-export table is the one list


def __getattr__(name):
    if name == "text":
        return importlib.import_module("gsv_jax.text")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gsv_jax' has no attribute {name!r}")
