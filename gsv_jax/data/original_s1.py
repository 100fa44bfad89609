"""Reader of the original GPT-SoVITS prepared experiment folder for S1 training (docs/data.md).

``<exp>/2-name2text.txt``  lines ``name \\t phones (space separated) \\t word2ph \\t norm_text``
                          (lines without exactly 4 tab fields are skipped, as the original does);
``<exp>/3-bert/<name>.pt`` torch tensor [1024, n_phones] (only for zh items; others: zeros);
``<exp>/6-name2semantic.tsv`` header ``item_name \\t semantic_audio``, rows ``name \\t ints``.

:class:`OriginalS1Folder` offers the same reader interface as ``gsv_jax.data.format``'s datasets
(``len``, ``[i] -> dict``, ``lengths(field)``) for the fields S1 training needs: ``name``,
``phone_ids`` int32, ``bert`` float16 [1024, n_ph], ``semantic`` int32. Items are those whose
name appears in both files, in the semantic file's order (like the original's dataset).
"""
from __future__ import annotations

import os

import numpy as np

from gsv_jax.io.torch_io import load_torch_file
from gsv_jax.text.symbols import cleaned_text_to_sequence


def read_name2text(path: str) -> dict[str, list[str]]:
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            out[parts[0]] = parts[1].split(" ")
    return out


def read_name2semantic(path: str) -> list[tuple[str, np.ndarray]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["item_name", "semantic_audio"]:
            raise ValueError(f"{path}: expected the header 'item_name\\tsemantic_audio', got {header!r}; "
                             "is this the original's 6-name2semantic.tsv?")
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            name, codes = line.split("\t", 1)
            rows.append((name, np.asarray([int(c) for c in codes.split()], np.int32)))
    return rows


class OriginalS1Folder:
    """Random-access reader of a prepared experiment folder (items kept in memory except BERT)."""

    def __init__(self, exp_dir: str, version: str = "v2"):
        self.exp_dir = exp_dir
        text_path = os.path.join(exp_dir, "2-name2text.txt")
        sem_path = os.path.join(exp_dir, "6-name2semantic.tsv")
        for p in (text_path, sem_path):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p} not found: run the original's dataset preparation "
                                        "(1-get-text, 3-get-semantic) or point to the experiment folder")
        phones = read_name2text(text_path)
        self._items = []
        for name, sem in read_name2semantic(sem_path):
            if name in phones:
                ids = np.asarray(cleaned_text_to_sequence(phones[name], version), np.int32)
                self._items.append((name, ids, sem))
        if not self._items:
            raise ValueError(f"{exp_dir}: no item is in both 2-name2text.txt and 6-name2semantic.tsv")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> dict:
        name, ids, sem = self._items[int(i)]
        bert_path = os.path.join(self.exp_dir, "3-bert", f"{name}.pt")
        if os.path.exists(bert_path):
            bert = np.asarray(load_torch_file(bert_path), np.float16)
            if bert.shape != (1024, len(ids)):
                raise ValueError(f"{bert_path}: BERT features {bert.shape} do not match {len(ids)} phones "
                                 "(re-run the BERT preparation step)")
        else:
            bert = np.zeros((1024, len(ids)), np.float16)
        return {"name": name, "phone_ids": ids, "bert": bert, "semantic": sem}

    def lengths(self, field: str) -> np.ndarray:
        if field == "phone_ids":
            return np.asarray([len(x[1]) for x in self._items], np.int64)
        if field == "semantic":
            return np.asarray([len(x[2]) for x in self._items], np.int64)
        raise KeyError(f"lengths({field!r}): this reader knows 'phone_ids' and 'semantic'")
