"""Heuristics, the oracle and SB3 baselines (agents.baselines)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_helpers import SMALL, obs_batch, plan_brute_force

import llmsplit_env  # noqa: F401
from agents.baselines import (
    BestFixedSplitAgent,
    FixedSplitAgent,
    OracleAgent,
    RandomAgent,
    SNRThresholdAgent,
)
from agents.common.env_util import collect_transitions
from agents.common.evaluation import evaluate_agent
from agents.common.hyperparameters import load_hyperparams
from agents.sb3 import ALGOS, make_sb3_agent

torch.set_num_threads(1)
SEEDS = [11, 12, 13]
ENV_IDS = ("LLMSplit-v0", "LLMSplit-Paper-v0")


@pytest.fixture(scope="module")
def threshold_agent() -> SNRThresholdAgent:
    return SNRThresholdAgent(gym.make("LLMSplit-v0")).fit(1000, seed=0)


# ------------------------------------------------------------------------------------------------ heuristics
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_heuristics_predict_single_and_batch(env_id):
    env = gym.make(env_id)
    agents = [
        FixedSplitAgent(env, env.unwrapped.allowed_splits[2]),
        RandomAgent(env, seed=1),
        SNRThresholdAgent(gym.make(env_id), n_bins=3).fit(300, seed=0),
        BestFixedSplitAgent(gym.make(env_id)).fit(300, seed=0),
    ]
    batch = obs_batch(env_id)
    n = env.action_space.n
    env.reset(seed=0)
    for agent in agents:
        a, state = agent.predict(batch[0])
        assert state is None
        assert np.asarray(a).shape == () and 0 <= int(a) < n, type(agent).__name__
        env.step(int(a))  # the env accepts it
        acts, _ = agent.predict(batch)
        assert acts.shape == (len(batch),) and acts.dtype.kind == "i"
        assert np.all((acts >= 0) & (acts < n))
        if not isinstance(agent, RandomAgent):  # deterministic rules: a batch equals one-by-one
            assert [int(agent.predict(o)[0]) for o in batch] == acts.tolist()
    with pytest.raises(ValueError, match="observation must have shape"):
        agents[0].predict(batch[:, :2])
    with pytest.raises(ValueError, match="allowed splits"):
        FixedSplitAgent(env, 0)


def test_fixed_split_relative_mode_reaches_its_split():
    env = gym.make("LLMSplit-v0", config={"action_mode": "relative", "initial_split": 1})
    agent = FixedSplitAgent(env, 12)
    obs, _ = env.reset(seed=0)
    splits = []
    for _ in range(6):
        obs, *_, info = env.step(int(agent.predict(obs)[0]))
        splits.append(info["split"])
    assert splits == [5, 9, 12, 12, 12, 12]  # moves of at most max_move = 4, then stay


def test_random_agent_respects_masks():
    env = gym.make("LLMSplit-v0", config={"splits": {"excluded": [2, 3, 5, 30]}})
    agent = RandomAgent(env, seed=0)
    obs = np.zeros((4000, env.observation_space.shape[0]), np.float32)
    acts, _ = agent.predict(obs)
    masks = env.unwrapped.action_masks()
    assert masks[acts].all()
    assert set(acts.tolist()) == set(np.flatnonzero(masks).tolist())  # every allowed action is drawn
    explicit = np.zeros((4000, env.action_space.n), bool)
    explicit[:, [0, 7]] = True
    explicit[::2, 7] = False  # per-row masks
    acts, _ = agent.predict(obs, action_masks=explicit)
    assert set(acts[::2].tolist()) == {0} and set(acts[1::2].tolist()) == {0, 7}
    with pytest.raises(ValueError, match="allow no action"):
        agent.predict(obs[0], action_masks=np.zeros(env.action_space.n, bool))


def test_oracle_beats_every_fixed_split_and_random():
    env = gym.make("LLMSplit-v0")
    oracle = evaluate_agent(OracleAgent(env), env, SEEDS)
    rand = evaluate_agent(RandomAgent(env, seed=0), env, SEEDS)
    fixed = {
        k: evaluate_agent(FixedSplitAgent(env, k), env, SEEDS)["mean_return"] for k in env.unwrapped.allowed_splits
    }
    assert oracle["mean_return"] >= max(fixed.values()), (oracle["mean_return"], fixed)
    assert oracle["mean_return"] > rand["mean_return"]
    assert oracle["returns"].shape == (len(SEEDS),)
    assert sum(oracle["split_counts"].values()) == len(SEEDS) * env.unwrapped.max_episode_steps


def test_oracle_paper_env_beats_fixed_and_random():
    env = gym.make("LLMSplit-Paper-v0")
    seeds = range(10)
    oracle = evaluate_agent(OracleAgent(env), env, seeds)["mean_return"]
    assert oracle > evaluate_agent(RandomAgent(env), env, seeds)["mean_return"]
    for k in env.unwrapped.allowed_splits:
        assert oracle >= evaluate_agent(FixedSplitAgent(env, k), env, seeds)["mean_return"] - 1e-9


def test_oracle_peeks_the_true_future_without_disturbing_the_env():
    env = gym.make("LLMSplit-v0")
    oracle = OracleAgent(env)
    obs, _ = env.reset(seed=5)
    levels, table = oracle.future_table()
    assert table.shape == (env.unwrapped.max_episode_steps, env.action_space.n)
    seen = []
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(int(oracle.predict(obs)[0]))
        seen.append(info["snr_db"])
        done = term or trunc
    assert seen == levels  # the copy saw exactly the levels the env produced
    env.reset(seed=5)  # a fixed split sees the same channel: the oracle consumed none of the env's randomness
    fixed = [env.step(0)[-1]["snr_db"] for _ in range(len(seen))]
    assert fixed == seen


def test_oracle_dp_is_the_exact_optimum_of_the_expected_return():
    # 3-step episodes with a strong switching cost: compare the oracle's whole episode with brute force over 30^3 plans
    env = gym.make("LLMSplit-v0", config={"max_episode_steps": 3, "reward": {"weights": {"switching": 2.0}}})
    u = env.unwrapped
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        oracle = OracleAgent(env)
        _, table = oracle.future_table()
        best = plan_brute_force(table, u.splits, u.num_layers, 2.0, prev_split=u.prev_split)
        taken = []
        for _ in range(3):
            a = int(oracle.predict(obs)[0])
            taken.append(a)
            obs, *_ = env.step(a)
        assert taken == best.actions.tolist()
    with pytest.raises(ValueError, match="one observation"):
        OracleAgent(env).predict(np.zeros((2, env.observation_space.shape[0])))


def test_threshold_agent_beats_random(threshold_agent):
    env = gym.make("LLMSplit-v0")
    seeds = range(100, 106)
    thr = evaluate_agent(threshold_agent, env, seeds)["mean_return"]
    rand = evaluate_agent(RandomAgent(env, seed=0), env, seeds)["mean_return"]
    assert thr > rand + 5.0, (thr, rand)
    fitted_on = collect_transitions(gym.make("LLMSplit-v0"), 1000, seed=0)  # its fitting steps: those that send
    assert threshold_agent.quality_evals == fitted_on.quality_evals == int(np.sum(fitted_on.splits != 30)) < 1000
    assert len(threshold_agent.bin_splits) == len(threshold_agent.thresholds) + 1
    assert threshold_agent.thresholds == sorted(threshold_agent.thresholds)


def test_heuristics_save_load_identical_actions(tmp_path, threshold_agent):
    env = gym.make("LLMSplit-v0")
    batch = obs_batch("LLMSplit-v0", 30, seed=3)
    for agent in (FixedSplitAgent(env, 7), RandomAgent(env, seed=4), threshold_agent):
        path = tmp_path / f"{type(agent).__name__}.json"
        agent.save(path)
        loaded = type(agent).load(path)
        assert np.array_equal(loaded.predict(batch)[0], agent.predict(batch)[0])  # Random: continues the same stream
        assert loaded.quality_evals == agent.quality_evals
    with pytest.raises(ValueError, match="holds a RandomAgent"):
        FixedSplitAgent.load(tmp_path / "RandomAgent.json")
    oracle = OracleAgent(env)
    oracle.save(tmp_path / "oracle.json")
    with pytest.raises(ValueError, match="needs env"):
        OracleAgent.load(tmp_path / "oracle.json")
    env.reset(seed=1)
    loaded = OracleAgent.load(tmp_path / "oracle.json", env=env)
    assert int(loaded.predict(batch[0])[0]) == int(oracle.predict(batch[0])[0])
    with pytest.raises(ValueError, match="differs"):
        FixedSplitAgent.load(tmp_path / "FixedSplitAgent.json", env=gym.make("LLMSplit-Paper-v0"))


# ------------------------------------------------------------------------------------------------ SB3
@pytest.mark.parametrize("algo", list(ALGOS))
def test_make_sb3_agent_builds_and_learns(algo):
    hp = load_hyperparams(algo, "LLMSplit-v0", SMALL[algo])
    before = dict(hp)
    model = make_sb3_agent(algo, gym.make("LLMSplit-v0"), hp, seed=0, env_id="LLMSplit-v0")
    assert isinstance(model, ALGOS[algo]) and hp == before  # hyperparameters not consumed
    model.learn(256)
    assert model.num_timesteps >= 256
    a, _ = model.predict(obs_batch("LLMSplit-v0", 5), deterministic=True)
    assert a.shape == (5,)
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['n_stepz'\] for " + algo):
        make_sb3_agent(algo, gym.make("LLMSplit-v0"), {**hp, "n_stepz": 3})
    with pytest.raises(ValueError, match="unknown algo"):
        make_sb3_agent("td3", gym.make("LLMSplit-v0"))


def test_sb3_defaults_from_env_id_and_save_load(tmp_path):
    model = make_sb3_agent("ppo", "LLMSplit-Paper-v0", seed=1)  # hyperparameters from ppo.yml by the id
    assert (model.n_steps, model.batch_size) == (400, 100)
    model = make_sb3_agent("ppo", gym.make("LLMSplit-v0"), load_hyperparams("ppo", "LLMSplit-v0", SMALL["ppo"]))
    model.learn(256)
    model.save(tmp_path / "ppo.zip")
    loaded = ALGOS["ppo"].load(tmp_path / "ppo.zip")
    batch = obs_batch("LLMSplit-v0", 40, seed=2)
    assert np.array_equal(loaded.predict(batch, deterministic=True)[0], model.predict(batch, deterministic=True)[0])
