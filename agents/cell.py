"""Baselines for the edge cell (``LLMSplit-Cell-v0``) and its evaluation: what coordination is worth.

All implement the agent protocol (`agents.common.protocol.Agent`) on the centralised env: ``predict(obs)`` returns an
``[N]`` action (one per UE), ``save``/``load`` write JSON, ``quality_evals`` is 0.

* `CellFixedAgent`: every UE at the same split;
* `CellRandomAgent`: every UE uniform over its allowed actions;
* `SelfishAgent` (privileged): each UE plays the single-UE myopic oracle on its own channel, as if alone (the full
  band, an idle edge);
* `CellPlannerAgent` (privileged): coordinate descent over the joint splits on the expected team reward with the
  exact contention, plus the backlog it leaves (that joint split replayed once more on it), from two starts (the
  selfish choice and every UE local), the better kept.

The privileged agents read the true state of the env they are bound to (`set_env`), as `agents.baselines.OracleAgent`
does; both are myopic in the channel (one step), which is what makes their ratio the value of coordination alone.
`agents.common.evaluation.evaluate_cell` runs whole episodes and reports the team return with the cell's own figures
(splits, offload share, deadline misses, edge utilisation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from agents.common.limits import MAX_JSON_BYTES, read_file_bounded
from agents.common.save_util import not_a_saved, parse_json, require_saved
from llmsplit_env.util.files import atomic_write_json

SAVE_FORMAT = "llmsplit-cell-heuristic"


def _cell(env: gym.Env):
    u = env.unwrapped
    if not hasattr(u, "sim") or not hasattr(u.sim, "contention"):
        raise ValueError(f"expected an LLMSplit-Cell-v0 env, got {type(u).__name__}")
    return u


class CellAgent:
    """Common surface: ``predict`` for one observation (or a batch for the unprivileged rules), JSON persistence."""

    privileged: ClassVar[bool] = False

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        u = _cell(env)
        self.n_ues, self.n_actions = u.n_ues, u.problem.n_actions
        self.k_min = u.problem.k_min
        if u.problem.relative:
            raise ValueError("the cell baselines act with absolute splits: config action_mode 'absolute'")
        self.quality_evals = 0

    def set_env(self, env: gym.Env) -> None:
        u = _cell(env)
        if (u.n_ues, u.problem.n_actions) != (self.n_ues, self.n_actions):
            raise ValueError(f"{type(self).__name__}.set_env: the env's UEs or actions differ from the agent's")
        self.env = env

    def learn(self, total_timesteps: int = 0, callback: Any = None) -> CellAgent:
        """Nothing to learn: a fixed rule."""
        return self

    def _act(self) -> np.ndarray:
        raise NotImplementedError

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:  # fmt: skip
        obs = np.asarray(observation)
        if obs.ndim == 2:
            if self.privileged:
                raise ValueError(f"{type(self).__name__} acts on one cell's true state: one observation at a time")
            return np.stack([self._act() for _ in range(len(obs))]), state
        return self._act(), state

    def get_params(self) -> dict[str, Any]:
        return {}

    def set_params(self, params: dict[str, Any]) -> None:
        pass

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(Path(path), {"format": SAVE_FORMAT, "class": type(self).__name__, "n_ues": self.n_ues,
                                       "n_actions": self.n_actions, "params": self.get_params()})  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None) -> CellAgent:
        path = require_saved(path, f"{cls.__name__} agent", kind="file")
        try:
            data = parse_json(read_file_bounded(path, MAX_JSON_BYTES), str(path))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise not_a_saved(path, "cell agent", e) from None
        if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT or data.get("class") != cls.__name__:
            raise ValueError(f"{path} is not a saved {cls.__name__}")
        if env is None:
            raise ValueError(f"{cls.__name__}.load needs env= (an LLMSplit-Cell-v0 env)")
        agent = cls.__new__(cls)
        CellAgent.__init__(agent, env)
        if (data.get("n_ues"), data.get("n_actions")) != (agent.n_ues, agent.n_actions):
            raise ValueError(f"the env differs from the one {path} was saved with (UEs or actions)")
        agent.set_params(data.get("params") or {})
        return agent


class CellFixedAgent(CellAgent):
    """Every UE at ``split``."""

    def __init__(self, env: gym.Env, split: int) -> None:
        super().__init__(env)
        self.set_params({"split": split})

    def set_params(self, params: dict[str, Any]) -> None:
        k = params.get("split")
        u = _cell(self.env)
        if isinstance(k, bool) or not isinstance(k, int) or not u.problem.is_allowed(k):
            raise ValueError(f"split must be an allowed split {list(u.problem.allowed_splits)}, got {k!r}")
        self.split = k

    def get_params(self) -> dict[str, Any]:
        return {"split": self.split}

    def _act(self) -> np.ndarray:
        return np.full(self.n_ues, self.split - self.k_min, dtype=np.int64)


class CellRandomAgent(CellAgent):
    """Every UE uniform over its allowed actions (seeded)."""

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env)
        self.set_params({"seed": seed})

    def set_params(self, params: dict[str, Any]) -> None:
        self.seed = int(params.get("seed", 0))
        self._rng = np.random.default_rng(self.seed)
        self._allowed = np.flatnonzero(_cell(self.env).problem.masks)

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _act(self) -> np.ndarray:
        return self._rng.choice(self._allowed, size=self.n_ues).astype(np.int64)


class SelfishAgent(CellAgent):
    """Privileged: each UE with a request takes the split that maximises its own expected reward as if it were alone
    in the cell (the full band, an idle edge): the single-UE myopic oracle, per UE."""

    privileged = True

    def _act(self) -> np.ndarray:
        sim = _cell(self.env).sim
        table = sim.alone_reward_table()
        return np.argmax(table, axis=1).astype(np.int64)


class CellPlannerAgent(CellAgent):
    """Privileged: coordinate descent over the joint splits of the UEs with a request, on the expected team reward with
    the exact contention (uplink shares, edge queue): from the selfish choice and from every UE local, each UE in turn
    takes its best split given the others', until a sweep changes nothing (at most ``max_sweeps``); the better of the
    two ends is played. ``backlog_weight`` prices the
    backlog a joint split leaves: the team reward lost if the same joint split met that backlog next step (0 ignores
    it)."""

    privileged = True

    def __init__(self, env: gym.Env, max_sweeps: int = 6, backlog_weight: float = 1.0) -> None:
        super().__init__(env)
        self.set_params({"max_sweeps": max_sweeps, "backlog_weight": backlog_weight})

    def set_params(self, params: dict[str, Any]) -> None:
        sweeps = params.get("max_sweeps", 6)
        if isinstance(sweeps, bool) or not isinstance(sweeps, int) or not 1 <= sweeps <= 100:
            raise ValueError(f"max_sweeps must be an integer in [1, 100], got {sweeps!r}")
        w = params.get("backlog_weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 10.0:
            raise ValueError(f"backlog_weight must be a number in [0, 10], got {w!r}")
        self.max_sweeps, self.backlog_weight = sweeps, float(w)

    def get_params(self) -> dict[str, Any]:
        return {"max_sweeps": self.max_sweeps, "backlog_weight": self.backlog_weight}

    def objective(self, k: np.ndarray, table) -> float:
        """The expected team reward of joint splits ``k`` now, less the backlog's price (see the class doc)."""
        sim = _cell(self.env).sim
        now = sim.expected_rewards(k, table).sum()
        if self.backlog_weight:
            left = float(
                sim.contention(k, sim.ues.channel_state["level"], sim.active, sim.backlog_s).backlog_after_s[0]
            )
            if left > 0.0:
                cost = now - sim.expected_rewards(k, table, backlog_s=left).sum()
                now -= self.backlog_weight * sim.arrival_prob * cost
        return float(now)

    def _act(self) -> np.ndarray:
        sim = _cell(self.env).sim
        p = sim.problem
        table = sim.expected_quality_table()
        selfish = np.argmax(sim.alone_reward_table(table), axis=1) + p.k_min
        local = np.full(sim.n_ues, p.allowed_splits[-1])
        # two starts: the selfish choice (every UE offloading where alone it would) and every UE local (the
        # offloaders are then added one by one); a single UE's move cannot leave an overloaded band where two or more
        # must leave it at once, so each start may stop at its own local optimum: keep the better
        best_k, best = None, -np.inf
        for start in (selfish, local):
            k, v = self._descend(start.copy(), table)
            if v > best:
                best_k, best = k, v
        return (best_k - p.k_min).astype(np.int64)

    def _descend(self, k: np.ndarray, table) -> tuple[np.ndarray, float]:
        sim = _cell(self.env).sim
        best = self.objective(k, table)
        candidates = np.asarray(sim.problem.allowed_splits)
        for _ in range(self.max_sweeps):
            changed = False
            for i in np.flatnonzero(sim.active):
                for c in candidates:
                    if c == k[i]:
                        continue
                    old = k[i]
                    k[i] = c
                    v = self.objective(k, table)
                    if v > best + 1e-12:
                        best, changed = v, True
                    else:
                        k[i] = old
            if not changed:
                break
        return k, best
