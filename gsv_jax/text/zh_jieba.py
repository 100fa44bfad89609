"""Lazy access to jieba (word segmentation + POS) and pypinyin, the two PyPI packages of the Mandarin
path. Both ship their dictionaries, so nothing is downloaded. The original uses ``jieba_fast``, a C port
of jieba; we use it when installed, else plain ``jieba``, which gives the same words and tags except that
its ``cut_for_search`` splits a run of rare characters missing from the dictionary into single characters
(jieba_fast keeps the run whole), which can change a third-tone sandhi on such runs.
"""
import functools
import logging


@functools.lru_cache(maxsize=1)
def _jieba():
    try:  # the original's C port: same words, but keeps runs of rare unknown characters whole in
        import jieba_fast as jieba  # cut_for_search (used by the sandhi rules); optional, needs a compiler
        import jieba_fast.posseg  # noqa: F401
    except ImportError:
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
