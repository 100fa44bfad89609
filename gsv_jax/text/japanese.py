"""Japanese frontend: OpenJTalk phones with the original's prosody marks (docs/frontend.md).

``text_normalize`` only collapses runs of punctuation; ``g2p`` splits the text into runs of
"Japanese or alphanumeric" characters, turns each run into OpenJTalk phones with ESPnet's prosody
marks (``[`` rise, ``]`` fall, ``#`` accent-phrase border, ``_`` pause) and keeps the characters
between runs (spaces dropped) as punctuation.

OpenJTalk and its dictionary come from a PyPI wheel (see ``ja_openjtalk``); nothing is downloaded.
"""
from __future__ import annotations

import re

from gsv_jax.text.ja_openjtalk import full_context_labels
from gsv_jax.text.symbols import PUNCTUATION

# "Japanese or alphanumeric" characters: ASCII letters/digits, 々, kana, CJK ideographs, full-width
# digits 1-9 (not 0: kept from the original), full-width letters, half-width katakana.
_JA_CLASS = r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
_JA_CHAR = re.compile(f"[{_JA_CLASS}]")
_NON_JA_CHAR = re.compile(f"[^{_JA_CLASS}]")
_CONSECUTIVE_PUNCT = re.compile("([{0}])([{0}])+".format("".join(re.escape(p) for p in PUNCTUATION)))

# full-width / CJK marks -> the table's punctuation
_MARK_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",",
    "...": "…",
}


def text_normalize(text: str) -> str:
    """Collapse a run of the six table punctuation marks to its first mark (nothing else)."""
    return _CONSECUTIVE_PUNCT.sub(r"\1", text)


def _feature(pattern: re.Pattern, label: str) -> int:
    m = pattern.search(label)
    return -50 if m is None else int(m.group(1))


_P3 = re.compile(r"\-(.*?)\+")
_A1 = re.compile(r"/A:([0-9\-]+)\+")
_A2 = re.compile(r"\+(\d+)\+")
_A3 = re.compile(r"\+(\d+)/")
_F1 = re.compile(r"/F:(\d+)_")
_E3 = re.compile(r"!(\d+)_")


def prosody_phones(labels: list[str]) -> list[str]:
    """Full-context labels -> phones with prosody marks (ESPnet ``pyopenjtalk_g2p_prosody`` rules).

    ``^`` / ``$`` / ``?`` mark the start, a statement end and a question end; unvoiced vowels are
    lower-cased. Membership tests are substring tests, as in the original.
    """
    phones: list[str] = []
    n_labels = len(labels)
    for n, label in enumerate(labels):
        p3 = _P3.search(label).group(1)
        if p3 in "AEIOU":
            p3 = p3.lower()
        if p3 == "sil":
            if n == 0:
                phones.append("^")
            elif n == n_labels - 1:
                e3 = _feature(_E3, label)
                if e3 == 0:
                    phones.append("$")
                elif e3 == 1:
                    phones.append("?")
            else:
                raise ValueError(f"OpenJTalk put a silence inside the utterance: {label}")
            continue
        if p3 == "pau":
            phones.append("_")
            continue
        phones.append(p3)
        a1, a2, a3 = _feature(_A1, label), _feature(_A2, label), _feature(_A3, label)
        f1 = _feature(_F1, label)
        a2_next = _feature(_A2, labels[n + 1])
        if a3 == 1 and a2_next == 1 and p3 in "aeiouAEIOUNcl":
            phones.append("#")  # accent-phrase border
        elif a1 == 0 and a2_next == a2 + 1 and a2 != f1:
            phones.append("]")  # pitch fall
        elif a2 == 1 and a2_next == 2:
            phones.append("[")  # pitch rise
    return phones


def _run_phones(run: str) -> list[str]:
    """One Japanese run -> its prosody phones without the start/end marks."""
    return prosody_phones(full_context_labels(run))[1:-1]


def g2p(norm_text: str) -> list[str]:
    """Normalised Japanese text -> phones (``#`` is later mapped to UNK by ``clean_text``)."""
    if not isinstance(norm_text, str):
        raise TypeError(f"text must be a str, got {type(norm_text).__name__}")
    text = norm_text.replace("％", "パーセント").lower()
    runs = _NON_JA_CHAR.split(text)
    marks = _NON_JA_CHAR.findall(text)
    phones: list[str] = []
    for i, run in enumerate(runs):
        if _JA_CHAR.match(run):
            phones += _run_phones(run)
        if i < len(marks):
            if marks[i] == " ":
                continue
            phones.append(marks[i])
    return [_MARK_MAP.get(p, p) for p in phones]
