"""The multi-period discriminator's checkpoints (``D_*.pth``, ``s2D*.pth``) <-> our parameter tree."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from gsv_jax.convert.s2 import canonical_weight_norm_keys
from gsv_jax.io.torch_io import CheckpointError
from gsv_jax.io.trees import flatten, unflatten
from gsv_jax.models.s2.discriminator import init_discriminator


def discriminator_state_dict_to_params(sd: dict, version: str = "v2", where: str = "discriminator",
                                       width_div: int = 1) -> dict:
    """Original D state dict (numpy, ``weight_g/weight_v``) -> our parameter tree (fp32 numpy).

    Missing / unexpected keys and shape mismatches raise with a list.
    """
    sd = canonical_weight_norm_keys(dict(sd))
    template = nn.meta.unbox(jax.eval_shape(lambda: init_discriminator(jax.random.PRNGKey(0), version,
                                                                       width_div=width_div)))
    out, missing, bad = {}, [], []
    for path, leaf in flatten(template).items():
        key = torch_key(path)
        if key not in sd:
            missing.append(key)
            continue
        v = np.asarray(sd[key], np.float32)
        if v.shape != tuple(leaf.shape):
            bad.append(f"{key}: file {v.shape} vs model {tuple(leaf.shape)}")
        out[path] = v
    expected = {torch_key(p) for p in flatten(template)}
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected or bad:
        raise CheckpointError(f"{where}: does not fit MultiPeriodDiscriminator({version}): "
                              f"{len(missing)} missing {missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, "
                              f"{len(bad)} with other shapes {bad[:3]}")
    return unflatten(out)


def discriminator_params_to_state_dict(params: dict, dtype=None) -> dict:
    """Our tree -> the original's state dict (keys in the original's module order)."""
    flat = flatten(nn.meta.unbox(params))
    items = sorted(flat.items(), key=lambda kv: _order(kv[0]))
    out = {}
    for path, v in items:
        v = np.asarray(jax.device_get(v), np.float32)
        out[torch_key(path)] = v if dtype is None else v.astype(dtype)
    return out


def torch_key(path) -> str:
    parts = []
    for p in path:
        for prefix in ("discriminators_", "convs_"):
            if p.startswith(prefix) and p[len(prefix):].isdigit():
                p = prefix[:-1] + "." + p[len(prefix):]
        parts.append(p)
    return ".".join(parts)


def _order(path):
    # torch order: discriminator index, convs (by index) before conv_post, then bias, weight_g, weight_v
    d = int(path[0].split("_")[1])
    layer = path[1]
    li = int(layer.split("_")[1]) if layer.startswith("convs_") else 1000
    return (d, li, {"bias": 0, "weight_g": 1, "weight_v": 2}.get(path[-1], 3))
