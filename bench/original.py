"""Time the ORIGINAL GPT-SoVITS (PyTorch) on this machine, on the work our benches time.

The issues name figures for the original measured "on a 2-core CPU"; this script measures it
here, from a GPT-SoVITS checkout you provide (nothing of it is copied into this project), with the
installed torch (the test extra: ``pip install torch==2.13.0 einops``). Random weights, fp32,
torch's default threads. Prints one JSON object.

    python bench/original.py --repo /path/to/GPT-SoVITS [--only s1,s2_decode,s2_train] [--repeats 3]

* ``s1``: ``Text2SemanticDecoder.infer_panel`` (v2 size: 24 layers, width 512), 100 phonemes +
  150 prompt tokens, 200 new tokens, top_k 15, repetition penalty 1.35 (EOS made impossible by
  zeroing its output row, so all 200 are made) -- as ``bench/s1_decode.py``.
* ``s1_train``: ``forward_old`` + backward + ScaledAdam (as its Lightning module), batch 8 x
  (100 phonemes, 300 tokens) -- as ``bench/s1_train.py``.
* ``s2_decode``: ``SynthesizerTrn.decode`` (v2), 200 codes -> 8 s, 100 phonemes, 3 s reference --
  as ``bench/s2_decode.py``.
* ``s2_train``: the body of the original ``s2_train.py`` loop (generator forward, D step,
  G step with AdamW and the text-low-lr groups), batch 4, 200 frames, segment 20480; and the
  generator forward+backward alone -- as ``bench/s2_train.py``.
* ``sv``: the v2Pro/v2ProPlus speaker embedding, ``SV.compute_embedding3`` of ``GPT_SoVITS/sv.py``
  (``eres2net/kaldi.py`` fbank + ``ERes2NetV2(baseWidth=24, scale=4, expansion=4).forward3``, random
  weights), 5 s at 16 kHz -- as ``bench/features.py --only sv`` (which runs it side by side with ours).

Modules the original imports but these paths never use (``f5_tts`` for v3/v4, ``torchmetrics``
for training accuracy) are replaced by empty stand-ins.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import types


def _prepare(repo: str):
    src = os.path.join(os.path.abspath(repo), "GPT_SoVITS")
    if not os.path.isfile(os.path.join(src, "module", "models.py")):
        raise SystemExit(f"{repo}: not a GPT-SoVITS checkout (GPT_SoVITS/module/models.py not found)")
    sys.path.insert(0, src)
    os.environ["GSV_ORIGINAL_SRC"] = src  # for sv (its eres2net/ folder goes on sys.path, as sv.py does)
    f5, f5m = types.ModuleType("f5_tts"), types.ModuleType("f5_tts.model")
    f5m.DiT = object
    tm, tmc = types.ModuleType("torchmetrics"), types.ModuleType("torchmetrics.classification")

    class MulticlassAccuracy:  # only built by the training forward of S1, never called here
        def __init__(self, *a, **k):
            pass

    tmc.MulticlassAccuracy = MulticlassAccuracy
    for name, mod in (("f5_tts", f5), ("f5_tts.model", f5m), ("torchmetrics", tm),
                      ("torchmetrics.classification", tmc)):
        sys.modules.setdefault(name, mod)


def _timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"seconds": round(statistics.median(times), 3), "seconds_all": [round(t, 3) for t in times]}


V2 = dict(inter_channels=192, hidden_channels=192, filter_channels=768, n_heads=2, n_layers=6, kernel_size=3,
          p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
          upsample_rates=[10, 8, 2, 2, 2], upsample_initial_channel=512, upsample_kernel_sizes=[16, 16, 8, 2, 2],
          gin_channels=512, semantic_frame_rate="25hz", freeze_quantizer=True)


def bench_s1(repeats):
    import torch
    from AR.models.t2s_model import Text2SemanticDecoder

    torch.manual_seed(0)
    cfg = {"model": dict(vocab_size=1025, phoneme_vocab_size=732, embedding_dim=512, hidden_dim=512, head=16,
                         linear_units=2048, n_layer=24, dropout=0, EOS=1024)}
    m = Text2SemanticDecoder(cfg, top_k=15).eval()
    with torch.no_grad():
        m.ar_predict_layer.weight[1024].zero_()
        if m.ar_predict_layer.bias is not None:
            m.ar_predict_layer.bias[1024] = -1e9
    x, x_lens = torch.randint(0, 732, (1, 100)), torch.tensor([100])
    prompt, bert = torch.randint(0, 1024, (1, 150)), torch.randn(1, 1024, 100)
    made = []

    def run():
        with torch.no_grad():
            y, _ = m.infer_panel(x, x_lens, prompt, bert, top_k=15, top_p=1.0, early_stop_num=200, temperature=1.0,
                                 repetition_penalty=1.35)
        made.append(int(y.shape[1]) - 150)

    res = _timed(run, repeats)
    res["new_tokens"] = made[-1]
    res["tokens_per_second"] = round(made[-1] / res["seconds"], 2)  # prefill included, as the figure
    return res


def bench_s1_train(repeats):
    """The original's S1 training step (``forward_old`` + backward + ScaledAdam as its Lightning
    module configures it), v2 size, batch 8 x (100 phonemes, 300 tokens), fp32 -- as ``bench/s1_train.py``."""
    import torch
    from AR.models.t2s_model import Text2SemanticDecoder
    from AR.modules.optim import ScaledAdam

    torch.manual_seed(0)
    cfg = {"model": dict(vocab_size=1025, phoneme_vocab_size=732, embedding_dim=512, hidden_dim=512, head=16,
                         linear_units=2048, n_layer=24, dropout=0, EOS=1024)}
    m = Text2SemanticDecoder(cfg, top_k=3).train()
    opt = ScaledAdam(m.parameters(), lr=0.01, betas=(0.9, 0.95), clipping_scale=2.0,
                     parameters_names=[[n for n, _ in m.named_parameters()]], show_dominant_parameters=False,
                     clipping_update_period=1000)
    b, tx, ty = 8, 100, 300
    x, x_lens = torch.randint(0, 732, (b, tx)), torch.full((b,), tx)
    y, y_lens = torch.randint(0, 1024, (b, ty)), torch.full((b,), ty)
    bert = torch.randn(b, 1024, tx) * 0.1

    def step():
        opt.zero_grad()
        loss, _ = m.forward_old(x, x_lens, y, y_lens, bert)
        loss.backward()
        opt.step()

    return _timed(step, repeats)


def bench_s2_decode(repeats):
    import torch
    from module.models import SynthesizerTrn

    torch.manual_seed(0)
    net = SynthesizerTrn(1025, 32, n_speakers=0, version="v2", **V2).eval()
    codes, text = torch.randint(0, 1024, (1, 1, 200)), torch.randint(0, 732, (1, 100))
    refer = torch.rand(1, 1025, 150)

    def run():
        with torch.no_grad():
            return net.decode(codes, text, refer)

    audio = run().shape[-1] / 32000
    res = _timed(run, repeats)
    res.update(audio_seconds=audio, rtf=round(res["seconds"] / audio, 4))
    return res


def bench_s2_train(repeats):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from module import commons
    from module.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
    from module.mel_processing import mel_spectrogram_torch, spec_to_mel_torch, spectrogram_torch
    from module.models import MultiPeriodDiscriminator, SynthesizerTrn

    torch.manual_seed(0)
    net_g = SynthesizerTrn(1025, 32, n_speakers=300, version="v2", **V2).train()
    for mod in net_g.modules():  # a loaded pretrained codebook: no k-means initialisation
        if hasattr(mod, "inited"):
            mod.inited.fill_(1)
    net_d = MultiPeriodDiscriminator(False, version="v2").train()
    low = [net_g.enc_p.text_embedding, net_g.enc_p.encoder_text, net_g.enc_p.mrte]
    low_ids = {id(p) for m in low for p in m.parameters()}
    base = [p for p in net_g.parameters() if id(p) not in low_ids and p.requires_grad]
    lr = 1e-4
    optim_g = torch.optim.AdamW([{"params": base, "lr": lr}] + [{"params": m.parameters(), "lr": lr * 0.4} for m in low],
                                lr, betas=(0.8, 0.99), eps=1e-9)
    optim_d = torch.optim.AdamW(net_d.parameters(), lr, betas=(0.8, 0.99), eps=1e-9)
    B, T, hop, seg = 4, 200, 640, 20480
    rs = np.random.RandomState(0)
    ssl = torch.from_numpy(rs.randn(B, 768, T).astype(np.float32))
    y = torch.from_numpy((0.1 * rs.randn(B, 1, T * hop)).astype(np.float32))
    spec = spectrogram_torch(y[:, 0], 2048, 32000, hop, 2048, center=False)
    spec_lengths = torch.from_numpy(np.linspace(T, int(T * 0.8), B).astype(np.int64))
    text, text_lengths = torch.from_numpy(rs.randint(1, 732, (B, 64))), torch.full((B,), 60)

    def generator_forward():
        y_hat, kl_ssl, ids_slice, _, z_mask, (_, z_p, m_p, logs_p, _, logs_q), _ = net_g(
            ssl, spec, spec_lengths, text, text_lengths)
        y_mel = commons.slice_segments(spec_to_mel_torch(spec, 2048, 128, 32000, 0.0, None), ids_slice, seg // hop)
        y_hat_mel = mel_spectrogram_torch(y_hat.squeeze(1), 2048, 128, 32000, hop, 2048, 0.0, None)
        ys = commons.slice_segments(y, ids_slice * hop, seg)
        return y_hat, ys, kl_ssl + kl_loss(z_p, logs_q, m_p, logs_p, z_mask) + F.l1_loss(y_mel, y_hat_mel) * 45

    def generator_loss_all(y_hat, ys, rest):
        _, y_d_hat_g, fmap_r, fmap_g = net_d(ys, y_hat)
        return generator_loss(y_d_hat_g)[0] + feature_loss(fmap_r, fmap_g) + rest

    def generator_step():
        optim_g.zero_grad()
        generator_loss_all(*generator_forward()).backward()

    def full_step():
        y_hat, ys, rest = generator_forward()
        y_d_hat_r, y_d_hat_g, _, _ = net_d(ys, y_hat.detach())
        optim_d.zero_grad()
        discriminator_loss(y_d_hat_r, y_d_hat_g)[0].backward()
        optim_d.step()
        optim_g.zero_grad()
        generator_loss_all(y_hat, ys, rest).backward()
        optim_g.step()

    return {"generator_step": _timed(generator_step, repeats), "full_step": _timed(full_step, repeats)}


def bench_sv(repeats, seconds=5.0):
    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(os.environ["GSV_ORIGINAL_SRC"], "eres2net"))  # as sv.py extends sys.path
    import kaldi as Kaldi
    from ERes2NetV2 import ERes2NetV2

    torch.manual_seed(0)
    model = ERes2NetV2(baseWidth=24, scale=4, expansion=4).eval()
    wav = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32))[None]

    def fbank():
        return torch.stack([Kaldi.fbank(w.unsqueeze(0), num_mel_bins=80, sample_frequency=16000, dither=0) for w in wav])

    def run():  # compute_embedding3
        with torch.no_grad():
            return model.forward3(fbank())

    feat = fbank()
    res = _timed(run, repeats)
    with torch.no_grad():
        res.update(audio_seconds=seconds, frames=int(feat.shape[1]), embedding_dim=int(run().shape[-1]),
                   fbank_only=_timed(fbank, repeats), network_only=_timed(lambda: model.forward3(feat), repeats))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="a GPT-SoVITS checkout (the folder holding GPT_SoVITS/)")
    ap.add_argument("--only", default="s1,s2_decode,s2_train")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one-line", action="store_true", help="print the JSON on one line (for bench/compare.py)")
    args = ap.parse_args()
    _prepare(args.repo)
    import torch

    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "load_avg_1min_before": round(os.getloadavg()[0], 2)}
    for name in args.only.split(","):
        fn = {"s1": bench_s1, "s1_train": bench_s1_train, "s2_decode": bench_s2_decode,
              "s2_train": bench_s2_train, "sv": bench_sv}[name.strip()]
        with contextlib.redirect_stdout(sys.stderr):  # the original prints progress to stdout
            out[name.strip()] = fn(args.repeats)
        print(json.dumps({name: out[name.strip()]}), file=sys.stderr, flush=True)
    out["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out) if args.one_line else json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
