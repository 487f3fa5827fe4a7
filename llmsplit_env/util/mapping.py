"""Nested dicts: one deep merge for configs, keyword arguments, grid points and hyperparameters."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def deep_merge(
    base: Mapping, over: Mapping, *, known_only: bool = False, no_conflicts: bool = False, path: str = ""
) -> dict:
    """``base`` updated with ``over`` recursively: a new dict that shares nothing mutable with either (both are
    deep-copied where they end up in it).

    ``known_only``: a key of ``over`` that ``base`` lacks raises ``ValueError`` naming the dotted key and the allowed
    ones, and a section of ``base`` given as a non-dict is refused (config validation).
    ``no_conflicts``: a leaf set in both to different values raises ``ValueError`` naming it (the same settings
    reaching an env twice, as ``config`` and as keyword arguments).
    """
    if not isinstance(over, Mapping):
        where = f" section {path!r}" if path else ""
        raise ValueError(f"config{where} must be a dict, got {type(over).__name__}")
    out = dict(base) if path else copy.deepcopy(dict(base))  # the top call copies base whole; recursion reuses it
    for key, value in over.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in out:
            if known_only:
                raise ValueError(f"unknown config key {full!r}; allowed: {', '.join(sorted(map(str, base)))}")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], Mapping) and (isinstance(value, Mapping) or known_only):
            out[key] = deep_merge(out[key], value, known_only=known_only, no_conflicts=no_conflicts, path=full)
        elif no_conflicts and out[key] != value:
            raise ValueError(
                f"config key {full!r} given twice with different values: {out[key]!r} in config, {value!r} as a "
                "keyword argument"
            )
        else:
            out[key] = copy.deepcopy(value)
    return out


def nest(dotted_key: str, value: Any) -> dict:
    """``"a.b.c", v`` → ``{"a": {"b": {"c": v}}}``."""
    out: Any = value
    for part in reversed(dotted_key.split(".")):
        out = {part: out}
    return out


def leaf_keys(d: Mapping, prefix: str = "") -> list[str]:
    """The dotted keys of every leaf of ``d`` (an empty dict is a leaf)."""
    keys: list[str] = []
    for k, v in d.items():
        keys += leaf_keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) and v else [prefix + str(k)]
    return keys
