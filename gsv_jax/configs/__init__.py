"""Config presets shipped with the package, and the link between configs and the dataclasses (docs/training.md).

Presets (``gsv_jax/configs/<name>.py``, each with ``get_config()`` returning an ``ml_collections``
ConfigDict): ``s1_v1``, ``s1_v2``, ``s1_tiny``, ``s2_v1``, ``s2_v2``, ``s2_tiny``. ``train.py --config``
takes a preset name (``--config s2_v2``) or the path of a config file of the same shape.

Every default lives in ONE place, a typed dataclass next to the code that reads it:

=========  ========================================================================================
section    dataclass
=========  ========================================================================================
model      ``gsv_jax.models.s1.S1Dims`` (S1, written in the original's names) /
           ``gsv_jax.models.s2.synthesizer.S2ModelConfig`` (S2)
data       ``gsv_jax.data.pipeline.S1DataConfig`` / ``gsv_jax.data.s2_pipeline.S2DataConfig``
optim      ``gsv_jax.train.optim.S1OptimConfig`` / ``gsv_jax.train.s2_task.S2OptimConfig``
train      ``gsv_jax.train.s1_task.S1TrainConfig`` / ``gsv_jax.train.s2_task.S2TrainConfig``
           (both extend ``gsv_jax.train.loop.LoopConfig``)
mesh       ``gsv_jax.train.mesh.MeshConfig``
=========  ========================================================================================

A preset builds each section from its dataclass's defaults (:func:`section`) and overrides only
what differs; the code reads a section back into its dataclass (:func:`read_section`). Config
keys are the dataclass field names (a test checks it). Fields marked :func:`runtime_field`
(a data iterator's ``batch_size`` and ``seed``, set from ``train``) are not config keys.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pathlib
import types
import typing

PRESET_DIR = pathlib.Path(__file__).resolve().parent


class PresetNotFoundError(FileNotFoundError):
    """``--config`` names neither a shipped preset nor an existing file."""


def presets() -> list[str]:
    """Names of the shipped presets (``s1_v2``, ``s2_tiny``, ...)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.py") if not p.stem.startswith("_"))


def resolve(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """The file behind ``--config``: an existing path, or a shipped preset's name (``s2_v2`` or ``s2_v2.py``)."""
    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    name = path.name.removesuffix(".py")
    if str(path) in (name, name + ".py") and name in presets():
        return PRESET_DIR / f"{name}.py"
    if path.is_dir():
        problem = "is a folder, not a config file"
    else:
        problem = "is neither a shipped preset nor an existing file"
    raise PresetNotFoundError(f"--config {name_or_path}: {problem}; use a preset name, e.g. --config s2_v2 "
                              f"(shipped in gsv_jax/configs/: {', '.join(presets())}) or the path of a config file")


def load(name_or_path: str | pathlib.Path):
    """``get_config()`` of a preset (by name) or of a config file (by path)."""
    path = resolve(name_or_path)
    if path.parent == PRESET_DIR:
        module = importlib.import_module(f"gsv_jax.configs.{path.stem}")
    else:
        spec = importlib.util.spec_from_file_location(f"_gsv_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.get_config()


# ----------------------------------------------------------------------------------------------
# dataclass <-> config section
# ----------------------------------------------------------------------------------------------
def runtime_field(default):
    """A dataclass field that is not a config key (filled by the caller, e.g. ``batch_size`` from ``train``)."""
    return dataclasses.field(default=default, metadata={"config": False})


def config_fields(cls) -> list[str]:
    """The config keys of a section read into ``cls``."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("config", True)]


def _value_type(hint):
    """``float | None`` -> ``float`` (the type a None default accepts from an override)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else object
    return hint if isinstance(hint, type) else object


def section(defaults, **overrides):
    """ConfigDict with the config fields of the dataclass instance ``defaults``, then ``overrides``
    (which must be fields: a misspelt override fails here instead of being ignored)."""
    import ml_collections

    hints = typing.get_type_hints(type(defaults))
    names = config_fields(type(defaults))
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise KeyError(f"{type(defaults).__name__} has no field {unknown}; fields: {names}")
    out = ml_collections.ConfigDict()
    for name in names:
        value = overrides.get(name, getattr(defaults, name))
        if value is None:  # typed, so that --config.x.y=1.0 can override it
            value = ml_collections.FieldReference(None, field_type=_value_type(hints[name]))
        out[name] = value
    return out


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, (list, tuple)) else v


def read_section(cls, cfg, **runtime):
    """The dataclass ``cls`` from a config section (a ConfigDict or a mapping; keys that are not
    fields of ``cls`` are left to other readers; sequences become tuples), plus ``runtime`` fields."""
    if cfg is None:
        d = {}
    elif hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    else:
        d = dict(cfg)
    names = set(config_fields(cls))
    kw = {k: _tuplify(v) for k, v in d.items() if k in names}
    kw.update(runtime)
    return cls(**kw)
