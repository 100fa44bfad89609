"""Text frontend: the original GPT-SoVITS phonemes for zh, en, ja, ko, yue, fully offline.

    from gsv_jax import text
    phones, word2ph, norm_text = text.clean_text("...", "zh", version="v2")
    ids = text.cleaned_text_to_sequence(phones, version="v2")
    segments = text.split_languages("...", mode="auto")   # [(text, lang), ...]

Everything is imported lazily: importing this package loads no language module.
"""
import importlib

_EXPORTS = {
    "clean_text": "cleaner",
    "cleaned_text_to_sequence": "symbols",
    "get_symbols": "symbols",
    "symbols_v1": "symbols",
    "symbols_v2": "symbols",
    "split_languages": "langseg",
}

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - the lazy-export table is the one list


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
