"""Tiny random-weight models for checking an installation (``python infer.py --selftest``) and
for end-to-end tests: the whole synthesis path runs in seconds with nothing downloaded.

Widths that the original fixes stay (BERT 1024 features, HuBERT 768, S2 hidden 192/gin 512,
codebook 1024×768); depths and the other widths are tiny.
"""
from __future__ import annotations

import pathlib
import tempfile

import jax
import ml_collections
import numpy as np

from gsv_jax import families
from gsv_jax.data.pipeline import checkpoint_data_section

TINY_S1 = dict(vocab_size=1025, EOS=1024, phoneme_vocab_size=732, embedding_dim=64, hidden_dim=64, head=4,
               n_layer=2, linear_units=256, dropout=0.0, hard_dropout=0.1, corrected_mask=False, dtype="float32")
TINY_S2 = dict(version="v2", inter_channels=32, filter_channels=64, n_heads=2, n_layers=2, kernel_size=3,
               resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
               upsample_initial_channel=64)
TINY_BERT = dict(vocab_size=0, hidden_size=1024, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                 max_position_embeddings=512)
TINY_HUBERT = dict(hidden_size=768, num_hidden_layers=1, num_attention_heads=4, intermediate_size=256,
                   conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16)
# A few characters are enough: BERT tokenises Chinese per character, unknown ones map to [UNK].
_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("，。！？,.!?0123456789") + \
    list("你好这是一个自检参考音频的文字世界我们今天天气很不错")


def tiny_s1(seed: int = 0):
    from gsv_jax.inference.s1 import S1

    config = ml_collections.ConfigDict({"model": TINY_S1, "data": checkpoint_data_section()})
    return S1.random(config, seed)


def random_like(shapes, seed: int = 0):
    """Random parameters for a tree of shapes, drawn on the host (no jitted init to compile).

    Scales follow the usual defaults: norm scales and weight-norm gains 1, biases 0, other
    weights normal with std 1/sqrt(fan_in). Good enough for smoke tests and benchmarks.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1])).lower()
        shape, dtype = leaf.shape, leaf.dtype
        if not np.issubdtype(dtype, np.floating):
            return np.zeros(shape, dtype)
        if "bias" in name or name in ("beta",) or len(shape) == 0:
            return np.zeros(shape, dtype)
        if any(k in name for k in ("scale", "gamma", "weight_g", "alpha")):
            return np.ones(shape, dtype)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
        return (rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))).astype(dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def tiny_s2(seed: int = 0):
    from gsv_jax.inference.s2 import new_s2
    from gsv_jax.models.s2.synthesizer import S2ModelConfig

    return new_s2(S2ModelConfig(**TINY_S2), seed, with_enc_q=False, fast=True)


def _tokenizer(folder: pathlib.Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, tokenize_chinese_chars=True)


def tiny_bert(seed: int = 0, folder: pathlib.Path | None = None):
    import jax.numpy as jnp

    from gsv_jax.inference.features import BertFeatures
    from gsv_jax.models import bert as bert_lib

    folder = pathlib.Path(folder or tempfile.mkdtemp(prefix="gsv_selftest_bert_"))
    cfg = bert_lib.bert_config(**dict(TINY_BERT, vocab_size=len(_VOCAB)))
    ids = jnp.zeros((1, 4), jnp.int32)
    shapes = jax.eval_shape(lambda: bert_lib.Bert(cfg).init(jax.random.PRNGKey(0), ids, jnp.ones((1, 4), jnp.int32)))
    return BertFeatures(cfg, random_like(_unbox(shapes["params"]), seed), _tokenizer(folder))


def tiny_hubert(seed: int = 0):
    import jax.numpy as jnp

    from gsv_jax.inference.features import HubertFeatures
    from gsv_jax.models import hubert as hubert_lib

    cfg = hubert_lib.hubert_config(**TINY_HUBERT)
    wav = jnp.zeros((1, 3200), jnp.float32)
    shapes = jax.eval_shape(lambda: hubert_lib.Hubert(cfg).init(jax.random.PRNGKey(0), wav, jnp.array([3200])))
    return HubertFeatures(cfg, random_like(_unbox(shapes["params"]), seed))


def _unbox(tree):
    from flax.linen import meta

    return meta.unbox(tree)


def tiny_tts(seed: int = 0, folder: pathlib.Path | None = None, **kwargs):
    """A :class:`gsv_jax.TTS` over tiny random models (v2 phoneme table); ``folder`` receives the
    tokenizer's vocabulary file (default: a new temporary folder)."""
    from gsv_jax.inference.tts import TTS

    kwargs.setdefault("compilation_cache", False)
    return TTS(tiny_s1(seed), tiny_s2(seed), tiny_bert(seed, folder), tiny_hubert(seed), **kwargs)


def write_selftest_reference(path, seconds: float = 3.5, sr: int = families.SOVITS_SAMPLE_RATE) -> pathlib.Path:
    """A voiced-sounding synthetic reference clip (harmonics with a vibrato and an envelope)."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 8))
    wav *= 0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t) ** 2) / np.abs(wav).max()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), sr)
    return path
