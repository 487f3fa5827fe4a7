"""Reward-component and real-evaluation tracking, evaluation callbacks (agents.common.callbacks)."""

from __future__ import annotations

import glob
import os

import gymnasium as gym
import pytest
import torch
from agent_helpers import SMALL, live_env, scalars

import llmsplit_env  # noqa: F401
from agents.baselines import FixedSplitAgent, SNRThresholdAgent
from agents.common.callbacks import OracleNormalisedEvalCallback, RewardComponentCallback, RewardComponentTracker
from agents.common.evaluation import evaluate_agent, normalized_score
from agents.common.hyperparameters import load_hyperparams
from agents.sb3 import make_sb3_agent

torch.set_num_threads(1)


def test_tensorboard_tag_tree_of_a_tiny_ppo_run(tmp_path):
    log = str(tmp_path / "tb")
    model = make_sb3_agent(
        "ppo", "LLMSplit-v0", load_hyperparams("ppo", "LLMSplit-v0", SMALL["ppo"]), tensorboard_log=log
    )
    rc = RewardComponentCallback()
    ev = OracleNormalisedEvalCallback("LLMSplit-v0", eval_freq=128, n_eval_episodes=2)
    model.learn(256, callback=[rc, ev], tb_log_name="PPO")
    runs = glob.glob(os.path.join(log, "PPO_*"))
    assert [os.path.basename(r) for r in runs] == ["PPO_1"]
    tags = scalars(runs[0])
    for prefix in ("rollout/", "model/", "reward/", "eval/"):
        assert any(t.startswith(prefix) for t in tags), (prefix, sorted(tags))
    for t in ("rollout/ep_rew_mean", "model/loss", "reward/quality", "reward/switching", "cost/quality_evals",
              "eval/mean_reward", "eval/normalized_score", "eval/quality_evals"):  # fmt: skip
        assert t in tags, (t, sorted(tags))
    assert tags["model/loss"] == tags["train/loss"]  # mirrored, not recomputed
    # profile env: one evaluation per step that sends something (the live model runs none at k = L)
    assert rc.tracker.count == "sends" and rc.tracker.steps == 256
    assert tags["cost/quality_evals"][-1][1] == rc.quality_evals == rc.tracker.sends < 256
    first, last = (v for _, v in tags["eval/quality_evals"])
    assert 0 < first <= 128 and first < last == rc.quality_evals
    ref = ev.normalizer.reference
    assert ref[1] > ref[0]
    for (_, score), (_, r) in zip(tags["eval/normalized_score"], tags["eval/mean_reward"], strict=True):
        assert score == pytest.approx(normalized_score(r, *ref), rel=1e-5, abs=1e-5)
    # reward/quality is the per-step mean of info["rewards"]["quality"]: within its range
    assert all(0.0 < v <= 1.0 for _, v in tags["reward/quality"])


def test_reward_component_tracker_windows_and_counts():
    tr = RewardComponentTracker("info")
    infos = [{"rewards": {"quality": 1.0}, "quality_evals": 1}, {"rewards": {"quality": 0.0}, "quality_evals": 0}]
    assert tr.update(infos, [False, False]) == 0
    infos = [{"rewards": {"quality": 0.5}, "quality_evals": 2}, {"rewards": {"quality": 0.2}, "quality_evals": 1}]
    assert tr.update(infos, [True, False]) == 1
    assert tr.window_means() == {"quality": pytest.approx(0.75)}  # env 0's episode: (1.0 + 0.5) / 2 steps
    infos = [{"rewards": {"quality": 0.1}, "quality_evals": 3}, {"rewards": {"quality": 0.4}, "quality_evals": 2}]
    tr.update(infos, [False, True])
    assert tr.window_means() == {"quality": pytest.approx((1.5 + 0.6) / 5)}  # weighted by steps
    assert tr.quality_evals == 5  # 3 + 2 increments
    tr.reset_window()
    assert tr.window_means() == {}
    tr.update([{"rewards": {"quality": 1.0}, "quality_evals": 0}], [False])  # env 0 re-seeded: its count restarts
    assert tr.quality_evals == 5
    steps = RewardComponentTracker("steps", initial_evals=10)
    steps.update([{}, {}], [False, False])
    assert steps.quality_evals == 12
    sends = RewardComponentTracker("sends", initial_evals=10, local_split=30)
    sends.update([{"split": 30}, {"split": 1}, {"split": 29}], [False, False, True])
    assert sends.quality_evals == 12 and sends.steps == 3  # k = L sends nothing: no evaluation
    with pytest.raises(ValueError, match="'sends' needs local_split"):
        RewardComponentTracker("sends")
    assert RewardComponentTracker("none", initial_evals=360).quality_evals == 360
    with pytest.raises(ValueError, match="count"):
        RewardComponentTracker("auto")


def test_profile_count_equals_the_live_count_of_the_same_steps():
    """On a profile, a step counts as an evaluation exactly when the live backend would run one (not at k = L): the
    same seeded training on a profile env and on a counting backend of the same profile spends the same count."""
    profile, live = gym.make("LLMSplit-v0"), live_env()
    a, b = SNRThresholdAgent(profile).fit(300, seed=0), SNRThresholdAgent(live).fit(300, seed=0)
    assert a.quality_evals == b.quality_evals == live.unwrapped.quality_backend.evaluations < 300
    counts = []
    for env in (gym.make("LLMSplit-v0"), live_env()):
        model = make_sb3_agent("ppo", env, load_hyperparams("ppo", "LLMSplit-v0", SMALL["ppo"]))
        rc = RewardComponentCallback()
        model.learn(256, callback=rc)
        counts.append((rc.tracker.count, rc.quality_evals))
    assert counts[0][0] == "sends" and counts[1][0] == "info"
    assert counts[0][1] == counts[1][1] < 256


def test_live_backend_counts_real_evaluations_not_steps():
    """With a live backend, evaluations are what the backend ran (steps at k = L cost nothing), across seeded resets."""
    env = live_env()
    res = evaluate_agent(FixedSplitAgent(env, 3), env, [1, 2, 3])
    assert res["quality_evals"] == 150  # 3 seeded episodes of 50 steps, all transmitting
    assert evaluate_agent(FixedSplitAgent(env, 30), env, [1, 2])["quality_evals"] == 0  # k = L: nothing sent
    env = live_env()
    agent = SNRThresholdAgent(env).fit(300, seed=0)
    assert agent.quality_evals == env.unwrapped.quality_backend.evaluations < 300
    env = live_env()
    model = make_sb3_agent("ppo", env, load_hyperparams("ppo", "LLMSplit-v0", SMALL["ppo"]))
    rc = RewardComponentCallback()
    model.learn(256, callback=rc)
    assert rc.tracker.count == "info"
    assert rc.quality_evals == env.unwrapped.quality_backend.evaluations < 256
