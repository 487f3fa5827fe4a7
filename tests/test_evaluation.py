"""Evaluation on fixed seeds, the oracle-normalised score, the best fixed split (agents.common.evaluation)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401
from agents.baselines import FixedSplitAgent
from agents.common.evaluation import best_fixed_split, evaluate_agent, normalized_score


def test_evaluate_agent_with_a_callable_and_normalized_score_errors():
    calls = []

    def policy(obs):
        calls.append(obs)
        return 0

    res = evaluate_agent(policy, "LLMSplit-v0", [1, 2])
    assert len(calls) == 2 * 50 and res["split_counts"][1] == 100
    assert set(res["mean_components"]) >= {"quality", "ue_compute", "privacy", "switching"}
    again = evaluate_agent(FixedSplitAgent(gym.make("LLMSplit-v0"), 1), lambda: gym.make("LLMSplit-v0"), [1, 2])
    assert np.array_equal(again["returns"], res["returns"])  # same seeds, same episodes
    assert normalized_score(5.0, 1.0, 9.0) == 0.5
    assert np.allclose(normalized_score(np.array([1.0, 9.0]), 1.0, 9.0), [0.0, 1.0])
    with pytest.raises(ValueError, match="R_oracle > R_random"):
        normalized_score(1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="unknown env id"):
        evaluate_agent(policy, "LLMSplit-v9", [1])


def test_trace_reads_the_level_by_name():
    env = gym.make("LLMSplit-v0", config={"observation": {"extras": ["time"]}})
    seen = []
    res = evaluate_agent(lambda obs: seen.append(obs) or 0, env, [3], trace=True)
    assert res["levels"].tolist() == [float(o[env.unwrapped.observation_names.index("level")]) for o in seen]
    assert res["step_splits"].tolist() == [1] * 50


def test_best_fixed_split_is_the_best_evaluated_fixed_split():
    env = gym.make("LLMSplit-Paper-v0")
    seeds = [1, 2, 3]
    best, returns = best_fixed_split(env, seeds)
    assert list(returns) == list(env.unwrapped.allowed_splits)
    for k, r in returns.items():
        assert r == evaluate_agent(FixedSplitAgent(env, k), env, seeds)["mean_return"]
    assert returns[best] == max(returns.values())
    assert best_fixed_split("LLMSplit-Paper-v0", seeds) == (best, returns)  # by id too, same seeds: same answer
    other = max(k for k in returns if k not in (best, 1))  # the paper env starts at split 1: keep it allowed
    best2, returns2 = best_fixed_split(gym.make("LLMSplit-Paper-v0", config={"splits": {"excluded": [other]}}), seeds)
    assert other not in returns2 and best2 == best
