"""A real server process for the tests: ``python -m gsv_jax.serve`` on 127.0.0.1 at a free port,
waited for until ``/health`` answers, stopped by its PID (SIGTERM, then SIGKILL)."""
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list, log_path, *, start_timeout: float = 900):
    """Yields ``(base_url, process)``; ``args`` are the server's own (``--selftest`` or
    ``--model-dir``, options); its output goes to ``log_path``."""
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gsv_jax.serve", "-a", "127.0.0.1", "-p", str(port), *args],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("server exited:\n" + pathlib.Path(log_path).read_text()[-3000:])
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not come up:\n" + pathlib.Path(log_path).read_text()[-3000:])
                time.sleep(0.5)
            yield base, proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
