"""English text normalisation, rule for rule as the original's ``english.text_normalize``.

Numbers, money, times, units, fractions and ordinals are spelled out with ``inflect``; everything but letters,
spaces and ``' . , ? ! -`` is then deleted, and a space goes before every capital letter that follows a
non-space (``ChatGPT`` -> ``Chat G P T``).  The original's quirks are kept on purpose, because checkpoints were
trained on them:

* its first character map is built from *escaped* regex classes, so only ``。！？`` are mapped; ``; : ，`` and
  quotes are simply deleted later (``a; b`` -> ``a b``; docs/frontend.md, "English");
* a negative number swallows the whitespace before it (``is -3`` -> ``isnegative three``);
* a ``HH:MM`` time always gets ``a.m.``/``p.m.`` appended, even when one follows already;
* unit suffixes take the first alternative that matches (``km/h`` is read as ``km`` then ``/h`` is dropped).
"""
from __future__ import annotations

import functools
import re
import unicodedata

PUNCTUATION = ("!", "?", "…", ",", ".", "-")  # the symbol table's punctuation block

_UNITS = {  # suffix -> (singular, plural); the alternation order below is the original's
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"),
    "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
}

_ORDINAL_LIST_ITEM = re.compile(r"\b([0-9]+)\. ")
_NEGATIVE = re.compile(r"(?:^|\s+)(-)(\d+)")
_GROUPED = re.compile(r"([0-9][0-9\,]+[0-9])")
_TIME = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b")
_MEASURE = re.compile(r"\b([0-9]+(\.[0-9]+)?(" + "|".join(_UNITS) + r"))\b")
_POUNDS_BEFORE = re.compile(r"£([0-9\.\,]*[0-9]+)")
_POUNDS_AFTER = re.compile(r"([0-9\.\,]*[0-9]+)£")
_DOLLARS_BEFORE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_DOLLARS_AFTER = re.compile(r"([(0-9\.\,]*[0-9]+)\$")
_DECIMAL = re.compile(r"([0-9]+\.\s*[0-9]+)")
_FRACTION = re.compile(r"([0-9]+/[0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")
_INTEGER = re.compile(r"[0-9]+")

# "a op b" arithmetic, operands: signed decimal, bare decimal or one letter, each with optional superscripts.
_SUP = "[⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]*"
_OPERAND = rf"((-?)((\d+)(\.\d+)?{_SUP})|(\.\d+{_SUP})|([A-Za-z]{_SUP}))"
_ARITHMETIC = re.compile(_OPERAND + r"\s+([\+\-\×÷=])\s+" + _OPERAND)
_OPERATORS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}

_PUNCT_CLASS = "".join(re.escape(p) for p in PUNCTUATION)
_PUNCT_RUN = re.compile(rf"([{_PUNCT_CLASS}\s])([{_PUNCT_CLASS}])+")
# The original escapes its regex classes, so the first two keys only match these literal 9- and 4-char strings.
_FIRST_MAP = {"[;:：，；]": ",", '["’]': "'", "。": ".", "！": "!", "？": "?"}
_FIRST_MAP_RE = re.compile("|".join(re.escape(k) for k in _FIRST_MAP))


@functools.cache
def _engine():
    import inflect

    return inflect.engine()


def _list_item(m: re.Match) -> str:
    return _engine().ordinal(m.group(1)) + ", "


def _arithmetic(m: re.Match) -> str:
    return m.group(1) + _OPERATORS[m.group(8)] + m.group(9)


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if hours > 12:
        hours -= 12
    hour_words = _engine().number_to_words(hours)
    if minutes == 0:
        return f"{hour_words} o'clock {period}"
    return f"{hour_words} {_engine().number_to_words(minutes)} {period}"


def _measure(m: re.Match) -> str:
    whole, decimals, unit = m.group(1), m.group(2), m.group(3)
    value = int(whole.replace(unit, "").replace(".", ""))
    name = _UNITS[unit][0 if decimals is None and value == 1 else 1]
    return whole.replace(unit, " " + name)


def _money(units: tuple[str, str, str, str]):
    big1, big, small1, small = units

    def expand(m: re.Match) -> str:
        amount = m.group(1)
        parts = amount.split(".")
        if len(parts) > 2:
            return amount + " " + big
        if not parts[0].replace(",", "").isdigit() and parts[0]:
            # only "(" can get here: the original's "N$" pattern accepts it and then int() fails; so do we
            raise ValueError(f"cannot read the amount {amount!r} before a currency sign (the original fails on it "
                             "too): put a space between '(' and the number")
        major = int(parts[0]) if parts[0] else 0
        minor = int(parts[1].ljust(2, "0")) if len(parts) > 1 and parts[1] else 0
        major_txt = f"{major} {big1 if major == 1 else big}"
        minor_txt = f"{minor} {small1 if minor == 1 else small}"
        if major and minor:
            return f"{major_txt} and {minor_txt}"
        if major:
            return major_txt
        if minor:
            return minor_txt
        return "zero " + big

    return expand


_pounds = _money(("pound", "pounds", "penny", "pence"))
_dollars = _money(("dollar", "dollars", "cent", "cents"))


def _decimal(m: re.Match) -> str:
    whole, digits = m.group(1).split(".")[:2]
    return whole + " point " + " ".join(digits)


def _fraction(m: re.Match) -> str:
    num, den = (int(x) for x in m.group(0).split("/"))
    num_words = _engine().number_to_words(num)
    if den == 1:
        return num_words
    if den == 2:
        return f"{num_words} {'half' if num == 1 else 'halves'}"
    den_words = _engine().ordinal(_engine().number_to_words(den)) + ("s" if num > 1 else "")
    return f"{num_words} {den_words}"


def _ordinal(m: re.Match) -> str:
    return _engine().number_to_words(m.group(0))


def _integer(m: re.Match) -> str:
    n = int(m.group(0))
    words = _engine().number_to_words
    if 1000 < n < 3000:  # read like a year
        if n == 2000:
            return "two thousand"
        if 2000 < n < 2010:
            return "two thousand " + words(n % 100)
        if n % 100 == 0:
            return words(n // 100) + " hundred"
        return words(n, andword="", zero="oh", group=2).replace(", ", " ")
    return words(n, andword="")


def normalize(text: str) -> str:
    """The original's ``en_normalization.expend.normalize``."""
    text = _ORDINAL_LIST_ITEM.sub(_list_item, text)
    while _ARITHMETIC.search(text):
        text = _ARITHMETIC.sub(_arithmetic, text)
    text = _NEGATIVE.sub(lambda m: "negative " + m.group(2), text)
    text = _GROUPED.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _TIME.sub(_time, text)
    text = _MEASURE.sub(_measure, text)
    text = _POUNDS_BEFORE.sub(_pounds, text)
    text = _POUNDS_AFTER.sub(_pounds, text)
    text = _DOLLARS_BEFORE.sub(_dollars, text)
    text = _DOLLARS_AFTER.sub(_dollars, text)
    text = _DECIMAL.sub(_decimal, text)
    text = _FRACTION.sub(_fraction, text)
    text = _ORDINAL.sub(_ordinal, text)
    text = _INTEGER.sub(_integer, text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = text.replace("%", " percent")
    text = re.sub(r"[^ A-Za-z'.,?!\-]", "", text)
    text = re.sub(r"(?i)i\.e\.", "that is", text)
    text = re.sub(r"(?i)e\.g\.", "for example", text)
    return re.sub(r"(?<!^)(?<![\s])([A-Z])", r" \1", text)


def text_normalize(text: str) -> str:
    """``english.text_normalize``: CJK sentence marks, :func:`normalize`, then runs of punctuation collapsed."""
    text = _FIRST_MAP_RE.sub(lambda m: _FIRST_MAP[m.group()], text)
    text = normalize(str(text))
    return _PUNCT_RUN.sub(r"\1", text)
