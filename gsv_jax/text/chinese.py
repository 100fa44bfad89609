"""Mandarin frontend: ``text_normalize`` and ``g2p`` for the v1 and v2 symbol versions.

* v1 (original ``chinese.py``): jieba words -> pypinyin initials/finals -> tone sandhi -> opencpop phones.
* v2 (original ``chinese2.py``): the same plus erhua; pinyin comes from G2PW when a G2PW model folder is
  configured (``set_g2pw_model(...)`` or env ``GSV_G2PW_MODEL_DIR``; see ``zh_g2pw``), otherwise from
  pypinyin, which is what the original does with G2PW switched off.

Every Han character gives 2 phones and every punctuation mark 1; ``word2ph`` has one entry per
character of the normalised text.
"""
import os
import re

from . import zh_jieba, zh_normalization, zh_tone_sandhi
from .symbols import PUNCTUATION
from .zh_pinyin import syllable_phones

_PUNCT_CLASS = re.escape("".join(PUNCTUATION))
_REP_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",", "...": "…",
    "$": ".", "/": ",", "—": "-", "~": "…", "～": "…",
}
_REP_RE = re.compile("|".join(re.escape(k) for k in _REP_MAP))
_NOT_KEPT = re.compile(f"[^\u4e00-\u9fa5{_PUNCT_CLASS}]+")
_REPEATED_PUNCT = re.compile(f"([{_PUNCT_CLASS}])([{_PUNCT_CLASS}])+")
_SEGMENT_SPLIT = re.compile(f"(?<=[{_PUNCT_CLASS}])\\s*")


def replace_punctuation(text: str) -> str:
    """Map Chinese/ASCII marks to the 6 phone marks and drop everything that is neither Han
    (U+4E00..U+9FA5) nor one of them (Latin letters included)."""
    text = text.replace("嗯", "恩").replace("呣", "母")
    return _NOT_KEPT.sub("", _REP_RE.sub(lambda m: _REP_MAP[m.group()], text))


def text_normalize(text: str) -> str:
    out = "".join(replace_punctuation(s) for s in zh_normalization.normalize(text))
    return _REPEATED_PUNCT.sub(r"\1", out)  # a run of marks keeps its first mark


# ------------------------------------------------------------------------------------------------ erhua
def _lists():
    return zh_tone_sandhi.word_lists()


def merge_erhua(initials: list[str], finals: list[str], word: str, pos: str):
    """Erhua of the v2 path: a word-final 儿 takes the tone of the syllable before it (syllable count
    never changes)."""
    must, never = _lists()["must_erhua"], _lists()["not_erhua"]
    if finals and word[len(finals) - 1:len(finals)] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"
    if word not in must and (word in never or pos in {"a", "j", "nr"}):
        return initials, finals
    if len(finals) != len(word):
        return initials, finals
    if len(finals) >= 2 and word[-1] == "儿" and finals[-1] in {"er2", "er5"} and word[-2:] not in never:
        finals = finals[:-1] + ["er" + finals[-2][-1]]
    return initials, finals


# -------------------------------------------------------------------------------------------------- g2p
_G2PW = None


def set_g2pw_model(model_dir: str | None, bert_dir: str | None = None, polyphonic=None) -> None:
    """Use the G2PW polyphone model in ``model_dir`` for v2 (``None``: pypinyin, as the original with
    G2PW off). ``bert_dir``: the chinese-roberta-wwm-ext-large folder (its tokenizer); ``polyphonic``:
    the original's override dictionary files, optional. See ``zh_g2pw``. Env alternative:
    ``GSV_G2PW_MODEL_DIR``, ``GSV_G2PW_BERT_DIR``, ``GSV_G2PW_POLYPHONIC`` (paths joined by ``os.pathsep``)."""
    global _G2PW
    if model_dir is None:
        _G2PW = None
        return
    if not bert_dir:
        raise ValueError("set_g2pw_model needs bert_dir= (the chinese-roberta-wwm-ext-large folder) for the "
                         "G2PW tokenizer")
    _G2PW = {"model_dir": model_dir, "bert_dir": bert_dir, "polyphonic": list(polyphonic or ())}


def _g2pw_settings() -> dict | None:
    if _G2PW is not None:
        return _G2PW
    model_dir = os.environ.get("GSV_G2PW_MODEL_DIR")
    if not model_dir:
        return None
    bert_dir = os.environ.get("GSV_G2PW_BERT_DIR")
    if not bert_dir:
        raise ValueError("GSV_G2PW_MODEL_DIR is set but GSV_G2PW_BERT_DIR (the chinese-roberta-wwm-ext-large "
                         "folder, for the G2PW tokenizer) is not")
    poly = [p for p in os.environ.get("GSV_G2PW_POLYPHONIC", "").split(os.pathsep) if p]
    return {"model_dir": model_dir, "bert_dir": bert_dir, "polyphonic": poly}


def split_segments(norm_text: str) -> list[str]:
    """Cut after each punctuation mark (following whitespace dropped); blank pieces are removed."""
    return [s for s in _SEGMENT_SPLIT.split(norm_text) if s.strip() != ""]


def _word_pinyin(word: str) -> tuple[list[str], list[str]]:
    return zh_jieba.initials(word), zh_jieba.finals_tone3(word)


def g2p(norm_text: str, version: str | None = "v2") -> tuple[list[str], list[int]]:
    """Normalised text -> (phones, word2ph)."""
    v2 = version != "v1"
    segments = [re.sub("[a-zA-Z]+", "", s) for s in split_segments(norm_text)]
    g2pw_pinyins, settings = None, _g2pw_settings() if v2 else None
    if settings:
        from . import zh_g2pw

        batch = [s for s in segments if s]
        g2pw_pinyins = iter(zh_g2pw.predict(settings, batch) if batch else [])
    phones, word2ph = [], []
    for seg in segments:
        words = zh_tone_sandhi.pre_merge_for_modify(zh_jieba.posseg(seg))
        seg_pinyins = next(g2pw_pinyins) if (g2pw_pinyins is not None and seg) else None
        initials, finals, offset = [], [], 0
        for word, pos in words:
            start, offset = offset, offset + len(word)
            if pos == "eng":
                continue
            if seg_pinyins is None:
                ini, fin = _word_pinyin(word)
            else:
                from . import zh_g2pw

                ini, fin = zh_g2pw.word_initials_finals(settings, word, seg_pinyins[start:offset])
            fin = zh_tone_sandhi.modified_tone(word, pos, fin)
            if v2:
                ini, fin = merge_erhua(ini, fin, word, pos)
            initials += ini
            finals += fin
        for c, v in zip(initials, finals):
            ph = syllable_phones(c, v)
            phones += ph
            word2ph.append(len(ph))
    return phones, word2ph
