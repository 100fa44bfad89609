"""Mandarin frontend vs the original's outputs (tests/fixtures/text_zh_cases.json, made by running the
original frontend as an oracle): exact phones, word2ph and norm_text for v1 and v2 (G2PW off)."""
import json
import os
import pathlib

import pytest

from gsv_jax import text
from gsv_jax.text import chinese, zh_normalization, zh_pinyin
from gsv_jax.text.data import build_zh_data

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "text_zh_cases.json"
CASES = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
ERRORS = {"AssertionError": AssertionError, "IndexError": IndexError, "KeyError": KeyError}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_fixture_cases_exact(version):
    """Every case must match exactly (phones, word2ph, norm_text, or the same exception)."""
    mismatches = []
    for case in CASES:
        want = case[version]
        if "error" in want:
            with pytest.raises(ERRORS[want["error"]]):
                text.clean_text(case["text"], "zh", version=version)
            continue
        phones, word2ph, norm = text.clean_text(case["text"], "zh", version=version)
        got = {"phones": " ".join(phones), "word2ph": word2ph, "norm_text": norm}
        if got != want:
            mismatches.append((case["text"], got, want))
    assert not mismatches, f"{len(mismatches)}/{len(CASES)} differ, first: {mismatches[:3]}"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_properties_on_every_case(version):
    table = set(text.get_symbols(version))
    for case in CASES:
        if "error" in case[version]:
            continue
        phones, word2ph, norm = text.clean_text(case["text"], "zh", version=version)
        assert sum(word2ph) == len(phones), case["text"]
        assert all(p in table for p in phones), case["text"]
        if not any(p in ("SP2", "SP3") for p in phones):
            assert len(word2ph) == len(norm), case["text"]
        ids = text.cleaned_text_to_sequence(phones, version=version)
        assert len(ids) == len(phones) and max(ids, default=0) < len(table)


def test_fixture_exercises_the_rules():
    """The fixture must cover the rule families it is meant to test (guards against a thinned file)."""
    texts = "".join(c["text"] for c in CASES)
    for needle in ["年", "%", ":", "/", "℃", "kg", "1", "儿", "一", "不", "￥", "^", "，", "！", "？", "…", "~",
                   "《", "“", "（", "臺", "Ａ", "😀", "α", "①", "²", "+", "="]:
        assert needle in texts, needle
    assert sum("error" in c["v2"] for c in CASES) >= 1
    assert len(CASES) >= 500


@pytest.mark.parametrize("src, want", [
    ("2024年3月5日", "二零二四年三月五日"),
    ("下午3:30到4:05", "下午三点半到四点零五分"),
    ("8:30-12:30", "八点半至十二点半"),
    ("12.50元", "十二点五零元"),  # trailing zeros keep one zero
    ("-3°C", "零下三度"),
    ("3/4", "四分之三"),
    ("15%", "百分之十五"),
    ("13812345678", "幺三八幺二三四五六七八"),
    ("010-12345678", "零幺零减幺二三四五六七八"),  # arithmetic rule runs before the phone rule
    ("2个", "两个"),
    ("10000", "幺零零零零"),  # >= 3 digits without a quantifier: digit by digit
    ("1.2.3", "一点二点三"),
    ("20~25℃", "二十~二十五度"),  # 至 only when both ends carry a unit
    ("20℃~25℃", "二十度至二十五度"),
    ("Apples", "Apple秒"),  # the original replaces unit letters as plain substrings
])
def test_normalization_rules(src, want):
    """Expected strings are the original's outputs."""
    assert "".join(zh_normalization.normalize(src)) == want


def test_cardinals():
    assert zh_normalization.verbalize_cardinal("10") == "十"
    assert zh_normalization.verbalize_cardinal("105") == "一百零五"
    assert zh_normalization.verbalize_cardinal("100000001") == "一亿零一"
    assert zh_normalization.verbalize_cardinal("000") == "零"
    assert zh_normalization.num2str(".5") == "零点五"
    with pytest.raises(ValueError, match="more than one decimal point"):
        zh_normalization.num2str("1.2.3")


def test_text_normalize_punctuation():
    assert chinese.text_normalize("你好！！！世界？？……") == "你好!世界?"
    assert chinese.text_normalize("嗯，abc好的") == "恩,好的"


def test_v2_erhua_tone_follows_previous_syllable():
    # (original's outputs) v1 has no erhua; v2 gives the final 儿 the tone of the syllable before it
    assert text.clean_text("一会儿", "zh", version="v1")[0][-2:] == ["EE", "er5"]
    assert text.clean_text("一会儿", "zh", version="v2")[0][-2:] == ["EE", "er4"]
    assert text.clean_text("有点儿", "zh", version="v2")[0][-2:] == ["EE", "er3"]


def test_pinyin_table_rules_and_coverage():
    table = zh_pinyin.pinyin_table()
    assert len(table) == 429
    for syl, phones in table.items():  # every row follows the generating rules
        assert build_zh_data.syllable_to_phones(syl) == phones, syl
    # every syllable pypinyin can emit is in the table, or one the original cannot read either
    missing = build_zh_data.pypinyin_syllables() - set(table)
    assert missing <= set(build_zh_data.NON_OPENCPOP), sorted(missing - set(build_zh_data.NON_OPENCPOP))


def test_unknown_syllable_is_a_clear_error():
    with pytest.raises(AssertionError, match="opencpop"):
        zh_pinyin.syllable_phones("", "ng2")
    with pytest.raises(AssertionError, match="tone"):
        zh_pinyin.syllable_phones("b", "a")
    with pytest.raises(IndexError, match="no final"):  # 噷 (hm): the original fails with IndexError too
        zh_pinyin.syllable_phones("h", "")


# ------------------------------------------------------------------------------------------------ G2PW
G2PW_FIXTURE = FIXTURE.parent / "text_zh_g2pw_cases.json"
G2PW_TINY = FIXTURE.parent / "g2pw_tiny"


@pytest.fixture
def tiny_g2pw():
    pytest.importorskip("onnxruntime", reason="G2PW is optional: pip install 'gsv-jax[g2pw]'")
    pytest.importorskip("opencc", reason="G2PW is optional: pip install 'gsv-jax[g2pw]'")
    chinese.set_g2pw_model(str(G2PW_TINY / "model"), bert_dir=str(G2PW_TINY / "bert"),
                           polyphonic=[str(G2PW_TINY / "polyphonic.rep"), str(G2PW_TINY / "polyphonic-fix.rep")])
    yield
    chinese.set_g2pw_model(None)


def test_g2pw_path_matches_original_with_same_model(tiny_g2pw):
    """v2 with G2PW on, with a made-up tiny model folder given to both the original (oracle) and us."""
    cases = json.loads(G2PW_FIXTURE.read_text(encoding="utf-8"))["cases"]
    mismatches = []
    for case in cases:
        want = case["v2"]
        if "error" in want:
            with pytest.raises(ERRORS[want["error"]]):
                text.clean_text(case["text"], "zh", version="v2")
            continue
        phones, word2ph, norm = text.clean_text(case["text"], "zh", version="v2")
        got = {"phones": " ".join(phones), "word2ph": word2ph, "norm_text": norm}
        if got != want:
            mismatches.append((case["text"], got, want))
    assert not mismatches, f"{len(mismatches)}/{len(cases)} differ, first: {mismatches[:3]}"
    # the model is really used: these readings come from it / the override files, not from pypinyin
    assert text.clean_text("银行行长还是很快乐的。", "zh")[0][:8] == ["y", "in2", "h", "ang2", "h", "ang5", "zh", "ang3"]


def test_g2pw_off_by_default_and_v1_ignores_it(tiny_g2pw):
    v1 = text.clean_text("我们还要还钱", "zh", version="v1")
    chinese.set_g2pw_model(None)
    assert text.clean_text("我们还要还钱", "zh", version="v1") == v1
    assert text.clean_text("我们还要还钱", "zh", version="v2")[0][4:6] == ["h", "ai2"]  # pypinyin's reading


def test_g2pw_bad_folder_is_a_clear_error(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opencc")
    chinese.set_g2pw_model(str(tmp_path / "nope"), bert_dir=str(G2PW_TINY / "bert"))
    try:
        with pytest.raises(FileNotFoundError, match="never downloaded"):
            text.clean_text("你好", "zh", version="v2")
    finally:
        chinese.set_g2pw_model(None)
    with pytest.raises(ValueError, match="bert_dir"):
        chinese.set_g2pw_model(str(tmp_path))


def test_g2pw_from_environment(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("opencc")
    chinese.set_g2pw_model(None)
    monkeypatch.setenv("GSV_G2PW_MODEL_DIR", str(G2PW_TINY / "model"))
    with pytest.raises(ValueError, match="GSV_G2PW_BERT_DIR"):
        text.clean_text("银行", "zh")
    monkeypatch.setenv("GSV_G2PW_BERT_DIR", str(G2PW_TINY / "bert"))
    monkeypatch.setenv("GSV_G2PW_POLYPHONIC", os.pathsep.join(
        [str(G2PW_TINY / "polyphonic.rep"), str(G2PW_TINY / "polyphonic-fix.rep")]))
    case = json.loads(G2PW_FIXTURE.read_text(encoding="utf-8"))["cases"][0]  # the original's output
    assert " ".join(text.clean_text(case["text"], "zh")[0]) == case["v2"]["phones"]
