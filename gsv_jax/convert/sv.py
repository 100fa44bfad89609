"""Speaker-verification checkpoint (ERes2NetV2 state dict) <-> our Flax variables, without torch.

The original ``pretrained_eres2netv2w24s4ep4.ckpt`` is a plain ``torch.save(model.state_dict())``:
an OrderedDict name -> tensor, no wrapper, no prefix, BatchNorm running statistics and
``num_batches_tracked`` included, plus the ``seg_1`` embedding head that ``forward3`` never uses
(docs/sv.md). Names map one to one (``layer3.2.fuse_models.0.local_att.1.running_mean`` <->
``batch_stats/layer3_2/fuse_models_0/local_att_1/mean``); conv weights ``[O, I, kF, kT]`` become
Flax kernels ``[kT, kF, I, O]`` (our maps are time-major). fp16 or fp32 tensors are accepted and
cast to float32, as the original's ``load_state_dict`` copies them into its fp32 module.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from gsv_jax.io.torch_io import CheckpointError, HParams, load_torch_file, save_torch_file
from gsv_jax.models import sv as sv_lib

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WHAT = "the speaker-verification model (ERes2NetV2, e.g. sv/pretrained_eres2netv2w24s4ep4.ckpt)"


class NotSVError(CheckpointError):
    """A readable checkpoint that is not an ERes2NetV2 speaker-verification state dict."""


def _conv_keys(prefix, out_c, in_c, k, bias=False):
    keys = [(f"{prefix}.weight", (out_c, in_c, k, k))]
    return keys + ([(f"{prefix}.bias", (out_c,))] if bias else [])


def _bn_keys(prefix, c):
    return [(f"{prefix}.{f}", () if f == "num_batches_tracked" else (c,)) for f in _BN_FIELDS]


def _aff_keys(prefix, c):
    inter = c // sv_lib.AFF_REDUCTION
    return (_conv_keys(f"{prefix}.local_att.0", inter, 2 * c, 1, bias=True) + _bn_keys(f"{prefix}.local_att.1", inter)
            + _conv_keys(f"{prefix}.local_att.3", c, inter, 1, bias=True) + _bn_keys(f"{prefix}.local_att.4", c))


def expected_shapes(cfg) -> collections.OrderedDict[str, tuple[int, ...]]:
    """Every key of the original's state dict with its shape, in the original's order."""
    m, exp = cfg.m_channels, cfg.expansion
    keys = _conv_keys("conv1", m, 1, 3) + _bn_keys("bn1", m)
    for name, in_planes, planes, stride, fuse in sv_lib.block_specs(cfg):
        p = name.replace("_", ".")
        width = sv_lib.block_width(planes, cfg.base_width)
        keys += _conv_keys(f"{p}.conv1", width * cfg.scale, in_planes, 1) + _bn_keys(f"{p}.bn1", width * cfg.scale)
        for i in range(cfg.scale):
            keys += _conv_keys(f"{p}.convs.{i}", width, width, 3)
        for i in range(cfg.scale):
            keys += _bn_keys(f"{p}.bns.{i}", width)
        if fuse:
            for i in range(cfg.scale - 1):
                keys += _aff_keys(f"{p}.fuse_models.{i}", width)
        keys += _conv_keys(f"{p}.conv3", planes * exp, width * cfg.scale, 1) + _bn_keys(f"{p}.bn3", planes * exp)
        if stride != 1 or in_planes != planes * exp:
            keys += _conv_keys(f"{p}.shortcut.0", planes * exp, in_planes, 1) + _bn_keys(f"{p}.shortcut.1", planes * exp)
    keys += _conv_keys("layer3_ds", 8 * m * exp, 4 * m * exp, 3) + _aff_keys("fuse34", 8 * m * exp)
    stats = int(cfg.feat_dim / 8) * m * 8 * exp * 2  # TSTP pooling: mean and std
    keys += [("seg_1.weight", (cfg.embedding_size, stats)), ("seg_1.bias", (cfg.embedding_size,))]
    return collections.OrderedDict(keys)


def _is_extra(key: str) -> bool:
    """Entries kept outside the Flax variables: BN step counters and the unused seg_1 head."""
    return key.endswith(".num_batches_tracked") or key.startswith("seg_1.")


def _flax_path(key: str, ndim: int) -> tuple[str, tuple[str, ...]]:
    """Torch key -> (collection, path) in our variables."""
    parts = key.split(".")
    mods: list[str] = []
    for p in parts[:-1]:
        if p.isdigit() and mods:
            mods[-1] = f"{mods[-1]}_{p}"
        else:
            mods.append(p)
    leaf = parts[-1]
    if leaf == "running_mean":
        return "batch_stats", (*mods, "mean")
    if leaf == "running_var":
        return "batch_stats", (*mods, "var")
    if leaf == "weight":
        return "params", (*mods, "kernel" if ndim == 4 else "scale")
    return "params", (*mods, leaf)


def _kind_hint(obj, head: bytes) -> str | None:
    """What a wrong file is, when it is recognisably a GPT-SoVITS S1 or S2 file."""
    if head != b"PK":
        return "a SoVITS (S2) model (its file starts with a version head)"
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("config"), HParams) or "optimizer" in obj:
        return "a SoVITS (S2) model or training checkpoint"
    inner = obj.get("weight", obj.get("state_dict", obj.get("model")))
    if isinstance(inner, dict):
        keys = list(inner)
        if any(k.startswith(("model.ar_", "model.h.layers.", "ar_text_embedding")) for k in keys):
            return "a GPT (S1) checkpoint"
        if any(k.startswith(("enc_p.", "dec.", "flow.", "ref_enc.", "quantizer.", "ssl_proj.")) for k in keys):
            return "a SoVITS (S2) model"
        return "a checkpoint wrapping a state dict (keys " + ", ".join(map(str, list(obj)[:4])) + ")"
    return None


def looks_like_sv(obj) -> bool:
    """True for an ERes2NetV2 state dict (for the GPT / SoVITS readers' "this is the SV model" error)."""
    return isinstance(obj, dict) and "conv1.weight" in obj and "layer3_ds.weight" in obj and "fuse34.local_att.0.weight" in obj


def config_from_state_dict(state: dict, where: str = "checkpoint"):
    """ERes2NetV2 widths from tensor shapes (m_channels, base_width, scale, expansion, blocks)."""
    need = ("conv1.weight", "layer1.0.conv1.weight", "layer1.0.convs.0.weight", "layer1.0.conv3.weight",
            "layer3_ds.weight", "fuse34.local_att.0.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise NotSVError(f"{where}: not {_WHAT}: no {', '.join(missing[:3])} in the state dict")
    m = int(state["conv1.weight"].shape[0])
    scale = len({k.split(".")[3] for k in state if k.startswith("layer1.0.convs.")})
    expansion = int(state["layer1.0.conv3.weight"].shape[0]) // m
    num_blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.")}) for s in (1, 2, 3, 4))
    last = f"layer4.{num_blocks[3] - 1}.convs.0.weight"
    if last not in state or min(num_blocks) == 0:
        raise NotSVError(f"{where}: not {_WHAT}: blocks per stage {num_blocks}")
    # width of a stage-4 block is floor(8 m base_width / 64); its value pins base_width down
    base_width = round(int(state[last].shape[0]) * 8 / m)
    emb = state.get("seg_1.weight")
    embedding_size = int(emb.shape[0]) if emb is not None else sv_lib.FULL["embedding_size"]
    return sv_lib.sv_config(m_channels=m, base_width=base_width, scale=scale, expansion=expansion,
                            num_blocks=num_blocks, embedding_size=embedding_size)


def state_dict_to_variables(state: dict, cfg=None, where: str = "checkpoint"):
    """Original state dict -> ``(cfg, {"params", "batch_stats"}, extras)`` (numpy float32).

    ``extras`` keeps ``num_batches_tracked`` and ``seg_1.*`` so that :func:`variables_to_state_dict`
    gives the file back exactly. Every ``forward3`` tensor must be present with its shape;
    ``seg_1`` may be missing (it is unused)."""
    cfg = cfg or config_from_state_dict(state, where)
    shapes = expected_shapes(cfg)
    missing = [k for k in shapes if k not in state and not k.startswith("seg_1.")]
    unexpected = [k for k in state if k not in shapes]
    if missing or unexpected:
        raise NotSVError(f"{where}: state dict does not match ERes2NetV2({dict(cfg)}): "
                         f"missing {missing[:4]} ({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})")
    out: dict = {"params": {}, "batch_stats": {}}
    extras = collections.OrderedDict()
    for key, shape in shapes.items():
        if key not in state:
            continue
        a = np.asarray(state[key])
        if tuple(a.shape) != shape:
            raise NotSVError(f"{where}: {key} has shape {tuple(a.shape)}, expected {shape} for ERes2NetV2({dict(cfg)})")
        if _is_extra(key):
            extras[key] = a
            continue
        if a.dtype.kind != "f":
            raise NotSVError(f"{where}: {key} is {a.dtype}, expected a float tensor")
        a = a.astype(np.float32)
        collection, path = _flax_path(key, a.ndim)
        d = out[collection]
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = a.transpose(3, 2, 1, 0) if a.ndim == 4 else a
    return cfg, out, extras


def variables_to_state_dict(cfg, variables: dict, extras: dict | None = None,
                            dtype=np.float32) -> collections.OrderedDict[str, np.ndarray]:
    """Our variables -> the original's state dict (every key ``load_state_dict`` wants, in order).

    Without ``extras`` the step counters are 0 and the unused ``seg_1`` head is zeros."""
    extras = extras or {}
    out = collections.OrderedDict()
    for key, shape in expected_shapes(cfg).items():
        if _is_extra(key):
            default = np.zeros(shape, np.int64 if key.endswith("num_batches_tracked") else dtype)
            out[key] = np.asarray(extras.get(key, default))
            continue
        collection, path = _flax_path(key, len(shape))
        a = variables[collection]
        for p in path:
            a = a[p]
        a = np.asarray(a)
        out[key] = np.ascontiguousarray(a.transpose(3, 2, 1, 0) if a.ndim == 4 else a).astype(dtype)
    return out


def read_sv_checkpoint(path: str | os.PathLike):
    """Read the original SV checkpoint -> ``(cfg, variables, extras)``.

    Raises :class:`NotSVError` for a GPT (S1) or SoVITS (S2) file or any other state dict."""
    obj, head = load_torch_file(path, return_head=True)
    where = str(path)
    hint = _kind_hint(obj, head)
    if hint is not None:
        raise NotSVError(f"{where} is {hint}, not {_WHAT}; pass the SV .ckpt to load_sv "
                         "(GPT .ckpt files go to load_s1, SoVITS .pth files to load_s2)")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise NotSVError(f"{where}: not {_WHAT}: expected a plain state dict, got {type(obj).__name__}")
    return state_dict_to_variables(obj, where=where)


def write_sv_checkpoint(path: str | os.PathLike, cfg, variables: dict, extras: dict | None = None) -> None:
    """Write a plain state dict file that the original's ``sv.py`` loads (``torch.load`` + strict
    ``load_state_dict``)."""
    save_torch_file(variables_to_state_dict(cfg, variables, extras), path)
