"""Baselines for LLMSplit: heuristics and the privileged oracle (SB3 model-free agents: `agents.sb3`).

Heuristics implement the agent protocol (`agents.common.protocol.Agent`) on SB3's surface: ``predict(obs, state=None,
episode_start=None, deterministic=True) -> (action, state)`` for one observation ``[D]`` (a numpy integer) or a batch
``[N, D]`` (actions ``[N]``), ``learn(total_timesteps)`` (the threshold rules' fit; nothing for the others),
``save(path)`` / ``load(path, env=None)`` (JSON), and ``quality_evals`` (real quality evaluations spent fitting them).

| agent                 | rule                                                                 | quality_evals     |
|-----------------------|----------------------------------------------------------------------|-------------------|
| `FixedSplitAgent`     | always the same split                                                | 0                 |
| `RandomAgent`         | uniform over the allowed actions (masks respected)                   | 0                 |
| `SNRThresholdAgent`   | split = step function of the observed level, fitted on random steps  | its fitting steps |
| `BestFixedSplitAgent` | learned estimate of the best fixed split, fitted the same way        | its fitting steps |
| `OracleAgent`         | privileged: true expected rewards, DP over the true future channel   | 0                 |

Heuristics read the observation by name (`agents.common.env_util.EnvLayout`), never by position. "The best fixed split"
itself (a privileged reference) is `best_fixed_split` (`agents.common.evaluation`);
`BestFixedSplitAgent` is its learned estimate.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

import llmsplit_env  # noqa: F401  (registers the env ids)
from agents.common.env_util import EnvLayout, collect_transitions, env_layout, make_env
from agents.common.limits import MAX_JSON_BYTES, read_file_bounded
from agents.common.save_util import not_a_saved, parse_json, predict_actions, require_saved
from agents.mbrl.planning import plan_dp
from agents.search import best_sequence, searchable
from llmsplit_env.util.files import atomic_write_json

SAVE_FORMAT = "llmsplit-heuristic"
# 2: the env layout is saved under "layout" with the observation's names (1: "spec", names implied); both load.
SAVE_VERSION = 2


# ------------------------------------------------------------------------------------------------ heuristics
class HeuristicAgent:
    """Common surface of the heuristics: SB3-style ``predict``, JSON ``save``/``load``, ``quality_evals``."""

    #: reads the env's true state (must act on the env it is bound to)
    privileged: ClassVar[bool] = False

    def __init__(self, env: gym.Env | str) -> None:
        self.env = make_env(env)
        self.layout: EnvLayout = env_layout(self.env)
        self.quality_evals = 0

    # --- actions --------------------------------------------------------------------------------------------
    def _split_to_action(self, split: np.ndarray, prev_split: np.ndarray) -> np.ndarray:
        """Action indices that select ``split`` (absolute: nearest allowed split; relative: the clipped move)."""
        lay = self.layout
        if lay.action_mode == "absolute":
            allowed = np.asarray(lay.allowed_splits)
            nearest = allowed[np.abs(allowed[None, :] - split[:, None]).argmin(axis=1)]
            return (nearest - lay.splits[0]).astype(np.int64)
        move = np.clip(split - prev_split, -lay.max_move, lay.max_move)
        return np.where(move == 0, 0, np.where(move < 0, 2 * -move - 1, 2 * move)).astype(np.int64)

    def _act(self, obs: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        """Action for one observation ``[D]`` (a numpy integer) or a batch ``[N, D]`` (``[N]``); ``state`` is passed
        through.

        :param action_masks: ``[n_actions]`` or ``[N, n_actions]`` booleans (``True`` = allowed); the env's masks if
            ``None``
        """
        lay = self.layout
        actions = predict_actions(observation, self._act, obs_dim=lay.obs_dim, dtype=np.float64,
                                  action_masks=action_masks, n_actions=lay.n_actions)  # fmt: skip
        return actions, state

    def learn(self, total_timesteps: int = 0, callback: Any = None) -> HeuristicAgent:
        """Nothing to learn: a fixed rule (the `Agent` protocol's ``learn``; `SNRThresholdAgent` fits its rule)."""
        return self

    # --- persistence ----------------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The rule's parameters as JSON data (what `save` writes)."""
        return {}

    def set_params(self, params: dict[str, Any]) -> None:
        """Set the rule's parameters from `get_params`'s data."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the rule as JSON (class, env layout, parameters, ``quality_evals``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "class": type(self).__name__,
            "layout": self.layout.to_json(),
            "quality_evals": int(self.quality_evals),
            "params": self.get_params(),
        }
        atomic_write_json(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | str | None = None) -> HeuristicAgent:
        """Rebuild an agent saved with ``save``; ``env`` (optional, required by the oracle) is checked against the
        saved env description."""
        path = require_saved(path, f"{cls.__name__} agent", kind="file")
        try:
            data = parse_json(read_file_bounded(path, MAX_JSON_BYTES), str(path))  # bounded: agents.common.limits
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise not_a_saved(path, "LLMSplit heuristic agent", e) from None
        if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a saved LLMSplit heuristic agent")
        if data.get("version") not in (1, SAVE_VERSION):
            raise ValueError(f"{path}: unsupported save version {data.get('version')!r}")
        if data["class"] != cls.__name__:
            raise ValueError(f"{path} holds a {data['class']}, not a {cls.__name__}")
        agent = cls.__new__(cls)
        agent.env = None
        saved = data["layout"] if "layout" in data else data["spec"]
        agent.layout = EnvLayout.from_json(saved)
        if env is not None:
            env = make_env(env)
            lay = env_layout(env)
            keys = ("num_layers", "splits", "n_actions", "action_mode", "obs_dim")
            bad = [k for k in keys if getattr(lay, k) != getattr(agent.layout, k)]
            if "observation_names" in saved and lay.observation_names != agent.layout.observation_names:
                bad.append("observation_names")
            if bad:
                raise ValueError(f"the env differs from the one {path} was saved with in {bad}")
            if "observation_names" not in saved:  # version 1 implied the names: take the env's
                agent.layout = lay
            agent.env = env
        agent.quality_evals = int(data["quality_evals"])
        agent.set_params(data["params"])
        return agent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


class FixedSplitAgent(HeuristicAgent):
    """Always split at ``split`` (absolute mode: its action; relative mode: the move towards it)."""

    def __init__(self, env: gym.Env | str, split: int) -> None:
        super().__init__(env)
        self.set_params({"split": split})

    def set_params(self, params: dict[str, Any]) -> None:
        split = params["split"]
        allowed = list(self.layout.allowed_splits)
        if isinstance(split, bool) or int(split) != split or int(split) not in allowed:
            raise ValueError(f"split must be one of the allowed splits {allowed}, got {split!r}")
        self.split = int(split)

    def get_params(self) -> dict[str, Any]:
        return {"split": self.split}

    def _act(self, obs: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        return self._split_to_action(np.full(len(obs), self.split), self.layout.prev_split(obs))


class RandomAgent(HeuristicAgent):
    """Uniformly random allowed actions (``action_masks``, else the env's masks); ``deterministic`` is ignored.

    Its generator state is saved, so a loaded agent continues the same action sequence.
    """

    def __init__(self, env: gym.Env | str, seed: int = 0) -> None:
        super().__init__(env)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def _act(self, obs: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        if masks is None:
            masks = np.broadcast_to(np.asarray(self.layout.masks, dtype=bool), (len(obs), self.layout.n_actions))
        if not np.all(masks.any(axis=1)):
            raise ValueError("action_masks allow no action for some observation")
        out = np.empty(len(obs), dtype=np.int64)
        for i, m in enumerate(masks):
            allowed = np.flatnonzero(m)
            out[i] = allowed[self.rng.integers(len(allowed))]
        return out

    def get_params(self) -> dict[str, Any]:
        return {"seed": self.seed, "rng_state": self.rng.bit_generator.state}

    def set_params(self, params: dict[str, Any]) -> None:
        self.seed = int(params["seed"])
        self.rng = np.random.default_rng(self.seed)
        if "rng_state" in params:
            self.rng.bit_generator.state = params["rng_state"]


class SNRThresholdAgent(HeuristicAgent):
    """Split as a step function of the observed ``level`` (estimated SNR in dB, or ρ), fitted on data.

    ``fit(num_steps, seed)`` takes ``num_steps`` real steps with uniformly random allowed actions, sorts them into
    ``n_bins`` level bins of equal counts, and picks in each bin the split with the best mean observed reward
    (smoothed over neighbouring splits with a Gaussian kernel of ``split_bandwidth`` splits; the switching term is
    left out since it depends on the random previous split, not on the rule). Adjacent bins with the same split merge,
    leaving thresholds ``thresholds`` and one split per interval ``bin_splits``.

    :param n_bins: level bins (default: ``clip(num_steps // 100, 1, 8)``)
    :param split_bandwidth: kernel width over splits (0: plain per-split means)
    """

    def __init__(self, env: gym.Env | str, n_bins: int | None = None, split_bandwidth: float = 1.0) -> None:
        super().__init__(env)
        if n_bins is not None and (isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1):
            raise ValueError(f"n_bins must be a positive integer or None, got {n_bins!r}")
        if not (np.isfinite(split_bandwidth) and split_bandwidth >= 0):
            raise ValueError(f"split_bandwidth must be a finite number >= 0, got {split_bandwidth!r}")
        self.n_bins = None if n_bins is None else int(n_bins)
        self.split_bandwidth = float(split_bandwidth)
        self.thresholds: list[float] = []
        self.bin_splits: list[int] = []

    def learn(self, total_timesteps: int, callback: Any = None, seed: int = 0) -> SNRThresholdAgent:
        """`fit` on ``total_timesteps`` real steps (the `Agent` protocol's ``learn``; ``callback`` is not called)."""
        return self.fit(total_timesteps, seed)

    def fit(self, num_steps: int, seed: int = 0) -> SNRThresholdAgent:
        """Collect ``num_steps`` random real transitions on the bound env and fit the rule (adds to
        ``quality_evals``: the steps, or, for the live backend, the evaluations the env reports)."""
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        if self.env is None:
            raise ValueError("fit needs an env: load(path, env=...) or construct the agent with one")
        lay = env_layout(self.env)
        w_sw = lay.weights.get("switching", 0.0)
        data = collect_transitions(self.env, int(num_steps), seed)
        switching = np.asarray([float(c.get("switching", 0.0)) for c in data.components])
        self.quality_evals += data.quality_evals
        self._fit_rule(lay.column(data.obs, "level"), data.splits, data.rewards - w_sw * switching)
        return self

    def _fit_rule(self, levels: np.ndarray, splits: np.ndarray, rewards: np.ndarray) -> None:
        n_bins = self.n_bins if self.n_bins is not None else int(np.clip(len(levels) // 100, 1, 8))
        n_bins = min(n_bins, len(levels))
        edges = np.quantile(levels, np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.zeros(0)
        edges = np.unique(edges)
        bins = np.searchsorted(edges, levels, side="right")
        cand = np.asarray(self.layout.allowed_splits, dtype=np.float64)
        best: list[int] = []
        for b in range(len(edges) + 1):
            sel = bins == b
            best.append(self._best_split(cand, splits[sel], rewards[sel]) if sel.any() else -1)
        for b, k in enumerate(best):  # a bin without data takes its neighbour's split
            if k < 0:
                best[b] = next(x for x in best[b:] + best[:b][::-1] if x >= 0)
        thresholds, bin_splits = [], [best[0]]
        for b in range(1, len(best)):
            if best[b] != bin_splits[-1]:
                thresholds.append(float(edges[b - 1]))
                bin_splits.append(best[b])
        self.thresholds, self.bin_splits = thresholds, bin_splits

    def _best_split(self, cand: np.ndarray, splits: np.ndarray, rewards: np.ndarray) -> int:
        if self.split_bandwidth > 0:
            w = np.exp(-0.5 * ((cand[:, None] - splits[None, :]) / self.split_bandwidth) ** 2)
        else:
            w = (cand[:, None] == splits[None, :]).astype(np.float64)
        tot = w.sum(axis=1)
        mean = np.where(tot > 1e-12, (w @ rewards) / np.maximum(tot, 1e-12), -np.inf)
        return int(cand[int(np.argmax(mean))])

    def split_for(self, level: np.ndarray | float) -> np.ndarray:
        """The rule's split for observed level(s)."""
        if not self.bin_splits:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(num_steps, seed) first")
        idx = np.searchsorted(np.asarray(self.thresholds), np.asarray(level, dtype=np.float64), side="right")
        return np.asarray(self.bin_splits)[idx]

    def _act(self, obs: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        actions = self._split_to_action(self.split_for(self.layout.column(obs, "level")), self.layout.prev_split(obs))
        if masks is not None and not masks[np.arange(len(obs)), actions].all():
            raise ValueError(f"the rule's split is masked out by action_masks (splits {self.bin_splits})")
        return actions

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("n_bins", "split_bandwidth", "thresholds", "bin_splits")}

    def set_params(self, params: dict[str, Any]) -> None:
        self.n_bins = params["n_bins"]
        self.split_bandwidth = float(params["split_bandwidth"])
        self.thresholds = [float(t) for t in params["thresholds"]]
        self.bin_splits = [int(k) for k in params["bin_splits"]]


class BestFixedSplitAgent(SNRThresholdAgent):
    """The learned estimate of the best fixed split: the single split with the best mean observed reward on random
    real steps (`SNRThresholdAgent` with one bin; costs its fitting steps).

    The best fixed split itself, the privileged reference measured on the env, is `best_fixed_split`
    (`agents.common.evaluation`).
    """

    def __init__(self, env: gym.Env | str, split_bandwidth: float = 1.0) -> None:
        super().__init__(env, n_bins=1, split_bandwidth=split_bandwidth)

    @property
    def split(self) -> int:
        return self.split_for(0.0).item()


class OracleAgent(HeuristicAgent):
    """Privileged upper bound: acts on the *true* state of the env it is bound to; ``predict`` ignores ``obs``.

    It must be stepped on that same env (`evaluate_agent` re-binds it with ``set_env``; with SB3's
    ``evaluate_policy`` pass the env it was built with). A batch of observations is refused.

    * Relative actions on a channel whose level only the actions move (the paper's drift, a static level): the best
      sequence of the rest of the episode by exhaustive search (`agents.search.best_sequence`), since the best split
      may be several moves away and a one-step argmax stops at a local optimum on the way.
    * No switching cost (weight 0), a negative one, or relative actions on other channels: the argmax of
      ``env.expected_rewards()`` (which includes the switching term from the current split). Myopic: in the paper
      env with absolute actions the action's tiny effect on the next steps' ρ is ignored.
    * Switching weight > 0 (absolute actions): exact dynamic programming (`plan_dp`) over the splits
      along the *true future* channel of the rest of the episode. The future is peeked by stepping a deep copy of the
      env (the quality backend shared, not copied) with the split held, reading ``expected_rewards()`` without the
      switching term at each step; the channel is exogenous, so the copy sees exactly the levels the env will.
      Exact for the profile backend; for the live backend the copy runs on its profile (the expectations come from
      it anyway), and the copy's future diverges from the live env's at the next chunk of normals (the live backend
      draws from the generator too). The plan is computed once per episode and re-checked against the env's level
      every step (recomputed on any mismatch).
    """

    privileged = True

    def __init__(self, env: gym.Env | str, lookahead: bool = True) -> None:
        super().__init__(env)
        self.lookahead = bool(lookahead)
        self._cache: tuple[int, list[float], np.ndarray] | None = None

    def set_env(self, env: gym.Env) -> None:
        """Bind to ``env`` (an env with the same layout)."""
        env = make_env(env)
        lay = env_layout(env)
        if lay.n_actions != self.layout.n_actions or lay.splits != self.layout.splits:
            raise ValueError("OracleAgent.set_env: the env's actions differ from the oracle's")
        self.env, self.layout, self._cache = env, lay, None

    def get_params(self) -> dict[str, Any]:
        return {"lookahead": self.lookahead}

    def set_params(self, params: dict[str, Any]) -> None:
        if self.env is None:
            raise ValueError("OracleAgent.load needs env= (the oracle acts on the env's true state)")
        self.lookahead = bool(params.get("lookahead", True))
        self._cache = None

    def _uses_dp(self) -> bool:
        u = self.env.unwrapped
        return (
            self.lookahead
            and self.layout.action_mode == "absolute"
            and float(u.reward_weights.get("switching", 0.0)) > 0.0
            and hasattr(u, "elapsed_steps")
        )

    def future_table(self) -> tuple[list[float], np.ndarray]:
        """``(levels, rewards)`` for the rest of the episode from the env's current step: the true levels the env will
        see and the ``[H, K]`` expected rewards of every action without the switching term (masked: ``-inf``)."""
        u = self.env.unwrapped
        t0 = int(u.elapsed_steps)
        horizon = int(u.max_episode_steps) - t0
        if horizon < 1:
            raise ValueError("the episode is over: reset the env")
        qb = u.quality_backend
        shared = getattr(qb, "profile_quality", qb) if type(qb).__name__ == "LLMQuality" else qb
        if shared is None:
            raise ValueError("the live backend has no profile of the same model: no expected rewards to plan with")
        memo = {id(qb): shared}
        sim = copy.deepcopy(u, memo)
        sim.render_mode = None
        w_sw = float(u.reward_weights.get("switching", 0.0))
        splits = np.asarray(self.layout.splits, dtype=np.float64)
        levels, rows = [], []
        for j in range(horizon):
            levels.append(float(sim.level))
            rows.append(sim.expected_rewards() + w_sw * np.abs(splits - sim.prev_split) / sim.num_layers)
            if j < horizon - 1:
                sim.step(sim.prev_split - sim.k_min)  # hold the split: the channel does not depend on it
        return levels, np.asarray(rows)

    def _act(self, obs: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        if len(obs) != 1:
            raise ValueError("OracleAgent acts on one env's true state: predict one observation at a time")
        if self.env is None:
            raise ValueError("OracleAgent has no env: load(path, env=...) or set_env(env)")
        u = self.env.unwrapped
        m = u.action_masks() if masks is None else masks[0]
        if self.lookahead and searchable(self.env):  # relative moves on an action-driven level: look ahead
            return np.array([int(best_sequence(self.env)[0][0])], dtype=np.int64)
        if not self._uses_dp():
            er = u.expected_rewards()
            return np.array([int(np.argmax(np.where(m, er, -np.inf)))], dtype=np.int64)
        t = int(u.elapsed_steps)
        c = self._cache
        if c is None or not (c[0] <= t < c[0] + len(c[1])) or c[1][t - c[0]] != float(u.level):
            levels, table = self.future_table()
            self._cache = c = (t, levels, table)
        table = c[2][t - c[0] :]
        finite = np.where(np.isfinite(table), table, 0.0)
        plan = plan_dp(
            finite,
            self.layout.splits,
            u.num_layers,
            float(u.reward_weights["switching"]),
            prev_split=float(u.prev_split),
            mask=np.asarray(m, dtype=bool) & np.isfinite(table),
        )
        return np.array([plan.first_action], dtype=np.int64)
