"""The full preparation CLI on the demo corpus with the real model code and tiny random weights:
BERT and HuBERT Hugging Face folders built with transformers from random tiny configs (the output
widths 1024 and 768 are what the dataset format stores), and the tiny S2 golden checkpoint."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from gsv_jax.data.format import open_dataset

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo" / "demo.list"
# every character of the demo's zh norm_text, so the tokenizer makes one token per character
CHARS = sorted(set("你好世界今天天气很好我们一起去学校吧") | set(",.!?…-"))
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CHARS


def tiny_bert_folder(path: pathlib.Path) -> pathlib.Path:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=1024, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    transformers.BertForMaskedLM(cfg).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def tiny_hubert_folder(path: pathlib.Path) -> pathlib.Path:
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                                    num_conv_pos_embedding_groups=16, feat_extract_norm="group", conv_bias=False)
    transformers.HubertModel(cfg).save_pretrained(path)
    return path


@pytest.mark.slow
def test_cli_prepares_demo_with_tiny_models(tmp_path, golden):
    s2 = golden("s2_v2_tiny.pth")
    bert = tiny_bert_folder(tmp_path / "bert")
    hubert = tiny_hubert_folder(tmp_path / "hubert")
    out = tmp_path / "ds"
    cmd = [sys.executable, str(REPO / "data" / "prepare.py"), "--list", str(DEMO), "--out", str(out),
           "--bert", str(bert), "--hubert", str(hubert), "--sovits", str(s2), "--no-progress", "--batch-size", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    from gsv_jax.data.prepare import read_list

    ds_names = [e.name for e in read_list(DEMO)[0]]
    summary = json.loads((out / "work" / "summary-s00000of00001.json").read_text())
    for stage in ("text", "audio", "semantic"):
        assert summary["stages"][stage]["new"] == len(ds_names) and not summary["stages"][stage]["failed"], summary
    ds = open_dataset(out)
    assert sorted(ds.names) == sorted(ds_names)
    import gsv_jax

    s2_model = gsv_jax.load_s2(s2)
    for i in range(len(ds)):
        item = ds[i]
        n_ph = len(item["phone_ids"])
        assert item["bert"].shape == (1024, n_ph) and np.isfinite(item["bert"]).all()
        assert item["bert"].any() == (item["lang"] == "zh")
        assert item["ssl"].shape[0] == 768 and abs(item["ssl"].shape[1] - len(item["wav32k"]) / 640) <= 1
        assert item["semantic"].shape == (item["ssl"].shape[1] // 2,)
        assert 0 <= item["semantic"].min() and item["semantic"].max() < 1024
        # the stage's tokens are the S2 quantizer's codes of the stored features
        even = item["ssl"][:, : 2 * (item["ssl"].shape[1] // 2)].astype(np.float32)
        want = s2_model.extract_latent(even[None]).reshape(-1)
        np.testing.assert_array_equal(item["semantic"], want)
    # rerun: nothing to do (no model is even loaded), dataset untouched
    again = subprocess.run(cmd + ["--bert", "/nonexistent"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "new      0" in again.stdout
