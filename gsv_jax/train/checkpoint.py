"""Checkpoints with orbax ``CheckpointManager``: asynchronous, atomic, keep the last N.

One checkpoint = ``state`` (params, optimizer state, step, rng; sharded arrays, written by every
host in parallel) + ``data`` (the input iterator's position, JSON). Orbax writes into a
temporary directory and renames it when complete, so a run killed mid-save leaves no
half-written step behind (the temporary directory is ignored and cleaned up on the next start).

Restoring takes an abstract state whose leaves carry the *target* shardings, so a checkpoint
saved on one mesh is restored straight onto another (different device count or axis sizes).
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointMismatch(ValueError):
    """A checkpoint whose tree is not the training state being restored."""


class Checkpointer:
    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True,
                 clean_unfinished: bool = True):
        """``clean_unfinished=False`` for a look at the folder that must not touch it (e.g. while
        another process may be writing a checkpoint there)."""
        self.directory = os.path.abspath(directory)
        if clean_unfinished:
            _remove_unfinished_saves(self.directory)
        # Orbax's own clean-up runs in a background thread that close() does not wait for; two
        # managers opened one after the other on a killed run's folder would race on the same
        # temporary directory. Ours above is synchronous, so orbax's is off.
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict | None = None, *, force: bool = True) -> bool:
        """Start saving (returns at once when asynchronous); ``wait()`` blocks until it is on disk."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state or {}))
        return self.manager.save(int(step), args=args, force=force)

    def restore(self, abstract_state, step: int | None = None) -> tuple[Any, dict]:
        """Restore into ``abstract_state`` (ShapeDtypeStructs with target shardings)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        try:
            out = self.manager.restore(int(step), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        except ValueError as e:
            if "Structure mismatch" not in str(e):
                raise
            raise CheckpointMismatch(
                f"checkpoint {self.directory} step {step} does not hold this run's training state "
                f"({str(e).splitlines()[0][:200]}): it was written with another model configuration, or by an "
                "older gsv-jax (S2 checkpoints from before the trainable codebook lack params/codebook); train in a "
                "new --workdir, starting from that run's exported weights with --init-from") from None
        return out.state, dict(out.data or {})

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


TMP_MARK = ".orbax-checkpoint-tmp"


def _remove_unfinished_saves(directory: str) -> None:
    """Delete the temporary folders a run killed mid-save leaves (primary host; others wait)."""
    if jax.process_index() == 0 and os.path.isdir(directory):
        for name in os.listdir(directory):
            if TMP_MARK in name:
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("gsv_jax checkpoint tmp clean-up")


class StopSignal:
    """Turns SIGTERM / SIGINT into a flag the loop checks between steps (then saves and exits).

    A second SIGINT restores the default handler (so Ctrl-C twice still kills at once).
    """

    def __init__(self):
        self.requested = False
        self.signum = None
        self._old = {}

    def _handler(self, signum, frame):
        self.requested = True
        self.signum = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._old.get(signal.SIGINT, signal.default_int_handler))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
        return False


def process_allgather_flag(flag: bool) -> bool:
    """True on every host if any host got a stop signal (so all hosts save the same step)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.process_allgather(jax.numpy.asarray(int(flag))).max())
