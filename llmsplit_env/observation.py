"""The observation, written once: a table of features (name, bounds, value) that serves a float or an array.

Each `Feature`'s value is a function of an `Observer` (the env's constants), the episode's bookkeeping
(`llmsplit_env.episode.Episode`) and the channel's state (the scalar `ChannelDynamics` in `LLMSplitEnv`; the vector
env's `ChannelArrays`, the same names as arrays over sub-envs). Written with operators and `clip`, one function
serves both envs, as `llmsplit_env.problem.RewardComponent` s do for the reward. `compile_problem` takes the bounds
from this table (`observation_bounds`); the envs take the values (`Observer.values`).

Only the level estimate, its trend and the extras can leave their bounds; ``packet_loss`` and ``prev_split`` lie in
them by construction and are not clipped (``clipped=False``: the single env's hot loop saves the call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


def _speed(o: Observer, e, c):
    return c.speed


def _log(x):
    return math.log(x) if isinstance(x, float) else np.log(x)


@dataclass(frozen=True)
class Feature:
    """One observation dimension.

    :param bounds: ``(level_name, config) -> (low, high)``
    :param value: ``(observer, episode, channel) -> value`` (floats in the single env, arrays in the vector env)
    :param clipped: whether the value can leave its bounds (and is clipped to them)
    """

    name: str
    bounds: Callable[[str, Mapping[str, Any]], tuple[float, float]]
    value: Callable[[Observer, Any, Any], Any]
    clipped: bool = True


def _unit(level_name: str, cfg: Mapping[str, Any]) -> tuple[float, float]:
    return 0.0, 1.0


def _snr_or_rho(snr: tuple[float, float], rho: tuple[float, float]):
    return lambda level_name, cfg: snr if level_name == "snr_db" else rho


#: every feature by name: the base dimensions first (in their order), then the extras ``observation.extras`` picks
FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("level", _snr_or_rho((-20.0, 50.0), (0.0, 1.0)), lambda o, e, c: c.estimate),
        Feature("trend", _snr_or_rho((-10.0, 10.0), (-0.1, 0.1)), lambda o, e, c: e.trend),
        Feature("packet_loss", _unit, lambda o, e, c: e.last_loss, clipped=False),
        Feature("prev_split", _unit, lambda o, e, c: e.prev_split * o.inv_layers, clipped=False),
        Feature("distance", _unit, lambda o, e, c: _hypot(c.x, c.y) / o.cell_radius),
        Feature("speed", lambda ln, cfg: (0.0, 3.0 * cfg["channel"]["mobility"]["mean_speed"]), _speed),
        Feature("time", _unit, lambda o, e, c: e.t / o.max_episode_steps),
        Feature("log_ppl0", lambda ln, cfg: (0.0, 25.0), lambda o, e, c: _log(e.ppl0)),
        Feature("last_quality", _unit, lambda o, e, c: e.last_quality),
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


class Observer:
    """An env's observation: its problem's features with their bounds, and the constants their values read."""

    __slots__ = ("cell_radius", "inv_layers", "max_episode_steps", "plan")

    def __init__(self, problem, dynamics) -> None:
        self.inv_layers = problem.inv_layers
        self.max_episode_steps = problem.max_episode_steps
        mobility = getattr(dynamics, "mobility", None)
        self.cell_radius = math.nan if mobility is None else mobility.cell_radius
        #: ``(value, low, high, clipped)`` per observation dimension, in order
        self.plan = tuple(
            (FEATURES[n].value, lo, hi, FEATURES[n].clipped)
            for n, lo, hi in zip(problem.observation_names, problem.obs_low, problem.obs_high, strict=True)
        )

    def observe(self, episode, ch) -> np.ndarray:
        """One env's observation (``float32``) from floats (`clip`'s float branch inlined: this is the hot loop)."""
        out = []
        for v, lo, hi, c in self.plan:
            x = v(self, episode, ch)
            out.append((lo if x < lo else (hi if x > hi else x)) if c else x)
        return np.array(out, dtype=np.float32)

    def columns(self, episode, ch, out: np.ndarray) -> np.ndarray:
        """The observation over sub-envs from arrays, written into ``out`` (``[num_envs, dim]`` float64)."""
        for j, (v, lo, hi, c) in enumerate(self.plan):
            if c:
                clip(v(self, episode, ch), lo, hi, out=out[:, j])
            else:
                out[:, j] = v(self, episode, ch)
        return out
