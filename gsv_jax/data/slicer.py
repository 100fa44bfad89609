"""Silence-based audio slicer (the original ``tools/slicer2.py`` algorithm, docs/data.md "Slicer").

Long recordings are cut at quiet stretches into clips of at least ``min_length`` ms; at most
``max_sil_kept`` ms of silence is kept around a cut. Cut decisions are made on an RMS curve
(frame ``win``, hop ``hop``, zero-padded by ``win // 2`` on both sides, like librosa).

Defaults are the webui's (threshold -34 dB, min_length 4000 ms, min_interval 300 ms, hop 10 ms,
max_sil_kept 500 ms, loudness ``_max`` 0.9, ``alpha`` 0.25). Known quirks kept: a waveform with at
most ``min_length`` *samples* (the threshold is in frames) is returned whole; the reported end
offset of the last clip is ``frames * hop`` and may pass the end of the audio by < hop samples;
the loudness mix divides twice by the peak when the peak exceeds 1. One conscious fix: an
all-zero clip is dropped instead of being written as NaN.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from gsv_jax import families

SAMPLE_RATE = families.SOVITS_SAMPLE_RATE  # clips are written at S2's data rate


def frame_rms(y: np.ndarray, win: int, hop: int, block: int = 1 << 16) -> np.ndarray:
    """RMS per frame: constant zero padding of ``win // 2`` each side, frames every ``hop``.

    Computed in the input's precision as ``sqrt(mean(x**2))`` over each frame (so exact digital
    silence gives exact zeros and argmin ties break like the original), ``block`` frames at a time
    to bound memory on hour-long inputs.
    """
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float32)
    padded = np.pad(y, (win // 2, win // 2))
    n_frames = 1 + (len(padded) - win) // hop if len(padded) >= win else 0
    out = np.empty((n_frames,), padded.dtype)
    (stride,) = padded.strides
    for f0 in range(0, n_frames, block):
        n = min(block, n_frames - f0)
        # [win, n] view: column j is frame f0 + j
        frames = np.lib.stride_tricks.as_strided(padded[f0 * hop :], shape=(win, n), strides=(stride, hop * stride))
        out[f0 : f0 + n] = np.sqrt(np.mean(np.abs(frames) ** 2, axis=0))
    return out


@dataclasses.dataclass(frozen=True)
class SlicerConfig:
    threshold_db: float = -34.0
    min_length_ms: int = 4000
    min_interval_ms: int = 300
    hop_ms: int = 10
    max_sil_kept_ms: int = 500


@dataclasses.dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # float32 samples of the clip
    start: int  # sample offset in the input (at the slicer's sample rate)
    end: int  # end offset as the original reports it (frame * hop)


class Slicer:
    """``Slicer(sr, cfg).cut_points(wav) -> [(start_frame, end_frame)]``; ``slice(wav) -> [Clip]``."""

    def __init__(self, sr: int = SAMPLE_RATE, cfg: SlicerConfig = SlicerConfig()):
        if not cfg.min_length_ms >= cfg.min_interval_ms >= cfg.hop_ms:
            raise ValueError(
                f"slicer needs min_length >= min_interval >= hop_size, got {cfg.min_length_ms} >= "
                f"{cfg.min_interval_ms} >= {cfg.hop_ms} (ms); raise min_length or lower hop_size")
        if not cfg.max_sil_kept_ms >= cfg.hop_ms:
            raise ValueError(f"slicer needs max_sil_kept >= hop_size, got {cfg.max_sil_kept_ms} < {cfg.hop_ms} (ms)")
        self.sr, self.cfg = sr, cfg
        self.threshold = 10 ** (cfg.threshold_db / 20.0)
        self.hop = round(sr * cfg.hop_ms / 1000)
        interval_samples = sr * cfg.min_interval_ms / 1000
        self.win = min(round(interval_samples), 4 * self.hop)
        self.min_length = round(sr * cfg.min_length_ms / 1000 / self.hop)  # frames
        self.min_interval = round(interval_samples / self.hop)  # frames
        self.max_sil_kept = round(sr * cfg.max_sil_kept_ms / 1000 / self.hop)  # frames

    # -- decisions on the RMS curve ------------------------------------------------------------

    def silence_tags(self, rms: np.ndarray) -> list[tuple[int, int]]:
        """Frame ranges to remove, ``[(left, right)]``, in order (docs/data.md, "Slicer")."""
        keep = self.max_sil_kept
        tags: list[tuple[int, int]] = []

        def argmin(lo: int, hi: int) -> int:  # argmin over frames lo..hi inclusive
            return lo + int(np.argmin(rms[lo : hi + 1]))

        quiet = rms < self.threshold
        sil_start: int | None = None
        clip_start = 0
        for i in range(len(rms)):
            if quiet[i]:
                if sil_start is None:
                    sil_start = i
                continue
            if sil_start is None:
                continue
            leading = sil_start == 0 and i > keep
            middle = i - sil_start >= self.min_interval and i - clip_start >= self.min_length
            if not (leading or middle):
                sil_start = None
                continue
            length = i - sil_start
            if length <= keep:
                pos = argmin(sil_start, i)
                tags.append((0, pos) if sil_start == 0 else (pos, pos))
                clip_start = pos
            else:
                pos_l = argmin(sil_start, sil_start + keep)
                pos_r = argmin(i - keep, i)
                if sil_start == 0:
                    tags.append((0, pos_r))
                    clip_start = pos_r
                elif length <= 2 * keep:
                    pos = argmin(i - keep, sil_start + keep)
                    tags.append((min(pos_l, pos), max(pos_r, pos)))
                    clip_start = max(pos_r, pos)
                else:
                    tags.append((pos_l, pos_r))
                    clip_start = pos_r
            sil_start = None
        total = len(rms)
        if sil_start is not None and total - sil_start >= self.min_interval:
            pos = argmin(sil_start, min(total, sil_start + keep))
            tags.append((pos, total + 1))
        return tags

    def cut_points(self, wav: np.ndarray) -> list[tuple[int, int]] | None:
        """Clip boundaries in frames ``[(begin, end)]``; None when the input is returned whole."""
        mono = wav.mean(axis=0) if wav.ndim > 1 else wav
        if mono.shape[0] <= self.min_length:  # quirk: compares samples with a frame count
            return None
        rms = frame_rms(mono, self.win, self.hop)
        total = len(rms)
        tags = self.silence_tags(rms)
        if not tags:
            return [(0, total)]
        bounds = []
        if tags[0][0] > 0:
            bounds.append((0, tags[0][0]))
        bounds += [(tags[k][1], tags[k + 1][0]) for k in range(len(tags) - 1)]
        if tags[-1][1] < total:
            bounds.append((tags[-1][1], total))
        return bounds

    def slice(self, wav: np.ndarray) -> list[Clip]:
        """Cut ``wav`` (float, mono ``[N]`` or ``[C, N]``) into clips with sample offsets."""
        wav = np.asarray(wav, np.float32)
        bounds = self.cut_points(wav)
        n = wav.shape[-1]
        if bounds is None:
            return [Clip(wav, 0, n)]
        return [Clip(wav[..., b * self.hop : min(n, e * self.hop)], b * self.hop, e * self.hop) for b, e in bounds]


def loudness_mix(chunk: np.ndarray, max_amp: float = 0.9, alpha: float = 0.25) -> np.ndarray | None:
    """The slicer's per-clip loudness mix (float); None for an all-zero clip."""
    chunk = np.asarray(chunk, np.float32)
    peak = float(np.abs(chunk).max()) if chunk.size else 0.0
    if peak == 0.0:
        return None
    if peak > 1:
        chunk = chunk / peak  # quirk: the mix below divides by the same (old) peak again
    return chunk / peak * (max_amp * alpha) + (1 - alpha) * chunk


def to_int16(y: np.ndarray) -> np.ndarray:
    """``(y * 32767).astype(int16)``: truncation, as the original slicer writes."""
    return (np.asarray(y, np.float32) * 32767).astype(np.int16)


def clip_filename(source_basename: str, start: int, end: int) -> str:
    """``<input basename with extension>_<start:010d>_<end:010d>.wav``."""
    return f"{source_basename}_{start:010d}_{end:010d}.wav"


def slice_files(inp, out_dir, cfg: SlicerConfig = SlicerConfig(), *, max_amp: float = 0.9, alpha: float = 0.25,
                shard: int = 0, num_shards: int = 1, speaker: str | None = None, lang: str = "ZH",
                list_path="", progress: bool = True) -> dict:
    """Slice a file or every file of a folder (sorted, ``[shard::num_shards]``) into 32 kHz int16 clips.

    ``list_path``: ``""`` writes ``<out>/<out name>.list`` (``-s<i>of<n>`` added when sharded),
    None writes no list. Files that fail to load are reported in ``failed``, never fatal.
    Returns ``{"files", "clips": [paths], "failed": {path: reason}, "list": path or None}``.
    """
    import pathlib

    import soundfile as sf

    from gsv_jax import audio

    inp, out = pathlib.Path(inp), pathlib.Path(out_dir)
    if inp.is_file():
        files = [inp]
    elif inp.is_dir():
        files = sorted(p for p in inp.iterdir() if p.is_file())
    else:
        raise FileNotFoundError(f"{inp} is neither a file nor a folder")
    files = files[shard::num_shards]
    out.mkdir(parents=True, exist_ok=True)
    slicer = Slicer(SAMPLE_RATE, cfg)
    clips, failed = [], {}
    it = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc="slice", unit="file", dynamic_ncols=True)
    for path in it:
        try:
            wav = audio.load_audio(path, SAMPLE_RATE)
        except Exception as e:  # noqa: BLE001
            failed[str(path)] = f"{type(e).__name__}: {e}"
            continue
        for clip in slicer.slice(wav):
            y = loudness_mix(clip.audio, max_amp, alpha)
            if y is None:
                continue  # all-zero clip
            target = out / clip_filename(path.name, clip.start, clip.end)
            sf.write(str(target), to_int16(y), SAMPLE_RATE, subtype="PCM_16")
            clips.append(target)
    written = None
    if list_path is not None:
        written = pathlib.Path(list_path) if list_path else out / (
            out.name + (f"-s{shard}of{num_shards}" if num_shards > 1 else "") + ".list")
        spk = speaker or out.name
        written.write_text("".join(f"{p.resolve()}|{spk}|{lang}|\n" for p in clips), encoding="utf-8")
    return {"files": len(files), "clips": clips, "failed": failed, "list": written}
