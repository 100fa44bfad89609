"""Nested parameter dicts <-> flat ``{path tuple: leaf}`` maps (the form the converters and tests compare)."""
from __future__ import annotations


def flatten(tree: dict, prefix: tuple = ()) -> dict:
    """``{"a": {"b": x}}`` -> ``{("a", "b"): x}`` (dict nodes only; every other value is a leaf)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: dict) -> dict:
    """The inverse of :func:`flatten`."""
    tree: dict = {}
    for path, v in flat.items():
        d = tree
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = v
    return tree
