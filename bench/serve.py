#!/usr/bin/env python
"""HTTP server benchmark: throughput and latency for 1, 4 and 8 concurrent clients against the same
server, the same load served one request at a time, and time to first audio per streaming mode.

    python bench/serve.py --selftest                    # tiny random models (starts its own server)
    python bench/serve.py --model-dir models/v2         # full-size models (starts its own server)
    python bench/serve.py --url http://127.0.0.1:9880 --ref ref.wav --ref-text "..."   # a running server

Prints one JSON object: per load, ``throughput`` (audio seconds per wall second), latency
percentiles (seconds) and the speed-up over one at a time; per streaming mode the time to the first
audio bytes at the client. See docs/server.md and docs/performance.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parent.parent
SENTENCES = ["今天天气很不错。", "我们一起去公园散步吧。", "你好，这是一个测试。", "这家店的咖啡很好喝。",
             "明天早上八点开会。", "请把窗户关上。", "我喜欢听音乐。", "周末我们去看电影吧。"]


def start_server(args) -> tuple[subprocess.Popen, str, dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gsv_jax.serve", "-p", str(port), "--log-level", "warning",
           "--max-batch", str(args.max_batch)]
    cmd += ["--selftest"] if args.selftest else ["--model-dir", str(args.model_dir)]
    if args.max_new_tokens:
        cmd += ["--max-new-tokens", str(args.max_new_tokens)]
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115 - kept for the report
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(pathlib.Path(log.name).read_text()[-3000:])
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    return proc, base, {"startup_seconds": round(time.perf_counter() - t0, 1), "server_log": log.name}


def request_body(args, text: str, **kw) -> dict:
    body = {"text": text, "text_lang": "zh", "prompt_lang": args.ref_lang, "top_k": args.top_k, "seed": 0,
            "text_split_method": "cut0"}
    if args.ref:
        body.update(ref_audio_path=str(args.ref), prompt_text=args.ref_text)
    body.update(kw)
    return body


def one(base: str, body: dict) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = httpx.post(base + "/tts", json=body, timeout=3600)
    r.raise_for_status()
    data, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    return time.perf_counter() - t0, len(data) / sr


def load(base: str, bodies: list, clients: int, warm_passes: int = 1) -> dict:
    """Serve ``bodies`` with ``clients`` concurrent clients (0: one at a time). ``warm_passes`` untimed
    passes first, so that the timed one measures the steady state, not the compilation of the batch
    shapes this load produces (every new (rows, length bucket) pair compiles once per process)."""
    for _ in range(warm_passes):
        _run(base, bodies, clients)
    before = httpx.get(base + "/health").json()["stats"]
    t0 = time.perf_counter()
    results = _run(base, bodies, clients)
    wall = time.perf_counter() - t0
    after = httpx.get(base + "/health").json()["stats"]
    lat = np.array([r[0] for r in results])
    audio = sum(r[1] for r in results)
    engine = {k: round(after[k] - before.get(k, 0), 2) for k in after if isinstance(after[k], (int, float))}
    return {"requests": len(bodies), "wall_seconds": round(wall, 2), "audio_seconds": round(audio, 2),
            "throughput": round(audio / wall, 3),
            "latency": {p: round(float(np.percentile(lat, q)), 2) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
            "engine": engine}


def _run(base: str, bodies: list, clients: int) -> list:
    if clients == 0:  # one at a time
        results = [one(base, b) for b in bodies]
    else:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda b: one(base, b), bodies))
    return results


def first_audio(base: str, body: dict) -> dict:
    t0 = time.perf_counter()
    got, first = 0, None
    with httpx.stream("POST", base + "/tts", json=body, timeout=3600) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            got += len(chunk)
            if first is None and got > 44:  # past the WAV header: the first audio bytes
                first = time.perf_counter() - t0
    return {"first_audio_seconds": round(first, 3), "total_seconds": round(time.perf_counter() - t0, 3),
            "bytes": got}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--selftest", action="store_true", help="start a server over tiny random models")
    src.add_argument("--model-dir", type=pathlib.Path, help="start a server over this model folder")
    src.add_argument("--url", help="benchmark a running server")
    p.add_argument("--ref", type=pathlib.Path, help="reference clip (default: the server's default voice)")
    p.add_argument("--ref-text", default="")
    p.add_argument("--ref-lang", default="zh")
    p.add_argument("--requests", type=int, default=16, help="requests per load (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="server token bound (random weights never stop)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--top-k", type=int, default=15)
    p.add_argument("--warm-passes", type=int, default=1,
                   help="untimed passes of each load before the timed one (default 1; 0 includes compilation)")
    args = p.parse_args(argv)
    if args.model_dir and not args.ref:
        from gsv_jax.inference.selftest import write_selftest_reference

        args.ref = write_selftest_reference(pathlib.Path(tempfile.mkdtemp()) / "ref.wav", seconds=5.0)
    proc, info = None, {}
    if args.url:
        base = args.url.rstrip("/")
    else:
        proc, base, info = start_server(args)
    try:
        health = httpx.get(base + "/health").json()
        bodies = [request_body(args, SENTENCES[i % len(SENTENCES)]) for i in range(args.requests)]
        one(base, bodies[0])  # anything not compiled at start-up
        out = {"server": {"version": health["version"], "max_new_tokens": health["max_new_tokens"], **info},
               "requests_per_load": args.requests, "loads": {}}
        out["warm_passes"] = args.warm_passes
        out["loads"]["one_at_a_time"] = load(base, bodies, 0, args.warm_passes)
        for c in (1, 4, 8):
            out["loads"][f"clients_{c}"] = load(base, bodies, c, args.warm_passes)
        base_tp = out["loads"]["one_at_a_time"]["throughput"]
        for v in out["loads"].values():
            v["speedup_vs_one_at_a_time"] = round(v["throughput"] / base_tp, 2)
        text = "今天天气很不错。我们一起去公园散步吧！"
        out["time_to_first_audio"] = {f"mode_{m}": first_audio(base, request_body(args, text, streaming_mode=m,
                                                                                  text_split_method="cut5"))
                                      for m in (0, 1, 2, 3)}
        out["server_stats"] = httpx.get(base + "/health").json()["stats"]
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
