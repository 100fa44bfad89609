"""Splitting a long target text into synthesis segments, as the original inference does.

The six cut methods (``cut0`` .. ``cut5``) and the preprocessing around them
(``prepare_segments``: leading-mark rule, blank-line folding, merging short pieces, closing
marks, re-splitting over-long pieces) follow the original (docs/synthesis.md, "Text cutting").
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Callable

# Marks after which `split_after_marks` cuts (the original's `splits`).
SPLIT_MARKS = frozenset("，。？！,.?!~:：—…")
# Pieces made only of these characters are dropped by every method.
FILLER = frozenset("!?…,.- ")
# cut5 cuts after each of these.
CUT5_MARKS = frozenset(",.;?!、，。？！;：…")
MAX_SEGMENT_CHARS = 510  # BERT's limit


def _only(chars: frozenset, piece: str) -> bool:
    return set(piece) <= chars


def _drop_fillers(pieces, chars=FILLER) -> list[str]:
    return [p for p in pieces if not _only(chars, p)]


def split_after_marks(text: str) -> list[str]:
    """Cut after every mark of SPLIT_MARKS (marks stay attached); a closing '。' is added if missing."""
    text = text.replace("……", "。").replace("——", "，")
    if text[-1] not in SPLIT_MARKS:
        text += "。"
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch in SPLIT_MARKS:
            pieces.append(text[start:i + 1])
            start = i + 1
    return pieces


def cut0(text: str) -> str:
    """No cut (a text of only filler marks becomes an empty line)."""
    return "\n" if _only(FILLER, text) else text


def cut1(text: str) -> str:
    """Every four sentences."""
    text = text.strip("\n")
    pieces = split_after_marks(text)
    starts = list(range(0, len(pieces), 4))
    if len(starts) == 1:
        groups = [text]  # up to four sentences: the input unchanged (no closing mark added)
    else:
        # Groups of four; the last group takes the remainder, so it holds four to seven pieces.
        bounds = starts[:-1] + [len(pieces)]
        groups = ["".join(pieces[a:b]) for a, b in itertools.pairwise(bounds)]
    return "\n".join(_drop_fillers(groups))


def cut2(text: str, max_chars: int = 50) -> str:
    """Accumulate pieces until more than 50 characters; a short last group joins the previous one."""
    text = text.strip("\n")
    pieces = split_after_marks(text)
    if len(pieces) < 2:
        return text
    groups, current = [], ""
    for piece in pieces:
        current += piece
        if len(current) > max_chars:
            groups.append(current)
            current = ""
    if current:
        groups.append(current)
    if len(groups) > 1 and len(groups[-1]) < max_chars:
        groups[-2] += groups.pop()
    return "\n".join(_drop_fillers(groups))


def cut3(text: str) -> str:
    """At every Chinese full stop (the mark is removed)."""
    text = text.strip("\n")
    return "\n".join(_drop_fillers(text.strip("。").split("。")))


def cut4(text: str) -> str:
    """At every English full stop that is not between two digits (the mark is removed)."""
    text = text.strip("\n")
    return "\n".join(_drop_fillers(re.split(r"(?<!\d)\.(?!\d)", text.strip("."))))


def cut5(text: str) -> str:
    """After every punctuation mark (kept), except a '.' between two digits."""
    text = text.strip("\n")
    pieces, current = [], []
    for i, ch in enumerate(text):
        current.append(ch)
        decimal_point = ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
        if ch in CUT5_MARKS and not decimal_point:
            pieces.append("".join(current))
            current = []
    if current:
        pieces.append("".join(current))
    return "\n".join(_drop_fillers(pieces, CUT5_MARKS))


CUT_METHODS: dict[str, Callable[[str], str]] = {
    "cut0": cut0, "cut1": cut1, "cut2": cut2, "cut3": cut3, "cut4": cut4, "cut5": cut5,
}


def get_cut_method(name: str) -> Callable[[str], str]:
    try:
        return CUT_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown text split method {name!r}; choose one of {sorted(CUT_METHODS)}") from None


def merge_short(pieces: list[str], threshold: int = 5) -> list[str]:
    """Join consecutive pieces until each reaches ``threshold`` characters; a short tail joins the last."""
    if len(pieces) < 2:
        return list(pieces)
    merged, current = [], ""
    for piece in pieces:
        current += piece
        if len(current) >= threshold:
            merged.append(current)
            current = ""
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return merged


def split_big_text(text: str, max_len: int = MAX_SEGMENT_CHARS) -> list[str]:
    """Greedy re-split of an over-long piece at SPLIT_MARKS into parts of at most ``max_len``."""
    parts = re.split("([" + re.escape("".join(sorted(SPLIT_MARKS))) + "])", text)
    out, current = [], ""
    for part in parts:
        if len(current + part) > max_len:
            out.append(current)
            current = part
        else:
            current += part
    if current:
        out.append(current)
    return out


def collapse_punctuation(text: str) -> str:
    """Keep only the first of consecutive marks from ``!?…,.-`` (the target-text preprocessing)."""
    marks = re.escape("!?…,.-")
    return re.sub(f"([{marks}])([{marks}])+", r"\1", text)


def _first_clause(text: str) -> str:
    return re.split("[" + re.escape("".join(sorted(SPLIT_MARKS))) + "]", text)[0].strip()


def closing_mark(lang: str) -> str:
    return "." if lang == "en" else "。"


def prepare_segments(text: str, lang: str, method: str = "cut1") -> list[str]:
    """The target text -> the list of segments to synthesize (the original's ``pre_seg_text``).

    Raises ValueError when nothing speakable is left.
    """
    cut = get_cut_method(method)
    text = collapse_punctuation(text).strip("\n")
    if not text.strip():
        raise ValueError("the target text is empty; give some text to speak")
    if text[0] not in SPLIT_MARKS and len(_first_clause(text)) < 4:
        text = closing_mark(lang) + text
    text = cut(text)
    while "\n\n" in text:
        text = text.replace("\n\n", "\n")
    pieces = text.split("\n")
    if all(p in ("", " ", "\n") for p in pieces):
        raise ValueError("the target text has nothing to speak (only punctuation or spaces)")
    pieces = merge_short([p for p in pieces if p not in ("", " ")], 5)
    segments = []
    for piece in pieces:
        if not piece.strip() or not re.sub(r"\W+", "", piece):
            continue  # blank or symbols only
        if piece[-1] not in SPLIT_MARKS:
            piece += closing_mark(lang)
        segments.extend(split_big_text(piece) if len(piece) > MAX_SEGMENT_CHARS else [piece])
    if not segments:
        raise ValueError("the target text has nothing to speak (only punctuation or symbols)")
    return segments
