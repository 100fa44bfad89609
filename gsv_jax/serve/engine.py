"""The batching engine behind the HTTP server (docs/server.md "Concurrency").

Two worker threads share one :class:`~gsv_jax.inference.tts.TTS`:

* the **S1 thread** decodes the waiting segments of all requests as one padded batch (rows end
  independently, each with its own prompt and seed), up to ``max_batch`` rows picked round-robin
  across requests in arrival order. New requests join at the next S1 call: segments are short
  (the text is cut first), so nobody waits for a whole long request. The decoder hands the tokens
  back every 16 steps: finished rows go to S2 at once, streaming rows are cut into chunks as they
  grow, and a batch whose clients have all gone stops.
* the **S2 thread** decodes finished segments of all requests as one batch per reference (and
  speed), and streaming chunks one at a time in order, so S1 of the next batch overlaps S2 of the
  last one.

Each request is a :class:`Job` with its own output queue; an error in one batch is retried row by
row so that only the request that caused it fails. A weights switch waits for the running jobs
(:meth:`Engine.exclusive`) and holds new ones back meanwhile.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import queue
import threading
import time

import numpy as np

from gsv_jax.inference import streaming
from gsv_jax.inference.tts import S2Row, Sampling, normalize_peak

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Params:
    """One request's validated synthesis parameters (the server maps the original's names here)."""

    text: str
    text_lang: str
    ref_audio_path: str
    prompt_text: str = ""
    prompt_lang: str = "zh"
    aux_ref_audio_paths: tuple = ()
    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    cut: str = "cut5"
    speed: float = 1.0
    fragment_interval: float = 0.3
    seed: int = 0
    streaming_mode: int = 0           # 0 whole file, 1 per segment, 2 mute-cut chunks, 3 fixed chunks
    overlap_length: int = 2
    min_chunk_length: int = 16
    noise_scale: float = 0.5
    max_new_tokens: int | None = None
    sample_steps: int | None = None   # v3/v4 CFM steps (the version's default when None; unused by v1/v2)


END = object()


class JobCancelled(Exception):
    pass


class Job:
    """One request in flight: its prepared inputs, progress per segment and the queue of output pieces
    (float32 arrays at the model's rate, then ``END``; or an exception)."""

    def __init__(self, params: Params, prepared, sample_rate: int, timeout: float):
        self.params, self.prepared, self.sample_rate = params, prepared, sample_rate
        self.out: queue.Queue = queue.Queue()
        self.deadline = time.monotonic() + timeout
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        n = len(prepared.targets)
        self.rows = prepared.s1_rows(params.seed)
        self.wavs: list = [None] * n
        self.pieces: list = [[] for _ in range(n)]   # streamed audio per segment, not yet emitted
        self.seg_done = [False] * n
        self.next_emit = 0
        self.t_submit = time.perf_counter()
        self.t_first_audio: float | None = None
        self.lock = threading.Lock()
        self.on_finish = None
        if params.streaming_mode >= 2:
            self.cutters = [streaming.ChunkCutter(params.min_chunk_length, None) for _ in range(n)]
            self.decoders: list = [None] * n

    @property
    def dead(self) -> bool:
        return self.cancelled.is_set() or self.finished.is_set() or time.monotonic() > self.deadline

    def cancel(self) -> None:
        self.cancelled.set()
        self._finish()

    def fail(self, exc: BaseException) -> None:
        if not self.finished.is_set():
            self.out.put(exc)
        self._finish()

    def _finish(self) -> None:
        with self.lock:
            if self.finished.is_set():
                return
            self.finished.set()
        if self.on_finish is not None:
            self.on_finish(self)

    def _put(self, wav: np.ndarray) -> None:
        if self.t_first_audio is None and len(wav):
            self.t_first_audio = time.perf_counter()
        self.out.put(wav)

    # -- results -------------------------------------------------------------------------------
    def segment_audio(self, seg: int, wav: np.ndarray) -> None:
        """A whole segment decoded (modes 0 and 1)."""
        with self.lock:
            self.wavs[seg] = wav
            self.seg_done[seg] = True
            ready = []
            if self.params.streaming_mode == 1:
                while self.next_emit < len(self.wavs) and self.seg_done[self.next_emit]:
                    ready.append(self.wavs[self.next_emit])
                    self.next_emit += 1
            complete = all(self.seg_done)
        gap = np.zeros(int(self.sample_rate * self.params.fragment_interval), np.float32)
        for w in ready:
            self._put(np.concatenate([normalize_peak(w), gap]))
        if complete:
            if self.params.streaming_mode == 0:
                pieces = []
                for w in self.wavs:
                    pieces += [normalize_peak(w), gap]
                self._put(np.concatenate(pieces))
            self.out.put(END)
            self._finish()

    def stream_audio(self, seg: int, wav: np.ndarray, last: bool) -> None:
        """A streamed piece of a segment (modes 2 and 3); pieces go out in segment order."""
        with self.lock:
            self.pieces[seg].append(normalize_peak(wav))
            if last:
                self.pieces[seg].append(np.zeros(int(self.sample_rate * self.params.fragment_interval), np.float32))
                self.seg_done[seg] = True
            ready = []
            while self.next_emit < len(self.pieces):
                ready += self.pieces[self.next_emit]
                self.pieces[self.next_emit] = []
                if not self.seg_done[self.next_emit]:
                    break
                self.next_emit += 1
            complete = all(self.seg_done)
        for w in ready:
            if len(w):
                self._put(w)
        if complete:
            self.out.put(END)
            self._finish()


@dataclasses.dataclass
class _StreamChunk:
    job: Job
    seg: int
    tokens: np.ndarray
    last: bool


@dataclasses.dataclass
class _Segment:
    job: Job
    seg: int
    row: S2Row


class Engine:
    def __init__(self, tts, *, max_batch: int = 8, gather_seconds: float = 0.005, timeout: float = 300.0):
        self.tts = tts
        self.max_batch = max(1, int(max_batch))
        self.gather = gather_seconds
        self.timeout = timeout
        self.cond = threading.Condition()
        self.s1_waiting: collections.OrderedDict = collections.OrderedDict()  # job -> deque of segment indexes
        self.s2_waiting: collections.deque = collections.deque()
        self.active = 0
        self.switching = False
        self.stopping = False
        self.stats = collections.Counter()
        self._mute_sim = None
        self.threads = [threading.Thread(target=self._s1_loop, name="gsv-s1", daemon=True),
                        threading.Thread(target=self._s2_loop, name="gsv-s2", daemon=True)]
        for t in self.threads:
            t.start()

    # -- jobs ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self):
        """Hold the models for one request (prepare included): a weights switch waits for it."""
        with self.cond:
            while self.switching:
                self.cond.wait()
            self.active += 1
        released = threading.Event()

        def release(*_):
            if not released.is_set():
                released.set()
                with self.cond:
                    self.active -= 1
                    self.cond.notify_all()
        try:
            yield release
        except BaseException:
            release()
            raise

    @contextlib.contextmanager
    def exclusive(self, timeout: float = 600.0):
        """No request runs inside (new ones wait): used to switch weights."""
        with self.cond:
            while self.switching:
                self.cond.wait()
            self.switching = True
            end = time.monotonic() + timeout
            while self.active > 0:
                left = end - time.monotonic()
                if left <= 0:
                    self.switching = False
                    self.cond.notify_all()
                    raise TimeoutError(f"{self.active} request(s) still running after {timeout:.0f} s; try again")
                self.cond.wait(left)
        try:
            yield
        finally:
            with self.cond:
                self.switching = False
                self._mute_sim = None
                self.cond.notify_all()

    def mute_similarity(self) -> np.ndarray:
        if self._mute_sim is None:
            cb = self.tts.s2.params["quantizer"]["vq"]["layers_0"]["_codebook"]["embed"]
            self._mute_sim = streaming.mute_similarity(np.asarray(cb))
        return self._mute_sim

    def submit(self, params: Params, prepared, release=None) -> Job:
        job = Job(params, prepared, self.tts.sample_rate, self.timeout)
        job.on_finish = release
        if params.streaming_mode == 2:
            sim = self.mute_similarity()
            job.cutters = [streaming.ChunkCutter(params.min_chunk_length, sim) for _ in job.rows]
        with self.cond:
            self.s1_waiting[job] = collections.deque(range(len(job.rows)))
            self.stats["requests"] += 1
            self.cond.notify_all()
        return job

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    # -- S1 --------------------------------------------------------------------------------------
    def _take_s1_batch(self):
        """Round-robin over jobs in arrival order, rows of the oldest job's kind (sampling, budget)."""
        for job in [j for j in self.s1_waiting if j.dead]:
            del self.s1_waiting[job]
            if not job.finished.is_set():
                job.fail(TimeoutError(f"request timed out after {self.timeout:.0f} s"))
        if not self.s1_waiting:
            return None, []
        first = next(iter(self.s1_waiting))
        kind = (first.params.sampling, first.params.max_new_tokens)
        picked = []
        while len(picked) < self.max_batch:
            took = False
            for job, segs in self.s1_waiting.items():
                if segs and (job.params.sampling, job.params.max_new_tokens) == kind and len(picked) < self.max_batch:
                    picked.append((job, segs.popleft()))
                    took = True
            if not took:
                break
        for job in [j for j, s in self.s1_waiting.items() if not s]:
            del self.s1_waiting[job]
        return kind, picked

    def _s1_loop(self):
        while True:
            with self.cond:
                while not self.s1_waiting and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
            time.sleep(self.gather)  # let requests that arrive together share the batch
            with self.cond:
                kind, picked = self._take_s1_batch()
            if picked:
                self._run_s1(kind, picked)

    def _run_s1(self, kind, picked):
        sampling, budget = kind
        try:
            self._generate(sampling, budget, picked)
        except Exception as e:  # noqa: BLE001 - isolate: retry row by row, fail only the culprit
            if len(picked) == 1:
                log.warning("S1 failed for one request: %s", e)
                picked[0][0].fail(e)
                return
            for item in picked:
                try:
                    self._generate(sampling, budget, [item])
                except Exception as e1:  # noqa: BLE001
                    log.warning("S1 failed for one request: %s", e1)
                    item[0].fail(e1)

    def _generate(self, sampling, budget, picked):
        delivered = [False] * len(picked)

        def deliver(i, tokens):
            job, seg = picked[i]
            delivered[i] = True
            if job.dead:
                return
            tokens = np.asarray(tokens, np.int32)
            if len(tokens) == 0:
                tokens = np.zeros((1,), np.int32)  # the original's "bad zero prediction"
            if job.params.streaming_mode >= 2:
                chunks = job.cutters[seg].finish(tokens)  # complete chunks, then the rest (maybe empty)
                for k, chunk in enumerate(chunks):
                    self._queue_s2(_StreamChunk(job, seg, chunk, k == len(chunks) - 1))
            else:
                self._queue_s2(_Segment(job, seg, S2Row(tokens, job.prepared.targets[seg].ids, job.prepared.specs,
                                                        job.rows[seg].seed, prompt=job.prepared.cfm_prompt)))

        def on_chunk(out, n_out, done):
            alive = False
            for i, (job, seg) in enumerate(picked):
                if delivered[i]:
                    continue
                if job.dead:
                    delivered[i] = True
                    continue
                alive = True
                row = out[i, : n_out[i]]
                if done[i]:
                    deliver(i, row)
                elif job.params.streaming_mode >= 2:
                    for chunk in job.cutters[seg].feed(row):
                        self._queue_s2(_StreamChunk(job, seg, chunk, False))
            return not alive  # every client has gone (or every row is finished): stop

        t0 = time.perf_counter()
        tokens, _ = self.tts.generate_tokens([job.rows[seg] for job, seg in picked], sampling,
                                             max_new_tokens=budget, on_chunk=on_chunk)
        self.stats["s1_batches"] += 1
        self.stats["s1_rows"] += len(picked)
        self.stats["s1_seconds"] += time.perf_counter() - t0
        for i, t in enumerate(tokens):
            if not delivered[i]:
                deliver(i, t)

    # -- S2 --------------------------------------------------------------------------------------
    def _queue_s2(self, item) -> None:
        with self.cond:
            self.s2_waiting.append(item)
            self.cond.notify_all()

    def _s2_loop(self):
        while True:
            with self.cond:
                while not self.s2_waiting and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                items = list(self.s2_waiting)
                self.s2_waiting.clear()
            chunks = [it for it in items if isinstance(it, _StreamChunk)]
            segments = [it for it in items if isinstance(it, _Segment)]
            for it in chunks:  # streaming first: they are what a listener is waiting for
                self._run_chunk(it)
            groups: dict = {}
            for it in segments:
                if it.job.dead:
                    continue
                p = it.job.params
                key = (tuple(id(s) for s in it.row.specs), p.speed, p.noise_scale, p.sample_steps)
                groups.setdefault(key, []).append(it)
            for (_, speed, noise_scale, steps), group in groups.items():
                for start in range(0, len(group), self.max_batch):
                    self._run_segments(group[start:start + self.max_batch], speed=speed, noise_scale=noise_scale,
                                       sample_steps=steps)

    def _run_segments(self, group, **decode_kw):
        t0 = time.perf_counter()
        try:
            wavs = self.tts.decode_tokens([it.row for it in group], **decode_kw)
        except Exception:  # noqa: BLE001 - isolate: retry one by one
            wavs = []
            for it in group:
                try:
                    wavs += self.tts.decode_tokens([it.row], **decode_kw)
                except Exception as e:  # noqa: BLE001
                    log.warning("S2 failed for one request: %s", e)
                    it.job.fail(e)
                    wavs.append(None)
        self.stats["s2_batches"] += 1
        self.stats["s2_rows"] += len(group)
        self.stats["s2_seconds"] += time.perf_counter() - t0
        for it, w in zip(group, wavs):
            if w is not None and not it.job.dead:
                it.job.segment_audio(it.seg, w)

    def _run_chunk(self, it: _StreamChunk):
        job, seg = it.job, it.seg
        if job.dead:
            return
        try:
            if job.decoders[seg] is None:
                p = job.params
                job.decoders[seg] = streaming.StreamDecoder(
                    self.tts.s2, job.prepared.targets[seg].ids, job.prepared.specs, speed=p.speed,
                    noise_scale=p.noise_scale, overlap_length=p.overlap_length, seed=job.rows[seg].seed,
                    sv_emb=self.tts.speaker_embeddings(job.prepared.specs))  # v2Pro*: per reference; else None
            t0 = time.perf_counter()
            wav = job.decoders[seg].push(it.tokens, it.last)
            self.stats["s2_chunks"] += 1
            self.stats["s2_seconds"] += time.perf_counter() - t0
            job.stream_audio(seg, wav, it.last)
        except Exception as e:  # noqa: BLE001 - only this request fails
            log.warning("streaming S2 failed for one request: %s", e)
            job.fail(e)
