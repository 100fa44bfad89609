"""S1 input pipeline: filtering as the original, length buckets -> few static shapes, host shards.

Works on any reader with ``len``, ``reader[i] -> dict`` (``phone_ids``, ``bert``, ``semantic``)
and ``reader.lengths(field)``: our dataset format (``gsv_jax.data.format.open_dataset``) and the
original's experiment folder (``gsv_jax.data.original_s1.OriginalS1Folder``). Items are read
through a grain ``MapDataset`` (random access, so each host reads only the rows it trains on).

Filtering (as the original; docs/training.md, "S1 training"): drop items with more than ``max_sec·hz`` semantic
tokens, more than ``max_sec·hz/2.5`` phonemes, or a phoneme rate outside [3, 25] per second;
if fewer than 100 survive, the list is repeated ``max(2, 100 // n)`` times.

Batching: every item goes to the smallest semantic-length bucket that holds it. Each epoch
(seed + epoch) shuffles inside buckets, cuts each bucket into global batches of ``batch_size``
(a short last batch is filled up with items of the same bucket), and shuffles the batch order.
A batch is padded to (its semantic bucket, the phoneme bucket that holds the longest text of
any item in that semantic bucket): one static shape per semantic bucket, so only a handful of
compilations. Padding follows the original collate: phonemes right-padded with
0, semantic tokens right-padded with 1024, BERT with zeros. ``loss_len`` carries the batch's
true ``max(y_len) + 1`` so the loss can count exactly the positions the original counts.

Multi-host: every host computes the same plan (from the cheap ``lengths``), and host ``h`` reads
rows ``[h·b, (h+1)·b)`` of each global batch, ``b = batch_size / process_count``.
The iterator is checkpointable: ``get_state()`` = {epoch, batch} of the next batch.
"""
from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gsv_jax.configs import read_section, runtime_field

try:
    import grain.python as grain
except ImportError:  # pragma: no cover
    grain = None

@dataclass
class S1DataConfig:
    """``config.data`` of S1 training (the field names are the config keys; ``batch_size`` and ``seed``
    come from ``config.train``). Defaults = the original's filters and our length buckets."""

    dataset: str = ""  # a folder written by gsv_jax.data.format ...
    exp_dir: str = ""  # ... or the original's prepared experiment folder (2-name2text.txt, 3-bert/, 6-name2semantic.tsv)
    version: str = "v2"  # phoneme table for exp_dir
    max_sec: float = 54.0
    hz: int = 25
    min_pps: float = 3.0
    max_pps: float = 25.0
    pad_val: int = 1024
    y_buckets: Sequence[int] = (64, 128, 192, 256, 384, 512, 768, 1024, 1352)
    x_buckets: Sequence[int] = (32, 64, 96, 128, 192, 256, 384, 544)
    num_threads: int = 4
    batch_size: int = runtime_field(8)  # global items per batch: train.batch_size * train.accum_steps
    seed: int = runtime_field(0)  # train.seed

    @classmethod
    def from_config(cls, data_cfg, batch_size: int, seed: int | None = None) -> S1DataConfig:
        return read_section(cls, data_cfg, batch_size=batch_size, seed=cls.seed if seed is None else seed)


def checkpoint_data_section() -> dict:
    """The ``config["data"]`` an S1 ``.ckpt`` carries when nothing else is known: this dataclass's
    defaults (the original's ``max_sec`` and ``pad_val``; inference reads ``max_sec`` for its token bound)."""
    return {"max_sec": int(S1DataConfig.max_sec), "pad_val": S1DataConfig.pad_val}


def filter_items(ph_lens: np.ndarray, sem_lens: np.ndarray, cfg: S1DataConfig) -> np.ndarray:
    """Indices kept by the original's rules (then repeated when fewer than 100 survive)."""
    ph_lens = np.asarray(ph_lens, np.float64)
    sem_lens = np.asarray(sem_lens, np.float64)
    keep = sem_lens <= cfg.max_sec * cfg.hz
    keep &= ph_lens <= cfg.max_sec * cfg.hz / 2.5
    with np.errstate(divide="ignore", invalid="ignore"):
        pps = ph_lens / (sem_lens / cfg.hz)
    keep &= (pps <= cfg.max_pps) & (pps >= cfg.min_pps) & (sem_lens > 0)
    idx = np.nonzero(keep)[0]
    if len(idx) == 0:
        raise ValueError("no training item survives the original's filters (max_sec, phonemes per second "
                         f"in [{cfg.min_pps}, {cfg.max_pps}]); check the dataset")
    if len(idx) < 100:
        idx = np.tile(idx, max(2, 100 // len(idx)))
    return idx


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if length <= b:
            return int(b)
    raise ValueError(f"length {length} exceeds the largest bucket {buckets[-1]}; add a bigger bucket "
                     "to config.data (x_buckets / y_buckets) or lower max_sec")


def epoch_plan(item_idx: np.ndarray, sem_lens: np.ndarray, cfg: S1DataConfig, epoch: int) -> list[np.ndarray]:
    """Global batches (arrays of reader indices, each ``batch_size`` long) of one epoch."""
    rs = np.random.RandomState((cfg.seed + epoch) % (2**32))
    buckets: dict[int, list[int]] = {}
    for i in item_idx:
        buckets.setdefault(bucket_of(int(sem_lens[i]), cfg.y_buckets), []).append(int(i))
    batches = []
    for b in sorted(buckets):
        members = np.asarray(buckets[b])
        members = members[rs.permutation(len(members))]
        n = -(-len(members) // cfg.batch_size) * cfg.batch_size
        members = np.resize(members, n)  # fill the short last batch from the same bucket
        batches.extend(members.reshape(-1, cfg.batch_size))
    order = rs.permutation(len(batches))
    return [batches[i] for i in order]


class PlannedBatchIterator:
    """The checkpointable part shared by the S1 and S2 batch iterators: an epoch plan (a list of
    batches, made by ``_make_plan(epoch)``), the position ``(epoch, batch)`` saved with the
    weights, this host's rows of each batch, and a thread pool that reads items."""

    def _init_position(self, batch_size: int, num_threads: int, process_index: int, process_count: int):
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} must divide by the number of hosts {process_count}")
        self.local = batch_size // process_count
        self.row0 = process_index * self.local
        self.epoch, self.batch = 0, 0
        self._plan_epoch, self._plan = None, None
        self._pool = cf.ThreadPoolExecutor(max(1, num_threads))

    def _make_plan(self, epoch):
        raise NotImplementedError

    # ---- checkpointable position ----
    def get_state(self) -> dict:
        return {"epoch": int(self.epoch), "batch": int(self.batch)}

    def set_state(self, state: dict):
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def _plan_for(self, epoch):
        if self._plan_epoch != epoch:
            self._plan = self._make_plan(epoch)
            self._plan_epoch = epoch
        return self._plan

    @property
    def batches_per_epoch(self) -> int:
        return len(self._plan_for(self.epoch))

    def __iter__(self):
        return self

    def _advance(self):
        """The next plan entry (rolling over to the next epoch) and this host's item reader pool."""
        plan = self._plan_for(self.epoch)
        if self.batch >= len(plan):
            self.epoch, self.batch = self.epoch + 1, 0
            plan = self._plan_for(self.epoch)
        entry = plan[self.batch]
        self.batch += 1
        return entry

    def _read_rows(self, rows, source):
        mine = rows[self.row0:self.row0 + self.local]
        return list(self._pool.map(lambda i: source[int(i)], mine))


class S1BatchIterator(PlannedBatchIterator):
    """Checkpointable iterator of host-local padded numpy batches (infinite, epoch after epoch)."""

    def __init__(self, reader, cfg: S1DataConfig, process_index: int = 0, process_count: int = 1):
        self._init_position(cfg.batch_size, cfg.num_threads, process_index, process_count)
        self.cfg = cfg
        self.reader = reader
        self.source = grain.MapDataset.source(reader) if grain is not None else reader
        self.ph_lens = np.asarray(reader.lengths("phone_ids"))
        self.sem_lens = np.asarray(reader.lengths("semantic"))
        self.items = filter_items(self.ph_lens, self.sem_lens, cfg)
        # one phoneme length per semantic bucket (the longest text among that bucket's items)
        self._tx_for: dict[int, int] = {}
        for i in self.items:
            yb = bucket_of(int(self.sem_lens[i]), cfg.y_buckets)
            self._tx_for[yb] = max(self._tx_for.get(yb, 0), int(self.ph_lens[i]))
        self._tx_for = {yb: bucket_of(n, cfg.x_buckets) for yb, n in self._tx_for.items()}

    def _make_plan(self, epoch):
        return epoch_plan(self.items, self.sem_lens, self.cfg, epoch)

    def shapes(self) -> set[tuple[int, int]]:
        """All (T_x, T_y) padded shapes the plan of the current epoch produces."""
        out = set()
        for rows in self._plan_for(self.epoch):
            out.add(self._shape(rows))
        return out

    def _shape(self, rows) -> tuple[int, int]:
        ty = bucket_of(int(self.sem_lens[rows].max()), self.cfg.y_buckets)
        return self._tx_for[ty], ty

    def __next__(self) -> dict:
        rows = self._advance()
        tx, ty = self._shape(rows)
        items = self._read_rows(rows, self.source)
        return collate(items, tx, ty, loss_len=int(self.sem_lens[rows].max()) + 1, pad_val=self.cfg.pad_val)


def collate(items: list[dict], tx: int, ty: int, loss_len: int, pad_val: int = 1024) -> dict:
    """Pad like the original collate (right padding) to the static shape (tx, ty)."""
    b = len(items)
    x = np.zeros((b, tx), np.int32)
    bert = np.zeros((b, 1024, tx), np.float16)
    y = np.full((b, ty), pad_val, np.int32)
    x_lens = np.zeros((b,), np.int32)
    y_lens = np.zeros((b,), np.int32)
    for r, it in enumerate(items):
        ph, sem = np.asarray(it["phone_ids"]), np.asarray(it["semantic"])
        x[r, :len(ph)] = ph
        x_lens[r] = len(ph)
        y[r, :len(sem)] = sem
        y_lens[r] = len(sem)
        feat = it.get("bert")
        if feat is not None:
            feat = np.asarray(feat)
            if feat.shape[-1] != len(ph):
                raise ValueError(f"item {it.get('name')}: BERT has {feat.shape[-1]} frames for {len(ph)} phones")
            bert[r, :, :len(ph)] = feat
    return {"x": x, "x_lens": x_lens, "y": y, "y_lens": y_lens, "bert": bert,
            "loss_len": np.full((b,), loss_len, np.int32)}


class InMemoryReader:
    """A reader over a list of item dicts (tests, synthetic data, tiny corpora), for the S1 and
    S2 pipelines; ``lengths(field)`` is each item's last-axis size (time for every field)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[int(i)]

    def lengths(self, field):
        return np.asarray([np.asarray(it[field]).shape[-1] for it in self.items], np.int64)


InMemoryS1Reader = InMemoryReader
