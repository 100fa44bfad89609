"""Run our side and the original's side of a benchmark in separate processes, interleaved.

Every speed bench takes ``--original /path/to/GPT-SoVITS``; it then calls :func:`interleave` with
one command line per side.  Each round runs ours, then the original (fresh processes, so neither
side's thread pool or allocator state touches the other), and records the 1-minute load average
before each.  :func:`summary` gives the median, min and max per metric and the ratio of medians.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)


def load_average() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def device_info(device: str | None = None) -> dict:
    """The JAX device benchmarks run on (``--device``: cpu / gpu / tpu, default JAX's choice)."""
    import jax

    dev = jax.devices(device)[0] if device else jax.devices()[0]
    return {"platform": dev.platform, "device_kind": dev.device_kind, "devices": len(jax.devices(dev.platform))}


def use_device(device: str | None):
    """Make ``device`` the default for this process; returns its description."""
    import jax

    if device:
        jax.config.update("jax_default_device", jax.devices(device)[0])
    return device_info(device)


def run_json(cmd: list, what: str, env: dict | None = None) -> dict:
    """Run ``cmd``; its last stdout line is one JSON object."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{what} failed ({' '.join(cmd[:4])} ...):\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["_process_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def original_cmd(repo: str, only: str, repeats: int, extra: list | None = None) -> list:
    return [sys.executable, os.path.join(BENCH, "original.py"), "--repo", repo, "--only", only,
            "--repeats", str(repeats), "--one-line", *(extra or [])]


def interleave(ours: list, original: list | None, rounds: int) -> dict:
    """``rounds`` x (ours, original) in fresh processes; returns the raw results and loads."""
    res = {"ours": [], "original": [], "load_average_before": []}
    for _ in range(rounds):
        res["load_average_before"].append(load_average())
        res["ours"].append(run_json(ours, "our side"))
        if original:
            res["load_average_before"].append(load_average())
            res["original"].append(run_json(original, "the original's side"))
    res["load_average_after"] = load_average()
    return res


def stats(values: list) -> dict:
    values = [float(v) for v in values]
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def summary(ours: list, original: list, higher_is_better: bool) -> dict:
    """Median / min / max per side and the speed ratio ours vs original (> 1: we are faster)."""
    out = {"ours": stats(ours)}
    if original:
        out["original"] = stats(original)
        a, b = out["ours"]["median"], out["original"]["median"]
        out["ratio"] = round(a / b if higher_is_better else b / a, 3)
    return out
