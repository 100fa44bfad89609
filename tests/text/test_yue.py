"""Cantonese frontend vs the original (expected outputs in tests/fixtures/text_yue_cases.json).

Match = the same ``norm_text``, phones and word2ph. Measured: 407/407 (1.000); the target is >= 0.95.
The normaliser is the Mandarin one (``gsv_jax.text.zh_normalization``), so these cases also cover it
on numbers, dates, times, units and traditional characters.
"""
import functools
import json
import pathlib
import socket

import pytest

from gsv_jax.text import cantonese
from gsv_jax.text.symbols import get_symbols

CASES = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "text_yue_cases.json").read_text("utf-8"))["cases"]
TARGET = 0.95


@functools.cache
def _run(text):
    norm = cantonese.text_normalize(text)
    phones, word2ph = cantonese.g2p(norm)
    return norm, phones, word2ph


def test_match_rate_against_original():
    mismatches = []
    for case in CASES:
        got = _run(case["text"])
        if got != (case["norm_text"], case["phones"], case["word2ph"]):
            mismatches.append((case["text"], case["norm_text"], case["phones"], got))
    rate = 1 - len(mismatches) / len(CASES)
    print(f"yue match rate {rate:.3f} on {len(CASES)} sentences")
    assert rate >= TARGET, f"yue match rate {rate:.3f} < {TARGET}; first mismatches: {mismatches[:5]}"


def test_properties_the_original_asserts():
    """clean_text asserts sum(word2ph) == len(phones) and len(word2ph) == len(norm_text)."""
    table = set(get_symbols("v2"))
    for case in CASES:
        norm, phones, word2ph = _run(case["text"])
        assert sum(word2ph) == len(phones), case["text"]
        assert len(word2ph) == len(norm), case["text"]
        assert set(phones) <= table, (case["text"], set(phones) - table)


def test_syllable_split_rules():
    assert cantonese.g2p("佢")[0] == ["Yk", "Yeoi5"]
    assert cantonese.g2p("我")[0] == ["Yng", "Yo5"]  # "ng" + rest
    assert cantonese.g2p("啊")[0] == ["Yaa", "Ya3"]  # empty remainder -> last letter of the initial
    assert cantonese.g2p("你好,")[1] == [2, 2, 1]
    assert cantonese.text_normalize("《你好》“世界”") == "你好世界"  # quotes -> ' -> deleted


def test_bad_input_follows_original():
    assert _run("") == ("", [], [])
    assert _run("。！？") == (".!?", [".", "!", "?"], [1, 1, 1])
    assert _run("😊\x07abc") == ("", [], [])  # non-Han, non-mark characters are deleted
    with pytest.raises(TypeError):
        cantonese.g2p(None)
    with pytest.raises(ValueError, match="jyutping"):  # a non-Han character reaching g2p (original raises too)
        cantonese.g2p("x")


def test_no_network_at_run_time(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert _run("今日係2024年5月1號。")[1][-1] == "."
