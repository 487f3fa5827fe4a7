"""The one hyperparameter loader: ``agents/hyperparams/<algo>.yml`` (rl-baselines3-zoo layout: one section per env
id with ``n_timesteps`` and the agent's keyword arguments; SB3 sections also ``policy`` and ``n_envs``), and the one
check of hyperparameter names, whose errors name the bad key, the algo and what it takes."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"


def hyperparam_algos() -> list[str]:
    """Algos that have a hyperparameter file."""
    return sorted(p.stem for p in HYPERPARAMS_DIR.glob("*.yml"))


def load_hyperparams(algo: str, env_id: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The section ``env_id`` of ``agents/hyperparams/<algo>.yml`` (a fresh dict), updated with ``overrides``.

    Raises ``ValueError`` naming the allowed algos / env ids.
    """
    allowed = hyperparam_algos()
    if algo not in allowed:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(allowed)}")
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    table = yaml.safe_load(path.read_text()) or {}
    if env_id not in table:
        raise ValueError(f"{path.name} has no entry for env id {env_id!r}; entries: {', '.join(map(str, table))}")
    hp = copy.deepcopy(dict(table[env_id]))
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise ValueError(f"overrides must be a dict, got {type(overrides).__name__}")
        hp.update(copy.deepcopy(dict(overrides)))
    return hp


def check_hyperparams(algo: str, hyperparams: Iterable[str], allowed: Iterable[str]) -> None:
    """``ValueError`` naming every key of ``hyperparams`` that ``algo`` does not take, and what it takes."""
    allowed = list(allowed)
    bad = sorted(set(hyperparams) - set(allowed))
    if bad:
        raise ValueError(f"unknown hyperparameter(s) {bad} for {algo}; allowed: {', '.join(allowed) or 'none'}")


def parse_policy_kwargs(value: Any) -> dict[str, Any]:
    """rl-zoo writes ``policy_kwargs`` as a Python expression string (``"dict(net_arch=[64, 64])"``); accept that
    (evaluated with only ``dict`` and ``nn`` in scope) or a mapping."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        from torch import nn

        try:
            out = eval(value, {"__builtins__": {}}, {"dict": dict, "nn": nn})  # trusted config, as in rl-zoo
        except Exception as e:
            raise ValueError(f"policy_kwargs {value!r} is not a valid expression: {e}") from None
        if isinstance(out, Mapping):
            return dict(out)
    raise ValueError(f"policy_kwargs must be a dict (or rl-zoo's 'dict(...)' string), got {value!r}")
