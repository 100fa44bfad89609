"""``clean_text``: the original's language dispatch (``cleaner.clean_text``) over our language modules.

Language modules are imported only when first used, so Mandarin works without the Japanese/Korean
dependencies installed (and the other way round).
"""
import importlib

from gsv_jax import families

from .symbols import get_symbols, symbol_version

KNOWN_VERSIONS = families.VERSIONS

# language -> its module; which languages a version has comes from its family record
_MODULE_OF = {"zh": "chinese", "ja": "japanese", "en": "english", "ko": "korean", "yue": "cantonese"}
LANGUAGE_MODULES = {
    table: {lang: _MODULE_OF[lang] for lang in families.family(table).languages} for table in ("v1", "v2")
}

# special silence marks, Mandarin only; checked in this order (the original's "%" -> "SP" is disabled)
SPECIAL = (("￥", "zh", "SP2"), ("^", "zh", "SP3"))


def _module(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def _check_version(version: str | None) -> str:
    if version is None:
        return "v2"
    if version not in KNOWN_VERSIONS:
        raise ValueError(f"unknown model version {version!r}; expected one of {KNOWN_VERSIONS}")
    return version


def _normalize_and_g2p(text: str, language: str, version: str):
    mod = _module(LANGUAGE_MODULES[symbol_version(version)][language])
    norm_text = mod.text_normalize(text) if hasattr(mod, "text_normalize") else text
    if language == "zh":
        out = mod.g2p(norm_text, version=symbol_version(version))
    else:
        out = mod.g2p(norm_text)
    return norm_text, out


def clean_text(text: str, language: str, version: str | None = "v2"):
    """Text of one language -> ``(phones, word2ph, norm_text)``.

    ``language``: zh, ja, en (all versions), ko, yue (v2 table: every version but v1). ``word2ph`` (phones
    per character of ``norm_text``) is given for zh and yue, ``None`` otherwise. Phones missing from the
    symbol table become ``UNK``. As the original, an unsupported language code is NOT an error: the text
    is replaced by ``" "`` and read as English (a lone ``,`` phone after the short-result rule).
    """
    version = _check_version(version)
    symbols = get_symbols(version)
    if language not in LANGUAGE_MODULES[symbol_version(version)]:
        language, text = "en", " "  # the original's silent fallback
    for mark, lang, target in SPECIAL:
        if mark in text and language == lang:
            return _clean_special(text, language, mark, target, version)

    norm_text, out = _normalize_and_g2p(text, language, version)
    if language in ("zh", "yue"):
        phones, word2ph = out
        if len(phones) != sum(word2ph):
            raise AssertionError(f"sum(word2ph)={sum(word2ph)} != {len(phones)} phones for {norm_text!r}")
        if len(norm_text) != len(word2ph):
            raise AssertionError(f"{len(word2ph)} word2ph entries for {len(norm_text)} characters of {norm_text!r}")
    elif language == "en":
        phones, word2ph = list(out), None
        if len(phones) < 4:
            phones = [","] + phones
    else:
        phones, word2ph = list(out), None
    table = set(symbols)
    phones = [p if p in table else "UNK" for p in phones]
    return phones, word2ph, norm_text


def _clean_special(text: str, language: str, mark: str, target: str, version: str):
    """``￥``/``^`` read as a pause: the mark becomes ``,`` and then EVERY ``,`` phone becomes ``target``."""
    norm_text, (phones, word2ph) = _normalize_and_g2p(text.replace(mark, ","), language, version)
    table = set(get_symbols(version))
    bad = [p for p in phones if p not in table]
    if bad:  # the original asserts here instead of mapping to UNK
        raise AssertionError(f"phones {bad} are not in the {symbol_version(version)} symbol table")
    return [target if p == "," else p for p in phones], word2ph, norm_text
