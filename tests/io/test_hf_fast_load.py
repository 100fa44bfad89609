"""The fast Hugging Face loading paths: memory-mapped safetensors, the BERT inference layout built
straight from the state dict, and tokenizer.json without transformers. Each must equal the slow
path it replaces exactly."""
import json

import numpy as np
import pytest

from gsv_jax.io import hf
from gsv_jax.models import bert as bert_lib

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("你好世界今天是个日子我们去公园吧，。！？abcdeABC") + \
    ["##a", "##b", "12", "##3", "hello", "##llo", "he"]
TINY = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=64)


def test_read_safetensors_equals_the_library(tmp_path):
    import ml_dtypes

    rng = np.random.default_rng(0)
    tensors = {"a.weight": rng.standard_normal((3, 5)).astype(np.float32),
               "b": rng.standard_normal((7,)).astype(np.float16),
               "c": np.arange(6, dtype=np.int64).reshape(2, 3), "d": np.zeros((0, 4), np.float32),
               "e": rng.standard_normal((2, 2)).astype(ml_dtypes.bfloat16)}
    path = tmp_path / "m.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "np"})
    got = hf.read_safetensors(path)
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(np.asarray(got[k], np.float64), np.asarray(v, np.float64), err_msg=k)


def test_read_safetensors_rejects_another_file(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes((12).to_bytes(8, "little") + b"not json at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        hf.read_safetensors(path)


def test_bert_inference_params_equal_split_layers_of_the_checkpoint_tree():
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(**TINY))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = bert_lib.bert_config_from_hf(transformers.BertConfig(**TINY).to_dict())
    for n_layers in (4, 2):
        want = bert_lib.split_layers(hf.bert_params(state, cfg), n_layers)
        got = hf.bert_inference_params(state, cfg, n_layers)
        assert len(got["layers"]) == n_layers
        import jax

        flat_w, tree_w = jax.tree.flatten(want)
        flat_g, tree_g = jax.tree.flatten(got)
        assert tree_w == tree_g
        for w, g in zip(flat_w, flat_g):
            np.testing.assert_array_equal(np.asarray(g), w)


def test_bert_inference_params_still_rejects_unexpected_weights():
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in transformers.BertModel(transformers.BertConfig(**TINY)).state_dict().items()}
    state["encoder.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="unexpected weights"):
        hf.bert_inference_params(state, bert_lib.bert_config_from_hf(transformers.BertConfig(**TINY).to_dict()), 3)


def _tokenizer_folder(tmp_path, **config):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), **config).save_pretrained(tmp_path)
    return tmp_path


TEXTS = ["你好世界", "今天是个好日子。", "hello abc ABC 12 3", "你好，hello！", "？？…", ""]


def test_tokenizer_json_gives_transformers_ids(tmp_path):
    folder = _tokenizer_folder(tmp_path)
    ours = hf.load_tokenizer(folder)
    assert isinstance(ours, hf.FastTokenizer)  # the transformers-free path was taken
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    for text in TEXTS:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text


def test_tokenizer_options_that_transformers_would_change_go_through_transformers(tmp_path):
    folder = _tokenizer_folder(tmp_path)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = False  # transformers rebuilds the normaliser from this
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    ours = hf.load_tokenizer(folder)
    assert not isinstance(ours, hf.FastTokenizer)
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert ours("hello ABC")["input_ids"] == theirs("hello ABC")["input_ids"]
