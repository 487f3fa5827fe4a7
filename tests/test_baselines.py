"""Heuristics, the oracle, SB3 baselines from YAML, and the shared logging / evaluation (agents.baselines,
agents.logging)."""

from __future__ import annotations

import glob
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import llmsplit_env  # noqa: F401
from agents.baselines import (
    ALGOS,
    BestFixedSplitAgent,
    FixedSplitAgent,
    OracleAgent,
    RandomAgent,
    SNRThresholdAgent,
    load_hyperparams,
    make_sb3_agent,
)
from agents.logging import (
    OracleNormalisedEvalCallback,
    RewardComponentCallback,
    RewardComponentTracker,
    TagTreeLogger,
    configure_logger,
    evaluate_agent,
    normalized_score,
)
from agents.planning import plan_brute_force

torch.set_num_threads(1)
SEEDS = [11, 12, 13]
ENV_IDS = ("LLMSplit-v0", "LLMSplit-Paper-v0")


def _obs_batch(env_id: str, n: int = 20, seed: int = 0) -> np.ndarray:
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
    batch = _obs_batch(env_id)
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
    assert threshold_agent.quality_evals == 1000
    assert len(threshold_agent.bin_splits) == len(threshold_agent.thresholds) + 1
    assert threshold_agent.thresholds == sorted(threshold_agent.thresholds)


def test_heuristics_save_load_identical_actions(tmp_path, threshold_agent):
    env = gym.make("LLMSplit-v0")
    batch = _obs_batch("LLMSplit-v0", 30, seed=3)
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
def test_load_hyperparams_tables_and_errors():
    for algo in ALGOS:
        for env_id in ("LLMSplit-v0", "LLMSplit-Paper-v0", "LLMSplit-LLM-v0"):
            hp = load_hyperparams(algo, env_id)
            assert hp["n_timesteps"] > 0 and hp["policy"] == "MlpPolicy"
    paper = load_hyperparams("ppo", "LLMSplit-Paper-v0")
    assert (paper["n_steps"], paper["batch_size"], paper["n_timesteps"]) == (400, 100, 240_000)
    rsm = load_hyperparams("rsm_ppo", "LLMSplit-Paper-v0")
    assert rsm["n_timesteps"] == 240_000 and rsm["ppo_kwargs"] == {"n_steps": 400, "batch_size": 100}
    over = load_hyperparams("ppo", "LLMSplit-v0", {"n_steps": 64, "learning_rate": 1e-3})
    assert over["n_steps"] == 64 and over["learning_rate"] == 1e-3
    assert load_hyperparams("ppo", "LLMSplit-v0")["n_steps"] != 64  # the file is not modified by overrides
    with pytest.raises(ValueError, match=r"unknown algo 'sac'; allowed: .*maskable_ppo.*ppo"):
        load_hyperparams("sac", "LLMSplit-v0")
    with pytest.raises(ValueError, match=r"no entry for env id 'CartPole-v1'; entries: LLMSplit-v0"):
        load_hyperparams("ppo", "CartPole-v1")
    with pytest.raises(ValueError, match="overrides must be a dict"):
        load_hyperparams("ppo", "LLMSplit-v0", [("n_steps", 1)])


SMALL = {
    "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "maskable_ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 64, "buffer_size": 1000, "target_update_interval": 100},
}


@pytest.mark.parametrize("algo", list(ALGOS))
def test_make_sb3_agent_builds_and_learns(algo):
    hp = load_hyperparams(algo, "LLMSplit-v0", SMALL[algo])
    before = dict(hp)
    model = make_sb3_agent(algo, gym.make("LLMSplit-v0"), hp, seed=0, env_id="LLMSplit-v0")
    assert isinstance(model, ALGOS[algo]) and hp == before  # hyperparameters not consumed
    model.learn(256)
    assert model.num_timesteps >= 256
    a, _ = model.predict(_obs_batch("LLMSplit-v0", 5), deterministic=True)
    assert a.shape == (5,)
    with pytest.raises(ValueError, match=r"unknown .* hyperparameters \['n_stepz'\]"):
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
    batch = _obs_batch("LLMSplit-v0", 40, seed=2)
    assert np.array_equal(loaded.predict(batch, deterministic=True)[0], model.predict(batch, deterministic=True)[0])


# ------------------------------------------------------------------------------------------------ logging
def _scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


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
    tags = _scalars(runs[0])
    for prefix in ("rollout/", "model/", "reward/", "eval/"):
        assert any(t.startswith(prefix) for t in tags), (prefix, sorted(tags))
    for t in ("rollout/ep_rew_mean", "model/loss", "reward/quality", "reward/switching", "cost/quality_evals",
              "eval/mean_reward", "eval/normalized_score", "eval/quality_evals"):  # fmt: skip
        assert t in tags, (t, sorted(tags))
    assert tags["model/loss"] == tags["train/loss"]  # mirrored, not recomputed
    assert tags["cost/quality_evals"][-1][1] == 256  # profile env: one evaluation per step
    assert [v for _, v in tags["eval/quality_evals"]] == [128, 256]
    ref = ev.normalizer.reference
    assert ref[1] > ref[0]
    for (_, score), (_, r) in zip(tags["eval/normalized_score"], tags["eval/mean_reward"], strict=True):
        assert score == pytest.approx(normalized_score(r, *ref), rel=1e-5, abs=1e-5)
    # reward/quality is the per-step mean of info["rewards"]["quality"]: within its range
    assert all(0.0 < v <= 1.0 for _, v in tags["reward/quality"])


def test_configure_logger_naming_and_mirroring(tmp_path):
    a = configure_logger(str(tmp_path), "MBRL")
    b = configure_logger(str(tmp_path), "MBRL")
    assert os.path.basename(a.get_dir()) == "MBRL_1" and os.path.basename(b.get_dir()) == "MBRL_2"
    a.record("train/loss", 0.5)
    a.record("cost/quality_evals", 7)
    a.dump(3)
    a.close()
    tags = _scalars(a.get_dir())
    assert tags["model/loss"] == [(3, 0.5)] and tags["train/loss"] == [(3, 0.5)]
    assert tags["cost/quality_evals"] == [(3, 7.0)]
    silent = configure_logger(None, "x")
    assert isinstance(silent, TagTreeLogger) and silent.get_dir() is None and silent.output_formats == []
    silent.record("train/x", 1.0)
    silent.dump(1)
    with pytest.raises(ValueError, match="run_name"):
        configure_logger(str(tmp_path), "")


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
    assert RewardComponentTracker("none", initial_evals=360).quality_evals == 360
    with pytest.raises(ValueError, match="count"):
        RewardComponentTracker("auto")


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


def test_live_backend_counts_real_evaluations_not_steps():
    """With a live backend, evaluations are what the backend ran (steps at k = L cost nothing), across seeded resets."""
    from llmsplit_env.quality.backends import ProfileQuality

    class CountingProfile(ProfileQuality):  # stands in for the live model: counts every transmission it scores
        def sample(self, split, level, z, rng=None):
            if split != self.num_layers:
                self.evaluations += 1
            return super().sample(split, level, z, rng)

    def live_env():
        env = gym.make("LLMSplit-v0")
        env.unwrapped.quality_backend = CountingProfile("smollm2-135m-analog")
        env.unwrapped.config["backend"] = "llm"  # what the agents read to pick the counting rule
        return env

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
