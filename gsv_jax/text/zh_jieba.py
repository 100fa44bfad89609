"""Lazy access to jieba (word segmentation + POS) and pypinyin, the two PyPI packages of the Mandarin
path. Both ship their dictionaries, so nothing is downloaded. The original uses ``jieba_fast``, a C port
of jieba with the same dictionary and algorithm; plain ``jieba`` gives the same words and tags.
"""
import functools
import logging


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.CRITICAL)
    jieba.initialize()
    return jieba


def posseg(text: str) -> list[tuple[str, str]]:
    """jieba ``posseg.lcut``: [(word, pos), ...]."""
    return [(p.word, p.flag) for p in _jieba().posseg.lcut(text)]


def cut_for_search(word: str) -> list[str]:
    return list(_jieba().cut_for_search(word))


@functools.lru_cache(maxsize=1)
def _pypinyin():
    import pypinyin

    return pypinyin


@functools.lru_cache(maxsize=1 << 16)
def _lazy_pinyin(word: str, style: str) -> tuple[str, ...]:
    p = _pypinyin()
    return tuple(p.lazy_pinyin(word, neutral_tone_with_five=True, style=getattr(p.Style, style)))


def initials(word: str) -> list[str]:
    """pypinyin strict initials, one item per Han character (non-Han runs are one item, kept as is).
    A fresh list each call (the sandhi rules edit it in place)."""
    return list(_lazy_pinyin(word, "INITIALS"))


def finals_tone3(word: str) -> list[str]:
    """pypinyin strict tone3 finals, neutral tone written 5."""
    return list(_lazy_pinyin(word, "FINALS_TONE3"))
