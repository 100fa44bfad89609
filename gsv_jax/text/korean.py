"""Korean frontend (v2 only): g2pk2 pronunciation, then compatibility jamo (docs/frontend.md).

There is no ``text_normalize`` (the original has none). ``g2p`` spells Latin letters as Korean
letter names, applies g2pk2's pronunciation rules, splits syllables into compatibility jamo with
compound vowels split in two, and maps every character to a phone: punctuation as Japanese, space
to ``空``, anything else not in the v2 table to ``停``.
"""
from __future__ import annotations

import re

from gsv_jax.text.ko_g2pk import get_g2p
from gsv_jax.text.symbols import get_symbols

# Latin letter -> Korean letter name (case-insensitive), applied letter by letter in this order.
_LATIN_NAMES = {
    "a": "에이", "b": "비", "c": "시", "d": "디", "e": "이", "f": "에프", "g": "지", "h": "에이치",
    "i": "아이", "j": "제이", "k": "케이", "l": "엘", "m": "엠", "n": "엔", "o": "오", "p": "피",
    "q": "큐", "r": "아르", "s": "에스", "t": "티", "u": "유", "v": "브이", "w": "더블유", "x": "엑스",
    "y": "와이", "z": "제트",
}
_LATIN = [(re.compile(letter, re.IGNORECASE), name) for letter, name in _LATIN_NAMES.items()]

# compound vowels -> two simple vowels
_SPLIT_VOWELS = str.maketrans({
    "ㅘ": "ㅗㅏ", "ㅙ": "ㅗㅐ", "ㅚ": "ㅗㅣ", "ㅝ": "ㅜㅓ", "ㅞ": "ㅜㅔ", "ㅟ": "ㅜㅣ", "ㅢ": "ㅡㅣ",
    "ㅑ": "ㅣㅏ", "ㅒ": "ㅣㅐ", "ㅕ": "ㅣㅓ", "ㅖ": "ㅣㅔ", "ㅛ": "ㅣㅗ", "ㅠ": "ㅣㅜ",
})

_MARK_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…", " ": "空",
}
_TRAILING_JAMO = re.compile(r"([\u3131-\u3163])$")


def latin_to_hangul(text: str) -> str:
    for pattern, name in _LATIN:
        text = pattern.sub(name, text)
    return text


def divide_hangul(text: str) -> str:
    """Syllables -> compatibility jamo, compound vowels split (``jamo.h2j`` + ``j2hcj``)."""
    try:
        from jamo import h2j, j2hcj
    except ImportError as e:
        raise ImportError("Korean needs jamo: pip install jamo") from e

    return j2hcj(h2j(text)).translate(_SPLIT_VOWELS)


def fix_g2pk2_error(text: str) -> str:
    """``ㅇㅡㄹ`` / ``ㄹㅡㄹ`` + space + ``ㄹ`` -> same + space + ``ㄴ`` (the original's patch)."""
    out = ""
    i = 0
    while i < len(text) - 4:
        if text[i:i + 3] in ("ㅇㅡㄹ", "ㄹㅡㄹ") and text[i + 3] == " " and text[i + 4] == "ㄹ":
            out += text[i:i + 3] + " ㄴ"
            i += 5
        else:
            out += text[i]
            i += 1
    return out + text[i:]


def _phone(char: str, table: frozenset) -> str:
    char = _MARK_MAP.get(char, char)
    return char if char in table else "停"


_TABLE = None


def g2p(text: str) -> list[str]:
    """Korean text -> phones (one per jamo / mark; ``空`` for space, ``停`` for anything unknown)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    global _TABLE
    if _TABLE is None:
        _TABLE = frozenset(get_symbols("v2"))
    text = latin_to_hangul(text)
    text = get_g2p()(text)
    text = divide_hangul(text)
    text = fix_g2pk2_error(text)
    text = _TRAILING_JAMO.sub(r"\1.", text)
    return [_phone(c, _TABLE) for c in text]
