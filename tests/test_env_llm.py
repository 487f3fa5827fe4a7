"""`LLMSplit-LLM-v0`: the live split model as the quality backend (tiny random Llama on CPU; the real SmolLM2 in the
slow test)."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401


@pytest.fixture(scope="module")
def tiny_config(tiny_models):
    return {
        "llm": {
            "model": str(tiny_models["llama"]),
            "text": "pydoc",
            "num_tokens": 64,
            "window": 32,
            "dtype": "float32",
            "device": "cpu",
            "probe_fit_tokens": 512,
            "probe_test_tokens": 128,
        },
        "max_episode_steps": 6,
    }


def test_live_env_passes_both_checkers(tiny_config):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped)
        sb3_check_env(gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped, warn=True)
    assert [str(w.message) for w in caught if "llmsplit" in str(w.filename) or "gymnasium" in str(w.filename)] == []


def test_live_env_runs_the_model_and_counts_evaluations(tiny_config):
    from llmsplit_env.channel import make_channel

    env = gym.make("LLMSplit-LLM-v0", config=tiny_config)
    u = env.unwrapped
    qb = u.quality_backend
    assert u.num_layers == 4 and env.action_space.n == 4
    assert len(qb.leakage) == 4 and qb.leakage[-1] == 0.0 and all(0 <= v <= 1 for v in qb.leakage)
    assert qb.leakage_source == "probe"
    _, info = env.reset(seed=0)
    assert info["quality_evals"] == 0
    for n, a in enumerate([0, 1, 2], start=1):
        level = u.level
        _, r, _, _, info = env.step(a)
        assert info["quality_evals"] == n and info["split"] == a + 1
        # the step's perplexity is the runner's, at the step's SNR, for the seed the env drew
        ev = qb.runner.evaluate(a + 1, make_channel("analog", level, m=2.0), seeds=[qb.last_seed])
        assert info["ppl"] == pytest.approx(max(float(ev.ppl[0]), qb.clean_ppl), rel=1e-9)
        assert info["rewards"]["quality"] == pytest.approx(qb.clean_ppl / info["ppl"], rel=1e-12)
        w = u.reward_weights
        assert r == pytest.approx(sum(w[c] * v for c, v in info["rewards"].items()), rel=1e-12)
    _, _, _, _, info = env.step(3)  # k = L: nothing sent, nothing evaluated
    assert info["quality_evals"] == 3 and info["rewards"]["quality"] == 1.0 and info["packet_loss"] == 0.0
    assert math.isclose(info["ppl"], qb.clean_ppl)


def test_live_env_is_deterministic_per_seed(tiny_config):
    def run(seed):
        env = gym.make("LLMSplit-LLM-v0", config=tiny_config)
        env.reset(seed=seed)
        return [env.step(a)[1:] for a in (0, 2, 1, 0)]

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert [s[0] for s in a] != [s[0] for s in c]


def test_live_expected_rewards_need_a_profile_of_the_same_model(tiny_config):
    env = gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError) as e:
        env.expected_rewards()
    assert "profile of the same model" in str(e.value) and "python -m llmsplit_env.profile" in str(e.value)


def test_live_leakage_from_profile_requires_matching_model(tiny_config):
    cfg = {**tiny_config, "llm": {**tiny_config["llm"], "leakage": "profile"}}
    with pytest.raises(ValueError, match="leakage='profile' needs"):
        gym.make("LLMSplit-LLM-v0", config=cfg)


@pytest.mark.slow
def test_live_smollm2_env_uses_the_shipped_profile_for_expectations():
    env = gym.make(
        "LLMSplit-LLM-v0",
        config={"llm": {"text": "pydoc", "num_tokens": 512, "window": 256, "dtype": "float32"}},
    ).unwrapped
    assert env.quality_backend.leakage_source.startswith("profile")
    env.reset(seed=0)
    exp = env.expected_rewards()
    assert exp.shape == (30,) and np.all(np.isfinite(exp))
    _, _, _, _, info = env.step(int(np.argmax(exp)))
    assert info["quality_evals"] == (1 if info["split"] < 30 else 0)
