"""`LLMSplitCellEnv` (``LLMSplit-Cell-v0``): one controller splits the requests of N UEs that share an uplink and an
edge server.

## Description

N phones (default 8) in one cell, each with its own channel (`LLMSplit-v0`'s mobility, path loss, shadowing, fading
and CSI error) and its own requests, share one uplink (equal bandwidth shares among the UEs that transmit) and one edge
server (a backlog of work that carries over from step to step). Each step every UE with a request picks a split; the
step scores each request (quality, UE compute, privacy, switching, latency against a deadline, energy) and the
team. The dynamics and their physical defaults: `llmsplit_env.cell.simulator` and `llmsplit_env.cell.config`.

## Action Space

``MultiDiscrete([n] * N)``: UE i's action is an `LLMSplit-v0` action (absolute: split ``k_min + a``; relative: the
paper's moves). An idle UE's action does nothing. `action_masks()` is ``[N, n]`` bool (excluded splits ``False``).

## Observation Space

``Box(float32)`` of ``N · (F + 1) + 4``: for each UE, its `LLMSplit-v0` observation (F features: estimated level,
trend, last packet loss, previous split / L, and the configured extras) and 1 if it has a request now; then the
shared features: the edge backlog and last step's edge work (in slots, capped at 10), the share of UEs with a request,
the share that offloaded last step.

## Rewards

The team reward: the mean (``cell.team.aggregate``, or ``"sum"``) over UEs of each UE's ``Σ_c w_c · r_c`` (idle UEs
count 0). Components (``info["rewards"]``, ``[N]`` arrays): `LLMSplit-v0`'s (``latency`` here the request's latency
including the shared airtime and the edge queue), ``deadline`` (−1 for a request over ``cell.deadline_s``; weight
1.0) and ``energy`` (UE compute and transmit energy over that of computing everything locally; weight 0).

## Episode End

No termination; truncation after ``max_episode_steps`` (50) for the whole cell.

## Info

Arrays over UEs: ``split``, ``active`` (had a request), ``reward`` (per UE), ``rewards`` (components), ``ppl``
(0 when idle), the level (``snr_db`` or ``rho``), ``packet_loss``, ``outside_grid``, ``airtime_s``, ``latency_s``
(0 when idle), ``deadline_miss``, ``offloaded``; scalars ``team_reward``, ``edge_backlog_s`` (before the step),
``edge_work_s`` and ``quality_evals`` (0: profile backend).

## Arguments

``LLMSplitCellEnv(config=None, **config_keys)``: `LLMSplit-v0`'s keys (the profile backend) with the cell's latency
figures, plus the ``cell`` section (``n_ues``, ``arrival_prob``, ``deadline_s``, ``slot_s``, ``compute_w``,
``tx_w``, ``team.aggregate``, ``team.mix``) and the weights ``deadline`` and ``energy``; `default_cell_config()`
returns it all. Unknown keys and bad values raise ``ValueError`` naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llmsplit_env.cell.config import default_cell_config
from llmsplit_env.cell.simulator import CellSimulator
from llmsplit_env.config import merge_config_kwargs


class LLMSplitCellEnv(gym.Env):
    __doc__ = __doc__

    metadata: ClassVar[dict] = {"render_modes": []}

    @classmethod
    def default_config(cls) -> dict:
        """The cell's full default configuration (a fresh copy)."""
        return default_cell_config()

    def __init__(self, config: Mapping | None = None, render_mode: str | None = None, **config_keys: Any) -> None:
        super().__init__()
        if render_mode is not None:
            raise ValueError("LLMSplitCellEnv does not render; render_mode must be None")
        if config_keys:
            config = merge_config_kwargs(config, config_keys)
        self.sim = sim = CellSimulator(config)
        self.config = sim.config
        self.problem = sim.problem
        self.n_ues = N = sim.n_ues
        self.num_layers = sim.num_layers
        own_lo, own_hi = sim.own_bounds()
        sh_lo, sh_hi = sim.shared_bounds()
        self.observation_space = spaces.Box(
            np.concatenate([np.tile(own_lo, N), sh_lo]).astype(np.float32),
            np.concatenate([np.tile(own_hi, N), sh_hi]).astype(np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.MultiDiscrete(np.full(N, sim.problem.n_actions))
        self._obs = np.empty(self.observation_space.shape[0])

    def _observe(self) -> np.ndarray:
        sim = self.sim
        n = sim.n_ues * sim.n_own
        self._obs[:n] = sim.own_features().ravel()
        self._obs[n:] = sim.shared_features()[0]
        return self._obs.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; LLMSplitCellEnv takes none")
        self.sim.reset(seed)
        sim = self.sim
        info = {
            "split": sim.ues._ep.prev_split.copy(),
            "active": sim.active.copy(),
            sim.problem.level_name: sim.ues._state["level"].copy(),
            "quality_evals": 0,
        }
        return self._observe(), info

    def step(self, action):
        out = self.sim.step(action)
        info = {k: v for k, v in out.items() if k != "truncated"}
        for key in ("team_reward", "edge_backlog_s", "edge_work_s"):  # the one cell's
            info[key] = float(out[key][0])
        info["quality_evals"] = 0
        return self._observe(), info["team_reward"], False, out["truncated"], info

    def action_masks(self) -> np.ndarray:
        """``[N, n]`` bool: each UE's `LLMSplit-v0` action mask."""
        return np.tile(self.problem.masks, (self.n_ues, 1))
