"""Phone symbol tables in checkpoint order (list index == token id).

v1: 322 symbols (code-point sort of the original's deduplicated union); v2: 732 symbols (v1, then
``[ ]``, sorted Korean, sorted Cantonese — appended, never re-sorted). Every model except v1 uses v2.
The tables are data files (``data/symbols_v{1,2}.json``); docs/frontend.md, "Symbol tables".
"""
import functools
import json
import os
from collections.abc import Sequence

from gsv_jax import families

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

PAD = "_"
PUNCTUATION = ["!", "?", "…", ",", ".", "-"]
PU_SYMBOLS = PUNCTUATION + ["SP", "SP2", "SP3", "UNK"]


def symbol_version(version: str | None) -> str:
    """Model version -> its phoneme table, "v1" or "v2" (None -> "v2"); see :mod:`gsv_jax.families`."""
    return families.symbol_version(version)


@functools.cache
def get_symbols(version: str | None = "v2") -> tuple[str, ...]:
    with open(os.path.join(_DATA, f"symbols_{symbol_version(version)}.json"), encoding="utf-8") as f:
        return tuple(json.load(f))


@functools.cache
def symbol_to_id(version: str | None = "v2") -> dict[str, int]:
    return {s: i for i, s in enumerate(get_symbols(version))}


def cleaned_text_to_sequence(phones: Sequence[str], version: str | None = "v2") -> list[int]:
    """Phones -> token ids of the ``version`` table; an unknown phone raises ``KeyError`` naming it."""
    table = symbol_to_id(version)
    try:
        return [table[p] for p in phones]
    except KeyError:
        bad = sorted({p for p in phones if p not in table})
        raise KeyError(
            f"phone(s) {bad} are not in the {symbol_version(version)} symbol table "
            f"({len(table)} symbols); pass the phones produced by clean_text(..., version="
            f"{symbol_version(version)!r}), which maps unknown phones to 'UNK'") from None


def __getattr__(name):
    if name == "symbols_v1":
        return list(get_symbols("v1"))
    if name in ("symbols_v2", "symbols"):
        return list(get_symbols("v2"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
