"""Helpers shared by the agent tests (not a test module)."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np

import llmsplit_env  # noqa: F401
from agents.mbrl.planning import SplitPlan, plan_value
from llmsplit_env.quality.backends import ProfileQuality

# Small SB3 budgets, so a model learns in a fraction of a second.
SMALL = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "maskable_ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 64, "buffer_size": 1000, "target_update_interval": 100},
}


def obs_batch(env_id: str, n: int = 20, seed: int = 0) -> np.ndarray:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rng = np.random.default_rng(seed)
    while len(out) < n:
        obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
        out.append(obs)
        if term or trunc:
            obs, _ = env.reset()
    return np.stack(out)


def scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


class CountingProfile(ProfileQuality):
    """A profile backend that counts every transmission it scores, as the live backend counts its evaluations."""

    def sample(self, split, level, z, rng=None):
        if split != self.num_layers:
            self.evaluations += 1
        return super().sample(split, level, z, rng)


def live_env(env_id: str = "LLMSplit-v0") -> gym.Env:
    """An env whose backend counts its evaluations and whose config names the live backend (what agents read)."""
    env = gym.make(env_id)
    env.unwrapped.quality_backend = CountingProfile("smollm2-135m-analog")
    env.unwrapped.config["backend"] = "llm"
    return env


def plan_brute_force(rewards, splits, num_layers, switch_weight, prev_split=None, mask=None) -> SplitPlan:
    """Reference for `plan_dp`: every allowed sequence scored by `plan_value`; the first in lexicographic order wins
    ties (small tests only: ``K^H`` sequences)."""
    r = np.asarray(rewards, dtype=np.float64)
    horizon, k = r.shape[-2:]
    allowed = np.ones((horizon, k), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    plans = itertools.product(*(np.flatnonzero(allowed[t]) for t in range(horizon)))
    values = {plan: plan_value(rewards, plan, splits, num_layers, switch_weight, prev_split) for plan in plans}
    best = max(values, key=values.get)
    return SplitPlan(int(best[0]), np.asarray(best, dtype=np.int64), float(values[best]))
