"""Cantonese frontend (v2 only): Jyutping from ToJyutping -> ``Y``-prefixed phones (docs/frontend.md).

``text_normalize`` runs the Mandarin text normaliser (numbers, dates, ..., traditional -> simplified),
maps punctuation to the six table marks, and keeps only Han characters (U+4E00..U+9FA5) and those
marks. ``g2p`` gives two phones per syllable (``Y`` + initial, ``Y`` + final + tone) and one per mark.
"""
from __future__ import annotations

import re

from gsv_jax.text.symbols import PUNCTUATION

# Ordered prefixes; the first one a syllable starts with is its "initial" (the original's list:
# its order, not phonology, decides e.g. that "aai" splits as "aa" + "i").
INITIALS = [
    "aa", "aai", "aak", "aap", "aat", "aau", "ai", "au", "ap", "at", "ak", "a", "p", "b", "e", "ts", "t",
    "dz", "d", "kw", "k", "gw", "g", "f", "h", "l", "m", "ng", "n", "s", "y", "w", "c", "z", "j", "ong",
    "on", "ou", "oi", "ok", "o", "uk", "ung", "sp", "spl", "spn", "sil",
]

_REP_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…", "$": ".",
    "“": "'", "”": "'", '"': "'", "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'", "《": "'",
    "》": "'", "【": "'", "】": "'", "[": "'", "]": "'", "「": "'", "」": "'",
    "—": "-", "～": "-", "~": "-",
}
_REP_RE = re.compile("|".join(re.escape(k) for k in _REP_MAP))
_PUNCT = "".join(PUNCTUATION)
_NOT_KEPT = re.compile(r"[^\u4e00-\u9fa5" + _PUNCT + r"]+")  # as written in the original ("-" is a range end)
_MARKS_ONLY = re.compile(rf"^[{re.escape(_PUNCT)}]+$")
_MARK_SPLIT = re.compile(rf"([{re.escape(_PUNCT)}])")
_JYUTPING = re.compile(r"^([a-z]+[1-6]+[ ]?)+$")
_PUNCT_SET = frozenset(PUNCTUATION)


def replace_punctuation(text: str) -> str:
    text = _REP_RE.sub(lambda m: _REP_MAP[m.group()], text)
    return _NOT_KEPT.sub("", text)


def _normalize_sentences(text: str) -> list[str]:
    """The Mandarin ``TextNormalizer().normalize`` (owned by the Mandarin frontend)."""
    from gsv_jax.text import zh_normalization

    return zh_normalization.normalize(text)


def text_normalize(text: str) -> str:
    return "".join(replace_punctuation(s) for s in _normalize_sentences(text))


def get_jyutping(text: str) -> list[str]:
    """Normalised text -> list of Jyutping syllables / single marks (one entry per character)."""
    try:
        import ToJyutping
    except ImportError as e:
        raise ImportError("Cantonese needs ToJyutping: pip install ToJyutping") from e
    out: list[str] = []
    for word, syllable in ToJyutping.get_jyutping_list(text):
        if _MARKS_ONLY.match(word):
            out += [p for p in _MARK_SPLIT.split(word) if p]
        else:
            if not _JYUTPING.search(syllable or ""):
                raise ValueError(f"Failed to convert {word} to jyutping: {syllable}")
            out.append(syllable)
    return out


def _syllable_phones(syllable: str) -> list[str]:
    """One Jyutping syllable -> [initial, final+tone] (tone-less phones keep no digit); [] if no prefix."""
    try:
        tone = int(syllable[-1])
        base = syllable[:-1]
    except ValueError:
        tone, base = 0, syllable
    for initial in INITIALS:
        if base.startswith(initial):
            if base.startswith("nga"):
                initial, final = base[:2], base[2:] or base[-1]
            else:
                final = base[len(initial):] or initial[-1]
            return [initial, f"{final}{tone}" if tone not in (-1, 0) else final]
    return []


def _prefixed(phone: str) -> str:
    return phone if phone in _PUNCT_SET else "Y" + phone


def g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Normalised text -> (phones, word2ph): 2 phones per syllable, 1 per mark."""
    if not isinstance(norm_text, str):
        raise TypeError(f"text must be a str, got {type(norm_text).__name__}")
    phones: list[str] = []
    word2ph: list[int] = []
    for syllable in get_jyutping(norm_text):
        if syllable in _PUNCT_SET or syllable == "_":
            phones.append(syllable)
            word2ph.append(1)
            continue
        pair = _syllable_phones(syllable)
        if pair:
            phones += [_prefixed(p) for p in pair]
            word2ph.append(2)
    return phones, word2ph
