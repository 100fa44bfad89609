"""Time the ORIGINAL GPT-SoVITS v3/v4 synthesis (PyTorch) on this machine, on the work
``bench/v3v4_decode.py`` times: ``SynthesizerTrnV3.decode_encp`` for the prompt and the target,
``CFM.inference`` per chunk as ``TTS.using_vocoder_synthesis`` loops, one vocoder call. Official
sizes, random weights, fp32, torch's default threads; from a GPT-SoVITS checkout you provide
(nothing of it is copied into this project). Prints one JSON object.

    python bench/original_v3v4.py --repo /path/to/GPT-SoVITS --version v4 [--steps 8] [--seconds 8]

``x_transformers`` (only its ``RotaryEmbedding`` / ``apply_rotary_pos_emb`` are used by the DiT) is
replaced by an equivalent stand-in when it is not installed; ``torchmetrics`` by an empty one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types


def _rotary_stand_in():
    import torch

    class RotaryEmbedding(torch.nn.Module):
        def __init__(self, dim, base=10000):
            super().__init__()
            self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

        def forward_from_seq_len(self, seq_len):
            t = torch.arange(seq_len, device=self.inv_freq.device).type_as(self.inv_freq)
            freqs = torch.einsum("i,j->ij", t, self.inv_freq)
            return torch.stack((freqs, freqs), -1).flatten(-2)[None], 1.0

    def rotate_half(x):
        x = x.unflatten(-1, (-1, 2))
        return torch.stack((-x[..., 1], x[..., 0]), -1).flatten(-2)

    def apply_rotary_pos_emb(t, freqs, scale=1):
        r = freqs.shape[-1]
        t, rest = t[..., :r], t[..., r:]
        return torch.cat((t * freqs.cos() * scale + rotate_half(t) * freqs.sin() * scale, rest), -1)

    mod = types.ModuleType("x_transformers.x_transformers")
    mod.RotaryEmbedding, mod.apply_rotary_pos_emb = RotaryEmbedding, apply_rotary_pos_emb
    pkg = types.ModuleType("x_transformers")
    pkg.x_transformers = mod
    return {"x_transformers": pkg, "x_transformers.x_transformers": mod}


def _prepare(repo: str):
    root = os.path.abspath(repo)
    src = os.path.join(root, "GPT_SoVITS")
    if not os.path.isfile(os.path.join(src, "module", "models.py")):
        raise SystemExit(f"{repo}: not a GPT-SoVITS checkout (GPT_SoVITS/module/models.py not found)")
    sys.path[:0] = [src, root]
    try:
        import x_transformers  # noqa: F401
    except ImportError:
        sys.modules.update(_rotary_stand_in())
    tm, tmc = types.ModuleType("torchmetrics"), types.ModuleType("torchmetrics.classification")
    tmc.MulticlassAccuracy = object
    for name, mod in (("torchmetrics", tm), ("torchmetrics.classification", tmc)):
        sys.modules.setdefault(name, mod)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--version", choices=["v3", "v4"], default="v4")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--phones", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    _prepare(args.repo)
    import torch
    from module.models import Generator, SynthesizerTrnV3

    torch.manual_seed(0)
    v = args.version
    steps = args.steps or (32 if v == "v3" else 8)
    hp = dict(inter_channels=192, hidden_channels=192, filter_channels=768, n_heads=2, n_layers=6, kernel_size=3,
              p_dropout=0.1, resblock="1", resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
              upsample_rates=[10, 8, 2, 2, 2], upsample_initial_channel=512, upsample_kernel_sizes=[16, 16, 8, 2, 2],
              gin_channels=512, semantic_frame_rate="25hz", freeze_quantizer=True)
    net = SynthesizerTrnV3(1025, 32, n_speakers=0, version=v, **hp).eval()
    if v == "v4":
        voc = Generator(initial_channel=100, resblock="1", resblock_kernel_sizes=[3, 7, 11],
                        resblock_dilation_sizes=[[1, 3, 5]] * 3, upsample_rates=[10, 6, 2, 2, 2],
                        upsample_initial_channel=512, upsample_kernel_sizes=[20, 12, 4, 4, 4], gin_channels=0,
                        is_bias=True)
        voc.remove_weight_norm()
        T_ref, T_chunk = 500, 1000
    else:
        from BigVGAN.bigvgan import BigVGAN
        from BigVGAN.env import AttrDict

        h = AttrDict(resblock="1", upsample_rates=[4, 4, 2, 2, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4, 4, 4],
                     upsample_initial_channel=1536, resblock_kernel_sizes=[3, 7, 11],
                     resblock_dilation_sizes=[[1, 3, 5]] * 3, use_tanh_at_final=False, use_bias_at_final=False,
                     activation="snakebeta", snake_logscale=True, num_mels=100, sampling_rate=24000)
        voc = BigVGAN(h)
        voc.remove_weight_norm()
        T_ref, T_chunk = 468, 934
    voc = voc.eval()
    sr = 24000 if v == "v3" else 48000
    codes = torch.randint(0, 1024, (1, 1, int(args.seconds * 25)))
    phones = torch.randint(0, 732, (1, args.phones))
    ref_codes, ref_phones = torch.randint(0, 1024, (1, 1, int(3.3 * 25))), torch.randint(0, 732, (1, 30))
    refer = torch.rand(1, 1025, 150)
    mel_fps = 24000 / 256 if v == "v3" else 100
    mel2_full = torch.randn(1, 100, int(3 * mel_fps)) * 0.3

    def run():
        with torch.inference_mode():
            fea_ref, ge = net.decode_encp(ref_codes, ref_phones, refer)
            t_min = min(mel2_full.shape[2], fea_ref.shape[2])
            mel2, fea_ref = mel2_full[:, :, :t_min], fea_ref[:, :, :t_min]
            if t_min > T_ref:
                mel2, fea_ref, t_min = mel2[:, :, -T_ref:], fea_ref[:, :, -T_ref:], T_ref
            chunk_len = T_chunk - t_min
            fea_todo, ge = net.decode_encp(codes, phones, refer, ge, 1)
            outs, idx = [], 0
            while True:
                chunk = fea_todo[:, :, idx: idx + chunk_len]
                if chunk.shape[-1] == 0:
                    break
                idx += chunk_len
                fea = torch.cat([fea_ref, chunk], 2).transpose(2, 1)
                res = net.cfm.inference(fea, torch.LongTensor([fea.size(1)]), mel2, steps, inference_cfg_rate=0)
                res = res[:, :, mel2.shape[2]:]
                mel2, fea_ref = res[:, :, -t_min:], chunk[:, :, -t_min:]
                outs.append(res)
            mel = (torch.cat(outs, 2) + 1) / 2 * 14 - 12
            t1 = time.perf_counter()
            wav = voc(mel)
            return wav, time.perf_counter() - t1

    run()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        wav, voc_s = run()
        times.append((time.perf_counter() - t0, voc_s))
    total, voc_s = min(times)
    audio_s = wav.shape[-1] / sr
    print(json.dumps({"original": True, "version": v, "sample_steps": steps, "audio_seconds": round(audio_s, 2),
                      "steady_s": round(total, 2), "vocoder_s": round(voc_s, 2),
                      "cfm_and_encoder_s": round(total - voc_s, 2), "rtf": round(total / audio_s, 3),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
