"""Compiled programs kept on disk, so that a new process runs them without tracing or compiling.

JAX's persistent compilation cache saves the XLA compile, but every new process still traces the
Python model and lowers it to MLIR before it can look the executable up (several seconds for the
full-size models on a 2-core CPU).  :class:`CachedProgram` wraps a ``jax.jit`` function and, once
:func:`enable` has named a folder, keys each call by what determines the program (a name, a salt
describing the bound model configuration, the static arguments, the argument tree with every
leaf's shape and dtype, the JAX version, the backend and ``XLA_FLAGS``), then

1. uses the executable already loaded in this process, else
2. deserialises it from ``<folder>/<key>.xla`` (written by an earlier process), else
3. lowers and compiles as ``jax.jit`` would, runs it, and writes it there (atomically).

A file that cannot be loaded (corrupt, or written by another JAX build) is removed and rebuilt.
Without :func:`enable` the wrapper is the plain jitted function.  Dynamic arguments must be passed
positionally and static ones by keyword; programs run on the first device (inference).  Like JAX's
own cache, the folder must be the user's own: a stored executable is machine code.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import pathlib
import pickle
import platform
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax

log = logging.getLogger(__name__)

_FOLDER: pathlib.Path | None = None
_LOCK = threading.Lock()


def enable(folder: str | os.PathLike) -> pathlib.Path:
    """Keep compiled programs in ``folder`` (created if needed) from now on, process-wide."""
    global _FOLDER
    path = pathlib.Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    _FOLDER = path
    return path


def disable() -> None:
    global _FOLDER
    _FOLDER = None


def folder() -> pathlib.Path | None:
    return _FOLDER


@functools.cache
def _code_digest() -> str:
    """Content hash of this package's sources: a program from other model code is never reused."""
    h = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def _environment() -> str:
    dev = jax.devices()[0]
    return "|".join((jax.__version__, importlib.metadata.version("jaxlib"), dev.platform, dev.device_kind,
                     str(jax.device_count()), platform.machine(), os.environ.get("XLA_FLAGS", ""),
                     _code_digest()))


def _leaf_signature(x) -> str:
    aval = jax.api_util.shaped_abstractify(x)
    return f"{aval.dtype}{list(aval.shape)}{'w' if getattr(aval, 'weak_type', False) else ''}"


class CachedProgram:
    """A ``jax.jit`` function whose executables are kept on disk (see the module docstring)."""

    def __init__(self, jitted: Callable, name: str, salt: str = "", static_argnames: Sequence[str] = ()):
        self.jitted, self.name, self.salt = jitted, name, salt
        self.static_argnames = frozenset(static_argnames)
        self._loaded: dict[str, Any] = {}

    def _cache_size(self) -> int:
        """Programs this process holds for the function (compiled by jit or loaded from disk)."""
        return self.jitted._cache_size() + len(self._loaded)

    def key(self, args: tuple, static: dict) -> str:
        leaves, tree = jax.tree_util.tree_flatten(args)
        text = "\n".join([self.name, self.salt, _environment(), repr(sorted(static.items())), str(tree)]
                         + [_leaf_signature(x) for x in leaves])
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def __call__(self, *args, **kwargs):
        where = _FOLDER
        if where is None:
            return self.jitted(*args, **kwargs)
        static = {k: kwargs.pop(k) for k in list(kwargs) if k in self.static_argnames}
        if kwargs:
            raise TypeError(f"{self.name}: pass dynamic arguments positionally (got {sorted(kwargs)})")
        key = self.key(args, static)
        program = self._loaded.get(key)
        if program is None:
            program = self._load(where / f"{self.name}-{key}.xla")
            if program is None:
                program = self.jitted.lower(*args, **static).compile()
                self._save(program, where / f"{self.name}-{key}.xla")
            self._loaded[key] = program
        return program(*args)

    @staticmethod
    def _load(path: pathlib.Path):
        if not path.exists():
            return None
        from jax.experimental import serialize_executable

        try:
            with open(path, "rb") as f:
                blob, in_tree, out_tree = pickle.load(f)
            return serialize_executable.deserialize_and_load(blob, in_tree, out_tree,
                                                             execution_devices=jax.devices()[:1])
        except Exception as e:  # noqa: BLE001 - corrupt, truncated or from another build: rebuild it
            log.warning("compiled program %s could not be loaded (%s: %s); compiling it again",
                        path.name, type(e).__name__, e)
            path.unlink(missing_ok=True)
            return None

    @staticmethod
    def _save(program, path: pathlib.Path) -> None:
        from jax.experimental import serialize_executable

        try:
            data = pickle.dumps(serialize_executable.serialize(program))
        except Exception as e:  # noqa: BLE001 - an executable the backend cannot serialise: keep it in memory only
            log.warning("compiled program %s cannot be saved (%s: %s)", path.name, type(e).__name__, e)
            return
        _write_atomic(path, data)


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    with _LOCK:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise


def cached_eval_shape(fun: Callable[[], Any], name: str, salt: str = "") -> Any:
    """``jax.eval_shape(fun)`` (a tree of ``ShapeDtypeStruct``), kept on disk like the programs:
    tracing a full-size model's init only to learn its parameter shapes costs seconds."""
    where = _FOLDER
    if where is None:
        return jax.eval_shape(fun)
    key = hashlib.sha256(f"{name}\n{salt}\n{_environment()}".encode()).hexdigest()[:40]
    path = where / f"{name}-{key}.shapes"
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception:  # noqa: BLE001 - corrupt: rebuild
            path.unlink(missing_ok=True)
    out = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), jax.eval_shape(fun))
    _write_atomic(path, pickle.dumps(out))
    return out


def cached_jit(fun: Callable, name: str, salt: str = "", *, static_argnames: Sequence[str] = (),
               donate_argnums: Sequence[int] = ()) -> CachedProgram:
    """``jax.jit(fun, ...)`` wrapped in a :class:`CachedProgram`."""
    jitted = jax.jit(fun, static_argnames=tuple(static_argnames), donate_argnums=tuple(donate_argnums))
    return CachedProgram(jitted, name, salt, static_argnames)
