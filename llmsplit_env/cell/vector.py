"""`LLMSplitCellVectorEnv`: ``num_envs`` independent cells of ``LLMSplit-Cell-v0`` stepped at once in numpy.

``gym.make_vec("LLMSplit-Cell-v0", num_envs=C, vectorization_mode="vector_entry_point", config=...)``. Each cell's
trajectory is the one `LLMSplitCellEnv` has with the same seed (``reset(seed=s)`` seeds cell c with ``s + c``, as
Gymnasium's vector envs do). Every cell's episode starts and ends together, so the autoreset (``NEXT_STEP``, as
Gymnasium's default) resets all cells at once: the step after a truncation ignores the actions and returns the reset
observations with reward 0. Infos: per-UE arrays ``[C, N]`` and per-cell ones ``[C]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box, MultiDiscrete
from gymnasium.vector import AutoresetMode, VectorEnv

from llmsplit_env.cell.simulator import CellSimulator
from llmsplit_env.config import merge_config_kwargs

#: the step's per-cell entries (the others are per UE)
_PER_CELL = ("team_reward", "edge_backlog_s", "edge_work_s")


class LLMSplitCellVectorEnv(VectorEnv):
    """``num_envs`` cells, stepped together (see the module docstring)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, config: Mapping | None = None, render_mode: str | None = None,
                 **config_keys: Any) -> None:  # fmt: skip
        if render_mode is not None:
            raise ValueError("LLMSplitCellVectorEnv does not render; render_mode must be None")
        if config_keys:
            config = merge_config_kwargs(config, config_keys)
        self.sim = sim = CellSimulator(config, num_cells=num_envs)
        self.config, self.problem = sim.config, sim.problem
        self.num_envs = C = sim.num_cells
        self.n_ues = N = sim.n_ues
        own_lo, own_hi = sim.own_bounds()
        sh_lo, sh_hi = sim.shared_bounds()
        low = np.concatenate([np.tile(own_lo, N), sh_lo]).astype(np.float32)
        high = np.concatenate([np.tile(own_hi, N), sh_hi]).astype(np.float32)
        self.single_observation_space = Box(low, high, dtype=np.float32)
        self.single_action_space = MultiDiscrete(np.full(N, sim.problem.n_actions))
        self.observation_space = Box(np.tile(low, (C, 1)), np.tile(high, (C, 1)), dtype=np.float32)
        self.action_space = MultiDiscrete(np.full((C, N), sim.problem.n_actions))
        self.render_mode = None
        self._autoreset = False
        self._obs = np.empty((C, N * sim.n_own + 4))

    def _observations(self) -> np.ndarray:
        sim, C, N = self.sim, self.num_envs, self.n_ues
        self._obs[:, : N * sim.n_own] = sim.own_features().reshape(C, N * sim.n_own)
        self._obs[:, N * sim.n_own :] = sim.shared_features()
        return self._obs.astype(np.float32)

    def _reset_info(self) -> dict[str, Any]:
        sim, C, N = self.sim, self.num_envs, self.n_ues
        return {"split": sim.ues.episodes.prev_split.reshape(C, N).copy(), "active": sim.active.reshape(C, N).copy()}

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; the cells reset together and take none")
        self.sim.reset(seed)
        self._autoreset = False
        return self._observations(), self._reset_info()

    def step(self, actions):
        C, N = self.num_envs, self.n_ues
        a = np.asarray(actions)
        if a.shape != (C, N):
            raise ValueError(f"actions must have shape ({C}, {N}) (cells, UEs), got {a.shape}")
        if self._autoreset:  # every cell truncated last step: all start again, the actions are ignored
            self.sim.reset()
            self._autoreset = False
            none = np.zeros(C, dtype=bool)
            return self._observations(), np.zeros(C), none, none.copy(), self._reset_info()
        out = self.sim.step(a.reshape(C * N))
        info: dict[str, Any] = {}
        for key, v in out.items():
            if key == "rewards":
                info[key] = {c: x.reshape(C, N) for c, x in v.items()}
            elif key in _PER_CELL:
                info[key] = v
            elif key != "truncated":
                info[key] = v.reshape(C, N)
        truncated = np.full(C, out["truncated"])
        self._autoreset = out["truncated"]
        return self._observations(), out["team_reward"].copy(), np.zeros(C, dtype=bool), truncated, info

    def action_masks(self) -> np.ndarray:
        """``[C, N, n]`` bool."""
        return np.broadcast_to(self.problem.masks, (self.num_envs, self.n_ues, self.problem.n_actions)).copy()
