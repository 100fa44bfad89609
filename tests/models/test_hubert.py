"""HuBERT (chinese-hubert-base) parity with transformers' PyTorch HubertModel, the folder reader
(weight-norm names old and new), and padded batches equal to solo runs."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import gsv_jax
from gsv_jax.io import hf
from gsv_jax.models import hubert as hubert_lib

# the real conv geometry (stride 320) with narrow channels
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def perturb(model, seed=0):
    """Randomise every parameter (norms and the weight-norm gain too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name and name.endswith("weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif "original0" in name or "weight_g" in name:
                p.copy_(p * (1 + 0.3 * torch.rand(p.shape, generator=g)))
            elif "masked_spec_embed" not in name:
                p.copy_(p + 0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def speech_like(n, seed, scale=1.0):
    """A voiced-ish test signal: harmonics with a wobbling pitch plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) + 0.1 * rng.standard_normal(n)
    return (scale * 0.3 * x).astype(np.float32)


def torch_last(model, wav):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(wav)[None])).last_hidden_state[0].numpy().T  # [H, T]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = perturb(transformers.HubertModel(transformers.HubertConfig(**TINY)))
    folder = tmp_path_factory.mktemp("hubert_st")
    model.save_pretrained(folder)
    return model, folder, gsv_jax.load_hubert(folder)


def test_matches_torch_on_raw_prep_scaled_audio(tiny):
    model, _, hubert = tiny
    # dataset prep feeds ~1145.14-scaled audio straight in (no feature-extractor normalisation)
    wav = speech_like(6000, 0, scale=1145.14 * 0.5)
    got = np.asarray(hubert(wav))
    want = torch_last(model, wav)
    assert got.shape == (1, 32, 18) == (1,) + want.shape
    np.testing.assert_allclose(got[0], want, atol=1e-5 * np.abs(want).max(), rtol=1e-4)


def test_padded_batch_gives_each_solo_result(tiny):
    model, _, hubert = tiny
    wavs = [speech_like(6000, 1), speech_like(4200, 2, scale=3.0), speech_like(5000, 3, scale=0.1)]
    got = hubert.features(wavs)
    for w, g in zip(wavs, got):
        want = torch_last(model, w)
        assert g.shape == want.shape == (32, hubert.frames(len(w)))
        np.testing.assert_allclose(np.asarray(g), want, atol=1e-5 * np.abs(want).max(), rtol=1e-4)
    # the [B, N] + lengths form zeroes each row after its own frames (same compiled batch of 4)
    batch = np.zeros((3, 6000), np.float32)
    batch[0], batch[1, :4200], batch[2, :5000] = wavs
    out = np.asarray(hubert(batch, [6000, 4200, 5000]))
    assert out.shape == (3, 32, 18)
    assert np.all(out[1, :, hubert.frames(4200):] == 0)
    np.testing.assert_allclose(out[1, :, : hubert.frames(4200)], np.asarray(got[1]), atol=1e-5)


def test_bucketed_lengths_do_not_recompile(tiny):
    _, _, hubert = tiny
    hubert(speech_like(5000, 4))
    n = hubert.compilations
    hubert(speech_like(5500, 5))  # same 0.4 s bucket, batch 1
    hubert(speech_like(6200, 6))
    assert hubert.compilations == n


def test_frame_count_is_50_hz():
    cfg = hubert_lib.hubert_config()
    assert hubert_lib.frame_lengths(cfg, 160000) == 499  # 10 s
    assert hubert_lib.frame_lengths(cfg, 48000 + 9600) == 179  # a 3 s reference with its padding
    assert hubert_lib.frame_lengths(cfg, 400) == 1


def test_bin_folder_with_old_weight_norm_names(tiny, tmp_path):
    import jax

    model, folder, hubert = tiny
    state = dict(model.state_dict())
    pc = "encoder.pos_conv_embed.conv."
    state[pc + "weight_g"] = state.pop(pc + "parametrizations.weight.original0")
    state[pc + "weight_v"] = state.pop(pc + "parametrizations.weight.original1")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    torch.save(state, tmp_path / "pytorch_model.bin")
    cfg = hubert_lib.hubert_config_from_hf(hf.read_config(tmp_path))
    got = hf.hubert_params(hf.read_state_dict(tmp_path), cfg)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, hubert.params)
    # the folded kernel is the weight torch uses
    w = model.encoder.pos_conv_embed.conv.weight.detach().numpy()
    np.testing.assert_allclose(got["pos_conv"]["kernel"], w.transpose(2, 1, 0), rtol=1e-5, atol=1e-6)


def test_layer_norm_variant_matches_torch(tmp_path):
    """feat_extract_norm="layer" with pre-LN layers (the HuBERT-large recipe)."""
    import jax

    torch.manual_seed(3)
    cfg_t = transformers.HubertConfig(**{**TINY, "num_hidden_layers": 1}, feat_extract_norm="layer",
                                      do_stable_layer_norm=True, conv_bias=True)
    model = perturb(transformers.HubertModel(cfg_t), seed=3)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = hubert_lib.hubert_config_from_hf(cfg_t.to_dict())
    params = hf.hubert_params(state, cfg)
    wav = speech_like(4000, 7)
    got, _ = jax.jit(hubert_lib.Hubert(cfg).apply)({"params": params}, wav[None])
    want = torch_last(model, wav)
    np.testing.assert_allclose(np.asarray(got)[0].T, want, atol=1e-5 * np.abs(want).max(), rtol=1e-4)


def test_errors(tiny, tmp_path):
    _, folder, hubert = tiny
    with pytest.raises(ValueError, match="at least 400 samples"):
        hubert(np.zeros(300, np.float32))
    with pytest.raises(ValueError, match="lengths"):
        hubert(np.zeros((2, 1000), np.float32), [1000, 1200])
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="expected 'hubert'"):
        gsv_jax.load_hubert(tmp_path)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        gsv_jax.load_hubert(tmp_path)
    # a BERT state dict under a HuBERT config: missing weights are named
    with pytest.raises(KeyError, match="feature_extractor.conv_layers.0.conv.weight"):
        hf.hubert_params({"embeddings.word_embeddings.weight": np.zeros((2, 2))}, hubert.cfg)


@pytest.mark.slow
def test_full_size_random_weights():
    """chinese-hubert-base geometry (7 convs x 512, 12 x 768), random weights, 1 s of audio."""
    import jax

    torch.manual_seed(4)
    model = transformers.HubertModel(transformers.HubertConfig()).eval()  # HuBERT-base = chinese-hubert-base
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    wav = speech_like(16000, 8, scale=1145.14 * 0.5)
    want = torch_last(model, wav)
    cfg = hubert_lib.hubert_config()
    params = hf.hubert_params({k: v.numpy() for k, v in model.state_dict().items()}, cfg)
    got, _ = jax.jit(hubert_lib.Hubert(cfg).apply)({"params": params}, wav[None])
    got = np.asarray(got)[0].T
    assert got.shape == want.shape == (768, 49)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, err
