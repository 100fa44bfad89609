"""English frontend: ``text_normalize(text) -> norm_text`` and ``g2p(norm_text) -> phones`` (ARPAbet, v2 table).

The original's ``english.py`` (an ``en_G2p`` subclass of g2p_en's ``G2p``), fully offline:

1. tokens from NLTK's ``TweetTokenizer``; POS tags (for homographs only) from ``en_tagger``;
2. per token: no letter -> the token itself; one letter -> its dictionary entry (a capital ``A`` is ``EY1``);
   homograph -> g2p_en's table (plus the original's ``read`` and ``complex`` entries) chosen by the tag;
   otherwise :meth:`EnglishG2P.lookup`: dictionary, spelled letters for unknown words of <= 3 characters,
   possessive ``'s`` from the stem, ``wordsegment`` compound split, and g2p_en's neural predictor last;
3. ``UW`` (absent from the table) and other non-table phones are dropped, ``'`` becomes ``-``.

Known differences from the original (see docs/frontend.md, "English"): the pronunciation dictionary is rebuilt from PyPI
data (``en_build_data``: CMU's cmudict-0.7b of 2015-07, the original's revision, as shipped in the ``text2id``
package, + the GitHub CMUdict of 2018 standing in for the original's fast snapshot: 76 rare words of 143,278
differ), and the original's name dictionary (``namedict_cache.pickle``,
19,929 title-case names that are not in CMUdict) is not reproduced: such names go through the compound split
and neural predictor instead.
"""
from __future__ import annotations

import functools
import gzip
import os
import pathlib
import re

from . import en_neural
from .en_normalize import PUNCTUATION, normalize, text_normalize  # noqa: F401  (re-exported)

DATA = pathlib.Path(__file__).resolve().parent / "data"

# The original's user overrides (engdict-hot.rep) and the abbreviations it deletes so they are spelled out.
HOT_WORDS = {
    "chatgpt": ["CH", "AE1", "T", "JH", "IY1", "P", "IY1", "T", "IY1"],
    "json": ["JH", "EY1", "S", "AH0", "N"],
    "conda": ["K", "AA1", "N", "D", "AH0"],
}
SPELLED_OUT = ("ae", "ai", "ar", "ios", "hud", "os")
# The original's homograph corrections on top of g2p_en's table.
HOMOGRAPH_OVERRIDES = {
    "read": (["R", "IY1", "D"], ["R", "EH1", "D"], "VBP"),
    "complex": (["K", "AH0", "M", "P", "L", "EH1", "K", "S"], ["K", "AA1", "M", "P", "L", "EH0", "K", "S"], "JJ"),
}
_VOICELESS = ("P", "T", "K", "F", "TH", "HH")
_SIBILANT = ("S", "Z", "SH", "ZH", "CH", "JH")
_DROPPED = (" ", "<pad>", "UW", "</s>", "<s>")


@functools.cache
def load_dictionary() -> dict[str, list[str]]:
    """word -> first pronunciation: the generated CMUdict merge, hot words applied, six abbreviations removed.

    ``$GSV_EN_DICT`` may name another ``en_cmudict.txt.gz`` (e.g. one built with ``en_build_data --cmudict-07b``).
    """
    path = pathlib.Path(os.environ.get("GSV_EN_DICT") or DATA / "en_cmudict.txt.gz")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: rebuild it with `python -m gsv_jax.text.en_build_data`")
    table = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            word, pron = line.rstrip("\n").split("\t")
            table[word] = pron.split(" ")
    table.update(HOT_WORDS)
    for word in SPELLED_OUT:
        table.pop(word, None)
    return table


@functools.cache
def _symbols_v2() -> frozenset:
    from .symbols import get_symbols

    return frozenset(get_symbols("v2"))  # the original filters English phones with the v2 table in every version


class EnglishG2P:
    """Callable: normalised text -> phones with ``" "`` between words (the original ``en_G2p.__call__``)."""

    def __init__(self):
        from nltk.tokenize.casual import TweetTokenizer  # tokenizer code only: needs no NLTK data

        self.tokenize = TweetTokenizer().tokenize
        self.lexicon = load_dictionary()
        self.homographs = {**en_neural.load_homographs(), **HOMOGRAPH_OVERRIDES}
        self._segmenter = None

    def segment(self, word: str) -> list[str]:
        if self._segmenter is None:
            from wordsegment import Segmenter  # unigram/bigram counts bundled in the wheel

            self._segmenter = Segmenter()
            self._segmenter.load()
        return self._segmenter.segment(word)

    def __call__(self, text: str) -> list[str]:
        words = self.tokenize(text)
        if any(w.lower() in self.homographs for w in words):
            from .en_tagger import pos_tag

            tags = [t for _, t in pos_tag(words)]
        else:  # tags only matter for homographs: skip the tagger
            tags = [""] * len(words)
        prons: list[str] = []
        for o_word, pos in zip(words, tags):
            word = o_word.lower()
            if re.search("[a-z]", word) is None:
                pron = [word]
            elif len(word) == 1:
                pron = ["EY1"] if o_word == "A" else self.lexicon[word]
            elif word in self.homographs:
                pron1, pron2, pos1 = self.homographs[word]
                # the tag starts with POS, or (only for "read"/VBP) the tag is a prefix of POS
                hit = pos.startswith(pos1) or (len(pos) < len(pos1) and pos == pos1[: len(pos)])
                pron = pron1 if hit else pron2
            else:
                pron = self.lookup(o_word)
            prons.extend(pron)
            prons.append(" ")
        return prons[:-1]

    def lookup(self, o_word: str) -> list[str]:
        """Phones of one word outside the homograph table (the original ``qryword``)."""
        word = o_word.lower()
        if len(word) > 1 and word in self.lexicon:
            return self.lexicon[word]
        # (the original consults its name dictionary here for title-case words; not reproduced)
        if len(word) <= 3:
            phones = []
            for c in word:
                if c == "a":
                    phones.append("EY1")
                elif not c.isalpha():
                    phones.append(c)
                else:
                    phones.extend(self.lexicon[c])
            return phones
        if re.match(r"^([a-z]+)('s)$", word):
            phones = list(self.lookup(word[:-2]))
            if phones[-1] in _VOICELESS:
                phones.append("S")
            elif phones[-1] in _SIBILANT:
                phones.extend(["AH0", "Z"])
            else:
                phones.append("Z")
            return phones
        parts = self.segment(word)
        if len(parts) == 1:
            return en_neural.predict(word)
        return [ph for part in parts for ph in self.lookup(part)]


@functools.cache
def _g2p_model() -> EnglishG2P:
    return EnglishG2P()


def g2p(norm_text: str) -> list[str]:
    """Phones of normalised English text, every one in the v2 symbol table (the original ``english.g2p``)."""
    symbols = _symbols_v2()
    out = []
    for ph in _g2p_model()(norm_text):
        if ph in _DROPPED:
            continue
        ph = "UNK" if ph == "<unk>" else ph
        if ph in symbols:
            out.append(ph)
        elif ph == "'":
            out.append("-")
    return out
