"""The observation, written once: a table of features (name, bounds, value) that serves a float or an array.

Each `Feature`'s value is one expression over an `Observer` ``o`` (the env's constants), the episode's bookkeeping
``e`` (`llmsplit_env.episode.Episode`) and the channel's state ``c`` (the scalar `ChannelDynamics` in `LLMSplitEnv`;
the vector env's `ChannelArrays`, the same names as arrays over sub-envs). Written with operators and functions that
take a float or an array (`hypot`, `log`), one expression serves both envs, as `llmsplit_env.problem.RewardComponent`
s do for the reward. `compile_problem` takes the bounds from this table (`observation_bounds`); the envs take the
values (`Observer.observe`, `Observer.columns`).

The expressions are compiled once per observation layout: for an array, each feature's ``value(o, e, c)``; for one
env, a single function returning every (clipped) value at once, as `collections.namedtuple` and `dataclasses`
generate theirs. One call instead of one per feature is what keeps the single env's step as cheap as CartPole's.
The expressions are this module's constants, never user input.

Only the level estimate, its trend and the extras can leave their bounds; ``packet_loss`` and ``prev_split`` lie in
them by construction and are not clipped (``clipped=False``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["BASE_OBSERVATION", "FEATURES", "ChannelArrays", "Feature", "Observer", "clip", "observation_bounds"]


def clip(v, lo: float, hi: float, out: np.ndarray | None = None):
    """``v`` clipped to ``[lo, hi]``: a float (NaN stays NaN), or an array (new, or ``out``)."""
    if isinstance(v, float):
        return lo if v < lo else (hi if v > hi else v)
    return np.minimum(np.maximum(v, lo), hi, out=out)


def _hypot(x, y):
    return math.hypot(x, y) if isinstance(x, float) else np.hypot(x, y)


def _log(x):
    return math.log(x) if isinstance(x, float) else np.log(x)


#: what a feature's expression may call besides the attributes of ``o``, ``e`` and ``c``
_NAMES = {"__builtins__": {}, "hypot": _hypot, "log": _log}


@dataclass(frozen=True)
class Feature:
    """One observation dimension.

    :param bounds: ``(level_name, config) -> (low, high)``
    :param expr: its value as an expression of ``o`` (`Observer`), ``e`` (episode) and ``c`` (channel): floats in
        the single env, arrays in the vector env
    :param clipped: whether the value can leave its bounds (and is clipped to them)
    """

    name: str
    bounds: Callable[[str, Mapping[str, Any]], tuple[float, float]]
    expr: str
    clipped: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", eval(f"lambda o, e, c: {self.expr}", _NAMES))

    value: Callable[[Observer, Any, Any], Any] = field(init=False, repr=False, compare=False)


def _unit(level_name: str, cfg: Mapping[str, Any]) -> tuple[float, float]:
    return 0.0, 1.0


def _snr_or_rho(snr: tuple[float, float], rho: tuple[float, float]):
    return lambda level_name, cfg: snr if level_name == "snr_db" else rho


#: every feature by name: the base dimensions first (in their order), then the extras ``observation.extras`` picks
FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("level", _snr_or_rho((-20.0, 50.0), (0.0, 1.0)), "c.estimate"),
        Feature("trend", _snr_or_rho((-10.0, 10.0), (-0.1, 0.1)), "e.trend"),
        Feature("packet_loss", _unit, "e.last_loss", clipped=False),
        Feature("prev_split", _unit, "e.prev_split * o.inv_layers", clipped=False),
        Feature("distance", _unit, "hypot(c.x, c.y) / o.cell_radius"),
        Feature("speed", lambda ln, cfg: (0.0, 3.0 * cfg["channel"]["mobility"]["mean_speed"]), "c.speed"),
        Feature("time", _unit, "e.t / o.max_episode_steps"),
        Feature("log_ppl0", lambda ln, cfg: (0.0, 25.0), "log(e.ppl0)"),
        Feature("last_quality", _unit, "e.last_quality"),
    )
}
BASE_OBSERVATION = ("level", "trend", "packet_loss", "prev_split")


def observation_bounds(
    names: tuple[str, ...], level_name: str, cfg: Mapping[str, Any]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(low, high)`` of the named features, for a channel level ``level_name`` and a resolved config."""
    bounds = [FEATURES[n].bounds(level_name, cfg) for n in names]
    return tuple(float(b[0]) for b in bounds), tuple(float(b[1]) for b in bounds)


class ChannelArrays(dict):
    """The vector env's channel state: one array over sub-envs per state name (what the dynamics' batch methods
    update), also readable as attributes, like the scalar dynamics' floats (``channel.estimate``)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def scalar_values(dims: tuple[tuple[str, float, float], ...]) -> Callable[[Observer, Any, Any], tuple]:
    """One function ``(o, e, c) -> (value, ...)`` for the named features ``(name, low, high)`` of one env, clipped
    features clipped as `clip` clips a float (NaN stays NaN), from the features' own expressions. The bounds are
    the function's default arguments (fast locals, any float: ``inf`` included)."""
    bounds, parts = [], []
    for j, (name, _, _) in enumerate(dims):
        f = FEATURES[name]
        if f.clipped:
            bounds += [f"lo{j}=B[{2 * j}]", f"hi{j}=B[{2 * j + 1}]"]
            parts.append(f"(lo{j} if (x{j} := {f.expr}) < lo{j} else (hi{j} if x{j} > hi{j} else x{j}))")
        else:
            parts.append(f"({f.expr})")
    flat = [float(b) for _, lo, hi in dims for b in (lo, hi)]
    args = ", ".join(["o", "e", "c", *bounds])
    return eval(f"lambda {args}: ({', '.join(parts)},)", {**_NAMES, "B": flat})


class Observer:
    """An env's observation: its problem's features with their bounds, and the constants their values read.

    Pickles by its layout and constants (the compiled functions are built again on loading)."""

    __slots__ = ("all_values", "cell_radius", "dims", "inv_layers", "max_episode_steps", "plan")

    def __init__(self, problem, dynamics) -> None:
        mobility = getattr(dynamics, "mobility", None)
        dims = tuple(zip(problem.observation_names, problem.obs_low, problem.obs_high, strict=True))
        self._build(dims, problem.inv_layers, problem.max_episode_steps,
                    math.nan if mobility is None else mobility.cell_radius)  # fmt: skip

    def _build(self, dims, inv_layers: float, max_episode_steps: int, cell_radius: float) -> None:
        self.dims, self.inv_layers, self.max_episode_steps, self.cell_radius = (
            dims,
            inv_layers,
            max_episode_steps,
            cell_radius,
        )
        #: ``(value, low, high, clipped)`` per observation dimension, in order
        self.plan = tuple((FEATURES[n].value, lo, hi, FEATURES[n].clipped) for n, lo, hi in dims)
        #: ``(o, e, c) -> tuple`` of every dimension's value, clipped as `clip` does a float
        self.all_values = scalar_values(dims)

    def __reduce__(self):
        return _observer_from, (self.dims, self.inv_layers, self.max_episode_steps, self.cell_radius)

    def observe(self, episode, ch) -> np.ndarray:
        """One env's observation (``float32``) from floats."""
        return np.array(self.all_values(self, episode, ch), dtype=np.float32)

    def columns(self, episode, ch, out: np.ndarray) -> np.ndarray:
        """The observation over sub-envs from arrays, written into ``out`` (``[num_envs, dim]`` float64)."""
        for j, (v, lo, hi, c) in enumerate(self.plan):
            if c:
                clip(v(self, episode, ch), lo, hi, out=out[:, j])
            else:
                out[:, j] = v(self, episode, ch)
        return out


def _observer_from(dims, inv_layers: float, max_episode_steps: int, cell_radius: float) -> Observer:
    observer = Observer.__new__(Observer)
    observer._build(dims, inv_layers, max_episode_steps, cell_radius)
    return observer
