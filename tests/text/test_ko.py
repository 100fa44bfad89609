"""Korean frontend vs the original (expected outputs in tests/fixtures/text_ko_cases.json).

Match = the same phones. Measured: 257/257 (1.000); the target is >= 0.95.
"""
import functools
import json
import pathlib
import socket
import sys

import pytest

from gsv_jax.text import korean
from gsv_jax.text.symbols import get_symbols

CASES = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "text_ko_cases.json").read_text("utf-8"))["cases"]
TARGET = 0.95


@functools.cache
def _g2p(text):
    return korean.g2p(text)


def test_match_rate_against_original():
    mismatches = [(c["text"], c["phones"], p) for c in CASES if (p := _g2p(c["text"])) != c["phones"]]
    rate = 1 - len(mismatches) / len(CASES)
    print(f"ko match rate {rate:.3f} on {len(CASES)} sentences")
    assert rate >= TARGET, f"ko match rate {rate:.3f} < {TARGET}; first mismatches: {mismatches[:5]}"


def test_every_phone_in_v2_table():
    table = set(get_symbols("v2"))
    seen = set()
    for case in CASES:
        phones = _g2p(case["text"])
        assert set(phones) <= table, (case["text"], set(phones) - table)
        seen |= set(phones)
    # the cases exercise every Korean symbol except the tense stops that pronunciation rules rewrite
    korean_symbols = set(get_symbols("v2")[324:353])
    assert len(korean_symbols - seen) <= 3, korean_symbols - seen


def test_rules_latin_and_compound_vowels():
    assert korean.latin_to_hangul("Ab") == "에이비"
    assert korean.divide_hangul("와") == "ㅇㅗㅏ"
    assert korean.fix_g2pk2_error("ㅇㅡㄹ ㄹㅏ") == "ㅇㅡㄹ ㄴㅏ"
    # a trailing jamo gets a full stop; a space is 空
    assert korean.g2p("안녕 하세요")[-1] == "."
    assert "空" in korean.g2p("안녕 하세요")


def test_bad_input_follows_original():
    assert korean.g2p("") == []  # the original gives [] as well
    assert korean.g2p("。！") == [".", "!"]
    assert korean.g2p("😊") == ["停"]  # anything outside the table is 停 (original behaviour)
    assert korean.g2p("\x07") == ["停"]
    with pytest.raises(TypeError):
        korean.g2p(None)


def test_offline_import_and_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert korean.g2p("나의 친구가 mp3 file 3개를 다운받고 있다.")[-1] == "."
    # g2pk2 is loaded without NLTK's downloader (nor NLTK itself, unless someone else imported it)
    assert "g2pk2" in sys.modules
