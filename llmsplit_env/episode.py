"""An episode's bookkeeping outside the reward, written once for a float (`LLMSplitEnv`) or an array of sub-envs
(`LLMSplitVectorEnv`): the constructor's checks (`env_config`, `env_problem`), the stream-of-normals rule
(`next_position`), the start of an episode (`Episode`, `initial_split`) and the end of a step (`end_step`).

The observation is `llmsplit_env.observation`'s table; the reward `llmsplit_env.problem`'s components.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded

from llmsplit_env.config import merge_config_kwargs, resolve_config
from llmsplit_env.dynamics import uniform_from_normals
from llmsplit_env.problem import SplitProblem, compile_problem

__all__ = [
    "NORMAL_CHUNK",
    "Episode",
    "NotResetError",
    "end_step",
    "env_config",
    "env_problem",
    "initial_split",
    "next_position",
]

NORMAL_CHUNK = 1024  # standard normals drawn per generator call (see `next_position`)


# --- constructor ------------------------------------------------------------------------------------------------


def env_config(
    config: Mapping | None,
    preset: str | None,
    problem: SplitProblem | None,
    config_keys: Mapping[str, Any],
    max_episode_steps: int | None = None,
) -> dict:
    """The resolved config of an env made from a config (and preset), top-level config keys, or a compiled problem;
    ``ValueError`` for a mix that does not go together (both envs' constructors)."""
    if config is not None and not isinstance(config, Mapping):  # before it is merged or named in another message
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    if config_keys:  # top-level config keys as keyword arguments (gym.make(id, reward={...}), RLlib)
        if problem is not None:
            raise ValueError(f"pass either problem= or config keys, not both (got {sorted(config_keys)})")
        config = merge_config_kwargs(config, config_keys)
    if problem is not None:
        # `preset` may come along from a registered id (gym.make(id, problem=...)): it must be the problem's
        if config is not None or preset not in (None, problem.config["preset"]):
            raise ValueError(
                f"pass either problem= (a compiled SplitProblem, preset {problem.config['preset']!r}) or "
                f"config/preset, not both (got config={config!r}, preset={preset!r})"
            )
        if max_episode_steps is not None and max_episode_steps != problem.max_episode_steps:
            raise ValueError(
                f"max_episode_steps={max_episode_steps} differs from the problem's {problem.max_episode_steps}"
            )
        return resolve_config(problem.config)
    if max_episode_steps is not None:
        config = merge_config_kwargs(config, {"max_episode_steps": max_episode_steps})
    return resolve_config(config, preset)


def env_problem(cfg: dict, backend, problem: SplitProblem | None) -> SplitProblem:
    """``problem``, checked against the env's quality backend, or the config compiled for it."""
    if problem is None:
        return compile_problem(cfg, backend)
    if problem.num_layers != backend.num_layers or problem.level_name != backend.level_name:
        raise ValueError(
            f"the problem was compiled for {problem.num_layers} layers and level {problem.level_name!r}; "
            f"this backend has {backend.num_layers} and {backend.level_name!r}"
        )
    return problem


class NotResetError(ResetNeeded, ValueError):
    """A call that needs an episode (``step``, ``render``, ``expected_rewards``) before ``reset()``: Gymnasium's
    `ResetNeeded` (what its ``OrderEnforcing`` wrapper raises) and a ``ValueError``, like the envs' other refusals."""


# --- the stream of normals --------------------------------------------------------------------------------------


def next_position(position, n: int):
    """The rule of every env's stream of normals (one per single env or sub-env).

    All randomness of the profile backend is one stream of standard normals per env from its generator, drawn
    `NORMAL_CHUNK` at a time; a request of ``n`` normals that does not fit in what is left of the chunk (``position``
    normals used) discards the rest and draws the next chunk. A reset takes ``reset_normals + 2``, a step
    `NOISE_COLUMNS`. Keeping the same rule per sub-env is what makes the vector env's trajectories equal to single
    envs' and lets it call each sub-env's generator only once per chunk (several episodes).

    :returns: ``(start, refill)``: where the request's normals start in the (refilled) chunk, and whether to draw a
        new chunk first; an int and a bool, or arrays over sub-envs
    """
    refill = position + n > NORMAL_CHUNK
    if refill is False:  # an int position with room left: the single env's usual case, first
        return position, False
    if isinstance(refill, np.ndarray):
        return np.where(refill, 0, position), refill
    return (0 if refill else position), refill


# --- an episode's bookkeeping -----------------------------------------------------------------------------------


class Episode:
    """What an episode carries besides the channel: floats and ints (single env) or arrays over sub-envs (vector env).

    ``Episode(k0)`` is an episode's start at split ``k0`` (``t`` = 0 steps, no trend, no loss, quality 1; ``ppl0``
    NaN until the env measures it).
    """

    __slots__ = ("last_loss", "last_quality", "ppl0", "prev_split", "t", "trend")
    FIELDS = ("prev_split", "t", "trend", "last_loss", "last_quality", "ppl0")

    def __init__(self, prev_split, t=0, trend=0.0, last_loss=0.0, last_quality=1.0, ppl0=math.nan) -> None:
        self.prev_split = prev_split  # the split a zero move keeps
        self.t = t  # steps taken
        self.trend = trend  # EWMA of the level estimate's change per step
        self.last_loss = last_loss  # realised lost fraction of the last transmission
        self.last_quality = last_quality  # last step's quality component
        self.ppl0 = ppl0  # the paper reward's PPL₀ of the episode

    @classmethod
    def batch(cls, n: int) -> Episode:
        """``n`` sub-envs' episodes, each at the start (split 0: not reset yet), as arrays."""
        start = cls(0)
        return cls(*(np.full(n, getattr(start, f)) for f in cls.FIELDS))

    def take(self, idx) -> Episode:
        """Sub-envs ``idx`` of a batch (views for a slice; assign fields, do not write into them)."""
        return Episode(*(getattr(self, f)[idx] for f in self.FIELDS))

    def put(self, idx, other: Episode) -> None:
        """Copy ``other`` (arrays over ``idx``, or one episode's values for all of them) into sub-envs ``idx``."""
        for f in self.FIELDS:
            getattr(self, f)[idx] = getattr(other, f)


def initial_split(problem: SplitProblem, z1, z2):
    """The episode's first previous split, drawn uniformly from ``problem.initial_splits`` with a pair of normals."""
    u = uniform_from_normals(z1, z2)
    initial = problem.initial_splits
    n = len(initial)
    if isinstance(u, float):
        return initial[min(int(u * n), n - 1)]
    return np.asarray(initial, dtype=np.int64)[np.minimum((u * n).astype(np.int64), n - 1)]


def end_step(problem: SplitProblem, ep: Episode, split, loss, quality, estimate_before, estimate_after):
    """Book a step on ``ep`` once the channel has moved on: the trend of the level estimate, ``τ ← β τ + (1−β)(ŝ_t −
    ŝ_{t−1})``, the split now in force, the transmission's loss and quality, one step more. Fields are reassigned,
    never written into. Returns whether the episode is truncated."""
    beta = problem.trend_smoothing
    ep.trend = beta * ep.trend + (1.0 - beta) * (estimate_after - estimate_before)
    ep.prev_split = split
    ep.last_loss = loss
    ep.last_quality = quality
    t = ep.t = ep.t + 1
    return t >= problem.max_episode_steps
