"""S2 (SoVITS) training input: readers, length buckets, collate, on-device spectrograms (docs/training.md).

Readers give ``name``, ``phone_ids`` int32, ``ssl`` float16 ``[768, T50]`` and ``wav32k`` int16:

* our dataset format (``gsv_jax.data.format.open_dataset``), or
* :class:`OriginalS2Folder`, the original's prepared experiment folder (``2-name2text.txt``,
  ``4-cnhubert/<name>.pt``, ``5-wav32k/<name>``).

Items as the original keeps them: duration ``0.6 < N/32000 < 54`` s and a frame count
``N // 640`` inside the sampler's buckets ``(32, 300], (300, 400], ... (1800, 1900]`` (others
dropped). Each epoch shuffles inside buckets, pads every bucket (cycling its own items) to a
multiple of the global batch, then shuffles the batch order (numpy, seeded by ``seed`` + epoch:
the same scheme as the original's ``DistributedBucketSampler``, not its torch random numbers).

A batch is padded to a static shape per bucket (frames = the bucket's upper bound, text to a
multiple of 32), which only adds masked frames. Fields: ``wav`` float32 ``[B, frames*640]``
(int16 / 32768, zero padded), ``wav_lens``, ``spec_lens`` (= ``N // 640``), ``ssl`` float16
``[B, frames, 768]`` (one replicate frame appended when it is one short, as the original's loader
does), ``text``/``text_lens`` and ``epoch`` (1-based). The linear spectrogram is computed inside the
jitted step by :func:`batch_spectrogram`, per item exactly as ``spectrogram_torch`` on that item's
own samples (reflect padding at *its* end), so zero padding never leaks into valid frames.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from gsv_jax import audio, families
from gsv_jax.configs import read_section, runtime_field
from gsv_jax.data.pipeline import InMemoryReader, PlannedBatchIterator

HOP = families.SOVITS_HOP
BOUNDARIES = (32, 300) + tuple(range(400, 2000, 100))


@dataclasses.dataclass(frozen=True)
class S2DataConfig:
    """``config.data`` of S2 training (the field names are the config keys; ``batch_size`` and ``seed``
    come from ``config.train``): the data source, the audio front (the original ``s2.json`` data section)
    and the original's item filters and length buckets."""

    dataset: str = ""  # a folder written by gsv_jax.data.format ...
    exp_dir: str = ""  # ... or the original's prepared experiment folder (2-name2text.txt, 4-cnhubert/, 5-wav32k/)
    sampling_rate: int = 32000
    filter_length: int = 2048
    hop_length: int = HOP
    win_length: int = 2048
    n_mel_channels: int = 128
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    max_wav_value: float = 32768.0
    min_seconds: float = 0.6
    max_seconds: float = 54.0
    boundaries: tuple = BOUNDARIES
    text_multiple: int = 32
    num_threads: int = 4
    repeat_small: bool = True  # < 100 items: repeat the list max(2, 100 // n) times, as the original
    batch_size: int = runtime_field(4)  # global batch (all hosts): train.batch_size
    seed: int = runtime_field(1234)  # train.seed

    MEL_FIELDS = ("filter_length", "hop_length", "win_length", "n_mel_channels", "sampling_rate", "mel_fmin",
                  "mel_fmax")

    @classmethod
    def from_config(cls, d, batch_size: int, seed: int | None = None) -> S2DataConfig:
        return read_section(cls, d, batch_size=int(batch_size), seed=int(cls.seed if seed is None else seed))

    def mel_config(self) -> dict:
        """The mel-spectrogram settings of the generator loss (``gsv_jax.models.s2.training``)."""
        return {k: getattr(self, k) for k in self.MEL_FIELDS}


class OriginalS2Folder:
    """The original's prepared folder as a reader (items = names present in all three sources)."""

    def __init__(self, exp_dir, version: str = "v2"):
        from gsv_jax.data.original_s1 import read_name2text
        from gsv_jax.text.symbols import cleaned_text_to_sequence

        self.exp_dir = pathlib.Path(exp_dir)
        text_path = self.exp_dir / "2-name2text.txt"
        if not text_path.exists():
            raise FileNotFoundError(f"{text_path} not found: run the original's text preparation (1-get-text) "
                                    "or point config.data.exp_dir to the experiment folder")
        for sub in ("4-cnhubert", "5-wav32k"):
            if not (self.exp_dir / sub).is_dir():
                raise FileNotFoundError(f"{self.exp_dir / sub} not found: run the original's HuBERT/wav32k "
                                        "preparation (2-get-hubert-wav32k)")
        phones = read_name2text(str(text_path))
        hub = {p.name[:-3] for p in (self.exp_dir / "4-cnhubert").glob("*.pt")}
        wavs = {p.name for p in (self.exp_dir / "5-wav32k").iterdir()}
        names = set(phones) & hub & wavs
        self.speaker_verification = families.family(version).speaker_verification
        if self.speaker_verification:  # v2Pro*: 7-sv_cn/<name>.pt, [1, 20480] per utterance (2-get-sv.py)
            if not (self.exp_dir / "7-sv_cn").is_dir():
                raise FileNotFoundError(f"{self.exp_dir / '7-sv_cn'} not found: a {version} model trains on speaker "
                                        "embeddings; run the original's 2-get-sv.py or data/prepare.py --sv")
            names &= {p.name[:-3] for p in (self.exp_dir / "7-sv_cn").glob("*.pt")}
        self._items = []
        for name in sorted(names):
            ids = np.asarray(cleaned_text_to_sequence(phones[name], version), np.int32)
            size = os.path.getsize(self.exp_dir / "5-wav32k" / name)
            self._items.append((name, ids, max(0, (size - 44) // 2)))
        if not self._items:
            raise ValueError(f"{self.exp_dir}: no item is in 2-name2text.txt, 4-cnhubert/ and 5-wav32k/ at once")

    def __len__(self):
        return len(self._items)

    def __getitem__(self, i) -> dict:
        import soundfile as sf

        from gsv_jax.io.torch_io import load_torch_file

        name, ids, _ = self._items[int(i)]
        ssl = np.asarray(load_torch_file(self.exp_dir / "4-cnhubert" / f"{name}.pt"))
        ssl = ssl.reshape(ssl.shape[-2], ssl.shape[-1]).astype(np.float16)
        wav, sr = sf.read(str(self.exp_dir / "5-wav32k" / name), dtype="int16", always_2d=True)
        if sr != families.SOVITS_SAMPLE_RATE:
            raise ValueError(f"{name}: 5-wav32k holds {sr} Hz audio; the original writes 32 kHz")
        item = {"name": name, "phone_ids": ids, "ssl": ssl, "wav32k": wav[:, 0]}
        if self.speaker_verification:
            item["sv_emb"] = np.asarray(load_torch_file(self.exp_dir / "7-sv_cn" / f"{name}.pt"), np.float32).reshape(-1)
        return item

    def lengths(self, field: str) -> np.ndarray:
        if field == "wav32k":
            return np.asarray([x[2] for x in self._items], np.int64)
        if field == "phone_ids":
            return np.asarray([len(x[1]) for x in self._items], np.int64)
        raise KeyError(f"lengths({field!r}): this reader knows 'wav32k' and 'phone_ids'")


InMemoryS2Reader = InMemoryReader


def bucket_index(frames: int, boundaries) -> int:
    """Bucket ``i`` holds ``(b_i, b_{i+1}]``; -1 outside."""
    for i in range(len(boundaries) - 1):
        if boundaries[i] < frames <= boundaries[i + 1]:
            return i
    return -1


def epoch_plan(buckets: list[np.ndarray], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    rs = np.random.RandomState((seed * 1_000_003 + epoch) % (2 ** 32))
    batches = []
    for members in buckets:
        members = members[rs.permutation(len(members))]
        n = -(-len(members) // batch_size) * batch_size
        members = np.resize(members, n)  # cycle the bucket's own items
        batches.extend(members.reshape(-1, batch_size))
    return [batches[i] for i in rs.permutation(len(batches))]


class S2BatchIterator(PlannedBatchIterator):
    """Checkpointable, infinite iterator of host-local S2 batches (``get_state``/``set_state``)."""

    def __init__(self, reader, cfg: S2DataConfig, process_index: int = 0, process_count: int = 1):
        self._init_position(cfg.batch_size, cfg.num_threads, process_index, process_count)
        self.reader, self.cfg = reader, cfg
        n_samples = np.asarray(reader.lengths("wav32k"))
        frames = n_samples // HOP
        sr = families.SOVITS_SAMPLE_RATE
        keep = (n_samples / sr > cfg.min_seconds) & (n_samples / sr < cfg.max_seconds)
        idx = np.nonzero(keep)[0]
        if cfg.repeat_small and 0 < len(idx) < 100:
            idx = np.tile(idx, max(2, 100 // len(idx)))
        self.frames = frames
        groups = [[] for _ in range(len(cfg.boundaries) - 1)]
        for i in idx:
            b = bucket_index(int(frames[i]), cfg.boundaries)
            if b >= 0:
                groups[b].append(i)
        self.bucket_of = {}
        self.buckets, self.bucket_frames = [], []
        for b, g in enumerate(groups):
            if g:
                self.buckets.append(np.asarray(g, np.int64))
                self.bucket_frames.append(int(cfg.boundaries[b + 1]))
        if not self.buckets:
            raise ValueError(f"no usable S2 item: need {cfg.min_seconds} < seconds < {cfg.max_seconds} and more than "
                             f"{cfg.boundaries[0]} frames (640 samples each) among {len(n_samples)} items")

    def _make_plan(self, epoch):
        plan = epoch_plan(self.buckets, self.cfg.batch_size, self.cfg.seed, epoch)
        # remember each batch's padded frame count
        where = {}
        for b, members in enumerate(self.buckets):
            for m in members:
                where[int(m)] = self.bucket_frames[b]
        return [(rows, max(where[int(r)] for r in rows)) for rows in plan]

    def __next__(self) -> dict:
        rows, frames = self._advance()
        items = self._read_rows(rows, self.reader)
        return collate(items, frames, self.cfg.text_multiple, epoch=self.epoch + 1)


def collate(items: list[dict], frames: int, text_multiple: int = 32, epoch: int = 1) -> dict:
    """Pad items to ``frames`` spectrogram frames (see the module docstring)."""
    B = len(items)
    n_text = max(len(x["phone_ids"]) for x in items)
    n_text = -(-n_text // text_multiple) * text_multiple
    wav = np.zeros((B, frames * HOP), np.float32)
    ssl = np.zeros((B, frames, 768), np.float16)
    text = np.zeros((B, n_text), np.int32)
    wav_lens, spec_lens, text_lens = (np.zeros(B, np.int32) for _ in range(3))
    for b, it in enumerate(items):
        w = np.asarray(it["wav32k"])
        w = w.astype(np.float32) / 32768.0 if w.dtype == np.int16 else w.astype(np.float32)
        n = min(len(w), frames * HOP)
        t = n // HOP
        wav[b, :n], wav_lens[b], spec_lens[b] = w[:n], n, t
        s = np.asarray(it["ssl"], np.float16)  # [768, Ts]
        if s.shape[-1] != t:
            s = np.concatenate([s, s[:, -1:]], axis=1)  # the original pads one replicate frame
        s = s[:, :frames]
        ssl[b, : s.shape[1]] = s.T
        ids = np.asarray(it["phone_ids"], np.int32)
        text[b, : len(ids)], text_lens[b] = ids, len(ids)
    out = {"wav": wav, "wav_lens": wav_lens, "spec_lens": spec_lens, "ssl": ssl, "text": text,
           "text_lens": text_lens, "epoch": np.full(B, epoch, np.int32)}
    if any("sv_emb" in it for it in items):  # v2Pro*: each utterance's speaker embedding [B, 20480]
        missing = [it.get("name", "?") for it in items if "sv_emb" not in it]
        if missing:
            raise ValueError(f"items {missing[:3]} have no sv_emb (speaker embedding): prepare the data with the "
                             "speaker-embedding stage (data/prepare.py --sv ...)")
        out["sv_emb"] = np.stack([np.asarray(it["sv_emb"], np.float32).reshape(-1) for it in items])
    return out


def batch_spectrogram(wav, wav_lens, frames: int, n_fft: int = 2048, hop: int = HOP, win: int = 2048):
    """``spectrogram_torch(center=False)`` of each row's own ``wav[b, :wav_lens[b]]`` -> ``[B, frames, bins]``
    (frames past ``wav_lens // hop`` are garbage-free but meaningless; mask them)."""
    wav = jnp.asarray(wav, jnp.float32)
    pad = (n_fft - hop) // 2
    pos = jnp.arange(frames)[:, None] * hop - pad + jnp.arange(n_fft)[None, :]  # [frames, n_fft]

    def one(w, n):
        p = jnp.where(pos < 0, -pos, pos)
        p = jnp.where(p >= n, 2 * (n - 1) - p, p)
        p = jnp.clip(p, 0, w.shape[0] - 1)
        return w[p]

    fr = jax.vmap(one)(wav, jnp.asarray(wav_lens, jnp.int32)) * jnp.asarray(audio.hann_window(win, n_fft))
    f = jnp.fft.rfft(fr, n=n_fft, axis=-1)
    return jnp.sqrt(jnp.real(f) ** 2 + jnp.imag(f) ** 2 + audio.SPEC_EPS).astype(jnp.float32)


def make_s2_data(config, process_index: int | None = None, process_count: int | None = None) -> S2BatchIterator:
    """Checkpointable S2 batch iterator from ``config.data`` (``dataset`` = our format or ``exp_dir`` = the
    original's experiment folder)."""
    d = config.data
    from gsv_jax.data.sources import open_training_reader

    reader = open_training_reader(d, lambda folder: OriginalS2Folder(folder, config.model.get("version", "v2")))
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    train = config.train
    dcfg = S2DataConfig.from_config(d, batch_size=train.batch_size, seed=train.get("seed"))
    version = config.model.get("version", "v2")
    if families.family(version).speaker_verification and len(reader) and "sv_emb" not in reader[0]:
        raise ValueError(f"a {version} model trains on each utterance's speaker embedding, but the data has no "
                         "sv_emb field: prepare it with the speaker-embedding stage (data/prepare.py --sv "
                         "pretrained_eres2netv2w24s4ep4.ckpt)")
    return S2BatchIterator(reader, dcfg, pi, pc)
