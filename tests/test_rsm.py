"""RSM-PPO (agents.rsm): surrogate fit, surrogate-reward wrapper, real-evaluation accounting, save/load, logging."""

from __future__ import annotations

import glob
import os
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from agent_helpers import CountingProfile

import llmsplit_env  # noqa: F401
from agents.common.callbacks import OracleNormalisedEvalCallback, RewardComponentCallback
from agents.rsm import (
    MLPSurrogate,
    RSMPPOAgent,
    SurrogateRewardWrapper,
    make_surrogate_env,
    surrogate_env_config,
)
from llmsplit_env.env import LLMSplitEnv
from llmsplit_env.quality.backends import ProfileQuality

torch.set_num_threads(1)
SMALL_PPO = {"n_steps": 256, "batch_size": 64, "n_epochs": 4}


def _counting_env() -> gym.Env:
    env = gym.make("LLMSplit-v0")
    u = env.unwrapped
    u.quality_backend = CountingProfile(u.config["profile"] or "smollm2-135m-analog")
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """RSM-PPO with small budgets (n_real = 200, 2,000 PPO steps) on a real env that counts its evaluations."""
    log = str(tmp_path_factory.mktemp("tb"))
    env = _counting_env()
    agent = RSMPPOAgent(env, n_real=200, surrogate="mlp", ppo_kwargs=SMALL_PPO, seed=0, tensorboard_log=log)
    ev = OracleNormalisedEvalCallback("LLMSplit-v0", eval_freq=1000, n_eval_episodes=2)
    evals_before_learn = env.unwrapped.quality_backend.evaluations
    agent.learn(2000, callback=[ev])
    return agent, env, log, ev, evals_before_learn


def _heldout(env_id: str, agent: RSMPPOAgent, n: int = 600, seed: int = 99) -> tuple[np.ndarray, np.ndarray]:
    probe = RSMPPOAgent(
        gym.make(env_id), n_real=2, obs_dims=agent.features.obs_dims, raw_split=agent.features.raw_split
    )
    data = probe.collect(n, seed=seed)
    return data["features"], data["target"]


def test_rsm_end_to_end_spends_only_n_real(trained):
    agent, env, _, ev, evals_before_learn = trained
    sends = int(np.sum(agent.data["split"] != env.unwrapped.num_layers))  # the n_real steps that sent something
    assert agent.quality_evals == sends < 200
    assert agent.num_timesteps >= 2000
    assert evals_before_learn == 0
    counted = env.unwrapped.quality_backend.evaluations
    # the real env scored exactly the n_real collection steps (those at k = L run no evaluation) and nothing after:
    # the PPO phase ran on the surrogate
    assert counted == int(np.sum(agent.data["split"] != env.unwrapped.num_layers)) > 150
    assert [r["quality_evals"] for r in ev.results] == [counted, counted]  # eval/quality_evals: constant
    assert np.isfinite(ev.results[-1]["normalized_score"])
    batch = np.stack([gym.make("LLMSplit-v0").reset(seed=s)[0] for s in range(8)])
    a, _ = agent.predict(batch)
    assert a.shape == (8,) and np.all((a >= 0) & (a < env.action_space.n))


def test_surrogate_fit_error_on_heldout_real_transitions(trained):
    agent = trained[0]
    X, y = _heldout("LLMSplit-v0", agent)
    mse = float(np.mean((agent.surrogate.predict(X) - y) ** 2))
    # the surrogate explains most of the target's variance (measured ≈ 0.17 of it for this seed; a constant: 1.0)
    assert mse < 0.4 * float(np.var(y)), (mse, float(np.var(y)))
    assert agent.fit_stats["fit_mse"] < agent.fit_stats["target_var"]
    assert agent.fit_stats["n_real"] == 200


def test_ensemble_surrogate_option():
    agent = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=200, surrogate="ensemble", ppo_kwargs=SMALL_PPO, seed=1)
    stats = agent.fit_surrogate()
    assert {"val_nll", "val_mse_standardized", "fit_mse"} <= set(stats)
    X, y = _heldout("LLMSplit-v0", agent)
    assert float(np.mean((agent.surrogate.predict(X) - y) ** 2)) < 0.4 * float(np.var(y))


def test_features_follow_the_paper_for_the_paper_env():
    agent = RSMPPOAgent(gym.make("LLMSplit-Paper-v0"), n_real=20)
    assert agent.features.dim == 2 and agent.features.raw_split  # (rho, p) as the authors
    assert agent.learned == ("ppl_gain",)  # their surrogate predicts the perplexity term; the load term is exact
    obs = np.array([0.2, 0.0, 0.0, 0.3, 3.0], np.float32)
    assert np.allclose(agent.features(obs, 7), [0.2, 7.0])
    default = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=20)
    assert not default.features.raw_split and default.learned == ("quality",)
    assert np.allclose(default.features(np.array([12.0, 0.0, 0.0, 0.5]), 15), [12.0, 0.5])


def test_one_hot_split_features_and_save_load(tmp_path):
    agent = RSMPPOAgent(
        gym.make("LLMSplit-v0"), n_real=60, split_one_hot=True, ppo_kwargs={"n_steps": 64, "batch_size": 32}
    )
    x = agent.features(np.array([[3.0, 0.0, 0.0, 0.5]] * 2), np.array([1, 30]))
    assert x.shape == (2, 2 + 30) and agent.features.dim == 32
    assert (
        np.allclose(x[:, 1], [1 / 30, 1.0])
        and x[0, 2] == 1.0
        and x[1, -1] == 1.0
        and x.sum() == pytest.approx(6.0 + 31 / 30 + 2)
    )
    agent.learn(64)
    agent.save(tmp_path / "a.zip")
    loaded = RSMPPOAgent.load(tmp_path / "a.zip")
    assert loaded.features.one_hot and loaded.features.dim == 32
    obs = np.tile(np.array([10.0, 0.0, 0.0, 0.5], np.float32), (5, 1))
    assert np.allclose(loaded.predict_target(obs, 30), agent.predict_target(obs, 30))


def test_surrogate_wrapper_reward_and_no_real_evaluations():
    sur = MLPSurrogate(2, seed=0)
    X = np.column_stack([np.linspace(-5, 35, 50), np.tile(np.linspace(0.1, 1, 10), 5)])
    sur.fit(X, X[:, 0] / 40.0 - X[:, 1])
    agent = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=20)
    inner = make_surrogate_env(agent.config)
    env = SurrogateRewardWrapper(inner, sur, agent.features, agent.learned, agent.weights)
    obs, _ = env.reset(seed=0)
    w = agent.weights
    for a in [0, 5, 29, 12]:
        prev = obs
        obs, r, _, _, info = env.step(a)
        k = info["split"]
        known = sum(w[c] * v for c, v in info["rewards"].items() if c != "quality")
        assert r == pytest.approx(float(sur.predict(agent.features(prev, k)[None])[0]) + known)
        assert info["surrogate_reward"] == r and info["env_reward"] != r
    # a reward callback in "auto" mode sees a surrogate env and counts no evaluations for its steps
    from stable_baselines3 import PPO

    rc = RewardComponentCallback(initial_evals=7)
    PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0).learn(128, callback=rc)
    assert rc.tracker.count == "none" and rc.quality_evals == 7
    plain = RewardComponentCallback(initial_evals=7)
    PPO("MlpPolicy", inner, n_steps=64, batch_size=32, n_epochs=1, seed=0).learn(128, callback=plain)
    assert plain.tracker.count == "sends" and plain.tracker.steps == 128  # a profile: the steps that send count
    assert plain.quality_evals == 7 + plain.tracker.sends


def test_surrogate_phase_never_builds_the_live_model():
    cfg = LLMSplitEnv.resolve_config(preset="llm")
    scfg = surrogate_env_config(cfg)
    assert cfg["backend"] == "llm" and scfg["backend"] == "profile"
    env = make_surrogate_env(cfg)
    assert isinstance(env.unwrapped.quality_backend, ProfileQuality)
    assert env.unwrapped.num_layers == 30

    class FakeLive(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (4,))
        action_space = gym.spaces.Discrete(2)
        config: ClassVar[dict] = {"backend": "llm"}

    with pytest.raises(ValueError, match="profile-backend"):
        SurrogateRewardWrapper(FakeLive(), MLPSurrogate(2), None, (), {})


def test_rsm_tensorboard_tags(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = trained[2]
    runs = glob.glob(os.path.join(log, "RSM-PPO_*"))
    assert len(runs) == 1
    acc = EventAccumulator(runs[0], size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for t in ("rollout/ep_rew_mean", "model/loss", "model/surrogate_fit_mse", "model/surrogate_val_mse",
              "reward/quality", "cost/quality_evals", "eval/normalized_score", "eval/quality_evals"):  # fmt: skip
        assert t in tags, (t, sorted(tags))
    n = trained[0].quality_evals  # the collection's; surrogate steps are free
    assert {e.value for e in acc.Scalars("cost/quality_evals")} == {float(n)} and 150 < n < 200


def test_rsm_save_load_identical_actions(trained, tmp_path):
    agent = trained[0]
    batch = np.stack([gym.make("LLMSplit-v0").reset(seed=s)[0] for s in range(30)])
    want = agent.predict(batch, deterministic=True)[0]
    for path in (tmp_path / "agent", tmp_path / "agent.zip"):
        agent.save(path)
        assert path.is_dir() if path.suffix == "" else path.is_file()
        loaded = RSMPPOAgent.load(path)  # no env needed
        assert np.array_equal(loaded.predict(batch, deterministic=True)[0], want)
        assert np.allclose(loaded.predict_target(batch, 7), agent.predict_target(batch, 7))
        assert loaded.quality_evals == agent.quality_evals == int(np.sum(agent.data["split"] != 30))
    loaded = RSMPPOAgent.load(tmp_path / "agent", env=gym.make("LLMSplit-v0"))
    loaded.learn(256, reset_num_timesteps=False)  # continues training in the surrogate; no new real evaluations
    assert loaded.quality_evals == agent.quality_evals
    with pytest.raises(ValueError, match="not a saved RSM-PPO"):
        RSMPPOAgent.load(tmp_path)


def test_user_reward_callback_counts_n_real():
    agent = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=50, ppo_kwargs={"n_steps": 64, "batch_size": 32}, seed=2)
    rc = RewardComponentCallback()
    agent.learn(128, callback=rc)
    assert rc.quality_evals == agent.quality_evals == int(np.sum(agent.data["split"] != 30)) < 50
    with pytest.raises(ValueError, match="surrogate must be one of"):
        RSMPPOAgent(gym.make("LLMSplit-v0"), surrogate="gp")
    with pytest.raises(ValueError, match="n_real"):
        RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=1)


def test_rsm_refuses_an_env_with_added_reward_components():
    from agents import RSMPPOAgent
    from llmsplit_env import LLMSplitEnv, RewardComponent, compile_problem

    problem = compile_problem().with_component(RewardComponent("bonus", lambda p, o: 1.0), weight=1.0)
    with pytest.raises(ValueError, match=r"no reward component \['bonus'\]"):
        RSMPPOAgent(LLMSplitEnv(problem=problem))


def test_saved_agent_faults_are_named_and_run_nothing(tmp_path):
    import pathlib
    import pickle
    import shutil
    import zipfile

    class Touch:
        def __reduce__(self):
            return (pathlib.Path.touch, (tmp_path / "pwned",))

    agent = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=40, ppo_kwargs={"n_steps": 64, "batch_size": 32}, seed=2)
    agent.learn(64)
    good = tmp_path / "agent"
    agent.save(good)
    # a crafted surrogate.pt, a plain SB3 ppo.zip, a truncated rsm.json: each refused, naming the file
    for name, data, match in (
        ("surrogate.pt", pickle.dumps(Touch()), r"surrogate\.pt refused"),
        ("rsm.json", (good / "rsm.json").read_bytes()[:50], r"bad.* is not a readable saved RSM-PPO agent"),
    ):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(good, bad)
        (bad / name).write_bytes(data)
        with pytest.raises(ValueError, match=match):
            RSMPPOAgent.load(bad)
    plain = tmp_path / "plain"
    shutil.copytree(good, plain)
    agent.ppo.save(plain / "ppo.zip")
    with pytest.raises(ValueError, match=r"plain/ppo\.zip was not saved by LLMSplit"):
        RSMPPOAgent.load(plain)
    assert not (tmp_path / "pwned").exists()
    # a truncated archive names itself
    agent.save(tmp_path / "agent.zip")
    cut = tmp_path / "cut.zip"
    cut.write_bytes((tmp_path / "agent.zip").read_bytes()[:-100])
    assert not zipfile.is_zipfile(cut)
    with pytest.raises(ValueError, match=r"cut\.zip is neither"):
        RSMPPOAgent.load(cut)


def test_directory_save_is_atomic(tmp_path, monkeypatch):
    """An interrupt while the new version is being written leaves the previous directory whole."""
    agent = RSMPPOAgent(gym.make("LLMSplit-v0"), n_real=40, ppo_kwargs={"n_steps": 64, "batch_size": 32}, seed=2)
    agent.learn(64)
    path = tmp_path / "agent"
    agent.save(path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    agent.learn(64, reset_num_timesteps=False)

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("agents.rsm.agent.sb3_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        agent.save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["agent"]  # no temporary left behind
    assert RSMPPOAgent.load(path).num_timesteps == 64
