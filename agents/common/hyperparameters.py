"""The one hyperparameter loader: ``agents/hyperparams/<algo>.yml`` (rl-baselines3-zoo layout: one section per env
id with ``n_timesteps`` and the agent's keyword arguments; SB3 sections also ``policy`` and ``n_envs``), and the one
check of hyperparameter names, whose errors name the bad key, the algo and what it takes."""

from __future__ import annotations

import ast
import copy
import importlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).resolve().parents[1] / "hyperparams"


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


#: hyperparameters (at any depth, by name) whose value must lie in (0, 1]: discounts and GAE/TD(λ) factors
UNIT_INTERVAL = ("gamma", "gae_lambda", "lambda_", "lambda", "tau")
#: hyperparameters (at any depth, by name) that must be > 0: learning rates and step sizes
POSITIVE = ("learning_rate", "lr", "critic_lr", "actor_lr", "clip_range", "clip_param")


def check_values(algo: str, hyperparams: Mapping[str, Any], where: str = "") -> None:
    """``ValueError`` naming ``algo.key`` for a number that is NaN or infinite (anywhere in ``hyperparams``, nested
    dicts and lists included), a discount or λ outside (0, 1] (`UNIT_INTERVAL`) or a learning rate or clip range
    that is not > 0 (`POSITIVE`). Strings (schedules such as ``lin_0.001``) are left to the agent."""
    for key, value in hyperparams.items():
        name = f"{where}{key}"
        if isinstance(value, Mapping):
            check_values(algo, value, f"{name}.")
            continue
        for i, item in enumerate(value if isinstance(value, (list, tuple)) else [value]):
            label = f"{algo}.{name}" + (f"[{i}]" if isinstance(value, (list, tuple)) else "")
            if isinstance(item, Mapping):
                check_values(algo, item, f"{name}[{i}].")
            elif isinstance(item, (int, float)) and not isinstance(item, bool) and not math.isfinite(item):
                raise ValueError(f"{label} must be a finite number, got {item!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key in UNIT_INTERVAL and not 0.0 < value <= 1.0:
            raise ValueError(f"{algo}.{name} must be in (0, 1], got {value!r}")
        if key in POSITIVE and not value > 0.0:
            raise ValueError(f"{algo}.{name} must be > 0, got {value!r}")


# Classes a policy_kwargs value may name (rl-zoo writes them as ``nn.ReLU``, ``th.optim.Adam``...): anything else is
# refused, so a hyperparameter file or ``-params`` string can never reach arbitrary code.
ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid", "Softplus", "Mish", "Identity")
OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop")
_MODULE_PREFIXES = {"nn": ("torch.nn", ACTIVATIONS), "optim": ("torch.optim", OPTIMIZERS)}


def allowed_class_names() -> list[str]:
    """The class names ``policy_kwargs`` may use (each also with a ``th.``/``torch.`` prefix)."""
    return [f"nn.{a}" for a in ACTIVATIONS] + [f"optim.{o}" for o in OPTIMIZERS]


def resolve_class_name(name: str) -> type:
    """``nn.ReLU``, ``th.nn.ReLU``, ``torch.optim.Adam``… → the class, if allow-listed; ``ValueError`` otherwise."""
    parts = name.split(".")
    if parts and parts[0] in ("th", "torch"):
        parts = parts[1:]
    if len(parts) == 2 and parts[0] in _MODULE_PREFIXES and parts[1] in _MODULE_PREFIXES[parts[0]][1]:
        return getattr(importlib.import_module(_MODULE_PREFIXES[parts[0]][0]), parts[1])
    raise ValueError(f"policy_kwargs may not name {name!r}; allowed classes: {', '.join(allowed_class_names())}")


def _literal(node: ast.AST, source: str) -> Any:
    """A data value from an expression node: literals, lists/tuples/dicts, ``dict(k=v)`` and allow-listed classes."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = _literal(node.operand, source)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, source) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_literal(k, source): _literal(v, source) for k, v in zip(node.keys, node.values, strict=True)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
            and all(kw.arg is not None for kw in node.keywords)):  # fmt: skip
        return {kw.arg: _literal(kw.value, source) for kw in node.keywords}
    if isinstance(node, (ast.Name, ast.Attribute)):
        return resolve_class_name(ast.unparse(node))
    raise ValueError(
        f"policy_kwargs {source!r}: {ast.unparse(node)!r} is not allowed (only literals, lists, dicts, dict(...) and "
        f"the classes {', '.join(allowed_class_names())})"
    )


# Keys whose value names a class (given as a string in YAML/JSON, e.g. activation_fn: nn.Tanh).
_CLASS_KEYS = ("activation_fn", "optimizer_class")


def parse_policy_kwargs(value: Any) -> dict[str, Any]:
    """``policy_kwargs`` as data: a mapping, or rl-zoo's expression string (``"dict(net_arch=[64, 64],
    activation_fn=nn.Tanh)"``), read without evaluating anything: literals, lists, dicts and an allow-list of
    activation and optimizer classes (`allowed_class_names`). Class-valued keys may also be given as strings."""
    if isinstance(value, str):
        try:
            tree = ast.parse(value.strip(), mode="eval")
        except SyntaxError as e:
            raise ValueError(f"policy_kwargs {value!r} is not a valid expression: {e.msg}") from None
        value = _literal(tree.body, value)
    if not isinstance(value, Mapping):
        raise ValueError(f"policy_kwargs must be a dict (or rl-zoo's 'dict(...)' string), got {value!r}")
    out = dict(value)
    for key in _CLASS_KEYS:
        if isinstance(out.get(key), str):
            out[key] = resolve_class_name(out[key])
    for key, v in out.items():
        check_data(v, f"policy_kwargs[{key!r}]", allow_class=key in _CLASS_KEYS)
    return out


def check_data(value: Any, where: str, allow_class: bool = False) -> None:
    """Refuse anything that is not plain data (or, where allowed, an allow-listed class)."""
    if isinstance(value, type):
        if allow_class and any(value is resolve_class_name(n) for n in allowed_class_names()):
            return
        raise ValueError(f"{where} may not be {value!r}; allowed classes: {', '.join(allowed_class_names())}")
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_data(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_data(v, f"{where}[{k!r}]")
        return
    raise ValueError(f"{where} must be plain data (numbers, strings, lists, dicts), got {type(value).__name__}")


def as_data(value: Any) -> Any:
    """``value`` as JSON data, with allow-listed classes written as their names (``nn.Tanh``): the inverse of
    `parse_policy_kwargs` for saving."""
    if isinstance(value, type):
        for name in allowed_class_names():
            if value is resolve_class_name(name):
                return name
        raise ValueError(f"{value!r} is not an allowed class; allowed: {', '.join(allowed_class_names())}")
    if isinstance(value, Mapping):
        return {str(k): as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    check_data(value, "value")
    return value
