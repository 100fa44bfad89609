"""Import from / export to the original GPT-SoVITS experiment folder (``logs/<exp_name>/``).

Layout (docs/data.md, "The original's experiment folder")::

    2-name2text.txt       name \\t phones (space-separated) \\t word2ph (Python list or None) \\t norm_text
    3-bert/<name>.pt      float [1024, n_phones], zh lines only
    4-cnhubert/<name>.pt  float [1, 768, T] at 50 Hz
    5-wav32k/<name>       32 kHz mono int16 WAV
    6-name2semantic.tsv   header ``item_name\\tsemantic_audio``, then name \\t space-separated 25 Hz ids

``.pt`` files are read and written without torch (:mod:`gsv_jax.io.torch_io`), so the
original trainers (``s1_train.py``, ``s2_train.py``) can train on data prepared here and we can
train on data they prepared.
"""
from __future__ import annotations

import ast
import pathlib
import re
from typing import Any

import numpy as np

from gsv_jax import families
from gsv_jax.data import format as dsformat
from gsv_jax.data.prepare import shard_of

_ARPA_LIKE = re.compile(r"^[A-Z]{1,2}[012]?$")
_JA_UPPER = {"I", "N", "U"}
_PUNCT_LIKE = {"SP", "SP2", "SP3", "UNK"}


def guess_lang(phones: list[str], word2ph, has_bert: bool) -> str:
    """Language of a name2text line, which does not record it: zh has BERT files, yue uses the
    ``Y``-prefixed Jyutping symbols, ko Hangul jamo, en upper-case ARPAbet, ja the rest."""
    if has_bert:
        return "zh"
    if word2ph is not None:
        return "yue" if any(p.startswith("Y") and len(p) > 1 for p in phones) else "zh"
    if any(len(p) == 1 and ("\u3131" <= p <= "\u318e" or p in "空停") for p in phones):
        return "ko"
    if any(_ARPA_LIKE.match(p) and p not in _JA_UPPER and p not in _PUNCT_LIKE for p in phones):
        return "en"
    return "ja"


def _read_name2text(path: pathlib.Path) -> dict[str, tuple[list[str], Any, str]]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        parts = line.split("\t", 3)
        while len(parts) < 4:
            parts.append("")
        name, phones, w2p, norm = parts
        word2ph = None if w2p.strip() in ("None", "") else [int(v) for v in ast.literal_eval(w2p)]
        rows[name] = (phones.split(" ") if phones else [], word2ph, norm)
    return rows


def _read_semantic(path: pathlib.Path) -> dict[str, np.ndarray]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, _, codes = line.partition("\t")
        if name == "item_name":
            continue
        out[name] = np.array(codes.split(), np.int32)
    return out


def _list_langs(list_path) -> dict[str, str]:
    from gsv_jax.data.prepare import read_list

    entries, _ = read_list(list_path)
    return {e.name: e.lang for e in entries}


def import_original(exp_dir, out, *, version: str = "v2", num_shards: int = 1, list_path=None,
                    progress: bool = True) -> dict[str, Any]:
    """Convert an original experiment folder into a dataset at ``out``.

    Languages come from ``list_path`` (the ``.list`` the folder was made from) when given, else
    are guessed from the phones (:func:`guess_lang`). Returns ``{"items": n, "skipped": {name: reason}}``.
    """
    import soundfile as sf

    from gsv_jax.io.torch_io import load_torch_file
    from gsv_jax.text import cleaned_text_to_sequence

    exp = pathlib.Path(exp_dir)
    needed = ["2-name2text.txt", "6-name2semantic.tsv", "4-cnhubert", "5-wav32k"]
    missing = [n for n in needed if not (exp / n).exists()]
    if missing:
        raise FileNotFoundError(f"{exp} is not a complete original experiment folder: missing {missing} "
                                "(run the original's 1A/1B/1C steps first)")
    texts = _read_name2text(exp / "2-name2text.txt")
    semantic = _read_semantic(exp / "6-name2semantic.tsv")
    langs = _list_langs(list_path) if list_path else {}
    skipped: dict[str, str] = {}
    writers = [dsformat.DatasetWriter(out, s, num_shards, meta={"symbol_version": version, "sample_rate": families.SOVITS_SAMPLE_RATE,
                                                                 "ssl_rate": 50, "semantic_rate": 25,
                                                                 "imported_from": str(exp)})
               for s in range(num_shards)]
    names = sorted(texts)
    it = names
    if progress:
        from tqdm import tqdm

        it = tqdm(names, desc="import", unit="clip", dynamic_ncols=True)
    count = 0
    try:
        for name in it:
            phones, word2ph, norm = texts[name]
            bert_path = exp / "3-bert" / f"{name}.pt"
            ssl_path = exp / "4-cnhubert" / f"{name}.pt"
            wav_path = exp / "5-wav32k" / name
            if name not in semantic:
                skipped[name] = "no line in 6-name2semantic.tsv"
                continue
            if not ssl_path.exists() or not wav_path.exists():
                skipped[name] = f"missing {'4-cnhubert/' + name + '.pt' if not ssl_path.exists() else '5-wav32k/' + name}"
                continue
            try:
                lang = langs.get(name) or guess_lang(phones, word2ph, bert_path.exists())
                ids = np.asarray(cleaned_text_to_sequence(phones, version), np.int32)
                bert = None
                if lang == "zh":
                    if not bert_path.exists():
                        raise ValueError("zh line without 3-bert file")
                    bert = np.asarray(load_torch_file(bert_path), np.float16)
                ssl = np.asarray(load_torch_file(ssl_path))
                ssl = ssl.reshape(ssl.shape[-2], ssl.shape[-1]).astype(np.float16)
                wav, sr = sf.read(str(wav_path), dtype="int16")
                if sr != families.SOVITS_SAMPLE_RATE or wav.ndim != 1:
                    raise ValueError(f"5-wav32k/{name} is {sr} Hz with shape {wav.shape}; expected 32 kHz mono")
                item = {"name": name, "lang": lang, "norm_text": norm, "phones": " ".join(phones),
                        "phone_ids": ids, "word2ph": word2ph, "bert": bert, "semantic": semantic[name],
                        "ssl": ssl, "wav32k": wav}
                sv_path = exp / "7-sv_cn" / f"{name}.pt"  # v2Pro*: the speaker embedding [1, 20480]
                if sv_path.exists():
                    item["sv_emb"] = np.asarray(load_torch_file(sv_path), np.float32).reshape(-1)
                elif (exp / "7-sv_cn").is_dir():
                    raise ValueError(f"7-sv_cn/{name}.pt missing (the folder has speaker embeddings for others)")
                writers[shard_of(name, num_shards)].add(item)
                count += 1
            except Exception as e:  # noqa: BLE001 - report the item, keep going
                skipped[name] = f"{type(e).__name__}: {e}"
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return {"items": count, "skipped": skipped}


def _word2ph_repr(w2p) -> str:
    if w2p is None or len(w2p) == 0:
        return "None"
    return "[" + ", ".join(str(int(v)) for v in w2p) + "]"


def export_original(dataset, exp_dir, *, half: bool = False, progress: bool = True) -> int:
    """Write a dataset (folder or reader) as the original's experiment folder; returns the item count.

    Features are saved as float32 tensors (``half=True``: float16, as the original's ``is_half``).
    Existing files of the same names are overwritten; other files in ``exp_dir`` are left alone.
    """
    import soundfile as sf

    from gsv_jax.io.torch_io import save_torch_file
    from gsv_jax.text import get_symbols

    reader = dataset if isinstance(dataset, dsformat.DatasetReader) else dsformat.open_dataset(dataset)
    exp = pathlib.Path(exp_dir)
    for sub in ("3-bert", "4-cnhubert", "5-wav32k"):
        (exp / sub).mkdir(parents=True, exist_ok=True)
    dtype = np.float16 if half else np.float32
    symbols = get_symbols(reader.meta.get("symbol_version", "v2"))
    text_lines, sem_lines = [], ["item_name\tsemantic_audio"]
    it = range(len(reader))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="export", unit="clip", dynamic_ncols=True)
    for i in it:
        item = reader[i]
        name = item["name"]
        phones = item.get("phones") or " ".join(symbols[k] for k in item["phone_ids"])
        text_lines.append(f"{name}\t{phones}\t{_word2ph_repr(item.get('word2ph'))}\t{item.get('norm_text', '')}")
        sem_lines.append(f"{name}\t" + " ".join(str(int(v)) for v in item["semantic"]))
        if item["lang"] == "zh":
            save_torch_file(item["bert"].astype(dtype), exp / "3-bert" / f"{name}.pt")
        save_torch_file(item["ssl"].astype(dtype)[None], exp / "4-cnhubert" / f"{name}.pt")
        if "sv_emb" in item:  # v2Pro*: 7-sv_cn/<name>.pt, [1, 20480] as the original's 2-get-sv.py saves it
            (exp / "7-sv_cn").mkdir(exist_ok=True)
            save_torch_file(np.asarray(item["sv_emb"], dtype).reshape(1, -1), exp / "7-sv_cn" / f"{name}.pt")
        sf.write(str(exp / "5-wav32k" / name), item["wav32k"], families.SOVITS_SAMPLE_RATE, subtype="PCM_16", format="WAV")
    (exp / "2-name2text.txt").write_text("\n".join(text_lines) + "\n", encoding="utf-8")
    (exp / "6-name2semantic.tsv").write_text("\n".join(sem_lines) + "\n", encoding="utf-8")
    return len(reader)
