"""BERT (chinese-roberta) parity with transformers' PyTorch BertModel / BertForMaskedLM, the
Hugging Face folder reader, the tokenizer and the phone-level feature expansion."""
import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import gsv_jax
from gsv_jax.inference import features
from gsv_jax.io import hf
from gsv_jax.models import bert as bert_lib

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = list("你好世界今天是个日子我们去公园吧，。！？…,.-!?")
PIECES = list("0123456789") + ["12", "##3", "abc", "##de", "##x", "a", "b", "c", "d", "e", "x"]
VOCAB = SPECIAL + CHARS + PIECES
TINY = dict(vocab_size=80, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64)


def perturb(model, seed=0):
    """Randomise every parameter (norm weights/biases too), so a port that ignores one fails."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "LayerNorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def make_folder(path: pathlib.Path, model, safe: bool):
    """A Hugging Face folder with model.safetensors, or with pytorch_model.bin as older folders
    (chinese-roberta-wwm-ext-large) have it."""
    model.save_pretrained(path)
    if not safe:
        (path / "model.safetensors").unlink()
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    torch.manual_seed(0)
    model = perturb(transformers.BertForMaskedLM(transformers.BertConfig(**TINY)))
    return model, make_folder(tmp_path_factory.mktemp("bert_st"), model, safe=True)


@pytest.fixture(scope="module")
def tiny_bert(tiny_mlm):
    """One loaded extractor for the module, so its compiled shapes are shared (XLA compiles are
    the slow part of these tests)."""
    return gsv_jax.load_bert(tiny_mlm[1])


def torch_hidden(model, ids):
    with torch.no_grad():
        return [h.numpy() for h in model(torch.tensor(ids), output_hidden_states=True).hidden_states]


def original_phone_features(model, tokenizer, text, word2ph):
    """The original get_bert_feature, with torch."""
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        res = model(**inputs, output_hidden_states=True)
    res = torch.cat(res["hidden_states"][-3:-2], -1)[0][1:-1]
    feats = [res[i].repeat(word2ph[i], 1) for i in range(len(word2ph))]
    return torch.cat(feats, dim=0).T.numpy()


def test_all_hidden_states_match_torch(tiny_mlm):
    import jax

    model, folder = tiny_mlm
    cfg = bert_lib.bert_config_from_hf(hf.read_config(folder))
    params = hf.bert_params(hf.read_state_dict(folder), cfg)
    ids = np.array([[2, 7, 9, 11, 30, 5, 3], [2, 40, 41, 3, 0, 0, 0]])
    mask = (np.arange(7)[None] < np.array([[7], [4]])).astype(np.int32)
    with torch.no_grad():
        ref = [h.numpy() for h in model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                                         output_hidden_states=True).hidden_states]
    apply = jax.jit(lambda p, i, m: bert_lib.Bert(cfg).apply({"params": p}, i, m, hidden_states=(0, 1, 2, 3)))
    got = apply(params, ids, mask)
    for i, (g, r) in enumerate(zip(got, ref)):
        g = np.asarray(g)
        for row, n in enumerate([7, 4]):  # padded positions are not compared
            np.testing.assert_allclose(g[row, :n], r[row, :n], atol=1e-5, rtol=1e-5, err_msg=f"hidden state {i}")


def test_phone_features_match_original_function(tiny_mlm, tiny_bert):
    model, folder = tiny_mlm
    text, w2p = "今天是个好日子。", [2, 2, 2, 2, 2, 2, 2, 1]
    got = tiny_bert.phone_features(text, w2p)
    want = original_phone_features(model, hf.load_tokenizer(folder), text, w2p)
    assert got.shape == want.shape == (32, 15) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,safe", [("BertModel", False), ("BertForMaskedLM", False), ("BertModel", True)])
def test_folder_formats_give_the_state_dict(tmp_path, arch, safe):
    """pytorch_model.bin or model.safetensors, with or without the "bert." prefix of the masked-LM
    model: the same parameters as the in-memory state dict (the model itself is checked above)."""
    import jax

    torch.manual_seed(1)
    model = perturb(getattr(transformers, arch)(transformers.BertConfig(**TINY)), seed=1)
    folder = make_folder(tmp_path / "m", model, safe)
    assert (folder / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    cfg = bert_lib.bert_config_from_hf(hf.read_config(folder))
    got = hf.bert_params(hf.read_state_dict(folder), cfg)
    encoder = model if arch == "BertModel" else model.bert
    want = hf.bert_params({k: v.numpy() for k, v in encoder.state_dict().items()}, cfg)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    np.testing.assert_array_equal(
        got["layers"]["layer"]["intermediate"]["kernel"][2],
        encoder.encoder.layer[2].intermediate.dense.weight.detach().numpy().T,
    )


def test_phone_features_hand_worked_expansion(tiny_mlm, tiny_bert):
    model, _folder = tiny_mlm
    bert = tiny_bert
    h = torch_hidden(model, [bert.tokenize("你好。")])[-3][0]  # rows: [CLS] 你 好 。 [SEP]
    got = bert.phone_features("你好。", [2, 2, 1])
    want = np.stack([h[1], h[1], h[2], h[2], h[3]], axis=1)  # 你 你 好 好 。
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    got = bert.phone_features("我们去公园吧！", [2, 1, 3, 2, 2, 2, 1])  # unusual counts are honoured
    h = torch_hidden(model, [bert.tokenize("我们去公园吧！")])[-3][0][1:-1]
    assert got.shape == (32, 13)
    np.testing.assert_allclose(got[:, 0:2], np.stack([h[0], h[0]], 1), atol=1e-5)
    np.testing.assert_allclose(got[:, 2], h[1], atol=1e-5)
    np.testing.assert_allclose(got[:, 3:6], np.stack([h[2]] * 3, 1), atol=1e-5)
    np.testing.assert_allclose(got[:, 12], h[6], atol=1e-5)
    assert bert.phone_features("你好", [0, 2]).shape == (32, 2)


def test_batched_equals_solo_and_buckets_compile_once(tiny_bert):
    bert = tiny_bert
    before = bert.compilations
    texts = ["你好。", "今天是个好日子，去吧！", "世界？"]
    w2ps = [[2 if ch not in "，。！？" else 1 for ch in t] for t in texts]
    batch = bert.phone_features_batch(texts, w2ps)
    for t, w, b in zip(texts, w2ps, batch):
        assert b.shape == (32, sum(w))
        np.testing.assert_allclose(b, bert.phone_features(t, w), atol=1e-5, rtol=1e-5)
    # everything above fits the 16-token bucket: batch sizes 4 and 1 -> at most two new shapes
    after = bert.compilations
    assert after - before <= 2 and after <= 2
    bert.phone_features("世界你好", [2, 2, 2, 2])
    bert.phone_features_batch(["你好", "世界", "你"], [[2, 2], [2, 2], [2]])
    assert bert.compilations == after


def test_tokenizer_round_trip_chinese_punct_digits_latin(tiny_mlm, tiny_bert):
    _, folder = tiny_mlm
    tok = hf.load_tokenizer(folder)
    text = "你好，世界！123 ABCde…今天?x"
    tokens = tok.tokenize(text)
    assert tokens == ["你", "好", "，", "世", "界", "！", "12", "##3", "abc", "##de", "…", "今", "天", "?", "x"]
    ids = tok(text)["input_ids"]
    assert ids[0] == VOCAB.index("[CLS]") and ids[-1] == VOCAB.index("[SEP]")
    assert tok.convert_ids_to_tokens(ids[1:-1]) == tokens
    assert "".join(t.removeprefix("##") for t in tokens) == text.lower().replace(" ", "")
    # unknown characters become [UNK]; Chinese characters are always single tokens
    assert tok.tokenize("你龘好") == ["你", "[UNK]", "好"]
    assert tiny_bert.tokenize("你好") == [2, VOCAB.index("你"), VOCAB.index("好"), 3]


def test_language_rule_and_zero_features(tiny_bert):
    bert = tiny_bert
    assert np.all(bert.features_for("en", "hello.", None, 7) == 0)
    assert bert.features_for("yue", "你好", [2, 2], 4).shape == (32, 4)
    assert np.all(bert.features_for("yue", "你好", [2, 2], 4) == 0)
    zh = bert.features_for("all_zh", "你好", [2, 2], 4)
    np.testing.assert_allclose(zh, bert.phone_features("你好", [2, 2]))
    assert np.abs(zh).max() > 0
    assert features.zero_features(5).shape == (1024, 5)


def test_bad_inputs_give_clear_errors(tiny_mlm, tiny_bert, tmp_path):
    _, folder = tiny_mlm
    bert = tiny_bert
    with pytest.raises(ValueError, match="word2ph has 2 entries"):
        bert.phone_features("你好。", [2, 2])
    with pytest.raises(ValueError, match="one token per character"):
        bert.phone_features("123", [1, 1, 1])  # "12" "##3": two tokens for three characters
    with pytest.raises(ValueError, match="exceed"):
        bert.phone_features("你" * 80, [2] * 80)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gsv_jax.load_bert(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        gsv_jax.load_bert(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "bert", **TINY}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        gsv_jax.load_bert(tmp_path / "empty")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(ValueError, match="expected 'bert'"):
        gsv_jax.load_bert(tmp_path / "hub")
    # weights of another shape than config.json says
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in folder.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()), "intermediate_size": 50}))
    with pytest.raises(ValueError, match="intermediate.dense.weight"):
        gsv_jax.load_bert(bad)


@pytest.mark.slow
def test_full_size_random_weights_hidden_state_minus3():
    """chinese-roberta-wwm-ext-large geometry (24 x 1024), random weights, one short input."""
    import jax

    torch.manual_seed(2)
    cfg_t = transformers.BertConfig(**bert_lib.LARGE)
    model = transformers.BertModel(cfg_t, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial norms
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    ids = np.array([[101, 872, 1962, 8024, 686, 4518, 8013, 102]])
    want = torch_hidden(model, ids)[-3]
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = bert_lib.bert_config()
    params = hf.bert_params(state, cfg)
    del model, state
    (got,) = jax.jit(lambda p, i: bert_lib.apply(cfg, p, i, hidden_states=(-3,)))(params, ids)
    err = np.abs(np.asarray(got) - want).max() / np.abs(want).max()
    assert err < 1e-4, err
