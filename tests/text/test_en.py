"""English frontend against the original's outputs (tests/fixtures/text_en_cases.json).

The expected values were made by running the original english.py (commit 48b1a01) offline with its own
dictionaries and NLTK's tagger.  norm_text must match on every case.  Phones match except where the original
uses its name dictionary, which we do not have (our pronunciation dictionary, rebuilt from PyPI data, has the
original's CMUdict 0.7b of 2015-07 entries): those cases are listed in KNOWN_DIFFERENCES with the word
responsible, and any other mismatch fails.

Threshold: 742/743 = 99.87 % of cases match here (the one miss is the name-dictionary case).  We assert 99.8 %,
just under the measured rate: a new mismatch outside the known list fails anyway.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from gsv_jax.text import english
from gsv_jax.text.en_build_data import build_dict
from gsv_jax.text.symbols import get_symbols

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "text_en_cases.json"
MIN_MATCH_RATE = 0.998
# Random sequences of wordsegment unigrams, rare words included: 995/1000 match; the 5 misses are words of the
# original's name dictionary.
MIN_WORD_FUZZ_RATE = 0.994

# case text -> word whose pronunciation differs from the original's name dictionary
KNOWN_DIFFERENCES = {
    "Jul and Thu are abbreviations.": "namedict: Jul, Thu",
}


@pytest.fixture(scope="module")
def results():
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
    out = []
    for case in cases:
        norm = english.text_normalize(case["text"])
        out.append((case, norm, english.g2p(norm)))
    return out


def test_norm_text_matches_the_original_on_every_case(results):
    bad = [(c["text"], c["norm_text"], norm) for c, norm, _ in results if norm != c["norm_text"]]
    assert not bad, f"{len(bad)} norm_text mismatches, first: {bad[:3]}"


def test_phones_match_the_original(results):
    # g2p is run on the EXPECTED norm_text too, so a phone mismatch is never a normalisation one.
    mismatched = {c["text"] for c, _, _ in results if " ".join(english.g2p(c["norm_text"])) != c["phones"]}
    unexpected = sorted(mismatched - set(KNOWN_DIFFERENCES))
    assert not unexpected, f"new phone mismatches: {unexpected[:5]}"
    rate = 1 - len(mismatched) / len(results)
    print(f"English phones: {len(results) - len(mismatched)}/{len(results)} = {rate:.4f} match the original")
    assert rate >= MIN_MATCH_RATE
    fixed = sorted(set(KNOWN_DIFFERENCES) - mismatched)
    assert not fixed, f"known differences now match, remove them from KNOWN_DIFFERENCES: {fixed}"


@pytest.fixture(scope="module")
def fuzz():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_symbol_fuzz_matches_the_original_exactly(fuzz):
    """1500 random mixtures of numbers, money, times, units, operators, acronyms and marks: no exception."""
    for case in fuzz["fuzz_symbols"]:
        norm = english.text_normalize(case["text"])
        assert norm == case["norm_text"], case["text"]
        assert " ".join(english.g2p(norm)) == case["phones"], case["text"]


def test_word_fuzz_match_rate(fuzz):
    cases = fuzz["fuzz_words"]
    norm_ok = sum(english.text_normalize(c["text"]) == c["norm_text"] for c in cases)
    assert norm_ok == len(cases)
    ok = sum(" ".join(english.g2p(c["norm_text"])) == c["phones"] for c in cases)
    print(f"English word fuzz: {ok}/{len(cases)} match the original")
    assert ok / len(cases) >= MIN_WORD_FUZZ_RATE


def test_every_phone_is_in_the_v2_table(results):
    table = set(get_symbols("v2"))
    for _, _, phones in results:
        assert set(phones) <= table


def test_hot_words_and_spelled_out_abbreviations():
    hot = english.g2p("chatgpt json conda")
    assert hot == english.HOT_WORDS["chatgpt"] + english.HOT_WORDS["json"] + english.HOT_WORDS["conda"]
    # ai / os / ios are deleted from the dictionary, so they are read letter by letter
    assert english.g2p("ai os ios") == ["EY1", "AY1", "OW1", "EH1", "S", "AY1", "OW1", "EH1", "S"]


def test_homograph_follows_the_pos_tag():
    phones = " ".join(english.g2p("I refuse to collect the refuse around here."))
    # the original's output: the verb is R IH0 F Y UW1 Z, the noun R EH1 F Y UW2 Z ER0
    assert phones == "AY1 R IH0 F Y UW1 Z T UW1 K AH0 L EH1 K T DH AH0 R EH1 F Y UW2 Z ER0 AW1 N D HH IY1 R ."


@pytest.mark.parametrize("word,expected", [  # the original's g2p_en predictor output
    ("zorblax", "Z AO1 R B AH0 L K S"),
    ("frobnicator", "F R AA2 B N AH0 K AE1 T IH0 K"),
    ("wanged", "W AO1 NG D"),
    ("qwertyuiop", "K W ER1 T IY0 AH0 W AH0 M"),
])
def test_neural_fallback(word, expected):
    from gsv_jax.text import en_neural

    assert en_neural.predict(word) == expected.split()


def test_bad_input():
    # the original's behaviour: empty / mark-only / emoji / control input gives no phones (clean_text then adds ",")
    for text in ["", "!!!", "😀", "\x00\x07"]:
        assert english.g2p(english.text_normalize(text)) in ([], ["!"])
    # the original crashes with ValueError on "(5$" (its N$ pattern accepts the "("); we raise it with a reason
    with pytest.raises(ValueError, match="currency sign"):
        english.text_normalize("(5$ here")


def test_dictionary_build_rules():
    base = (";;; header\r\nWORD  W ER1 D\r\nWORD(1)  W ER1 D Z\r\nKEEP  K IY1 P\r\n"
            "D\ufffdJ\ufffd  D EY2 JH AA1\r\n")
    github = "keep K AH0 P\nnew N UW1\nnew(2) N Y UW1\nodd AA1 D # comment\n\n"
    d = build_dict(base, github)
    assert d["word"] == ["W", "ER1", "D"] and d["word(1)"] == ["W", "ER1", "D", "Z"]  # variants are own keys
    assert d["keep"] == ["K", "IY1", "P"]  # the 0.7b entry wins
    assert d["d\ufffdj\ufffd"] == ["D", "EY2", "JH", "AA1"]  # kept as the original reads it (UTF-8)
    assert d["new"] == ["N", "UW1"] and d["new(2)"] == ["N", "Y", "UW1"]  # missing words from GitHub's
    assert d["odd"] == ["AA1", "D", "#", "COMMENT"]  # the original's fast-file reading keeps comments
    assert ";;;" not in d and "" not in d


def test_dictionary_base_is_cmudict_07b_of_2015():
    """The committed dictionary has the 2015-07 revision's entries (they differ from the 2014 copy's)."""
    d = english.load_dictionary()
    assert d["module"] == ["M", "AO1", "JH", "UW0", "L"]
    assert d["solution"] == ["S", "AA0", "L", "UW1", "SH", "AH0", "N"]
    assert d["acid"] == ["AE1", "S", "IH0", "D"]


def test_no_network_and_no_g2p_en_import():
    """Import and run everything (tagger, compound split, neural fallback) with sockets disabled."""
    code = textwrap.dedent("""
        import socket, sys
        def _deny(*a, **k):
            raise RuntimeError("network access attempted")
        socket.socket.connect = socket.socket.connect_ex = _deny
        socket.create_connection = socket.getaddrinfo = _deny
        from gsv_jax.text import english
        norm = english.text_normalize("I read the zorblax's snowboarding book at 3:30, $5.20!")
        print(norm)
        print(" ".join(english.g2p(norm)))
        assert "g2p_en" not in sys.modules, "g2p_en was imported (its import downloads NLTK data)"
    """)
    env = {**os.environ, "NLTK_DATA": "/nonexistent"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    norm, phones = run.stdout.strip().splitlines()[-2:]
    assert norm == "I read the zorblax's snowboarding book at three thirty a.m. five dollars and twenty cents!"
    assert phones == (  # the original's output
        "AY1 R IY1 D DH AH0 Z AO1 R B L AE1 K S AH0 Z S N OW1 B AO2 R D IH0 NG B UH1 K AE1 T TH R IY1 TH ER1 D IY2 "
        "AH0 . EH1 M . F AY1 V D AA1 L ER0 Z AH0 N D T W EH1 N T IY0 S EH1 N T S !")
