"""Feature extractors as GPT-SoVITS uses them: BERT phone features and HuBERT SSL features.

```python
bert = gsv_jax.load_bert(folder)                   # chinese-roberta-wwm-ext-large folder
feats = bert.phone_features(norm_text, word2ph)    # float32 numpy [1024, sum(word2ph)]
hubert = gsv_jax.load_hubert(folder)               # chinese-hubert-base folder
ssl = hubert(wav16k)                               # [B, N] -> jax.Array [B, 768, T] (50 Hz)
```

Both run jitted over bucketed shapes (token lengths / sample counts rounded up to a short ladder,
batch sizes to powers of two), so steady-state calls do not recompile; padding never changes a
row's result.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax.inference import buckets, programs
from gsv_jax.io import hf
from gsv_jax.models import bert as bert_lib
from gsv_jax.models import hubert as hubert_lib

BERT_HIDDEN_STATE = -3  # GPT-SoVITS takes the third-from-last hidden state
BERT_DIM = 1024


def zero_features(n_phones: int, dim: int = BERT_DIM) -> np.ndarray:
    """The features every non-Mandarin segment gets: zeros ``[dim, n_phones]`` (float32)."""
    return np.zeros((dim, int(n_phones)), np.float32)


class BertFeatures:
    """chinese-roberta BERT with its tokenizer; :meth:`phone_features` as the original's
    ``get_bert_feature``."""

    TOKEN_BUCKETS = (16, 32, 64, 96, 128, 192, 256, 384, 512)

    def __init__(self, cfg, params, tokenizer, hidden_state: int = BERT_HIDDEN_STATE):
        # only the layers that feed the chosen hidden state (22 of 24), as separate per-layer
        # arrays in the feature-major inference layout (bert.split_layers), prepared once here;
        # load_bert passes that layout already (it has "embeddings" at the top)
        if "embeddings" not in params:
            params = bert_lib.split_layers(params, bert_lib.layers_needed(cfg, (hidden_state,)))
        params = jax.device_put(params)
        self.cfg, self.params, self.tokenizer = cfg, params, tokenizer
        self.hidden_state = hidden_state

        def forward(params, ids, mask):
            return bert_lib.apply_split(cfg, params, ids, mask, hidden_state).astype(jnp.float32)

        self._forward = programs.cached_jit(forward, "bert", f"{cfg.to_json()} hidden_state={hidden_state}")

    @property
    def compilations(self) -> int:
        """How many shapes the jitted encoder has been compiled for."""
        return self._forward._cache_size()

    def tokenize(self, text: str) -> list[int]:
        """Token ids with ``[CLS]`` and ``[SEP]``, as ``tokenizer(text)`` in the original."""
        return list(self.tokenizer(text)["input_ids"])

    def _bucket(self, n: int) -> int:
        limit = self.cfg.max_position_embeddings
        if n > limit:
            raise ValueError(
                f"{n} tokens exceed BERT's {limit} positions; split the text (the original pre-splits "
                "at 510 characters)"
            )
        return buckets.first_fit(n, self.TOKEN_BUCKETS, limit)

    def hidden_states_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The chosen hidden state of each text, ``[n_tokens, hidden]`` (with [CLS]/[SEP] rows)."""
        ids = [self.tokenize(t) for t in texts]
        if not ids:
            return []
        length = self._bucket(max(len(i) for i in ids))
        batch = buckets.pow2(len(ids))
        tok = np.full((batch, length), self.cfg.pad_token_id, np.int32)
        mask = np.zeros((batch, length), np.int32)
        for r, row in enumerate(ids):
            tok[r, : len(row)] = row
            mask[r, : len(row)] = 1
        out = np.asarray(self._forward(self.params, tok, mask))
        return [out[r, : len(row)] for r, row in enumerate(ids)]

    def phone_features_batch(self, norm_texts: Sequence[str], word2phs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """:meth:`phone_features` for many segments in one padded batch."""
        if len(norm_texts) != len(word2phs):
            raise ValueError(f"{len(norm_texts)} texts but {len(word2phs)} word2ph lists")
        for text, w2p in zip(norm_texts, word2phs):
            if len(w2p) != len(text):
                raise ValueError(
                    f"word2ph has {len(w2p)} entries but the text {text!r} has {len(text)} characters; "
                    "pass the norm_text and word2ph that clean_text returned together"
                )
        states = self.hidden_states_batch(norm_texts)
        out = []
        for text, w2p, h in zip(norm_texts, word2phs, states):
            rows = h[1:-1]  # drop [CLS] and [SEP]
            if len(rows) < len(w2p):
                raise ValueError(
                    f"the tokenizer made {len(rows)} tokens of {text!r} but word2ph has {len(w2p)} "
                    "entries; BERT features need one token per character (Mandarin norm_text)"
                )
            out.append(np.repeat(rows[: len(w2p)], np.asarray(w2p, np.int64), axis=0).T.copy())
        return out

    def phone_features(self, norm_text: str, word2ph: Sequence[int]) -> np.ndarray:
        """Phone-level features ``[hidden, sum(word2ph)]``: the third-from-last hidden state with
        [CLS]/[SEP] dropped, character row i repeated ``word2ph[i]`` times."""
        return self.phone_features_batch([norm_text], [word2ph])[0]

    def features_for(self, language: str, norm_text: str, word2ph: Sequence[int], n_phones: int) -> np.ndarray:
        """What the pipeline uses per segment: real features for ``zh`` (also ``all_zh``), zeros
        ``[1024, n_phones]`` for every other language (yue, en, ja, ko)."""
        if language.replace("all_", "") == "zh":
            feats = self.phone_features(norm_text, word2ph)
            if feats.shape[1] != n_phones:
                raise ValueError(f"word2ph sums to {feats.shape[1]} phones but the segment has {n_phones}")
            return feats
        return zero_features(n_phones, self.cfg.hidden_size)


class HubertFeatures:
    """chinese-hubert-base on raw 16 kHz audio (no feature-extractor normalisation, as the
    original feeds it). ``hubert(wav16k)`` -> ``[B, hidden, T]`` at 50 Hz."""

    SAMPLE_UNIT = 3200  # 0.2 s; sample counts are padded to this unit times a ladder (<= 1/8 extra)

    def __init__(self, cfg, params):
        self.cfg, self.params = cfg, params
        model = hubert_lib.Hubert(cfg)

        def forward(params, wav, lengths):
            h, valid = model.apply({"params": params}, wav, lengths)
            h = jnp.where(valid[..., None], h.astype(jnp.float32), 0.0)
            return jnp.swapaxes(h, 1, 2)

        self._forward = programs.cached_jit(forward, "hubert", cfg.to_json())

    @property
    def compilations(self) -> int:
        return self._forward._cache_size()

    def frames(self, num_samples):
        """Output frames for a waveform of ``num_samples`` samples (about num_samples / 320)."""
        return hubert_lib.frame_lengths(self.cfg, num_samples)

    def __call__(self, wav16k, lengths: Sequence[int] | None = None) -> jax.Array:
        """``wav16k``: float ``[B, N]`` or ``[N]`` raw 16 kHz samples; ``lengths``: valid samples
        per row of a right-padded batch (default: all N). Returns ``[B, hidden, frames(N)]``; row
        b equals its solo result on its first ``frames(lengths[b])`` frames and is 0 after."""
        wav = np.asarray(wav16k, np.float32)
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2:
            raise ValueError(f"expected audio shaped [B, N] or [N], got {wav.shape}")
        b, n = wav.shape
        lengths = np.full((b,), n, np.int32) if lengths is None else np.asarray(lengths, np.int32)
        if lengths.shape != (b,) or lengths.max() > n:
            raise ValueError(f"lengths must be {b} sample counts <= {n}, got {lengths.tolist()}")
        if lengths.min() < 400:
            raise ValueError(f"every waveform needs at least 400 samples (25 ms at 16 kHz), got {lengths.min()}")
        nb, bb = buckets.ladder(n, self.SAMPLE_UNIT), buckets.pow2(b)
        padded = np.zeros((bb, nb), np.float32)
        padded[:b, :n] = wav
        lens = np.full((bb,), nb, np.int32)
        lens[:b] = lengths
        out = self._forward(self.params, padded, lens)
        return out[:b, :, : int(self.frames(n))]

    def features(self, wavs: Sequence[np.ndarray]) -> list[jax.Array]:
        """Each 1-D waveform's solo result ``[hidden, T_i]``, computed as one padded batch."""
        lens = [len(w) for w in wavs]
        batch = np.zeros((len(wavs), max(lens)), np.float32)
        for i, w in enumerate(wavs):
            batch[i, : len(w)] = w
        out = self(batch, lens)
        return [out[i, :, : int(self.frames(n))] for i, n in enumerate(lens)]


def load_bert(folder, dtype: str = "float32") -> BertFeatures:
    """A chinese-roberta-wwm-ext-large Hugging Face folder (config.json, model.safetensors or
    pytorch_model.bin, tokenizer files) -> :class:`BertFeatures`. ``dtype``: compute dtype."""
    cfg = bert_lib.bert_config_from_hf(hf.read_config(folder), dtype=dtype)
    params = hf.bert_inference_params(hf.read_state_dict(folder), cfg,
                                      bert_lib.layers_needed(cfg, (BERT_HIDDEN_STATE,)))
    return BertFeatures(cfg, params, hf.load_tokenizer(folder))


def load_hubert(folder, dtype: str = "float32") -> HubertFeatures:
    """A chinese-hubert-base Hugging Face folder (config.json, model.safetensors or
    pytorch_model.bin) -> :class:`HubertFeatures`. ``dtype``: compute dtype."""
    cfg = hubert_lib.hubert_config_from_hf(hf.read_config(folder), dtype=dtype)
    params = jax.device_put(hf.hubert_params(hf.read_state_dict(folder), cfg))
    return HubertFeatures(cfg, params)
