"""Pretraining from scratch, end to end on a small synthetic corpus (docs/pretraining.md).

    python bench/pretrain_small.py                      # the documented run (26 min on 2 busy CPU cores)
    python bench/pretrain_small.py --s2-steps 3 --s1-steps 3 --clips 24 --heldout 4 --eval-every 1  # smoke (~6 min)

1. **corpus**, made on the fly: clips of harmonic tones, one note per phoneme. Each phoneme id has
   its own pitch, duration (3 or 4 semantic frames) and harmonic timbre; the pitch glides from one
   note to the next, so the contour is a function of the phoneme sequence. The "HuBERT" features
   are a fixed random projection of the clip's log-mel spectrogram (50 Hz, 768 channels), so they
   are a function of the audio, as HuBERT's are. Some clips are held out (unseen phoneme sequences).
2. **S2 from scratch with the codebook learned** (``s2_tiny`` architecture, ``freeze_quantizer`` false)
   through ``gsv_jax.train.loop.run`` and ``S2Task``; the codebook is k-means-initialised on the
   first batch, then EMA-updated with dead-code expiry. Codebook usage is measured on every clip's
   frames from the checkpoints the loop writes.
3. **token extraction with the trained S2** exactly as ``data/prepare.py --stage semantic``: the
   exported weights file, ``gsv_jax.load_s2``, ``extract_latent``.
4. **S1 from scratch** (``s1_tiny``, AdamW warm-up + cosine) on those tokens through the same loop
   and ``S1Task``; teacher-forced top-1 accuracy on the held-out clips against baselines: the most
   frequent token (``s1_chance_top1``) and "repeat the previous token" (tokens repeat within a
   note), plus the top-1 on the positions where the token changes.

Writes ``<out>/pretrain_small.png`` (matplotlib when installed; otherwise a small built-in PNG
writer draws the same four panels without labels) and ``<out>/curves.json``; the last stdout line
is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import zlib

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

SR, HOP, SSL_DIM = 32000, 640, 768
N_PHONES = 10
PHONE_IDS = np.arange(100, 100 + N_PHONES, dtype=np.int32)  # any ids below the v2 table's 732


# ---------------------------------------------------------------------------------------------
# corpus
def phone_table(seed: int) -> dict:
    rs = np.random.RandomState(seed)
    return {"f0": 110.0 * 2 ** (rs.permutation(N_PHONES) * 2 / 12.0),  # whole tones from 110 Hz
            "frames25": rs.choice([3, 4], N_PHONES),  # duration in 25 Hz semantic frames
            "timbre": rs.uniform(0.2, 1.0, (N_PHONES, 8)) ** 2}  # harmonic amplitudes


def synth_clip(phones: np.ndarray, table: dict, rs) -> np.ndarray:
    """Phoneme indices -> float32 waveform at 32 kHz (a whole number of 640-sample frames)."""
    n50 = [2 * int(table["frames25"][p]) for p in phones]
    n = sum(n50) * HOP
    f0_target = np.concatenate([np.full(k * HOP, table["f0"][p]) for p, k in zip(phones, n50)])
    amps = np.concatenate([np.repeat(table["timbre"][p][None], k * HOP, 0) for p, k in zip(phones, n50)])
    # glide: one-pole smoothing of the note targets (~15 ms), so each transition depends on both notes
    a = np.exp(-1.0 / (0.015 * SR))
    f0 = np.empty(n)
    acc = f0_target[0]
    for i in range(0, n, 64):  # smoothing per 64-sample block is plenty at these rates
        acc = a ** 64 * acc + (1 - a ** 64) * f0_target[i]
        f0[i:i + 64] = acc
    phase = 2 * np.pi * np.cumsum(f0) / SR + rs.uniform(0, 2 * np.pi)
    h = np.arange(1, 9)[None, :]
    smooth = np.ones(256) / 256
    amps = np.stack([np.convolve(amps[:, j], smooth, mode="same") for j in range(8)], 1)
    x = np.sum(amps * np.sin(phase[:, None] * h), axis=1)
    x += 0.01 * rs.randn(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def log_mel(x: np.ndarray, n_mels: int = 64) -> np.ndarray:
    """[frames, n_mels] log-mel at 50 Hz (one frame per 640 samples), numpy only."""
    n_fft = 2048
    frames = len(x) // HOP
    pad = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    win = np.hanning(n_fft)
    idx = np.arange(frames)[:, None] * HOP + np.arange(n_fft)[None, :]
    spec = np.abs(np.fft.rfft(pad[idx] * win, axis=1)) ** 2
    mel_f = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), n_mels + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(n_fft, 1 / SR)
    fb = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        lo, c, hi = mel_f[m], mel_f[m + 1], mel_f[m + 2]
        fb[m] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return np.log(spec @ fb.T + 1e-6).astype(np.float32)


def make_corpus(n_clips: int, n_heldout: int, seed: int = 0) -> tuple[list, list]:
    """(train items, held-out items): ``name``, ``phone_ids``, ``phones`` (indices), ``wav32k`` int16,
    ``ssl`` float16 [768, T50]."""
    rs = np.random.RandomState(seed)
    table = phone_table(seed)
    proj = (rs.randn(64, SSL_DIM) / 8.0).astype(np.float32)  # the fixed "HuBERT": log-mel -> 768
    seen, items = set(), []
    while len(items) < n_clips:
        phones = rs.randint(0, N_PHONES, rs.randint(6, 10))
        if tuple(phones) in seen:
            continue
        seen.add(tuple(phones))
        wav = synth_clip(phones, table, rs)
        mel = log_mel(wav)
        mel = (mel - mel.mean()) / (mel.std() + 1e-6)
        ssl = (mel @ proj + 0.05 * rs.randn(len(mel), SSL_DIM)).T
        items.append({"name": f"c{len(items):04d}", "phone_ids": PHONE_IDS[phones], "phones": phones,
                      "wav32k": np.round(wav * 32767).astype(np.int16), "ssl": ssl.astype(np.float16)})
    return items[n_heldout:], items[:n_heldout]


# ---------------------------------------------------------------------------------------------
# S2
def s2_config(args, workdir):
    from gsv_jax import configs
    from gsv_jax.train.s2_task import training_config

    config = configs.load("s2_tiny")
    config.model.freeze_quantizer = False
    config.model.segment_size = 16
    training_config(config)
    config.optim.learning_rate = args.s2_lr
    config.train.update(dict(batch_size=args.s2_batch, num_steps=args.s2_steps, log_every=10,
                             save_every=args.eval_every, keep=1000, async_checkpoint=False, progress_bar=False,
                             tensorboard=False, dropout=False, disc_width_div=4, seed=args.seed))
    config.mesh.update(dict(data=1, fsdp=1, tensor=1))
    config.data.boundaries = [32, 72]  # every clip is 36..72 frames: one padded shape, one compile
    return config


def s2_codes_fn(task):
    import jax

    from gsv_jax.models.s2.synthesizer import SynthesizerTrn

    return jax.jit(lambda g, ssl: task.model.apply({"params": g}, ssl, method=SynthesizerTrn.extract_latent))


def corpus_ssl(items) -> tuple[np.ndarray, np.ndarray]:
    """All clips' features padded to one shape [N, 72, 768] and their 25 Hz code counts."""
    T = 72
    x = np.zeros((len(items), T, SSL_DIM), np.float32)
    n = np.zeros(len(items), np.int32)
    for i, it in enumerate(items):
        s = np.asarray(it["ssl"], np.float32).T
        x[i, : len(s)] = s
        n[i] = len(s) // 2
    return x, n


def usage(codes: np.ndarray, bins: int) -> dict:
    counts = np.bincount(codes, minlength=bins).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {"perplexity": float(np.exp(-(p * np.log(p)).sum())), "used_fraction": float((counts > 0).mean())}


def train_s2(args, train_items, all_items, workdir: pathlib.Path):
    import jax

    from gsv_jax.data.s2_pipeline import InMemoryS2Reader, S2BatchIterator, S2DataConfig
    from gsv_jax.train import checkpoint as ckpt_lib
    from gsv_jax.train.loop import run
    from gsv_jax.train.mesh import mesh_from_config
    from gsv_jax.train.s2_task import S2Task, S2TrainConfig
    from gsv_jax.train.state import state_shardings, with_shardings

    config = s2_config(args, workdir)
    task = S2Task.from_config(config)
    mesh = mesh_from_config(config)
    dcfg = S2DataConfig.from_config(config.data, batch_size=config.train.batch_size, seed=args.seed)
    data = S2BatchIterator(InMemoryS2Reader(train_items), dcfg)
    cfg = S2TrainConfig.from_config(config.train)
    history = []
    t0 = time.perf_counter()

    def on_log(s, m):
        history.append({"step": s, **m})
        if s % 25 == 0 or s == 1:
            print(f"s2 step {s}: loss_mel={m['loss_mel']:.2f} batch perplexity={m['codebook_perplexity']:.1f}",
                  flush=True)

    # step 1 alone first, so that its checkpoint holds the codebook right after the k-means
    # initialisation (the usage "start"); the second call resumes from it like any restarted run
    run(task, task.tx, lambda s: 0.0, data, str(workdir), mesh, cfg, on_log=on_log, stop_after=1)
    res = run(task, task.tx, lambda s: 0.0, data, str(workdir), mesh, cfg, on_log=on_log)
    s2_seconds = time.perf_counter() - t0
    # codebook usage on every clip's frames, at each checkpoint the loop wrote (incl. the final one)
    ckpt = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False, clean_unfinished=False)
    abstract, shardings = state_shardings(task, task.tx, mesh, jax.random.split(jax.random.PRNGKey(cfg.seed))[0])
    codes_of = s2_codes_fn(task)
    ssl, n = corpus_ssl(all_items)
    mask = np.arange(ssl.shape[1] // 2)[None, :] < n[:, None]
    curve = []
    for step in sorted(ckpt.all_steps()):
        state, _ = ckpt.restore(with_shardings(abstract, shardings), step)
        codes = np.asarray(codes_of(state.params["g"], ssl))[mask]
        curve.append({"step": int(step), **usage(codes, task.config.codebook_bins)})
    ckpt.close()
    return task, res, history, curve, s2_seconds


# ---------------------------------------------------------------------------------------------
# S1
def s1_config(args):
    from gsv_jax import configs

    config = configs.load("s1_tiny")
    config.optim.name = "adamw"
    config.optim.schedule = "warmup_cosine"
    config.optim.lr = args.s1_lr
    config.optim.init_lr = args.s1_lr / 100
    config.optim.end_lr = args.s1_lr / 10
    config.optim.warmup_steps = max(1, args.s1_steps // 10)
    config.optim.total_steps = args.s1_steps
    config.optim.weight_decay = 0.01
    config.train.update(dict(batch_size=args.s1_batch, accum_steps=1, num_steps=args.s1_steps, log_every=25,
                             save_every=10**9, async_checkpoint=False, progress_bar=False, tensorboard=False,
                             seed=args.seed))
    config.mesh.update(dict(data=1, fsdp=1, tensor=1))
    config.data.update(dict(x_buckets=[16], y_buckets=[40], num_threads=1))
    return config


def s1_items(items, tokens):
    return [{"name": it["name"], "phone_ids": it["phone_ids"], "semantic": tok,
             "bert": np.zeros((1024, len(it["phone_ids"])), np.float16)} for it, tok in zip(items, tokens)]


def s1_eval(task, params, items, tokens) -> dict:
    """Teacher-forced top-1 on ``items``: all token positions (EOS excluded), positions where the
    token changes, and the baselines (most frequent token, repeat the previous token)."""
    import jax
    import jax.numpy as jnp

    from gsv_jax.models.s1 import S1Model

    Tx, Ty = 16, 40
    B = len(items)
    x = np.zeros((B, Tx), np.int32)
    y = np.full((B, Ty), 1024, np.int32)
    xl, yl = np.zeros(B, np.int32), np.zeros(B, np.int32)
    for i, (it, tok) in enumerate(zip(items, tokens)):
        x[i, : len(it["phone_ids"])], xl[i] = it["phone_ids"], len(it["phone_ids"])
        y[i, : len(tok)], yl[i] = tok, len(tok)

    @jax.jit
    def predict(p):
        logits, targets = task.model.apply({"params": p}, x, xl, y, yl, jnp.zeros((B, 1024, Tx), jnp.float32),
                                           deterministic=True, method=S1Model.forward_old)
        return jnp.argmax(logits, -1), targets

    pred, targets = (np.asarray(a) for a in predict(params))
    pos = np.arange(pred.shape[1])[None, :] < yl[:, None]
    hit = (pred == targets) & pos
    prev = np.concatenate([np.full((B, 1), -1), targets[:, :-1]], 1)
    change = pos & (targets != prev)
    train_tokens = targets[pos]
    majority = np.bincount(train_tokens).argmax()
    return {"top1": float(hit.sum() / pos.sum()),
            "top1_at_changes": float((hit & change).sum() / max(change.sum(), 1)),
            "majority_top1": float(((targets == majority) & pos).sum() / pos.sum()),
            "repeat_prev_top1": float(((targets == prev) & pos).sum() / pos.sum())}


def train_s1(args, train_items, train_tokens, held_items, held_tokens, workdir: pathlib.Path):
    from gsv_jax.data.pipeline import InMemoryReader, S1BatchIterator, S1DataConfig
    from gsv_jax.train.loop import run
    from gsv_jax.train.mesh import mesh_from_config
    from gsv_jax.train.optim import make_optimizer
    from gsv_jax.train.s1_task import S1Task, S1TrainConfig

    config = s1_config(args)
    task = S1Task.from_config(config)
    tx, schedule = make_optimizer(config.optim)
    dcfg = S1DataConfig.from_config(config.data, batch_size=config.train.batch_size, seed=args.seed)
    data = S1BatchIterator(InMemoryReader(s1_items(train_items, train_tokens)), dcfg)
    t0 = time.perf_counter()
    res = run(task, tx, schedule, data, str(workdir), mesh_from_config(config), S1TrainConfig.from_config(config.train))
    s1_seconds = time.perf_counter() - t0
    held = s1_eval(task, res.state.params, held_items, held_tokens)
    seen = s1_eval(task, res.state.params, train_items[: len(held_items)], train_tokens[: len(held_items)])
    return res, held, seen, s1_seconds


# ---------------------------------------------------------------------------------------------
# plot
def write_png(path: pathlib.Path, panels: list[tuple[str, list[tuple[list, list]]]]):
    """Four panels of curves: matplotlib when installed, else a minimal own PNG (lines only)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _write_png_plain(path, panels), "built-in writer (matplotlib not installed)"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (title, series) in zip(axes, panels):
        for xs, ys, label in series:
            ax.plot(xs, ys, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path, "matplotlib"


def _write_png_plain(path: pathlib.Path, panels):
    W, H, pad = 320, 240, 12
    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
    img = np.full((H, W * len(panels), 3), 255, np.uint8)
    for k, (_, series) in enumerate(panels):
        x0 = k * W
        img[pad:H - pad, x0 + pad] = 0
        img[H - pad, x0 + pad:x0 + W - pad] = 0
        allx = np.concatenate([np.asarray(s[0], float) for s in series])
        ally = np.concatenate([np.asarray(s[1], float) for s in series])
        lo = min(0.0, ally.min())  # y from 0: small changes look small
        hi = ally.max() if ally.max() > lo else lo + 1
        for j, (xs, ys, _) in enumerate(series):
            xs, ys = np.asarray(xs, float), np.asarray(ys, float)
            u = np.interp(np.linspace(0, 1, 4 * W), np.linspace(0, 1, len(xs)), xs)
            v = np.interp(u, xs, ys)
            px = (x0 + pad + (u - allx.min()) / max(allx.max() - allx.min(), 1e-9) * (W - 2 * pad - 2)).astype(int)
            py = (H - pad - 1 - (v - lo) / (hi - lo) * (H - 2 * pad - 2)).astype(int)
            img[py, px] = colors[j % len(colors)]
            img[np.minimum(py + 1, H - 1), px] = colors[j % len(colors)]
    raw = b"".join(b"\x00" + row.tobytes() for row in img)

    def chunk(tag, data):
        return (len(data).to_bytes(4, "big") + tag + data
                + (zlib.crc32(tag + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    hdr = img.shape[1].to_bytes(4, "big") + img.shape[0].to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", hdr) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/pretrain_small", help="output folder (its s1/, s2/ and xla_cache/ are replaced)")
    ap.add_argument("--clips", type=int, default=320, help="clips in the corpus (train + held out)")
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--s2-steps", type=int, default=300)
    ap.add_argument("--s2-batch", type=int, default=4)
    ap.add_argument("--s2-lr", type=float, default=6e-4)
    ap.add_argument("--s1-steps", type=int, default=1500)
    ap.add_argument("--s1-batch", type=int, default=16)
    ap.add_argument("--s1-lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=50, help="S2 checkpoint (= codebook-usage) period")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.heldout < 2 or args.clips - args.heldout < args.s2_batch:
        ap.error(f"--clips {args.clips} --heldout {args.heldout}: need >= 2 held-out clips and at least "
                 f"--s2-batch ({args.s2_batch}) training clips")
    if min(args.s2_steps, args.s1_steps, args.eval_every) < 1:
        ap.error("--s2-steps, --s1-steps and --eval-every must be positive")

    import shutil

    import jax

    import gsv_jax

    t_start = time.perf_counter()
    out = pathlib.Path(args.out).resolve()
    for sub in ("s1", "s2", "xla_cache"):  # a fresh run (the loop would resume from old checkpoints)
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    # the S2 step is compiled by both loop calls (step 1, then the rest): the second is a cache hit
    jax.config.update("jax_compilation_cache_dir", str(out / "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    train_items, held_items = make_corpus(args.clips, args.heldout, args.seed)
    all_items = train_items + held_items
    print(f"corpus: {len(train_items)} train + {len(held_items)} held-out clips, "
          f"{sum(len(it['wav32k']) for it in all_items) / SR:.0f} s of audio", flush=True)

    task2, res2, hist2, usage_curve, s2_seconds = train_s2(args, train_items, all_items, out / "s2")
    step2 = int(jax.device_get(res2.state.step))
    paths = task2.export_original(jax.device_get(res2.state.params), out / "s2" / "export", step2, 1)
    # tokens as data/prepare.py --stage semantic makes them: the exported file, load_s2, extract_latent
    s2 = gsv_jax.load_s2(paths["weights"])
    tokens = [np.asarray(s2.extract_latent(np.asarray(it["ssl"], np.float32)[None])).reshape(-1).astype(np.int32)
              for it in all_items]
    own = s2_codes_fn(task2)(res2.state.params["g"], corpus_ssl(all_items)[0])
    agree = np.mean(np.concatenate([np.asarray(own)[i, : len(t)] == t for i, t in enumerate(tokens)]))
    train_tokens, held_tokens = tokens[: len(train_items)], tokens[len(train_items):]
    print(f"tokens extracted from {paths['weights']} (fp16 export); equal to the training model's codes "
          f"for {100 * agree:.2f} % of frames", flush=True)

    res1, held, seen, s1_seconds = train_s1(args, train_items, train_tokens, held_items, held_tokens, out / "s1")
    hist1 = res1.history

    mel = [h["loss_mel"] for h in hist2]
    k = max(1, min(10, len(mel) // 10))
    summary = {
        "codebook_perplexity_start": usage_curve[0]["perplexity"],
        "codebook_perplexity_end": usage_curve[-1]["perplexity"],
        "codes_used_fraction_start": usage_curve[0]["used_fraction"],
        "codes_used_fraction_end": usage_curve[-1]["used_fraction"],
        "codebook_usage_steps": [c["step"] for c in usage_curve],
        "s2_mel_loss_start": float(np.mean(mel[:k])),
        "s2_mel_loss_end": float(np.mean(mel[-k:])),
        "s2_steps": step2,
        "s1_heldout_top1": held["top1"],
        "s1_chance_top1": held["majority_top1"],
        "s1_repeat_prev_top1": held["repeat_prev_top1"],
        "s1_heldout_top1_at_changes": held["top1_at_changes"],
        "s1_train_top1": seen["top1"],
        "s1_loss_start": hist1[0]["loss"] if hist1 else None,
        "s1_loss_end": hist1[-1]["loss"] if hist1 else None,
        "s1_steps": int(jax.device_get(res1.state.step)),
        "export_token_agreement": float(agree),
        "clips_train": len(train_items), "clips_heldout": len(held_items),
        "s2_seconds": s2_seconds, "s1_seconds": s1_seconds,
    }
    (out / "curves.json").write_text(json.dumps({"s2": hist2, "s2_codebook_usage": usage_curve,
                                                  "s1": hist1}, indent=0))
    us = [c["step"] for c in usage_curve]
    png, writer = write_png(out / "pretrain_small.png", [
        ("S2 codebook perplexity (all clips)", [(us, [c["perplexity"] for c in usage_curve], "perplexity")]),
        ("S2 codes used (fraction of 1024)", [(us, [c["used_fraction"] for c in usage_curve], "used")]),
        ("S2 mel loss (45 x L1)", [([h["step"] for h in hist2], mel, "loss_mel")]),
        ("S1 loss (summed CE per batch)", [([h["step"] for h in hist1], [h["loss"] for h in hist1], "loss")]),
    ])
    summary.update(plot=str(png), plot_writer=writer, wall_seconds=time.perf_counter() - t_start,
                   load_average=os.getloadavg()[0])
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
