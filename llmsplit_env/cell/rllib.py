"""The edge cell as an RLlib multi-agent env with one policy shared by every UE (nothing here imports Ray until a
function that needs it runs).

``register_cell_with_rllib()`` registers `CELL_MA_ID` (``"LLMSplit-Cell-MA-v0"``) with ``ray.tune.register_env``;
its creator `make_cell_multi_agent_env` wraps the PettingZoo face (`llmsplit_env.cell.parallel_env`) in RLlib's
``ParallelPettingZooEnv``, so the agents are ``ue_0 … ue_{N-1}``, each observing its own features and the shared
load features (``F + 1 + 4``), acting ``Discrete(n)`` and rewarded ``(1 − mix)·own + mix·team``
(``cell.team.mix``, default 1). RLlib's ``env_config`` holds the cell's config keys, as for
``parallel_env(**env_config)``. A shared policy maps every agent to one RLModule::

    from ray.rllib.algorithms.ppo import PPOConfig
    from llmsplit_env.cell.rllib import CELL_MA_ID, SHARED_MODULE_ID, register_cell_with_rllib, shared_policy

    register_cell_with_rllib()
    config = (
        PPOConfig()
        .environment(CELL_MA_ID, env_config={"cell": {"n_ues": 8}})
        .multi_agent(**shared_policy())  # policies={SHARED_MODULE_ID}, every agent -> SHARED_MODULE_ID
    )

RLlib's multi-agent env runner calls a registered creator with ``env_config`` alone (one env per call, also when it
vectorises), so the creator takes no ``num_envs``. Remote env runners find the creator through the cluster's registry.

RLlib's ``episode_return_mean`` for this env sums every agent's rewards: with the default team aggregate
(``"mean"``) that is N times the team return of the centralised env ``LLMSplit-Cell-v0``, whatever the mix.

`split_centralised_obs` turns ``LLMSplit-Cell-v0``'s observation (every UE's own features, then the shared ones) into
the N per-agent observations of this env, so a shared policy trained here acts on the centralised env.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

# The RLlib env name of the cell's multi-agent face, and the one RLModule id every UE is mapped to.
CELL_MA_ID = "LLMSplit-Cell-MA-v0"
SHARED_MODULE_ID = "shared_ue"
# The shared load features every agent sees after its own (edge backlog, UEs with a request, offloaded share, edge
# work): `CellSimulator.shared_features`, as the centralised and PettingZoo faces lay them out.
N_SHARED = 4


def _counting_env_class():
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    class CellMultiAgentEnv(ParallelPettingZooEnv):
        """RLlib's ``ParallelPettingZooEnv`` that also counts, over its lifetime, the requests it served (UE-steps
        with a request): each stands for one evaluation of the real model, the cell's training cost. A lifetime
        counter in the env is exact whatever RLlib's episode chunking (a trainer sums it over its env runners)."""

        def __init__(self, env) -> None:
            super().__init__(env)
            self.requests_served = 0

        def step(self, action_dict):
            out = super().step(action_dict)
            self.requests_served += sum(bool(info.get("active")) for info in out[4].values())
            return out

    return CellMultiAgentEnv


def make_cell_multi_agent_env(env_config: Mapping[str, Any] | None = None):
    """RLlib's multi-agent env of the cell from ``env_config`` (an ``EnvContext`` or a dict of the cell's config
    keys): RLlib's ``ParallelPettingZooEnv`` around `llmsplit_env.cell.parallel_env`, counting the requests it serves
    (``requests_served``)."""
    from llmsplit_env.cell.parallel import parallel_env

    kwargs = dict(env_config or {})  # an EnvContext is a dict; its worker_index and friends are attributes
    if "num_envs" in kwargs:
        # the single-agent creator takes it; RLlib's multi-agent runner never passes it, so it is a mistake here
        raise ValueError("the cell's multi-agent creator makes one env: set num_envs_per_env_runner, not num_envs")
    return _counting_env_class()(parallel_env(**kwargs))


def shared_policy_mapping_fn(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    """Every UE to the one shared module: the UEs are exchangeable (same channel model, same action set)."""
    return SHARED_MODULE_ID


def shared_policy() -> dict[str, Any]:
    """Keyword arguments for ``AlgorithmConfig.multi_agent``: one module, every agent mapped to it."""
    return {"policies": {SHARED_MODULE_ID}, "policy_mapping_fn": shared_policy_mapping_fn}


def register_cell_with_rllib() -> str:
    """Register `CELL_MA_ID` with RLlib (``ray.tune.register_env``), made by `make_cell_multi_agent_env`; returns the
    name. Safe to call again."""
    from ray.tune.registry import register_env

    register_env(CELL_MA_ID, make_cell_multi_agent_env)
    return CELL_MA_ID


def _n_ues(action_space: spaces.Space) -> int:
    if not isinstance(action_space, spaces.MultiDiscrete) or action_space.nvec.ndim != 1:
        raise ValueError(f"the cell's centralised action space is MultiDiscrete([n] * N), got {action_space}")
    return len(action_space.nvec)


def agent_spaces(
    observation_space: spaces.Box, action_space: spaces.MultiDiscrete
) -> tuple[spaces.Box, spaces.Discrete]:
    """One agent's observation and action spaces (those of the PettingZoo face) from the centralised env's."""
    n = _n_ues(action_space)
    dim = observation_space.shape[0] if isinstance(observation_space, spaces.Box) else -1
    if dim < N_SHARED + n or (dim - N_SHARED) % n:
        raise ValueError(f"not a cell observation space for {n} UEs (N * (F + 1) + {N_SHARED}): {observation_space}")
    own = (dim - N_SHARED) // n

    def per_agent(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v[:own], v[dim - N_SHARED :]]).astype(np.float32)

    obs = spaces.Box(per_agent(observation_space.low), per_agent(observation_space.high), dtype=np.float32)
    return obs, spaces.Discrete(int(action_space.nvec[0]))


def split_centralised_obs(observation: Any, n_ues: int) -> np.ndarray:
    """``LLMSplit-Cell-v0`` observations ``[..., N * (F + 1) + 4]`` as per-agent ones ``[..., N, F + 1 + 4]``: UE i's
    own features followed by the shared features, as agent ``ue_i`` of the parallel env sees them."""
    obs = np.asarray(observation, dtype=np.float32)
    dim = obs.shape[-1] if obs.ndim else 0
    if dim < N_SHARED + n_ues or (dim - N_SHARED) % n_ues:
        raise ValueError(f"observation must end in N * (F + 1) + {N_SHARED} values for N = {n_ues}, got {obs.shape}")
    own = obs[..., : dim - N_SHARED].reshape(*obs.shape[:-1], n_ues, (dim - N_SHARED) // n_ues)
    shared = np.broadcast_to(obs[..., None, dim - N_SHARED :], (*obs.shape[:-1], n_ues, N_SHARED))
    return np.concatenate([own, shared], axis=-1)
