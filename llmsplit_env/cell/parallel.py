"""The edge cell as a PettingZoo ``ParallelEnv``: agents ``ue_0 … ue_{N-1}``, each acting for itself.

``parallel_env(**config)`` (or ``parallel_env(config)``) takes the `LLMSplitCellEnv` config. Agent ``ue_i`` observes
its own `LLMSplit-v0` features, whether it has a request, and the shared load features (edge backlog, share of UEs
with a request, share that offloaded last step, last step's edge work): a ``Box`` of ``F + 1 + 4``. Its action is an
`LLMSplit-v0` action (``Discrete(n)``; ignored while it has no request). Its reward is ``(1 − mix)·r_i + mix·team``
with ``mix = cell.team.mix`` (default 1: every UE gets the team reward, a fully cooperative game). Episodes end by
truncation for every agent at once; the agents then leave ``env.agents``. Infos per agent: its split, whether it
had a request, its reward components, latency, deadline miss and the team reward.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from llmsplit_env.cell.simulator import CellSimulator
from llmsplit_env.config import merge_config_kwargs


class CellParallelEnv(ParallelEnv):
    """The cell's N UEs as PettingZoo parallel agents (see the module docstring)."""

    metadata = {"name": "llmsplit_cell_v0", "render_modes": [], "is_parallelizable": True}  # noqa: RUF012

    def __init__(self, config: Mapping | None = None, render_mode: str | None = None, **config_keys: Any) -> None:
        if render_mode is not None:
            raise ValueError("the cell does not render; render_mode must be None")
        self.render_mode = None
        if config_keys:
            config = merge_config_kwargs(config, config_keys)
        self.sim = sim = CellSimulator(config)
        self.config = sim.config
        self.possible_agents = [f"ue_{i}" for i in range(sim.n_ues)]
        self.agents: list[str] = []
        own_lo, own_hi = sim.own_bounds()
        sh_lo, sh_hi = sim.shared_bounds()
        self._obs_space = spaces.Box(
            np.concatenate([own_lo, sh_lo]).astype(np.float32),
            np.concatenate([own_hi, sh_hi]).astype(np.float32),
            dtype=np.float32,
        )
        self._act_space = spaces.Discrete(sim.problem.n_actions)
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self._mix = float(sim.config["cell"]["team"]["mix"])

    @functools.cache  # noqa: B019  (PettingZoo's idiom: one space object per agent)
    def observation_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        self._check_agent(agent)
        return self._act_space

    def _check_agent(self, agent: str) -> None:
        if agent not in self._index:
            raise ValueError(f"unknown agent {agent!r}; agents: ue_0 … ue_{len(self.possible_agents) - 1}")

    def _observations(self) -> dict[str, np.ndarray]:
        own = self.sim.own_features()
        shared = self.sim.shared_features()[0]
        obs = np.concatenate([own, np.broadcast_to(shared, (len(own), len(shared)))], axis=1).astype(np.float32)
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        # ``options`` are accepted and unused (PettingZoo's API test passes arbitrary ones)
        self.sim.reset(seed)
        self.agents = list(self.possible_agents)
        active = self.sim.active
        infos = {a: {"active": bool(active[i])} for i, a in enumerate(self.possible_agents)}
        return self._observations(), infos

    def step(self, actions: Mapping[str, Any]):
        if not self.agents:
            raise ValueError("step() on a finished episode (or before reset()): call reset() first")
        missing = [a for a in self.agents if a not in actions]
        unknown = [a for a in actions if a not in self._index]
        if missing or unknown:
            raise ValueError(f"actions must give one action per agent; missing {missing}, unknown {unknown}")
        a = np.array([int(actions[agent]) for agent in self.possible_agents], dtype=np.int64)
        out = self.sim.step(a)
        team = float(out["team_reward"][0])
        r = (1.0 - self._mix) * out["reward"] + self._mix * team
        rewards = {agent: float(r[i]) for i, agent in enumerate(self.possible_agents)}
        done = out["truncated"]
        truncations = dict.fromkeys(self.possible_agents, done)
        terminations = dict.fromkeys(self.possible_agents, False)
        infos = {
            agent: {
                "split": int(out["split"][i]),
                "active": bool(out["active"][i]),
                "rewards": {c: float(v[i]) for c, v in out["rewards"].items()},
                "latency_s": float(out["latency_s"][i]),
                "deadline_miss": bool(out["deadline_miss"][i]),
                "team_reward": team,
            }
            for i, agent in enumerate(self.possible_agents)
        }
        obs = self._observations()
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def action_mask(self, agent: str) -> np.ndarray:
        """Bool ``[n]``: the agent's `LLMSplit-v0` action mask."""
        self._check_agent(agent)
        return self.sim.problem.masks.copy()

    def close(self) -> None:
        pass


def parallel_env(config: Mapping | None = None, **config_keys: Any) -> CellParallelEnv:
    """The cell as a PettingZoo ``ParallelEnv`` (``config`` and/or top-level config keys, as `LLMSplitCellEnv`)."""
    return CellParallelEnv(config, **config_keys)
