"""Optional G2PW polyphone model for the v2 Mandarin path (the original's default when its model is present).

The model is not on PyPI and is never downloaded here: point us at a folder you have (the original's
``G2PWModel``: ``g2pW.onnx`` or ``g2pw.onnx``, ``config.py``, ``POLYPHONIC_CHARS.txt``,
``MONOPHONIC_CHARS.txt``, ``bopomofo_to_pinyin_wo_tune_dict.json``, ``char_bopomofo_dict.json``) and at
the chinese-roberta-wwm-ext-large folder for its tokenizer:

    from gsv_jax.text import chinese
    chinese.set_g2pw_model("G2PWModel", bert_dir="chinese-roberta-wwm-ext-large",
                           polyphonic=["polyphonic.rep", "polyphonic-fix.rep"])   # optional word overrides

Needs ``onnxruntime`` and ``opencc`` (``pip install gsv-jax[g2pw]``). The steps follow the original:
OpenCC s2tw, one query per polyphonic character with a +-16 character context window, identical
windows run once, argmax over the character's allowed bopomofo labels, bopomofo -> tone3 pinyin; other
characters take the monophonic table or pypinyin. ``polyphonic`` files (``word: ['pin1', 'yin2']`` lines,
the original's override dictionary, not shipped) correct words after the model; without them no
correction is applied (a difference from the original).
"""
import ast
import functools
import json
import os
import re

import numpy as np

NON_POLYPHONIC = set("一不和咋嗲剖差攢倒難奔勁拗肖瘙誒泊听噢")
NON_MONOPHONIC = set("似攢")
MAX_LEN = 512


# ----------------------------------------------------------------------------------- configuration
@functools.lru_cache(maxsize=8)
def _config(model_dir: str) -> dict:
    """Literal assignments of the folder's ``config.py`` (read with ``ast``; never executed)."""
    cfg = {"use_mask": True, "use_char_phoneme": False}
    path = os.path.join(model_dir, "config.py")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for node in ast.parse(f.read()).body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    try:
                        cfg[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
    return cfg


def read_polyphonic(paths) -> dict[str, list[str]]:
    """The original's override dictionary files (``word: ['pin1', 'yin2']`` per line); later files win."""
    out = {}
    for path in paths or ():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    key, value = line.split(":")
                    out[key.strip()] = ast.literal_eval(value.strip())
    return out


# --------------------------------------------------------------------------------------- tokenizing
def _words_and_maps(text: str):
    """Split into alnum runs and single characters (spaces skipped), with text<->word index maps."""
    words, text2word, word2text = [], [], []
    i = 0
    while i < len(text):
        m = re.match(r" +", text[i:])
        if m:
            text2word += [None] * len(m.group(0))
            i += len(m.group(0))
            continue
        m = re.match(r"[a-zA-Z0-9]+", text[i:])
        w = m.group(0) if m else text[i]
        word2text.append((i, i + len(w)))
        text2word += [len(words)] * len(w)
        words.append(w)
        i += len(w)
    return words, text2word, word2text


def tokenize_and_map(tokenizer, text: str):
    words, text2token, word2text = _words_and_maps(text)
    tokens, token2text = [], []
    for word, (start, _end) in zip(words, word2text):
        pieces = tokenizer.tokenize(word)
        if not pieces or pieces == ["[UNK]"]:
            token2text.append((start, _end))
            tokens.append("[UNK]")
            continue
        for piece in pieces:
            n = len(re.sub(r"^##", "", piece))
            token2text.append((start, start + n))
            start += n
            tokens.append(piece)
    for i, (s, e) in enumerate(token2text):
        for pos in range(s, e):
            text2token[pos] = i
    return tokens, text2token, token2text


def _truncate(text, query_id, tokens, text2token, token2text, max_len=MAX_LEN):
    keep = max_len - 2
    if len(tokens) <= keep:
        return text, query_id, tokens, text2token
    start_tok = text2token[query_id] - keep // 2
    end_tok = start_tok + keep
    if -start_tok > 0:
        start_tok, end_tok = 0, keep
    elif end_tok - len(tokens) > 0:
        start_tok, end_tok = start_tok - (end_tok - len(tokens)), len(tokens)
    start, end = token2text[start_tok][0], token2text[end_tok - 1][1]
    return (text[start:end], query_id - start, tokens[start_tok:end_tok],
            [i - start_tok if i is not None else None for i in text2token[start:end]])


# ------------------------------------------------------------------------------------------- model
class G2PW:
    def __init__(self, model_dir: str, bert_dir: str, polyphonic=None, context_chars: int = 16,
                 dedup: bool = True):
        try:
            import onnxruntime
            from opencc import OpenCC
        except ImportError as e:
            raise ImportError(f"G2PW needs onnxruntime and opencc ({e}); pip install 'gsv-jax[g2pw]', "
                              "or leave G2PW off (set_g2pw_model(None)) to use pypinyin") from None
        from transformers import AutoTokenizer

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"G2PW model folder {model_dir!r} not found (it is never downloaded: "
                                    "give the folder of the original's G2PWModel)")
        cfg = _config(model_dir)
        self.use_mask, self.use_char_phoneme = cfg["use_mask"], cfg["use_char_phoneme"]
        self.tokenizer = AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
        self.cc = OpenCC("s2tw")
        self.context_chars, self.dedup = context_chars, dedup

        def table(name):
            with open(os.path.join(model_dir, name), encoding="utf-8") as f:
                return [line.split("\t") for line in f.read().strip().split("\n")]

        poly = table("POLYPHONIC_CHARS.txt")
        if self.use_char_phoneme:
            keyed = [(c, f"{c} {p}") for c, p in poly]
        else:
            keyed = [(c, p) for c, p in poly]
        self.labels = sorted({k for _, k in keyed})
        index = {k: i for i, k in enumerate(self.labels)}
        self.char2labels = {}
        for c, k in keyed:
            self.char2labels.setdefault(c, []).append(index[k])
        self.chars = sorted(self.char2labels)
        self.char2id = {c: i for i, c in enumerate(self.chars)}
        self.polyphonic = set(self.chars) - NON_POLYPHONIC
        self.monophonic = {c: p for c, p in table("MONOPHONIC_CHARS.txt") if c not in NON_MONOPHONIC}
        with open(os.path.join(model_dir, "bopomofo_to_pinyin_wo_tune_dict.json"), encoding="utf-8") as f:
            self.bopomofo = json.load(f)

        onnx_path = next((p for p in (os.path.join(model_dir, n) for n in ("g2pW.onnx", "g2pw.onnx"))
                          if os.path.exists(p)), None)
        if onnx_path is None:
            raise FileNotFoundError(f"no g2pW.onnx / g2pw.onnx in {model_dir!r}")
        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = 2
        self.session = onnxruntime.InferenceSession(onnx_path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.polyphonic_dict = read_polyphonic(polyphonic)

    def bopomofo_to_pinyin(self, bopomofo: str):
        tone = bopomofo[-1]
        assert tone in "12345", bopomofo
        base = self.bopomofo.get(bopomofo[:-1])
        return base + tone if base else None

    def __call__(self, sentences: list[str]) -> list[list[str | None]]:
        """Sentences (simplified) -> per sentence, one tone3 pinyin per character (marks as themselves)."""
        from pypinyin import Style, pinyin

        from .zh_normalization import traditional_to_simplified

        trad = []
        for s in sentences:
            t = self.cc.convert(s)
            assert len(t) == len(s), (s, t)
            trad.append(t)
        texts, query_ids, result_ids, sent_ids, results = [], [], [], [], []
        for sid, sent in enumerate(trad):
            py = pinyin(traditional_to_simplified(sent), neutral_tone_with_five=True, style=Style.TONE3)
            res, poly_idx = [None] * len(sent), []
            for i, ch in enumerate(sent):
                if ch in self.polyphonic:
                    poly_idx.append(i)
                elif ch in self.monophonic:
                    res[i] = self.bopomofo_to_pinyin(self.monophonic[ch])
                else:
                    res[i] = py[i][0]
            if poly_idx:
                left, right = 0, len(sent)
                if self.context_chars > 0:
                    left = max(0, poly_idx[0] - self.context_chars)
                    right = min(len(sent), poly_idx[-1] + self.context_chars + 1)
                for i in poly_idx:
                    texts.append(sent[left:right])
                    query_ids.append(i - left)
                    result_ids.append(i)
                    sent_ids.append(sid)
            results.append(res)
        if not texts:
            return results
        inputs = self._inputs(texts, query_ids)
        if not inputs:
            return results
        preds = self._predict_dedup(inputs, texts) if self.dedup else self._predict(inputs)
        if self.use_char_phoneme:
            preds = [p.split(" ")[1] for p in preds]
        for sid, qid, pred in zip(sent_ids, result_ids, preds):
            results[sid][qid] = self.bopomofo_to_pinyin(pred)
        return results

    def _inputs(self, texts, query_ids) -> dict[str, np.ndarray]:
        rows, cache = [], {}
        for text, qid in zip(texts, query_ids):
            text = text.lower()
            if text not in cache:
                try:
                    cache[text] = tokenize_and_map(self.tokenizer, text)
                except Exception:  # noqa: BLE001 - as the original: give up on the model for this batch
                    return {}
            tokens, text2token, token2text = cache[text]
            q_text, q_id, q_tokens, q_text2token = _truncate(text, qid, tokens, text2token, token2text)
            ids = self.tokenizer.convert_tokens_to_ids(["[CLS]"] + q_tokens + ["[SEP]"])
            ch = q_text[q_id]
            mask = ([1 if i in self.char2labels[ch] else 0 for i in range(len(self.labels))] if self.use_mask
                    else [1] * len(self.labels))
            rows.append((ids, mask, self.char2id[ch], q_text2token[q_id] + 1))
        width = max(len(r[0]) for r in rows)
        pad = lambda seq: list(seq) + [0] * (width - len(seq))
        return {
            "input_ids": np.array([pad(r[0]) for r in rows], np.int64),
            "token_type_ids": np.zeros((len(rows), width), np.int64),
            "attention_mask": np.array([pad([1] * len(r[0])) for r in rows], np.int64),
            "phoneme_mask": np.array([r[1] for r in rows], np.float32),
            "char_ids": np.array([r[2] for r in rows], np.int64),
            "position_ids": np.array([r[3] for r in rows], np.int64),
        }

    def _predict(self, inputs) -> list[str]:
        probs = self.session.run([], inputs)[0]
        return [self.labels[i] for i in np.argmax(probs, axis=1).tolist()]

    def _predict_dedup(self, inputs, texts) -> list[str]:
        """Queries sharing one window run together, the window's token rows given once."""
        groups = {}
        for i, t in enumerate(texts):
            groups.setdefault(t, []).append(i)
        if len(texts) <= 1 or all(len(g) == 1 for g in groups.values()):
            return self._predict(inputs)
        preds = [""] * len(texts)
        for idx in groups.values():
            part = {k: v[idx] for k, v in inputs.items()}
            if len(idx) > 1:
                for k in ("input_ids", "token_type_ids", "attention_mask"):
                    part[k] = part[k][:1]
            for i, p in zip(idx, self._predict(part)):
                preds[i] = p
        return preds


@functools.lru_cache(maxsize=2)
def _model(model_dir: str, bert_dir: str, polyphonic: tuple) -> G2PW:
    return G2PW(model_dir, bert_dir, polyphonic=polyphonic)


def predict(settings: dict, sentences: list[str]) -> list[list[str | None]]:
    m = _model(settings["model_dir"], settings["bert_dir"], tuple(settings.get("polyphonic") or ()))
    return m(sentences)


def word_initials_finals(settings: dict, word: str, pinyins: list[str]) -> tuple[list[str], list[str]]:
    """The original's per-word step: override dictionary, then pypinyin initial / tone3 final split."""
    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

    m = _model(settings["model_dir"], settings["bert_dir"], tuple(settings.get("polyphonic") or ()))
    d = m.polyphonic_dict
    if word in d:
        pinyins = d[word]
    else:
        pinyins = list(pinyins)
        for i, ch in enumerate(word):
            if ch in d:
                pinyins[i] = d[ch][0]
    initials, finals = [], []
    for p in pinyins:
        if p[0].isalpha():
            initials.append(to_initials(p))
            finals.append(to_finals_tone3(p, neutral_tone_with_five=True))
        else:
            initials.append(p)
            finals.append(p)
    return initials, finals
