"""Dataset preparation: a ``.list`` corpus -> text, audio and semantic features -> dataset shards.

Stages (docs/data.md, "Stages"; each one can run alone, in any process, on any host):

* ``text``     label text -> phones, word2ph, normalised text (``gsv_jax.text``), BERT phone features
               for zh lines (zeros otherwise);
* ``audio``    load + resample to 32 kHz, the original's loudness mixes (``gsv_jax.audio.prepare_clip``:
               int16 32 kHz wav kept; HuBERT input at 16 kHz), HuBERT features ``[768, T]`` at 50 Hz;
* ``semantic`` the S2 quantizer turns the HuBERT features into 25 Hz tokens;
* ``sv``       v2Pro/v2ProPlus only (the original's ``2-get-sv.py`` / ``7-sv_cn``): the stored 32 kHz
               clip, resampled to 16 kHz, -> ERes2NetV2 speaker embedding ``sv_emb`` float32 ``[20480]``;
* ``pack``     joins the three per utterance and writes ``data-<i>-of-<n>.array_record`` shards
               (:mod:`gsv_jax.data.format`).

Work is split by ``--shard i/n``: an utterance belongs to shard ``crc32(name) % n`` (stable when
lines are added or reordered). Each stage appends its results to ``<out>/work/<stage>/`` in small
ArrayRecord *chunks* that become visible atomically (the chunk file is renamed into place, then a
JSON manifest listing its names is written), so a killed run loses at most the open chunk and a
rerun skips every finished or failed item. Failures (unreadable or silent audio, empty
transcripts, frontend errors, NaN features) are recorded with a reason, never fatal, and listed
in the summary; ``--retry-failed`` tries them again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from gsv_jax.data import format as dsformat

STAGES = ("text", "audio", "semantic")
SV_STAGE = "sv"  # optional (v2Pro*): packed when it was run, required by their training
LANG_CODES = {
    "ZH": "zh", "zh": "zh",
    "JP": "ja", "jp": "ja", "JA": "ja", "ja": "ja",
    "EN": "en", "en": "en", "En": "en",
    "KO": "ko", "Ko": "ko", "ko": "ko",
    "yue": "yue", "YUE": "yue", "Yue": "yue",
}  # the original's accepted codes (docs/data.md); anything else is skipped with a reason
SILENT_PEAK = 1e-4  # -80 dBFS: a clip this quiet carries no speech and is reported as silent
MAX_PEAK = 2.2  # the original skips louder clips


# ----------------------------------------------------------------------------- the .list file


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str  # basename of the wav (extension kept): the utterance key
    wav: str  # resolved audio path
    speaker: str
    lang: str
    text: str
    line: int  # 1-based line number in the .list


def clean_path(path: str) -> str:
    """Strip spaces, quotes, newlines and U+202A like the original's ``clean_path``; '/' separators."""
    path = path.strip(" \t\r\n\"'\u202a")
    return path.replace("\\", "/")


def read_list(list_path, wav_dir=None) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Parse a ``wav|speaker|LANG|text`` file -> (entries, [(where, reason)] for skipped lines).

    The audio path is ``wav_dir/basename`` when ``wav_dir`` is given, else the path as written;
    a relative path is looked up beside the ``.list`` file first, then in the working directory.
    Duplicate names (same basename) keep the first line.
    """
    list_path = pathlib.Path(list_path)
    if not list_path.is_file():
        raise FileNotFoundError(f"annotation list {list_path} not found")
    entries, skipped, seen = [], [], set()
    for no, raw in enumerate(list_path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{list_path.name}:{no}"
        fields = raw.split("|", 3)
        if len(fields) != 4:
            skipped.append((where, f"expected 4 '|'-separated fields (wav|speaker|LANG|text), got {len(fields)}"))
            continue
        wav, speaker, code, text = fields
        wav = clean_path(wav)
        name = os.path.basename(wav)
        if code.strip() not in LANG_CODES:
            skipped.append((name or where, f"language {code!r} is not supported for training (use one of zh ja en ko yue)"))
            continue
        if not name:
            skipped.append((where, "empty audio path"))
            continue
        if name in seen:
            skipped.append((name, f"duplicate name (line {no}); the first line with this file name is used"))
            continue
        seen.add(name)
        if wav_dir is not None:
            path = pathlib.Path(wav_dir) / name
        else:
            path = pathlib.Path(wav)
            if not path.is_absolute() and (list_path.parent / path).exists():
                path = list_path.parent / path
        entries.append(Entry(name, str(path), speaker, LANG_CODES[code.strip()], text, no))
    return entries, skipped


def shard_of(name: str, num_shards: int) -> int:
    """Stable shard of an utterance (crc32 of its name)."""
    return zlib.crc32(name.encode("utf-8")) % num_shards


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {spec}: need n >= 1 and 0 <= i < n")
    return i, n


# ----------------------------------------------------------------------------- stage stores


class StageStore:
    """Results of one stage: ``<out>/work/<stage>/<chunk>.array_record`` + ``<chunk>.json`` manifests."""

    MAX_OPEN = 64

    def __init__(self, out, stage: str):
        self.stage = stage
        self.dir = pathlib.Path(out) / "work" / stage
        self.done: dict[str, tuple[pathlib.Path, int]] = {}
        self.failed: dict[str, str] = {}
        self._readers: dict[pathlib.Path, Any] = {}
        self.refresh()

    def refresh(self) -> None:
        self.done, self.failed = {}, {}
        if not self.dir.is_dir():
            return
        for manifest in sorted(self.dir.glob("*.json")):
            try:
                info = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # half-written manifest of a killed worker: its chunk is redone
            data = manifest.with_suffix(".array_record")
            for k, name in enumerate(info.get("names", [])):
                self.done.setdefault(name, (data, k))
            for name, reason in info.get("failed", {}).items():
                if name not in self.done:
                    self.failed.setdefault(name, reason)
        for name in self.done:
            self.failed.pop(name, None)

    def read(self, name: str) -> dict[str, Any]:
        path, k = self.done[name]
        reader = self._readers.get(path)
        if reader is None:
            from array_record.python.array_record_module import ArrayRecordReader

            if len(self._readers) >= self.MAX_OPEN:  # thousands of chunks: stay under the open-file limit
                self.close()
            reader = self._readers[path] = ArrayRecordReader(str(path), "readahead_buffer_size:0")
        return dsformat.decode_record(reader.read([k])[0])

    def writer(self, tag: str, chunk_items: int, chunk_seconds: float) -> ChunkWriter:
        self.dir.mkdir(parents=True, exist_ok=True)
        return ChunkWriter(self.dir, tag, chunk_items, chunk_seconds)

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers = {}


class ChunkWriter:
    """Appends records to a chunk and publishes it every ``chunk_items`` items or ``chunk_seconds``."""

    def __init__(self, folder: pathlib.Path, tag: str, chunk_items: int, chunk_seconds: float):
        self.folder, self.tag = folder, tag
        self.chunk_items, self.chunk_seconds = max(1, chunk_items), chunk_seconds
        self.seq = 0
        self._writer = None
        self._names: list[str] = []
        self._failed: dict[str, str] = {}

    def _open(self):
        from array_record.python.array_record_module import ArrayRecordWriter

        self._stem = f"{self.tag}-{self.seq:05d}"
        self._tmp = self.folder / f"{self._stem}.array_record.tmp"
        self._writer = ArrayRecordWriter(str(self._tmp), dsformat.WRITER_OPTIONS)
        self._opened = time.monotonic()

    def add(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            self._open()
        self._writer.write(dsformat.encode_record(record))
        self._names.append(record["name"])
        self._maybe_flush()

    def fail(self, name: str, reason: str) -> None:
        if self._writer is None:
            self._open()
        self._failed[name] = reason
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        n = len(self._names) + len(self._failed)
        if n >= self.chunk_items or time.monotonic() - self._opened >= self.chunk_seconds:
            self.flush()

    def flush(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        os.replace(self._tmp, self.folder / f"{self._stem}.array_record")
        manifest = {"names": self._names, "failed": self._failed, "time": time.time()}
        tmp = self.folder / f"{self._stem}.json.tmp"
        tmp.write_text(json.dumps(manifest, ensure_ascii=False))
        os.replace(tmp, self.folder / f"{self._stem}.json")  # the chunk now counts as done
        self._names, self._failed = [], {}
        self.seq += 1


# ----------------------------------------------------------------------------- per-item work


class ItemError(Exception):
    """An utterance that cannot be prepared; the message is the reason shown in the summary."""


def _features_2d(x, channels: int, what: str) -> np.ndarray:
    """Accept ``[C, T]``, ``[1, C, T]`` or ``[T, C]`` features -> float32 ``[C, T]``."""
    x = np.asarray(x, np.float32)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ItemError(f"{what} returned shape {x.shape}; expected [{channels}, T]")
    if x.shape[0] != channels and x.shape[1] == channels:
        x = x.T
    if x.shape[0] != channels:
        raise ItemError(f"{what} returned shape {x.shape}; expected [{channels}, T]")
    return x


@dataclasses.dataclass
class Models:
    """What the stages call; :func:`load_models` builds the real ones, tests pass fakes.

    * ``clean_text(text, lang, version) -> (phones, word2ph, norm_text)``
    * ``to_ids(phones, version) -> [int]``
    * ``bert(norm_text, word2ph) -> [1024, n_phones]`` (zh only)
    * ``hubert(wav16k float32 [N]) -> [768, T]`` (also ``[1, 768, T]``)
    * ``extract_latent(ssl float32 [1, 768, T]) -> codes`` (any shape holding ``T/2`` ids)
    """

    clean_text: Callable | None = None
    to_ids: Callable | None = None
    bert: Callable | None = None
    hubert: Callable | None = None
    extract_latent: Callable | None = None
    # optional: many clips in one padded call, each result equal to its solo call
    hubert_batch: Callable | None = None  # [wav16k_i] -> [[768, T_i]]
    sv_embed: Callable | None = None  # v2Pro*: wav16k float32 [N] -> speaker embedding [D]


def text_item(entry: Entry, models: Models, version: str) -> dict[str, Any]:
    text = entry.text.replace("%", "-").replace("￥", ",")  # as the original's 1-get-text
    if not text.strip():
        raise ItemError("empty transcript")
    try:
        phones, word2ph, norm_text = models.clean_text(text, entry.lang, version)
    except Exception as e:  # noqa: BLE001 - the frontends raise many kinds of errors on odd text
        raise ItemError(f"text frontend failed on {text!r}: {type(e).__name__}: {e}") from None
    if not phones:
        raise ItemError(f"text frontend produced no phones for {text!r}")
    ids = np.asarray(models.to_ids(phones, version), np.int32)
    record = {"name": entry.name, "lang": entry.lang, "text": entry.text, "norm_text": norm_text,
              "phones": " ".join(phones), "phone_ids": ids}
    if word2ph is not None:
        record["word2ph"] = np.asarray(word2ph, np.int32)
    if entry.lang == "zh":
        bert = _features_2d(models.bert(norm_text, word2ph), 1024, "BERT")
        if bert.shape[1] != len(phones):
            raise ItemError(f"BERT features have {bert.shape[1]} phone columns for {len(phones)} phones")
        if not np.isfinite(bert).all():
            raise ItemError("BERT features contain NaN/inf")
        record["bert"] = bert.astype(np.float16)
    return record


def decode_audio(entry: Entry) -> tuple[np.ndarray, np.ndarray, float]:
    """Load, check and mix one clip -> (HuBERT input at 16 kHz, int16 32 kHz wav, seconds)."""
    from gsv_jax import audio

    if not os.path.isfile(entry.wav):
        raise ItemError(f"audio file {entry.wav} not found")
    try:
        x = audio.load_audio(entry.wav, audio.MODEL_SR)
    except Exception as e:  # noqa: BLE001
        raise ItemError(f"cannot decode {entry.wav}: {type(e).__name__}: {e}") from None
    if x.size == 0:
        raise ItemError("audio file holds no samples")
    if not np.isfinite(x).all():
        raise ItemError("audio holds NaN/inf samples")
    peak = float(np.abs(x).max())
    if peak > MAX_PEAK:
        raise ItemError(f"peak amplitude {peak:.2f} > {MAX_PEAK} (the original skips such clips)")
    if peak < SILENT_PEAK:
        raise ItemError(f"silent audio (peak {peak:.1e})")
    if x.size < 1280:
        raise ItemError(f"clip too short ({x.size / audio.MODEL_SR * 1000:.0f} ms) for a semantic token")
    hubert_in, wav32k = audio.prepare_clip(x)
    return hubert_in, wav32k, x.size / audio.MODEL_SR


def audio_record(name: str, ssl, wav32k: np.ndarray) -> dict[str, Any]:
    ssl = _features_2d(ssl, 768, "HuBERT")
    if not np.isfinite(ssl).all():
        raise ItemError("HuBERT features contain NaN/inf")
    if ssl.shape[1] < 2:
        raise ItemError(f"HuBERT gave {ssl.shape[1]} frame(s); at least 2 are needed for a semantic token")
    return {"name": name, "wav32k": wav32k, "ssl": ssl.astype(np.float16)}


def audio_item(entry: Entry, models: Models) -> tuple[dict[str, Any], float]:
    """-> (record with wav32k and ssl, duration in seconds)."""
    hubert_in, wav32k, seconds = decode_audio(entry)
    return audio_record(entry.name, models.hubert(hubert_in), wav32k), seconds


def semantic_item(name: str, ssl: np.ndarray, models: Models) -> dict[str, Any]:
    ssl = np.asarray(ssl, np.float32)
    ssl = ssl[:, : 2 * (ssl.shape[1] // 2)]  # the 25 Hz quantizer ignores an odd last frame anyway
    codes = np.asarray(models.extract_latent(ssl[None]))
    codes = codes.reshape(-1).astype(np.int32)
    if codes.size == 0:
        raise ItemError("S2 quantizer produced no tokens")
    return {"name": name, "semantic": codes}


def sv_item(name: str, wav32k: np.ndarray, models: Models) -> dict[str, Any]:
    """As the original's ``2-get-sv.py``: the 32 kHz clip as float (int16 / 32768), torchaudio's
    ``Resample(32000, 16000)``, ``compute_embedding3`` -> ``sv_emb`` float32 ``[D]``."""
    from gsv_jax import audio

    wav = np.asarray(wav32k)
    wav = wav.astype(np.float32) / 32768.0 if wav.dtype == np.int16 else wav.astype(np.float32)
    emb = np.asarray(models.sv_embed(audio.resample_sinc(wav, audio.MODEL_SR, 16000)), np.float32).reshape(-1)
    if not np.isfinite(emb).all():
        raise ItemError("speaker embedding contains NaN/inf")
    return {"name": name, "sv_emb": emb}


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class StageReport:
    stage: str
    assigned: int = 0
    already: int = 0
    done: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    blocked: dict[str, str] = dataclasses.field(default_factory=dict)  # waiting on an earlier stage
    seconds: float = 0.0
    audio_seconds: float = 0.0

    def line(self) -> str:
        rate = f", {self.done / self.seconds:.2f} clips/s" if self.seconds > 0 and self.done else ""
        return (f"{self.stage:9s} assigned {self.assigned:6d}  already done {self.already:6d}  new {self.done:6d}  "
                f"failed {len(self.failed):5d}  blocked {len(self.blocked):5d}{rate}")


def _progress(it: Iterable, total: int, desc: str, enable: bool):
    if not enable:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc=desc, unit="clip", dynamic_ncols=True)


def run_stage(stage: str, entries: Sequence[Entry], out, models_fn: Callable[[str], Models], *, version="v2",
              tag: str = "w", chunk_items: int = 64, chunk_seconds: float = 120.0, retry_failed: bool = False,
              progress: bool = True, batch_size: int = 1) -> StageReport:
    """Run one stage over ``entries`` (already restricted to this worker's shard)."""
    store = StageStore(out, stage)
    report = StageReport(stage, assigned=len(entries))
    todo = []
    upstream = StageStore(out, "audio") if stage in ("semantic", SV_STAGE) else None
    for e in entries:
        if e.name in store.done or (e.name in store.failed and not retry_failed):
            report.already += 1
            if e.name in store.failed:
                report.failed[e.name] = store.failed[e.name]
            continue
        if upstream is not None and e.name not in upstream.done:
            report.blocked[e.name] = ("audio stage failed: " + upstream.failed[e.name]) if e.name in upstream.failed \
                else "audio stage not run yet"
            continue
        todo.append(e)
    if not todo:
        store.close()
        return report
    models = models_fn(stage)  # loaded only when there is work
    writer = store.writer(f"{tag}-{stage}", chunk_items, chunk_seconds)

    def fail(name: str, err: Exception) -> None:
        reason = str(err) if isinstance(err, ItemError) else f"{stage} failed: {type(err).__name__}: {err}"
        writer.fail(name, reason)
        report.failed[name] = reason

    def add(record: dict[str, Any], seconds: float) -> None:
        writer.add(record)
        report.done += 1
        report.audio_seconds += seconds

    pending: list = []  # audio stage: decoded clips waiting for one batched HuBERT call

    def run_hubert_batch() -> None:
        outs = None
        if len(pending) > 1:
            try:
                outs = models.hubert_batch([p[1] for p in pending])
            except Exception:  # noqa: BLE001 - find the culprit item by item below
                outs = None
        for k, (e, hub_in, wav32k, seconds) in enumerate(pending):
            try:
                ssl = outs[k] if outs is not None else models.hubert(hub_in)
                add(audio_record(e.name, ssl, wav32k), seconds)
            except Exception as err:  # noqa: BLE001
                fail(e.name, err)
        pending.clear()

    if stage == "audio" and models.hubert_batch is not None and batch_size > 1:
        # similar lengths share a batch (less padding): order by file size
        todo.sort(key=lambda e: os.path.getsize(e.wav) if os.path.isfile(e.wav) else 0)
    t0 = time.perf_counter()
    try:
        for e in _progress(todo, len(todo), stage, progress):
            try:
                if stage == "text":
                    add(text_item(e, models, version), 0.0)
                elif stage == "audio":
                    hub_in, wav32k, seconds = decode_audio(e)
                    if models.hubert_batch is not None and batch_size > 1:
                        pending.append((e, hub_in, wav32k, seconds))
                        if len(pending) >= batch_size:
                            run_hubert_batch()
                    else:
                        add(audio_record(e.name, models.hubert(hub_in), wav32k), seconds)
                elif stage == SV_STAGE:
                    wav32k = upstream.read(e.name)["wav32k"]
                    add(sv_item(e.name, wav32k, models), len(wav32k) / 32000.0)
                else:
                    ssl = upstream.read(e.name)["ssl"]
                    add(semantic_item(e.name, ssl, models), ssl.shape[1] / 50.0)
            except Exception as err:  # noqa: BLE001 - one bad item never stops the run
                fail(e.name, err)
        if pending:
            run_hubert_batch()
        writer.flush()
    finally:
        report.seconds = time.perf_counter() - t0
        store.close()
        if upstream is not None:
            upstream.close()
    return report


def pack_shard(entries: Sequence[Entry], out, shard: int, num_shards: int, meta: dict,
               progress: bool = True, stages: Sequence[str] = STAGES) -> StageReport:
    """Join the stage results of one shard's entries into ``data-<shard>-of-<n>.array_record``
    (``stages``: the stages every item needs; ``STAGES`` + ``"sv"`` for v2Pro* datasets)."""
    out = pathlib.Path(out)
    report = StageReport("pack", assigned=len(entries))
    stores = {s: StageStore(out, s) for s in stages}
    ready = []
    for e in entries:
        missing = [s for s in stages if e.name not in stores[s].done]
        if missing:
            s = missing[0]
            report.blocked[e.name] = (f"{s} stage failed: {stores[s].failed[e.name]}" if e.name in stores[s].failed
                                      else f"{s} stage not run yet")
        else:
            ready.append(e)
    index = out / dsformat.index_filename(shard, num_shards)
    data = out / dsformat.shard_filename(shard, num_shards)
    if data.exists() and index.exists():
        old = list(np.load(index)["names"])
        if old == [e.name for e in ready]:
            report.already = len(ready)
            for st in stores.values():
                st.close()
            return report
    # a different shard count from an earlier run would make the folder unreadable: drop it
    for stale in out.glob("data-*-of-*.array_record"):
        if not stale.name.endswith(f"-of-{num_shards:05d}.array_record"):
            stale.unlink(missing_ok=True)
            stale.with_name(stale.name.replace(".array_record", ".index.npz")).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with dsformat.DatasetWriter(out, shard, num_shards, meta=meta) as w:
        for e in _progress(ready, len(ready), "pack", progress):
            item = {}
            for s in stages:
                item.update(stores[s].read(e.name))
            w.add(item)
            report.done += 1
    report.seconds = time.perf_counter() - t0
    for st in stores.values():
        st.close()
    return report


def load_models(bert=None, hubert=None, sovits=None, sv=None) -> Callable[[str], Models]:
    """Lazy loader of the real models for each stage (nothing is loaded for a stage with no work)."""
    cache: dict[str, Any] = {}

    def need(flag, path):  # checked only when a stage has work, so a finished rerun needs no models
        if path is None:
            raise ValueError(f"this stage needs {flag} <path> (a model folder or weights file)")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{flag} {path} not found (a model folder or weights file)")
        return path

    def get(stage: str) -> Models:
        from gsv_jax import text

        m = Models(clean_text=text.clean_text, to_ids=text.cleaned_text_to_sequence)
        if stage == "text":
            if "bert" not in cache:
                import gsv_jax

                model = gsv_jax.load_bert(need("--bert", bert))
                cache["bert"] = model.phone_features
            m.bert = cache["bert"]
        elif stage == "audio":
            if "hubert" not in cache:
                import gsv_jax

                cache["hubert"] = gsv_jax.load_hubert(need("--hubert", hubert))
            m.hubert = cache["hubert"]
            m.hubert_batch = getattr(cache["hubert"], "features", None)
        elif stage == "semantic":
            if "s2" not in cache:
                import gsv_jax

                cache["s2"] = gsv_jax.load_s2(need("--sovits", sovits))
            m.extract_latent = cache["s2"].extract_latent
        elif stage == SV_STAGE:
            if "sv" not in cache:
                import gsv_jax

                cache["sv"] = gsv_jax.load_sv(need("--sv", sv))
            m.sv_embed = cache["sv"].embed
        return m

    return get


def worker_tag(shard: int, num_shards: int) -> str:
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:24]
    return f"s{shard:05d}of{num_shards:05d}-{host}-{os.getpid()}-{int(time.time() * 1000) % 10**10:010d}"


def prepare(list_path, out, models_fn: Callable[[str], Models], *, stages: Sequence[str] = ("text", "audio",
            "semantic", "pack"), shard: int = 0, num_shards: int = 1, wav_dir=None, version: str = "v2",
            chunk_items: int = 64, chunk_seconds: float = 120.0, retry_failed: bool = False, progress: bool = True,
            meta: dict | None = None, batch_size: int = 1) -> dict[str, Any]:
    """Run the requested stages for shard ``shard`` of ``num_shards``; returns the summary dict."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries, skipped = read_list(list_path, wav_dir)
    mine = [e for e in entries if shard_of(e.name, num_shards) == shard]
    tag = worker_tag(shard, num_shards)
    reports = []
    # a dataset with speaker embeddings (v2Pro*) packs them: asked for now, or already computed earlier
    with_sv = SV_STAGE in stages or (out / "work" / SV_STAGE).is_dir()
    for stage in stages:
        if stage == "pack":
            m = {"symbol_version": version, "sample_rate": 32000, "ssl_rate": 50, "semantic_rate": 25,
                 "source_list": str(list_path), **(meta or {})}
            reports.append(pack_shard(mine, out, shard, num_shards, m, progress,
                                      STAGES + ((SV_STAGE,) if with_sv else ())))
        elif stage in STAGES + (SV_STAGE,):
            reports.append(run_stage(stage, mine, out, models_fn, version=version, tag=tag, chunk_items=chunk_items,
                                     chunk_seconds=chunk_seconds, retry_failed=retry_failed, progress=progress,
                                     batch_size=batch_size))
        else:
            raise ValueError(f"unknown stage {stage!r}; choose from {STAGES + (SV_STAGE, 'pack')}")
    summary = {
        "list": str(list_path), "out": str(out), "shard": f"{shard}/{num_shards}",
        "lines": len(entries) + len(skipped), "assigned": len(mine),
        "skipped_lines": [{"item": w, "reason": r} for w, r in skipped],
        "stages": {r.stage: {"assigned": r.assigned, "already_done": r.already, "new": r.done,
                             "failed": r.failed, "blocked": r.blocked, "seconds": round(r.seconds, 3),
                             "audio_seconds": round(r.audio_seconds, 3)} for r in reports},
    }
    summary_path = out / "work" / f"summary-s{shard:05d}of{num_shards:05d}.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    summary["_reports"] = reports
    summary["summary_path"] = str(summary_path)
    return summary


def format_summary(summary: dict[str, Any], max_lines: int = 20) -> str:
    lines = [f"shard {summary['shard']}: {summary['assigned']} of {summary['lines']} lines in {summary['list']}"]
    lines += [r.line() for r in summary["_reports"]]
    problems = [(d["item"], d["reason"]) for d in summary["skipped_lines"]]
    seen = set()
    for r in summary["_reports"]:
        for name, reason in r.failed.items():
            if name not in seen:
                seen.add(name)
                problems.append((name, f"[{r.stage}] {reason}"))
    if problems:
        lines.append(f"skipped items ({len(problems)}):")
        lines += [f"  {n}: {why}" for n, why in problems[:max_lines]]
        if len(problems) > max_lines:
            lines.append(f"  ... {len(problems) - max_lines} more in {summary['out']}/work/summary-*.json")
    pack = [r for r in summary["_reports"] if r.stage == "pack"]
    if pack and pack[0].blocked:
        lines.append(f"{len(pack[0].blocked)} item(s) not in the dataset yet (see summary JSON for reasons)")
    return "\n".join(lines)
