"""Read and write PyTorch checkpoint files (``torch.save`` zip format) without torch.

Reading uses a restricted unpickler: it only rebuilds what GPT-SoVITS checkpoints hold (tensor
storages, ``OrderedDict``, plain containers, the pickled ``utils.HParams`` config, a few numpy
scalar helpers) and refuses every other global with :class:`UnsafeCheckpointError` -- nothing in
the file is ever executed. Tensors come back as numpy arrays with their stored dtype (fp16 stays
fp16; casting is the caller's choice).

Writing produces a zip that ``torch.load`` reads (same record layout, 64-byte aligned storages,
protocol-2 pickle with the same globals as the original's own files), so weights trained here can
be used by the original tools. SoVITS ``.pth`` files may carry a 2-byte version head instead of
``PK`` (docs/convert.md, "Version detection"); both directions handle it.
"""
from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle
import secrets
import zipfile
from typing import Any, ClassVar

import numpy as np

from gsv_jax import families

try:  # bfloat16 storages; ml_dtypes ships with jax
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BF16 = None

# Version heads written in place of b"PK" by the original exporter: b"00".."06" (the family registry).
HEAD_TO_VERSION = {head: version + ("-lora" if lora else "") for head, (version, lora) in families.HEADS.items()}

_STORAGE_DTYPES = {
    "HalfStorage": np.dtype(np.float16),
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
if _BF16 is not None:
    _STORAGE_DTYPES["BFloat16Storage"] = _BF16
_DTYPE_TO_STORAGE = {v: k for k, v in _STORAGE_DTYPES.items()}


class CheckpointError(ValueError):
    """A file that is not a readable PyTorch checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a class or function outside the allow-list."""


class HParams:
    """Stand-in for the original ``utils.HParams`` config object (attribute bag, nested).

    Supports attribute access, ``[]``, ``in``, ``keys()``, ``items()`` and ``get`` like the original.
    """

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, HParams(**v) if isinstance(v, dict) else v)

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def __contains__(self, key):
        return key in self.__dict__

    def __len__(self):
        return len(self.__dict__)

    def keys(self):
        return self.__dict__.keys()

    def items(self):
        return self.__dict__.items()

    def values(self):
        return self.__dict__.values()

    def get(self, key, default=None):
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, HParams) else v for k, v in self.__dict__.items()}

    def __eq__(self, other):
        return isinstance(other, HParams) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"HParams({self.to_dict()!r})"


class _StorageType:
    """A torch storage class named in a pickle (e.g. ``torch.HalfStorage``)."""

    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise UnsafeCheckpointError(f"unsupported tensor storage type torch.{name}")
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    del requires_grad, hooks, metadata
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *unused):
    return data


def _rebuild_parameter_with_state(data, requires_grad, hooks, state):
    return data


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


def _codecs_encode(text, encoding="latin1"):
    return text.encode(encoding)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): tuple,
    ("utils", "HParams"): HParams,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, records: dict, where: str):
        super().__init__(io.BytesIO(data))
        self._records = records
        self._where = where
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._where}: the pickle refers to {module}.{name}, which a GPT-SoVITS checkpoint "
                "never holds; refusing to load it (nothing was executed). If this is a full training "
                "checkpoint of another tool, export its weights first."
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._where}: unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._where}: bad storage type in {pid!r}")
        if key not in self._storages:
            if key not in self._records:
                raise CheckpointError(f"{self._where}: tensor data record {key} is missing (truncated file?)")
            raw = self._records[key]()
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def read_head(path: str | os.PathLike) -> bytes:
    """The first two bytes of a file (``b"PK"`` for a plain torch zip)."""
    with open(path, "rb") as f:
        return f.read(2)


def load_torch_file(path: str | os.PathLike, *, return_head: bool = False):
    """Load a ``torch.save`` zip file into numpy arrays and plain containers, without torch.

    Returns the unpickled object, or ``(object, head)`` with ``return_head=True`` where ``head`` is
    the file's first two bytes (``b"PK"`` or a version head such as ``b"05"``).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    data = path.read_bytes()
    if len(data) < 4:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(data)} bytes)")
    head = data[:2]
    if head != b"PK":
        if head in HEAD_TO_VERSION:
            data = b"PK" + data[2:]
        elif data[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: legacy (pre-1.6) torch serialization is not supported; re-save it with a "
                "recent torch (torch.save(torch.load(p), p))"
            )
        else:
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint (expected a zip starting with 'PK' or a GPT-SoVITS "
                f"version head 00..06, found {head!r})"
            )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({e})") from None
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
        raise CheckpointError(f"{path}: zip file without data.pkl; not a torch.save checkpoint")
    prefix = pkl[0][: -len("data.pkl")]
    records = {}
    for n in names:
        if n.startswith(prefix + "data/"):
            records[n[len(prefix) + 5:]] = (lambda n=n: zf.read(n))
    try:
        obj = _RestrictedUnpickler(zf.read(pkl[0]), records, str(path)).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e})") from None
    return (obj, head) if return_head else obj


# ----------------------------------------------------------------------------------------------
# writing


class _Global:
    """Pickles as a bare ``GLOBAL module name`` reference (no import needed on our side)."""

    _cache: ClassVar[dict] = {}

    def __new__(cls, module: str, name: str):
        key = (module, name)
        if key not in cls._cache:
            obj = super().__new__(cls)
            obj.module, obj.name = module, name
            cls._cache[key] = obj
        return cls._cache[key]

    def __call__(self, *args):  # pickle wants reduce functions to be callable
        raise TypeError(f"{self.module}.{self.name} is a reference for pickling only")


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _TensorRef:
    def __init__(self, storage: _StorageRef, shape, strides):
        self.storage, self.shape, self.strides = storage, shape, strides


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler lets us emit raw GLOBALs
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            name = _DTYPE_TO_STORAGE.get(obj.array.dtype)
            if name is None:
                raise TypeError(f"cannot store dtype {obj.array.dtype} in a torch checkpoint")
            return ("storage", _Global("torch", name), obj.key, "cpu", int(obj.array.size))
        return None

    def _save_global_ref(self, obj: _Global):
        memo = self.memo.get(id(obj))
        if memo is not None:
            self.write(self.get(memo[0]))
            return
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_tensor(self, obj: _TensorRef):
        self.save_reduce(
            _Global("torch._utils", "_rebuild_tensor_v2"),
            (obj.storage, 0, tuple(obj.shape), tuple(obj.strides), False, collections.OrderedDict()),
            obj=obj,
        )

    def _save_hparams(self, obj: HParams):
        self.save(_Global("utils", "HParams"))
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(dict(obj.__dict__))
        self.write(pickle.BUILD)

    dispatch[_Global] = _save_global_ref
    dispatch[_TensorRef] = _save_tensor
    dispatch[HParams] = _save_hparams


def _tensorize(obj, storages: list):
    """Replace numpy arrays (and numpy scalars) by tensor references, recursively."""
    if isinstance(obj, np.ndarray) or (hasattr(obj, "__array__") and hasattr(obj, "dtype") and hasattr(obj, "shape")):
        arr = np.require(np.asarray(obj), requirements="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
        ref = _StorageRef(str(len(storages)), arr)
        storages.append(ref)
        strides = tuple(s // arr.itemsize for s in arr.strides) if arr.ndim else ()
        return _TensorRef(ref, arr.shape, strides)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _tensorize(v, storages)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _tensorize(v, storages) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tensorize(v, storages) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_tensorize(v, storages) for v in obj)
    if isinstance(obj, HParams):
        out = HParams()
        out.__dict__.update({k: _tensorize(v, storages) for k, v in obj.__dict__.items()})
        return out
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _aligned_write(zf: zipfile.ZipFile, name: str, payload: bytes, align: int = 64):
    """Write an uncompressed record whose data starts at a multiple of ``align`` (as torch does)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    offset = zf.fp.tell() + 30 + len(name.encode())
    pad = (-(offset + 4)) % align
    info.extra = b"FB" + pad.to_bytes(2, "little") + b"Z" * pad
    zf.writestr(info, payload)


def dumps_torch(obj: Any, archive_name: str = "archive") -> bytes:
    """Serialize ``obj`` (numpy arrays become torch tensors) to ``torch.save`` zip bytes."""
    storages: list[_StorageRef] = []
    tree = _tensorize(obj, storages)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(tree)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        _aligned_write(zf, f"{archive_name}/data.pkl", buf.getvalue())
        _aligned_write(zf, f"{archive_name}/.format_version", b"1")
        _aligned_write(zf, f"{archive_name}/.storage_alignment", b"64")
        _aligned_write(zf, f"{archive_name}/byteorder", b"little")
        for ref in storages:
            _aligned_write(zf, f"{archive_name}/data/{ref.key}", ref.array.tobytes())
        _aligned_write(zf, f"{archive_name}/version", b"3\n")
    return out.getvalue()


def save_torch_file(obj: Any, path: str | os.PathLike, *, head: bytes | None = None) -> None:
    """Write ``obj`` as a ``torch.save`` file, atomically (temp file + rename).

    ``head``: optional 2-byte GPT-SoVITS version head (``b"05"``...) replacing ``PK``.
    """
    path = pathlib.Path(path)
    data = dumps_torch(obj, archive_name=path.stem or "archive")
    if head is not None:
        if head not in HEAD_TO_VERSION:
            raise ValueError(f"unknown version head {head!r}; known: {sorted(HEAD_TO_VERSION)}")
        data = head + data[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f"{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide (mkstemp would make every checkpoint 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
