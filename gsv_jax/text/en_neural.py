"""g2p_en's neural fallback for out-of-vocabulary English words, in numpy, without importing g2p_en.

Importing ``g2p_en`` calls ``nltk.download`` (network), so we only read two data files from its installed wheel:
``checkpoint20.npz`` (a GRU encoder-decoder: 29 graphemes -> 74 phoneme classes, 128 hidden units) and
``homographs.en``.  Decoding is greedy for at most 20 steps, with the same float32 arithmetic as g2p_en.
"""
from __future__ import annotations

import functools
import importlib.util
import pathlib

import numpy as np

GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
PHONEMES = ["<pad>", "<unk>", "<s>", "</s>"] + ["AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0", "AO1", "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1", "EH2", "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH", "K", "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH", "T", "TH", "UH0", "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH"]
_G2IDX = {g: i for i, g in enumerate(GRAPHEMES)}
_START, _STOP, _MAX_STEPS = 2, 3, 20


def g2p_en_dir() -> pathlib.Path:
    """Folder of the installed g2p_en package (found without executing its ``__init__``)."""
    spec = importlib.util.find_spec("g2p_en")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the English frontend needs the g2p_en wheel for its data files: pip install g2p_en==2.1.0")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _weights() -> dict[str, np.ndarray]:
    with np.load(g2p_en_dir() / "checkpoint20.npz") as z:
        return {k: z[k] for k in z.files}


def load_homographs() -> dict[str, tuple[list[str], list[str], str]]:
    """g2p_en's ``homographs.en``: word -> (pronunciation if the tag starts with POS, otherwise, POS)."""
    table = {}
    for line in (g2p_en_dir() / "homographs.en").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        word, pron1, pron2, pos = line.strip().split("|")
        table[word.lower()] = (pron1.split(), pron2.split(), pos)
    return table


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    gi = np.matmul(x, w_ih.T) + b_ih
    gh = np.matmul(h, w_hh.T) + b_hh
    k = gi.shape[-1] * 2 // 3
    rz = 1 / (1 + np.exp(-(gi[:, :k] + gh[:, :k])))
    r, z = np.split(rz, 2, -1)
    n = np.tanh(gi[:, k:] + r * gh[:, k:])
    return (1 - z) * n + z * h


def predict(word: str) -> list[str]:
    """Phones for one (lower-case) word; unknown characters are read as ``<unk>``."""
    w = _weights()
    ids = [_G2IDX.get(c, _G2IDX["<unk>"]) for c in list(word) + ["</s>"]]
    x = np.take(w["enc_emb"], np.expand_dims(ids, 0), axis=0)  # (1, T, 64)
    h = np.zeros((1, w["enc_w_hh"].shape[-1]), np.float32)
    for t in range(len(ids)):
        h = _gru_cell(x[:, t, :], h, w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
        h = h.astype(np.float32)  # g2p_en stores every step into a float32 buffer
    dec = np.take(w["dec_emb"], [_START], axis=0)
    out = []
    for _ in range(_MAX_STEPS):
        h = _gru_cell(dec, h, w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
        pred = int((np.matmul(h, w["fc_w"].T) + w["fc_b"]).argmax())
        if pred == _STOP:
            break
        out.append(PHONEMES[pred])
        dec = np.take(w["dec_emb"], [pred], axis=0)
    return out
