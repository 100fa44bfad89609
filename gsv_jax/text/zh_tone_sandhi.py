"""Mandarin tone sandhi on jieba words (不, 一, neutral tone, third-tone chains) and the pre-merge of
jieba words that makes the rules see the right spans. Behaviour of the original's PaddleSpeech-derived
``ToneSandhi``; word lists in ``data/zh_tone_sandhi.json`` (see ``data/build_zh_data.py``).

A "finals" list holds one tone3 final per syllable (e.g. ``ao3``; ``5`` = neutral); punctuation items
are the mark itself. Functions mutate and return the list, like the original.
"""
import functools
import json
import os

from . import zh_jieba

Seg = list[list[str]]  # [[word, pos], ...]

PUNC = "：，；。？！“”‘’':,;.?!"
MODAL_PARTICLES = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"


@functools.lru_cache(maxsize=1)
def word_lists() -> dict[str, frozenset[str]]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "zh_tone_sandhi.json")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return {k: frozenset(v) for k, v in d.items() if isinstance(v, list)}


def _tone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _all_tone_three(finals) -> bool:
    return all(x[-1] == "3" for x in finals)


def _is_neural_word(word: str) -> bool:
    must = word_lists()["must_neural_tone_words"]
    return word in must or word[-2:] in must


def split_word(word: str) -> list[str]:
    """Two parts of ``word`` around its shortest search-mode sub-word."""
    subs = sorted(zh_jieba.cut_for_search(word), key=len)
    first = subs[0]
    if word.find(first) == 0:
        return [first, word[len(first):]]
    return [word[: -len(first)], first]


# --------------------------------------------------------------------------------------------- rules
def neural_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    lists = word_lists()
    for j, ch in enumerate(word):  # reduplication of n./v./a. (奶奶, 试试)
        if j >= 1 and ch == word[j - 1] and pos[0] in "nva" and word not in lists["must_not_neural_tone_words"]:
            finals[j] = _tone(finals[j], "5")
    ge = word.find("个")
    if word and word[-1] in MODAL_PARTICLES or word and word[-1] in "的地得" or len(word) == 1 and word in "了着过" and pos in {"ul", "uz", "ug"} or len(word) > 1 and word[-1] in "们子" and pos in {"r", "n"} and word not in lists["must_not_neural_tone_words"] or len(word) > 1 and word[-1] in "上下里" and pos in {"s", "l", "f"} or len(word) > 1 and word[-1] in "来去" and word[-2] in "上下进出回过起开":
        finals[-1] = _tone(finals[-1], "5")
    elif (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in "几有两半多各整每做是")) or word == "个":
        finals[ge] = _tone(finals[ge], "5")
    elif _is_neural_word(word):
        finals[-1] = _tone(finals[-1], "5")

    parts = split_word(word)
    halves = [finals[: len(parts[0])], finals[len(parts[0]):]]
    for i, part in enumerate(parts):
        if _is_neural_word(part):
            halves[i][-1] = _tone(halves[i][-1], "5")
    return halves[0] + halves[1]


def bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":  # 看不懂
        finals[1] = _tone(finals[1], "5")
    else:
        for i, ch in enumerate(word):
            if ch == "不" and i + 1 < len(word) and finals[i + 1][-1] == "4":  # 不怕
                finals[i] = _tone(finals[i], "2")
    return finals


def yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(c.isnumeric() for c in word if c != "一"):  # 一零零
        return finals
    if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:  # 看一看
        finals[1] = _tone(finals[1], "5")
    elif word.startswith("第一"):
        finals[1] = _tone(finals[1], "1")
    else:
        for i, ch in enumerate(word):
            if ch == "一" and i + 1 < len(word):
                if finals[i + 1][-1] == "4":  # 一段
                    finals[i] = _tone(finals[i], "2")
                elif word[i + 1] not in PUNC:  # 一天; before a mark it stays tone 1
                    finals[i] = _tone(finals[i], "4")
    return finals


def three_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_tone_three(finals):
        finals[0] = _tone(finals[0], "2")
    elif len(word) == 3:
        parts = split_word(word)
        if _all_tone_three(finals):
            if len(parts[0]) == 2:  # 蒙古/包
                finals[0] = _tone(finals[0], "2")
                finals[1] = _tone(finals[1], "2")
            elif len(parts[0]) == 1:  # 纸/老虎
                finals[1] = _tone(finals[1], "2")
        else:
            halves = [finals[: len(parts[0])], finals[len(parts[0]):]]
            for i, sub in enumerate(halves):
                if _all_tone_three(sub) and len(sub) == 2:  # 所有/人
                    halves[i][0] = _tone(sub[0], "2")
                elif i == 1 and not _all_tone_three(sub) and sub[0][-1] == "3" and halves[0][-1][-1] == "3":
                    halves[0][-1] = _tone(halves[0][-1], "2")  # 好/喜欢
                finals = halves[0] + halves[1]
    elif len(word) == 4:  # idioms: two 2-char halves
        halves = [finals[:2], finals[2:]]
        finals = []
        for sub in halves:
            if _all_tone_three(sub):
                sub[0] = _tone(sub[0], "2")
            finals += sub
    return finals


def modified_tone(word: str, pos: str, finals: list[str]) -> list[str]:
    finals = bu_sandhi(word, finals)
    finals = yi_sandhi(word, finals)
    finals = neural_sandhi(word, pos, finals)
    return three_sandhi(word, finals)


# -------------------------------------------------------------------------------------- pre-merging
def _merge_bu(seg) -> Seg:
    out, last = [], ""
    for word, pos in seg:
        if last == "不":
            word = last + word
        if word != "不":
            out.append([word, pos])
        last = word
    if last == "不":
        out.append([last, "d"])
    return out


def _merge_yi(seg) -> Seg:
    out, i = [], 0
    while i < len(seg):  # 听 一 听 -> 听一听 (verbs)
        word, pos = seg[i]
        if i >= 1 and word == "一" and i + 1 < len(seg):
            last = out[-1] if out else seg[i - 1]
            if last[0] == seg[i + 1][0] and last[1] == "v" and seg[i + 1][1] == "v":
                out[-1] = [last[0] + "一" + seg[i + 1][0], last[1]]
                i += 2
                continue
        out.append([word, pos])
        i += 1
    merged = []
    for word, pos in out:  # a lone 一 joins the next word
        if merged and merged[-1][0] == "一":
            merged[-1][0] = merged[-1][0] + word
        else:
            merged.append([word, pos])
    return merged


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def _merge_three_tones(seg, whole_words: bool) -> Seg:
    finals = [zh_jieba.finals_tone3(word) for word, _ in seg]
    out, merged_last = [], [False] * len(seg)
    for i, (word, pos) in enumerate(seg):
        if whole_words:
            hit = i >= 1 and _all_tone_three(finals[i - 1]) and _all_tone_three(finals[i])
        else:
            hit = i >= 1 and finals[i - 1][-1][-1] == "3" and finals[i][0][-1] == "3"
        if hit and not merged_last[i - 1] and not _is_reduplication(seg[i - 1][0]) \
                and len(seg[i - 1][0]) + len(word) <= 3:
            out[-1][0] = out[-1][0] + word
            merged_last[i] = True
        else:
            out.append([word, pos])
    return out


def _merge_er(seg) -> Seg:
    out = []
    for i, (word, pos) in enumerate(seg):
        if i >= 1 and word == "儿" and seg[i - 1][0] != "#":
            out[-1][0] = out[-1][0] + word
        else:
            out.append([word, pos])
    return out


def _merge_reduplication(seg) -> Seg:
    out = []
    for word, pos in seg:
        if out and word == out[-1][0]:
            out[-1][0] = out[-1][0] + word
        else:
            out.append([word, pos])
    return out


def pre_merge_for_modify(seg) -> Seg:
    """jieba (word, pos) pairs -> merged [word, pos] lists. A merge step that fails (the original
    catches every exception there and prints a note) leaves the words as they were."""
    seg = _merge_bu(seg)
    seg = _try(_merge_yi, seg)
    seg = _merge_reduplication(seg)
    seg = _try(lambda s: _merge_three_tones(s, whole_words=True), seg)
    seg = _try(lambda s: _merge_three_tones(s, whole_words=False), seg)
    return _merge_er(seg)


def _try(step, seg):
    try:
        return step(seg)
    except Exception:  # noqa: BLE001 - as the original: a failing merge is skipped
        return seg
