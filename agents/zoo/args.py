"""Command-line values shared by the front doors: ``key:value`` pairs (``--env-kwargs``, ``-params``) and grid axes
(``--grid key:[v1, v2]``). Values are YAML (``safe_load``: data only); dotted keys nest."""

from __future__ import annotations

import json
from typing import Any


def parse_item(item: str, flag: str, expects: str = "key:value pairs") -> tuple[str, Any]:
    """``"key:value"`` → ``(key, YAML value)``; ``ValueError`` naming ``flag`` and the bad item."""
    import yaml

    key, sep, raw = item.partition(":")
    if not sep or not key:
        raise ValueError(f"{flag} expects {expects}, got {item!r}")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ValueError(f"{flag}: cannot parse the value of {key!r}: {raw!r}") from None


def parse_key_values(items: list[str] | None, flag: str) -> dict:
    """``key:value`` pairs as a nested dict (``reward.weights.switching:0.5`` → ``{"reward": {"weights": ...}}``)."""
    out: dict = {}
    for item in items or []:
        key, value = parse_item(item, flag)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{flag}: {key!r} conflicts with an earlier value")
        node[parts[-1]] = value
    return out


def parse_grid(items: list[str] | None, flag: str = "--grid") -> list[tuple[str, list]]:
    """``KEY:[V1, V2, ...]`` axes as ``[(dotted key, values)]``; ``ValueError`` naming a bad one."""
    axes: list[tuple[str, list]] = []
    for item in items or []:
        key, values = parse_item(item, flag, "KEY:[V1, V2, ...]")
        if not isinstance(values, list) or not values:
            raw = item.partition(":")[2]
            raise ValueError(f"{flag} {key}: expects a non-empty YAML list, e.g. {key}:[0.1, 0.3]; got {raw!r}")
        dumped = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(dumped)) < len(dumped):
            raise ValueError(f"{flag} {key}: a value is listed twice in {item.partition(':')[2]!r}")
        if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k, _ in axes):
            raise ValueError(f"{flag} {key}: overlaps another {flag} key ({', '.join(k for k, _ in axes)})")
        axes.append((key, values))
    return axes
