"""The speaker-verification embedding of v2Pro / v2ProPlus (docs/sv.md).

```python
sv = load_sv("pretrained_eres2netv2w24s4ep4.ckpt")
feats = sv.fbank(wav16k)            # float32 numpy [T, 80]
emb = sv.embed(wav16k)              # float32 numpy [20480]
embs = sv.embed([wav_a, wav_b])     # [2, 20480]; also a padded [B, N] batch with lengths
```

As the original's ``SV.compute_embedding3``: Kaldi fbank of the float 16 kHz waveform, then
``ERes2NetV2.forward3``. Unlike the original, rows of different lengths can share a batch: each
row equals its solo result (the model masks the padding, gsv_jax.models.sv). Calls run jitted over
bucketed shapes (frame counts on a short ladder, batch sizes rounded to powers of two), so
steady-state calls do not recompile.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np

from gsv_jax import fbank as fbank_lib
from gsv_jax.convert import sv as convert_sv
from gsv_jax.inference import buckets, programs
from gsv_jax.models import sv as sv_lib


class SV:
    """ERes2NetV2 speaker encoder with its fbank front end; see the module docstring."""

    FRAME_UNIT = 32  # frame counts are padded to this unit times a ladder (<= 1/8 extra past 16 units)

    def __init__(self, cfg, variables, extras=None, path: str | None = None):
        self.cfg, self.extras, self.path = cfg, extras, path
        self.variables = jax.device_put(variables)
        self.dim = sv_lib.embedding_dim(cfg)
        model = sv_lib.ERes2NetV2(cfg)

        def embed(variables, wav, frames):
            return model.apply(variables, fbank_lib.fbank(wav), frames)

        self._embed = programs.cached_jit(embed, "sv_embed", cfg.to_json())
        self._fbank = programs.cached_jit(fbank_lib.fbank, "sv_fbank")

    @property
    def compilations(self) -> int:
        """Programs compiled (or loaded) so far for this model's two entry points."""
        return self._embed._cache_size() + self._fbank._cache_size()

    def _bucket(self, rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero-pad to a bucketed (batch, samples) shape; returns the batch and its frame counts."""
        b = len(rows)
        frames = fbank_lib.num_frames(lengths)
        tb = buckets.ladder(int(frames.max()), self.FRAME_UNIT)
        nb, bb = fbank_lib.samples_for_frames(tb), buckets.pow2(b)
        padded = np.zeros((bb, nb), np.float32)
        n = min(rows.shape[1], nb)  # samples past the last complete frame are never read
        padded[:b, :n] = rows[:, :n]
        full = np.full((bb,), tb, np.int32)
        full[:b] = frames
        return padded, full

    def fbank(self, wav16k) -> np.ndarray:
        """Log-mel features of a float 16 kHz waveform ``[N]`` -> ``[T, 80]`` (``T = 1 + (N - 400) // 160``);
        a ``[B, N]`` batch gives ``[B, T, 80]`` like the original's stacked per-row call."""
        rows, lengths, single = _as_batch(wav16k, None)
        if len(set(lengths.tolist())) > 1:
            raise ValueError("fbank of a list needs equal lengths; call it once per waveform")
        padded, _ = self._bucket(rows, lengths)
        out = np.asarray(self._fbank(padded))[: len(rows), : int(fbank_lib.num_frames(lengths[0]))]
        return out[0] if single else out

    def embed(self, wav16k, lengths: Sequence[int] | None = None) -> np.ndarray:
        """``forward3`` embedding of float 16 kHz audio in [-1, 1].

        ``wav16k``: ``[N]`` -> ``[dim]``; a list of 1-D arrays or a right-padded ``[B, N]`` batch
        (``lengths``: valid samples per row, default all N) -> ``[B, dim]``, each row equal to its
        solo result."""
        rows, lens, single = _as_batch(wav16k, lengths)
        padded, frames = self._bucket(rows, lens)
        out = np.asarray(self._embed(self.variables, padded, frames))[: len(rows)]
        return out[0] if single else out


def _ladder(n: int, unit: int) -> int:
    """``unit`` times 1..16, then 8 steps per octave (at most 1/8 padding), as the other engines."""
    m = max(1, -(-n // unit))
    if m > 16:
        step = 2 ** (m.bit_length() - 4)
        m = -(-m // step) * step
    return unit * m


def _as_batch(wav16k, lengths) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate audio -> (rows [B, N] float32 zero-padded, valid samples [B], was a single 1-D input)."""
    if isinstance(wav16k, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths go with a padded [B, N] array; a list carries its own lengths")
        if not wav16k:
            raise ValueError("empty list of waveforms")
        arrays = [_check_audio(w, f"waveform {i}") for i, w in enumerate(wav16k)]
        bad = [i for i, a in enumerate(arrays) if a.ndim != 1]
        if bad:
            raise ValueError(f"every waveform in a list must be 1-D [N]; waveform {bad[0]} is {arrays[bad[0]].shape}")
        lens = np.array([len(a) for a in arrays], np.int64)
        rows = np.zeros((len(arrays), int(lens.max())), np.float32)
        for i, a in enumerate(arrays):
            rows[i, : len(a)] = a
        single = False
    else:
        arr = _check_audio(wav16k, "audio")
        if arr.ndim not in (1, 2):
            raise ValueError(f"expected 16 kHz audio shaped [N] or [B, N] (or a list of [N]), got shape {arr.shape}")
        single = arr.ndim == 1
        rows = arr[None] if single else arr
        if lengths is None:
            lens = np.full((rows.shape[0],), rows.shape[1], np.int64)
        else:
            if single:
                raise ValueError("lengths go with a padded [B, N] batch, not a single [N] waveform")
            lens = np.asarray(lengths)
            if lens.shape != (rows.shape[0],) or lens.dtype.kind not in "iu" or lens.max() > rows.shape[1]:
                raise ValueError(f"lengths must be {rows.shape[0]} sample counts <= {rows.shape[1]}, got {lens.tolist()}")
            lens = lens.astype(np.int64)
            rows = np.where(np.arange(rows.shape[1])[None] < lens[:, None], rows, 0.0).astype(np.float32)
    if lens.min() < fbank_lib.FRAME_LENGTH:
        i = int(np.argmin(lens))
        raise ValueError(f"audio {'' if single else f'row {i} '}has {int(lens[i])} samples; the SV model needs at "
                         f"least {fbank_lib.FRAME_LENGTH} (one 25 ms frame at 16 kHz)")
    return rows, lens, single


def _check_audio(wav, what: str) -> np.ndarray:
    arr = np.asarray(wav)
    if arr.dtype.kind in "iub":
        raise ValueError(f"{what} is {arr.dtype}; expected float samples in [-1, 1] (divide int16 PCM by 32768)")
    if arr.dtype.kind != "f":
        raise ValueError(f"{what} has dtype {arr.dtype}; expected real float samples in [-1, 1]")
    if arr.size == 0:
        raise ValueError(f"{what} is empty (shape {arr.shape}); pass at least 400 samples of 16 kHz audio")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite samples")
    return arr


def load_sv(path: str | os.PathLike) -> SV:
    """The original's ``pretrained_eres2netv2w24s4ep4.ckpt`` (a plain ERes2NetV2 state dict, any widths)
    -> :class:`SV`. A GPT or SoVITS file is refused with an error saying which it is."""
    cfg, variables, extras = convert_sv.read_sv_checkpoint(path)
    return SV(cfg, variables, extras, path=str(path))
