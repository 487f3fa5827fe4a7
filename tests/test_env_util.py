"""The one env builder, the env layout read by name, the one random-transition loop (agents.common.env_util)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from agent_helpers import live_env

import llmsplit_env  # noqa: F401
from agents.baselines import FixedSplitAgent, SNRThresholdAgent
from agents.common.env_util import EnvLayout, collect_transitions, env_layout, make_env

EXTRAS = {"observation": {"extras": ["time"]}}


def test_make_env_from_id_config_factory_and_instance():
    env = make_env("LLMSplit-v0", {"max_episode_steps": 7})
    assert env.unwrapped.max_episode_steps == 7
    env = make_env("LLMSplit-v0", {"config": {"max_episode_steps": 8}, "render_mode": "ansi"})
    assert env.unwrapped.max_episode_steps == 8 and env.render_mode == "ansi"
    assert make_env(env) is env
    assert make_env(lambda: env) is env
    assert make_env(lambda max_episode_steps: gym.make("LLMSplit-v0", config={"max_episode_steps": max_episode_steps}),
                    {"max_episode_steps": 9}).unwrapped.max_episode_steps == 9  # fmt: skip
    with pytest.raises(ValueError, match="unknown env id 'LLMSplit-v9'; registered LLMSplit ids: LLMSplit-v0"):
        make_env("LLMSplit-v9")
    with pytest.raises(ValueError, match=r"not a gymnasium\.Env"):
        make_env(lambda: 3)
    with pytest.raises(ValueError, match="expected an env id"):
        make_env(3)


def test_layout_reads_the_published_observation_names():
    env = gym.make("LLMSplit-v0", config=EXTRAS)
    lay = env_layout(env)
    assert lay.observation_names == tuple(env.unwrapped.observation_names) == (
        "level", "trend", "packet_loss", "prev_split", "time")  # fmt: skip
    assert lay.obs_dim == 5 and lay.n_actions == env.action_space.n == 30
    assert lay.splits == tuple(range(1, 31)) and lay.weights == dict(env.unwrapped.reward_weights)
    obs, _ = env.reset(seed=0)
    assert lay.prev_split(obs) == env.unwrapped.prev_split
    assert lay.column(obs, "level") == pytest.approx(obs[0])
    with pytest.raises(ValueError, match="has no 'last_quality'"):
        lay.index("last_quality")
    assert EnvLayout.from_json(lay.to_json()) == lay
    with pytest.raises(ValueError, match="expected an LLMSplitEnv"):
        env_layout(gym.make("CartPole-v1"))


def test_agents_read_the_observation_by_name_not_by_position():
    """A layout whose names sit elsewhere: the heuristics follow the names (an env with extras reorders nothing,
    so the reordering is done on the layout and the observation together)."""
    env = gym.make("LLMSplit-v0", config={"action_mode": "relative", **EXTRAS})
    agent = FixedSplitAgent(env, 12)
    obs, _ = env.reset(seed=0)
    want = agent.predict(obs)[0]
    perm = [4, 3, 2, 1, 0]  # time, prev_split, packet_loss, trend, level
    names = tuple(agent.layout.observation_names[i] for i in perm)
    agent.layout = EnvLayout(**{**agent.layout.__dict__, "observation_names": names})
    assert agent.predict(obs[perm])[0] == want  # the move towards 12 is read from prev_split wherever it is
    thr = SNRThresholdAgent(gym.make("LLMSplit-v0", config=EXTRAS)).fit(200, seed=0)
    batch = np.stack([obs, obs + np.array([20, 0, 0, 0, 0], np.float32)])
    want = thr.predict(batch)[0]
    thr.layout = EnvLayout(**{**thr.layout.__dict__, "observation_names": names})
    assert np.array_equal(thr.predict(batch[:, perm])[0], want)


def test_collect_transitions_is_seeded_and_counts_evaluations():
    env = gym.make("LLMSplit-v0", config={"splits": {"excluded": [2, 3]}})
    a = collect_transitions(env, 120, seed=3)
    b = collect_transitions(gym.make("LLMSplit-v0", config={"splits": {"excluded": [2, 3]}}), 120, seed=3)
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.splits, b.splits) and np.array_equal(a.rewards, b.rewards)
    assert a.obs.shape == (120, 4) and not {2, 3} & set(a.splits.tolist())
    # a profile step is one evaluation where it sends something, as on the live backend (k = L sends nothing)
    assert a.quality_evals == int(np.sum(a.splits != 30)) < 120
    assert a.components[0].keys() >= {"quality", "switching"}
    env = live_env()
    c = collect_transitions(env, 100, seed=0)
    assert c.quality_evals == env.unwrapped.quality_backend.evaluations == int(np.sum(c.splits != 30))
    with pytest.raises(ValueError, match="num_steps"):
        collect_transitions(env, 0, seed=0)


def test_make_env_refuses_mixed_make_arguments_and_config_keys():
    from agents.common.env_util import make_env

    with pytest.raises(
        ValueError, match=r"mixes gym.make arguments \['render_mode'\] with config keys \['action_mode'\]"
    ):
        make_env("LLMSplit-v0", {"render_mode": "ansi", "action_mode": "relative"})
    env = make_env("LLMSplit-v0", {"render_mode": "ansi", "config": {"action_mode": "relative"}})
    assert env.unwrapped.config["action_mode"] == "relative" and env.render_mode == "ansi"
