"""The training-task contract: what a model brings to the generic state, step, loop and ``train.py``
(docs/training.md).

A :class:`Task` has two sides:

* **model side**, used by ``state.py`` / ``step.py`` / ``loop.py``: ``init_params``, ``loss_fn``,
  ``batch_spec`` (abstract), ``host_init_params`` (default: none, the jitted init is used) and
  ``make_step_fn`` (default: the generic single-loss step with the task's :class:`StepConfig`;
  S2 replaces it by its GAN step);
* **run side**, used by ``train.py``: ``check_config`` (cheap checks before any slow work),
  ``train`` (build data, optimizer, initial weights, run the loop, export) and ``compile_only``.

``train.py`` picks the class from ``config.train.task`` (:func:`task_class`) and only dispatches.
Errors a user can fix (bad config values, missing files, no usable data) are raised as
:class:`TrainingSetupError`: ``train.py`` prints its one line and exits with status 2.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

from gsv_jax.train.step import StepConfig, make_step_fn


class TrainingSetupError(ValueError):
    """The config, a file or the data cannot be trained on; the message names the problem and the fix."""


class DataIterator(Protocol):
    """What the loop needs from the data: host-local numpy batches and a resumable position."""

    def __iter__(self) -> Iterator[dict]: ...

    def __next__(self) -> dict: ...

    def get_state(self) -> dict: ...

    def set_state(self, state: dict) -> None: ...


class Task(abc.ABC):
    name: ClassVar[str] = ""  # the config.train.task value
    step_config: StepConfig = StepConfig()  # options of the generic step (instances may set their own)

    # -- model side ------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_params(self, rng) -> Any:
        """Parameters, leaves boxed with ``nn.Partitioned`` (logical axis names) as ``model.init`` returns them."""

    @abc.abstractmethod
    def loss_fn(self, params, batch, rng, train: bool = True) -> tuple[Any, dict]:
        """``(scalar loss, {name: scalar metric})``; ``tokens`` (positions counted) gives throughput."""

    @abc.abstractmethod
    def batch_spec(self, batch_size: int, *lengths: int) -> dict:
        """``{field: jax.ShapeDtypeStruct}`` of a padded batch (leading dim = batch), for AOT compiles."""

    def host_init_params(self, seed: int) -> Any | None:
        """Fresh parameters drawn on the host (plain numpy tree), or None to use a jitted ``init_params``."""
        return None

    def make_step_fn(self, tx, schedule):
        """The loop's un-jitted ``(state, batch, rng) -> (state, metrics)``."""
        return make_step_fn(self, tx, schedule, **dataclasses.asdict(self.step_config))

    # -- run side (train.py) -----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config) -> Task:
        """The task from a full config (``model``, ``data``, ``optim``, ``train``, ``mesh``)."""
        raise NotImplementedError(f"{cls.__name__} is not built from a config")

    @classmethod
    def check_config(cls, config, workdir: str | None, init_from: Sequence[str] = (), *, data: bool = True) -> None:
        """Cheap checks before anything slow: ``train`` values, the run folder (unless None), the data
        source (when ``data``) and the ``--init-from`` files. Raises :class:`TrainingSetupError`."""
        t = config.train
        for key in ("batch_size", "num_steps", "log_every", "save_every", "keep", "accum_steps"):
            if key in t and (not isinstance(t[key], int) or t[key] < 1):
                raise TrainingSetupError(f"--config.train.{key}={t[key]}: must be a positive integer")
        if workdir is not None:
            check_workdir(workdir)
        if data:
            check_data_source(config.data)
        for path in init_from:
            if not os.path.isfile(path):
                raise TrainingSetupError(f"--init-from {path}: no such file")

    @classmethod
    def train(cls, config, workdir: str, init_from: Sequence[str] = (), *, stop_after: int | None = None,
              export_path: str | None = None):
        """Train (resuming from ``workdir``), then export; returns the loop's ``RunResult``."""
        raise NotImplementedError(f"{cls.__name__} has no train.py run")

    @classmethod
    def compile_only(cls, config, **options) -> dict:
        """Compile the sharded step ahead of time and report memory / FLOPs (``train.py --compile-only``)."""
        raise TrainingSetupError(f"--compile-only is not available for {cls.name} training")


TASKS = {"s1": "gsv_jax.train.s1_task:S1Task", "s2": "gsv_jax.train.s2_task:S2Task"}


def task_class(name: str) -> type[Task]:
    """The task class for ``config.train.task``."""
    if name not in TASKS:
        raise TrainingSetupError(f"--config.train.task={name!r}: use one of {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_workdir(workdir: str) -> None:
    """The run folder is a folder (or can be created as one)."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise TrainingSetupError(f"--workdir {workdir} is a file; give a folder (it is created when missing)")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise TrainingSetupError(f"--workdir {workdir}: {parent} is a file, so the folder cannot be created")
    if not os.access(parent, os.W_OK):
        raise TrainingSetupError(f"--workdir {workdir}: {parent} is not writable")


def check_data_source(data) -> None:
    """``config.data.exp_dir`` (the original's experiment folder) or ``config.data.dataset`` is an existing folder."""
    exp_dir, dataset = data.get("exp_dir", ""), data.get("dataset", "")
    if not exp_dir and not dataset:
        raise TrainingSetupError("no training data: set --config.data.exp_dir=<the original's prepared experiment "
                                 "folder> or --config.data.dataset=<a folder written by data/prepare.py>")
    key, folder = ("exp_dir", exp_dir) if exp_dir else ("dataset", dataset)
    if not os.path.isdir(folder):
        raise TrainingSetupError(f"--config.data.{key}={folder}: no such folder")


def data_or_setup_error(make, *args, **kwargs):
    """``make(*args)`` (a data iterator), with the data's own complaints (a missing file, every item
    filtered out) raised as :class:`TrainingSetupError`."""
    try:
        return make(*args, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        raise TrainingSetupError(f"training data: {e}") from e
