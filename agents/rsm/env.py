"""RSM-PPO's surrogate phase: a profile-backend env whose reward is the surrogate's (`SurrogateRewardWrapper`), and
the callback that logs the surrogate's fit (`SurrogateStatsCallback`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

import llmsplit_env  # registers the env ids; its LLMSplitEnv is the surrogate phase's env
from agents.common.env_util import counts_info, make_env
from agents.rsm.surrogate import EnsembleSurrogate, MLPSurrogate, SurrogateFeatures


def surrogate_env_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config of the surrogate phase's env: ``config`` with the profile backend (the live model is never run)."""
    cfg = json.loads(json.dumps(dict(config)))  # deep copy, JSON-clean
    cfg["backend"] = "profile"
    return cfg


def make_surrogate_env(config: Mapping[str, Any]) -> gym.Env:
    """A fresh profile-backend `LLMSplitEnv` for ``surrogate_env_config(config)`` (the bare class: no gym wrappers)."""
    return make_env(llmsplit_env.LLMSplitEnv, {"config": surrogate_env_config(config)})


class SurrogateRewardWrapper(gym.Wrapper):
    """Replaces the env's reward by ``surrogate(features(obs_t, k_t)) + Σ_{c not learned} w_c · info["rewards"][c]``.

    The wrapped env still samples the channel and its own quality (a profile: free); ``info["env_reward"]`` keeps
    the env's reward and ``info["surrogate_reward"]`` the replacement. ``is_surrogate_env`` tells
    `RewardComponentCallback` that steps here cost no real evaluations. Wrap a profile-backend env
    (`make_surrogate_env`): wrapping a live-LLM env would still run the model each step (refused).
    """

    is_surrogate_env = True

    def __init__(
        self,
        env: gym.Env,
        surrogate: MLPSurrogate | EnsembleSurrogate,
        features: SurrogateFeatures,
        learned_components: Sequence[str],
        weights: Mapping[str, float],
    ) -> None:
        super().__init__(env)
        if counts_info(env):
            raise ValueError("SurrogateRewardWrapper needs a profile-backend env (see make_surrogate_env)")
        self.surrogate = surrogate
        self.features = features
        self.learned = tuple(learned_components)
        self.weights = dict(weights)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        pred = float(self.surrogate.predict(self.features(self._obs, info["split"])[None])[0])
        known = sum(self.weights.get(c, 0.0) * v for c, v in info["rewards"].items() if c not in self.learned)
        reward = pred + known
        info["env_reward"] = env_reward
        info["surrogate_reward"] = reward
        self._obs = obs
        return obs, reward, terminated, truncated, info


class SurrogateStatsCallback(BaseCallback):
    """Records the surrogate's fit statistics under ``model/surrogate_*`` at every rollout end (a flat line in TB)."""

    def __init__(self, stats: Mapping[str, float]) -> None:
        super().__init__()
        self.stats = dict(stats)

    def _record(self) -> None:
        for k, v in self.stats.items():
            self.logger.record(f"model/surrogate_{k}", v)

    def _on_training_start(self) -> None:
        self._record()

    def _on_rollout_end(self) -> None:
        self._record()

    def _on_step(self) -> bool:
        return True
