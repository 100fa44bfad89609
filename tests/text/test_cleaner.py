"""clean_text dispatch, special silence marks, UNK mapping, symbol tables and bad input.

Expected values marked "original" were produced by running the original frontend."""
import types

import pytest

from gsv_jax import text
from gsv_jax.text import cleaner, symbols


# ------------------------------------------------------------------------------------ symbol tables
def test_symbol_tables_checkpoint_order():
    v1, v2 = text.get_symbols("v1"), text.get_symbols("v2")
    assert len(v1) == 322 and len(v2) == 732 and v2[:322] == v1
    ids = text.cleaned_text_to_sequence(["!", "SP", "SP2", "SP3", "UNK", "_", "…"], version="v1")
    assert ids == [0, 77, 78, 79, 86, 95, 321]
    assert text.cleaned_text_to_sequence(["[", "]", "停", "空"], version="v2") == [322, 323, 351, 352]
    for v in ("v2Pro", "v3", "v4", None):  # every model but v1 uses the v2 table
        assert text.get_symbols(v) == v2
    assert "UW" not in v1 and "ER" in v1


def test_symbol_missing_from_table_is_a_clear_error():
    with pytest.raises(KeyError, match=r"\['Yaa1', 'xyz'\].*v1 symbol table"):
        text.cleaned_text_to_sequence(["a1", "xyz", "Yaa1"], version="v1")
    with pytest.raises(KeyError, match="xyz"):
        text.cleaned_text_to_sequence(["xyz"], version="v2")


def test_unknown_version_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model version 'v9'"):
        text.clean_text("你好", "zh", version="v9")


# ------------------------------------------------------------------------ dispatch with fake modules
def _fake(monkeypatch, **modules):
    def load(name):
        return modules[name]
    monkeypatch.setattr(cleaner, "_module", load)


def test_en_short_result_gets_leading_comma_and_unknowns_become_unk(monkeypatch):
    en = types.SimpleNamespace(text_normalize=lambda t: t.upper(), g2p=lambda t: ["HH", "AY1", "UW"])
    _fake(monkeypatch, english=en)
    phones, word2ph, norm = text.clean_text("hi", "en", version="v2")
    assert phones == [",", "HH", "AY1", "UNK"] and word2ph is None and norm == "HI"  # bare UW: not in table


def test_language_without_text_normalize_keeps_text(monkeypatch):
    ko = types.SimpleNamespace(g2p=lambda t: ["ㄱ", "ㅏ", "#"])
    _fake(monkeypatch, korean=ko)
    assert text.clean_text("가", "ko") == (["ㄱ", "ㅏ", "UNK"], None, "가")


def test_zh_length_asserts(monkeypatch):
    zh = types.SimpleNamespace(text_normalize=lambda t: t, g2p=lambda t, version: (["n", "i3"], [1]))
    _fake(monkeypatch, chinese=zh)
    with pytest.raises(AssertionError, match="word2ph"):
        text.clean_text("你", "zh")


def test_special_path_asserts_instead_of_unk(monkeypatch):
    zh = types.SimpleNamespace(text_normalize=lambda t: t, g2p=lambda t, version: (["n", "i3", "bad"], [3]))
    _fake(monkeypatch, chinese=zh)
    with pytest.raises(AssertionError, match="bad"):
        text.clean_text("你^", "zh")


@pytest.mark.parametrize("version, language", [("v2", "fr"), ("v2", "jp"), ("v1", "ko"), ("v1", "yue")])
def test_unsupported_language_becomes_english_space(monkeypatch, version, language):
    """The original silently reads an unsupported language code as English text " " (no error)."""
    seen = []
    en = types.SimpleNamespace(text_normalize=lambda t: t, g2p=lambda t: seen.append(t) or [])
    _fake(monkeypatch, english=en)
    assert text.clean_text("bonjour", language, version=version) == ([","], None, " ")
    assert seen == [" "]


# ------------------------------------------------------------------------------- real Mandarin path
@pytest.mark.parametrize("src, version, want", [
    # original: empty text, only punctuation, emoji + control characters
    ("", "v2", ([], [], "")),
    ("。。。", "v2", (["."], [1], ".")),
    ("😀\x07\u200b", "v2", ([], [], "")),
    ("?!", "v1", (["?"], [1], "?")),
    # original: ￥ -> SP2 and ^ -> SP3; EVERY comma phone of the text becomes the special symbol
    ("你好，世界￥再见", "v2", (["n", "i2", "h", "ao3", "SP2", "sh", "ir4", "j", "ie4", "SP2", "z", "ai4", "j", "ian4"],
                         [2, 2, 1, 2, 2, 1, 2, 2], "你好,世界,再见")),
    ("一^二", "v1", (["y", "i1", "SP3", "EE", "er4"], [2, 1, 2], "一,二")),
])
def test_bad_and_special_input_as_original(src, version, want):
    assert text.clean_text(src, "zh", version=version) == want


def test_special_marks_only_for_zh(monkeypatch):
    en = types.SimpleNamespace(text_normalize=lambda t: t, g2p=lambda t: ["AH0", ",", "B", "IY1"])
    _fake(monkeypatch, english=en)
    assert text.clean_text("a^b", "en")[0] == ["AH0", ",", "B", "IY1"]


def test_lazy_imports():
    import subprocess
    import sys
    code = ("import sys; from gsv_jax import text; text.get_symbols('v2'); "
            "mods=[m for m in sys.modules if m.startswith('gsv_jax.text.') and m not in "
            "('gsv_jax.text.symbols',)]; assert not mods, mods; "
            "assert 'jieba' not in sys.modules and 'pypinyin' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_symbols_module_names():
    assert symbols.symbols_v1 == list(text.get_symbols("v1"))
    assert symbols.symbols == list(text.get_symbols("v2"))
