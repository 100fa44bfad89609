"""The prepared-dataset format: sharded ArrayRecord files of self-describing numpy records.

A dataset folder holds, for a split into ``n`` shards::

    dataset.json                              format version and metadata (symbol version, rates)
    data-00000-of-0000n.array_record          one record per utterance (``group_size:1``: random access)
    data-00000-of-0000n.index.npz             per-shard names, langs and field lengths (cheap bucketing)

Each record is one utterance with these fields (``reader[i]`` returns them as numpy values):

=============  ===================  ==============================================================
name           str                  utterance key (basename of the wav, as in the original)
lang           str                  ``zh`` ``ja`` ``en`` ``ko`` ``yue``
text           str                  the label text as written in the ``.list`` (optional)
norm_text      str                  normalised text from the frontend (optional)
phones         str                  space-separated phone symbols (optional)
phone_ids      int32   [n_ph]       symbol ids (see ``dataset.json`` ``symbol_version``)
word2ph        int32   [n_chars]    phones per character of norm_text; empty when the language
                                    has none (en/ja/ko)
bert           float16 [1024, n_ph] BERT phone features; all zeros for non-zh
semantic       int32   [T_sem]      25 Hz semantic tokens
ssl            float16 [768, T_ssl] 50 Hz HuBERT features
wav32k         int16   [N]          32 kHz mono audio after the loudness mix
=============  ===================  ==============================================================

Extra string or numpy fields are stored and returned unchanged. All-zero arrays (``bert`` of
non-zh lines) are stored as a shape-only marker and materialised on read.

A record is ``b"GSVR" + u32 header length + JSON header + payload``; the header maps each field
to a string or to ``[dtype, shape, offset]`` into the (8-byte aligned) payload, so decoding is a
JSON parse and zero-copy ``np.frombuffer`` views (copied once so the arrays are writable).
"""
from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

FORMAT_NAME = "gsv-jax-dataset"
FORMAT_VERSION = 1
WRITER_OPTIONS = "group_size:1,zstd:1"  # one record per chunk: O(1) random reads for grain
MAGIC = b"GSVR"

# field -> (dtype, ndim, first-axis size or None); the last axis is the length axis.
ARRAY_FIELDS = {
    "phone_ids": (np.int32, 1, None),
    "word2ph": (np.int32, 1, None),
    "bert": (np.float16, 2, 1024),
    "semantic": (np.int32, 1, None),
    "ssl": (np.float16, 2, 768),
    "wav32k": (np.int16, 1, None),
}
STRING_FIELDS = ("name", "lang", "text", "norm_text", "phones")
REQUIRED = ("name", "lang", "phone_ids", "bert", "semantic", "ssl", "wav32k")
LANGS = ("zh", "ja", "en", "ko", "yue")

_SHARD_RE = re.compile(r"data-(\d{5})-of-(\d{5})\.array_record$")


class DatasetFormatError(ValueError):
    """A dataset folder or record that does not follow this format."""


# ----------------------------------------------------------------------------- record codec


def encode_record(item: dict[str, Any]) -> bytes:
    """Serialise a dict of str / numpy values (see module docstring) to bytes."""
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for key, value in item.items():
        if isinstance(value, str):
            header[key] = value
            continue
        if value is None:
            continue
        arr = np.ascontiguousarray(value)
        if arr.dtype == object:
            raise DatasetFormatError(f"field {key!r}: object arrays cannot be stored; give a numeric array")
        if arr.size and not arr.any():
            header[key] = [arr.dtype.str, list(arr.shape), -1]  # zeros marker
            continue
        header[key] = [arr.dtype.str, list(arr.shape), offset]
        raw = arr.tobytes()
        pad = (-len(raw)) % 8
        chunks.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    head += b" " * ((-(len(head) + 8)) % 8)  # payload starts 8-byte aligned
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(chunks)


def decode_record(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_record`; arrays are fresh, writable copies."""
    if data[:4] != MAGIC:
        raise DatasetFormatError("not a gsv-jax dataset record (bad magic); was the file written by DatasetWriter?")
    (n,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    buf = memoryview(data)
    out: dict[str, Any] = {}
    for key, spec in header.items():
        if isinstance(spec, str):
            out[key] = spec
            continue
        dtype, shape, off = np.dtype(spec[0]), tuple(spec[1]), spec[2]
        if off < 0:
            out[key] = np.zeros(shape, dtype)
            continue
        count = int(np.prod(shape, dtype=np.int64))
        out[key] = np.frombuffer(buf, dtype, count, base + off).reshape(shape).copy()
    return out


def normalize_item(item: dict[str, Any]) -> dict[str, Any]:
    """Check an utterance dict and cast its arrays to the stored dtypes (raises DatasetFormatError)."""
    missing = [k for k in REQUIRED if k not in item and k != "bert"]
    if missing:
        raise DatasetFormatError(f"item {item.get('name', '?')!r} lacks field(s) {missing}; required: {list(REQUIRED)}")
    out: dict[str, Any] = {}
    name = item["name"]
    for key, value in item.items():
        if value is None:
            continue
        if key in STRING_FIELDS:
            if not isinstance(value, str):
                raise DatasetFormatError(f"item {name!r}: field {key!r} must be str, got {type(value).__name__}")
            out[key] = value
        elif key in ARRAY_FIELDS:
            dtype, ndim, rows = ARRAY_FIELDS[key]
            arr = np.asarray(value)
            if key == "word2ph" and arr.size == 0:
                arr = arr.reshape(0)
            if arr.ndim != ndim or (rows is not None and arr.shape[0] != rows):
                want = f"[{rows}, T]" if rows else "[T]"
                raise DatasetFormatError(f"item {name!r}: field {key!r} has shape {arr.shape}, expected {want}")
            if np.issubdtype(dtype, np.integer) and arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise DatasetFormatError(f"item {name!r}: field {key!r} must hold integers, got {arr.dtype}")
            out[key] = arr.astype(dtype, copy=False)
        else:
            out[key] = value if isinstance(value, str) else np.asarray(value)
    if out["lang"] not in LANGS:
        raise DatasetFormatError(f"item {name!r}: lang {out['lang']!r} is not one of {LANGS}")
    n_ph = out["phone_ids"].shape[0]
    if "bert" not in out:
        out["bert"] = np.zeros((1024, n_ph), np.float16)
    if out["bert"].shape[1] != n_ph:
        raise DatasetFormatError(f"item {name!r}: bert has {out['bert'].shape[1]} phone columns but phone_ids has {n_ph}")
    if "word2ph" in out and out["word2ph"].size and int(out["word2ph"].sum()) != n_ph:
        raise DatasetFormatError(f"item {name!r}: sum(word2ph)={int(out['word2ph'].sum())} != {n_ph} phones")
    return out


# ----------------------------------------------------------------------------- paths


def shard_filename(shard: int, num_shards: int) -> str:
    return f"data-{shard:05d}-of-{num_shards:05d}.array_record"


def index_filename(shard: int, num_shards: int) -> str:
    return f"data-{shard:05d}-of-{num_shards:05d}.index.npz"


def _atomic_write_bytes(path: pathlib.Path, payload: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- writer


class DatasetWriter:
    """Writes one shard of a dataset: ``add(item)`` per utterance, then ``close()``.

    The shard appears atomically at ``close()`` (written under a temporary name, then renamed),
    so a crashed writer leaves no half shard behind. Several processes or hosts may write
    different shards of the same folder at once.
    """

    def __init__(self, root, shard: int = 0, num_shards: int = 1, *, meta: dict | None = None,
                 options: str = WRITER_OPTIONS):
        from array_record.python.array_record_module import ArrayRecordWriter

        if not (0 <= shard < num_shards):
            raise ValueError(f"shard must be in [0, num_shards={num_shards}), got {shard}")
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard, self.num_shards = shard, num_shards
        self.meta = dict(meta or {})
        self.path = self.root / shard_filename(shard, num_shards)
        self._tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        self._writer = ArrayRecordWriter(str(self._tmp), options)
        self._names: list[str] = []
        self._langs: list[str] = []
        self._lengths: dict[str, list[int]] = {}
        self._seen: set[str] = set()

    def add(self, item: dict[str, Any]) -> None:
        if self._writer is None:
            raise RuntimeError("DatasetWriter is closed")
        item = normalize_item(item)
        if item["name"] in self._seen:
            raise DatasetFormatError(f"duplicate utterance name {item['name']!r} in shard {self.shard}")
        self._seen.add(item["name"])
        n = len(self._names)
        for key, value in item.items():
            if isinstance(value, np.ndarray) and value.ndim >= 1:
                self._lengths.setdefault(key, [0 if key == "word2ph" else -1] * n).append(int(value.shape[-1]))
        for key, col in self._lengths.items():
            if len(col) == n:  # field absent from this item
                col.append(0 if key == "word2ph" else -1)
        self._names.append(item["name"])
        self._langs.append(item["lang"])
        self._writer.write(encode_record(item))

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> pathlib.Path:
        if self._writer is None:
            return self.path
        self._writer.close()
        self._writer = None
        index = {"names": np.array(self._names, dtype=str), "langs": np.array(self._langs, dtype=str)}
        for key in ARRAY_FIELDS:  # the standard fields always have a column (also in an empty shard)
            self._lengths.setdefault(key, [0 if key == "word2ph" else -1] * len(self._names))
        for key, col in self._lengths.items():
            index[f"len_{key}"] = np.asarray(col, np.int64)
        import io

        buf = io.BytesIO()
        np.savez(buf, **index)
        _atomic_write_bytes(self.root / index_filename(self.shard, self.num_shards), buf.getvalue())
        os.replace(self._tmp, self.path)
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "num_shards": self.num_shards,
                **self.meta}
        _atomic_write_bytes(self.root / "dataset.json", json.dumps(meta, indent=1, ensure_ascii=False).encode())
        return self.path

    def abort(self) -> None:
        """Drop the shard being written (nothing becomes visible)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ----------------------------------------------------------------------------- reader


class DatasetReader:
    """Random-access view of a dataset folder (a grain ``RandomAccessDataSource``).

    ``len(reader)``, ``reader[i] -> dict``, ``reader.lengths(field)`` (from the index files, no
    record is read), ``reader.names``, ``reader.meta``. Picklable: file handles are reopened
    lazily in each worker process.
    """

    def __init__(self, root, shard_paths: Sequence[pathlib.Path], meta: dict):
        self.root = pathlib.Path(root)
        self.shard_paths = [pathlib.Path(p) for p in shard_paths]
        self.meta = meta
        self._index = [dict(np.load(p.with_name(p.name.replace(".array_record", ".index.npz"))))
                       for p in self.shard_paths]
        counts = np.array([len(ix["names"]) for ix in self._index], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._readers: list = [None] * len(self.shard_paths)

    # grain's RandomAccessDataSource protocol
    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        return s, i - int(self._starts[s])

    def _reader(self, s: int):
        if self._readers[s] is None:
            from array_record.python.array_record_module import ArrayRecordReader

            r = ArrayRecordReader(str(self.shard_paths[s]), "readahead_buffer_size:0")
            if r.num_records() != len(self._index[s]["names"]):
                raise DatasetFormatError(
                    f"{self.shard_paths[s]} holds {r.num_records()} records but its index lists "
                    f"{len(self._index[s]['names'])}; the shard was interrupted while being replaced -- rewrite it")
            self._readers[s] = r
        return self._readers[s]

    def read_bytes(self, i: int) -> bytes:
        s, j = self._locate(i)
        return self._reader(s).read([j])[0]

    def __getitem__(self, i) -> dict[str, Any]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._complete(decode_record(self.read_bytes(i)))

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self[i] for i in indices]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    @staticmethod
    def _complete(item: dict[str, Any]) -> dict[str, Any]:
        if "word2ph" not in item:
            item["word2ph"] = np.zeros((0,), np.int32)
        return item

    @property
    def names(self) -> np.ndarray:
        return np.concatenate([ix["names"] for ix in self._index]) if self._index else np.zeros((0,), str)

    @property
    def langs(self) -> np.ndarray:
        return np.concatenate([ix["langs"] for ix in self._index]) if self._index else np.zeros((0,), str)

    def lengths(self, field: str) -> np.ndarray:
        """Length (last-axis size) of ``field`` for every item, int64 [len(self)], from the index only."""
        key = f"len_{field}"
        if not self._index:
            return np.zeros((0,), np.int64)
        if field == "bert":
            key = "len_phone_ids"  # bert always has one column per phone
        missing = [str(p) for p, ix in zip(self.shard_paths, self._index) if key not in ix and len(ix["names"])]
        if missing:
            have = sorted(k[4:] for k in self._index[0] if k.startswith("len_"))
            raise KeyError(f"no lengths for field {field!r} (fields with lengths: {have})")
        return np.concatenate([ix[key] if key in ix else np.zeros((0,), np.int64) for ix in self._index])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_readers"] = [None] * len(self.shard_paths)
        return state

    def close(self) -> None:
        for r in self._readers:
            if r is not None:
                r.close()
        self._readers = [None] * len(self.shard_paths)

    def __repr__(self) -> str:
        return f"DatasetReader({str(self.root)!r}, items={len(self)}, shards={len(self.shard_paths)})"


def list_shards(root) -> tuple[list[pathlib.Path], int | None]:
    """Finished shard files in ``root`` (sorted) and their ``num_shards`` (None when empty)."""
    root = pathlib.Path(root)
    found = []
    for p in sorted(glob.glob(str(root / "data-*-of-*.array_record"))):
        m = _SHARD_RE.search(p)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), pathlib.Path(p)))
    totals = {n for _, n, _ in found}
    if len(totals) > 1:
        raise DatasetFormatError(
            f"{root} mixes shard counts {sorted(totals)} (e.g. data-*-of-{min(totals):05d} and "
            f"data-*-of-{max(totals):05d}); delete the stale set")
    return [p for _, _, p in found], (totals.pop() if totals else None)


def open_dataset(root, *, shards: Sequence[int] | None = None, allow_partial: bool = False) -> DatasetReader:
    """Open a prepared dataset folder. ``shards`` selects a subset (e.g. one host's share).

    Raises :class:`DatasetFormatError` naming the missing shards when the folder is incomplete
    (``allow_partial=True`` reads whatever shards are finished).
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; create it with data/prepare.py")
    meta_path = root / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta and meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{meta_path} is not a {FORMAT_NAME} description")
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise DatasetFormatError(f"{root} uses format version {meta['format_version']}; upgrade gsv-jax")
    paths, n = list_shards(root)
    if n is None:
        raise DatasetFormatError(f"{root} holds no data-*-of-*.array_record shards; run data/prepare.py first")
    present = {int(_SHARD_RE.search(str(p)).group(1)): p for p in paths}
    wanted = list(range(n)) if shards is None else list(shards)
    missing = [s for s in wanted if s not in present]
    if missing and not allow_partial:
        raise DatasetFormatError(
            f"{root}: shard(s) {missing} of {n} are not finished; run the remaining "
            f"`data/prepare.py --shard i/{n}` jobs (or pass allow_partial=True)")
    return DatasetReader(root, [present[s] for s in wanted if s in present], meta)
