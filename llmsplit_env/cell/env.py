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
``edge_work_s`` and ``quality_evals`` (real evaluations since the last seeded reset: 0 on a profile; with
``backend="llm"`` one per request that crosses the link; a slot's requests go out together, so a quality server
(``llm.server``) batches those at the same split).

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

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    @classmethod
    def default_config(cls) -> dict:
        """The cell's full default configuration (a fresh copy)."""
        return default_cell_config()

    def __init__(self, config: Mapping | None = None, render_mode: str | None = None, **config_keys: Any) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self._last: dict | None = None
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
        self._evals_at_seed = 0

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
        if seed is not None:  # quality_evals counts from the last seeded reset, as in LLMSplit-v0
            self._evals_at_seed = self.sim.qb.evaluations
        self.sim.reset(seed)
        self._last = None
        sim = self.sim
        info = {
            "split": sim.ues.episodes.prev_split.copy(),
            "active": sim.active.copy(),
            sim.problem.level_name: sim.ues.channel_state["level"].copy(),
            "quality_evals": self.sim.qb.evaluations - self._evals_at_seed,
        }
        return self._observe(), info

    def step(self, action):
        out = self.sim.step(action)
        info = {k: v for k, v in out.items() if k != "truncated"}
        for key in ("team_reward", "edge_backlog_s", "edge_work_s"):  # the one cell's
            info[key] = float(out[key][0])
        info["quality_evals"] = self.sim.qb.evaluations - self._evals_at_seed
        self._last = info
        return self._observe(), info["team_reward"], False, out["truncated"], info

    def render(self):
        """``ansi``: one line per UE of the last step (split, request, latency, deadline); ``rgb_array``: a bar per UE,
        its height the split (blue: met its deadline, red: missed it, grey: no request)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        sim, info = self.sim, self._last
        split = sim.ues.episodes.prev_split
        miss = np.zeros(self.n_ues, dtype=bool) if info is None else info["deadline_miss"]
        active = sim.active if info is None else info["active"]
        if self.render_mode == "ansi":
            lines = [f"backlog {sim.backlog_s[0] * 1e3:.1f} ms"]
            for i in range(self.n_ues):
                lat = "" if info is None or not active[i] else f" latency {info['latency_s'][i] * 1e3:6.1f} ms"
                state = "idle" if not active[i] else ("MISS" if miss[i] else "ok")
                lines.append(f"ue_{i}: split {int(split[i]):2d}/{self.num_layers} {state}{lat}")
            return "\n".join(lines) + "\n"
        h, w = 80, 10
        img = np.full((h, w * self.n_ues, 3), 255, dtype=np.uint8)
        for i in range(self.n_ues):
            top = h - 1 - round((h - 2) * int(split[i]) / self.num_layers)
            colour = (160, 160, 160) if not active[i] else ((200, 40, 40) if miss[i] else (40, 90, 200))
            img[top:h, i * w + 1 : (i + 1) * w - 1] = colour
        return img

    def action_masks(self) -> np.ndarray:
        """``[N, n]`` bool: each UE's `LLMSplit-v0` action mask."""
        return np.tile(self.problem.masks, (self.n_ues, 1))
