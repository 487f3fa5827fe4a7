"""The edge cell on RLlib: the multi-agent creator (the PettingZoo face under RLlib's wrapper), one module shared by
every UE on real env runners, and the `rllib_ppo` agent trained multi-agent, saved as data, loaded and acting on the
centralised env. Ray runs for real: a local instance with 2 CPUs."""

from __future__ import annotations

import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray.rllib")

import ray

import llmsplit_env  # noqa: F401  (registers the ids)
from llmsplit_env.cell.rllib import (
    CELL_MA_ID,
    SHARED_MODULE_ID,
    agent_spaces,
    make_cell_multi_agent_env,
    register_cell_with_rllib,
    shared_policy,
    split_centralised_obs,
)

CELL3 = {"cell": {"n_ues": 3}}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


# --- the creator and the observation split (no Ray instance needed) -------------------------------------------------


def test_creator_is_the_parallel_env_and_agrees_with_the_centralised_env():
    from agents.rllib_ppo import team_return_divisor

    ma = make_cell_multi_agent_env(dict(CELL3))
    central = gym.make("LLMSplit-Cell-v0", **CELL3)
    assert sorted(ma.possible_agents) == ["ue_0", "ue_1", "ue_2"]
    assert (ma.observation_space["ue_0"], ma.action_space["ue_0"]) == agent_spaces(
        central.observation_space, central.action_space
    )
    obs, _ = ma.reset(seed=7)
    c_obs, _ = central.reset(seed=7)
    rng = np.random.default_rng(0)
    divisor = team_return_divisor(central.unwrapped.config)
    requests = 0
    for _ in range(60):
        per_ue = split_centralised_obs(c_obs, 3)
        for i in range(3):
            np.testing.assert_array_equal(obs[f"ue_{i}"], per_ue[i])
        a = rng.integers(central.action_space.nvec)
        obs, rewards, _, truncs, _ = ma.step({f"ue_{i}": int(a[i]) for i in range(3)})
        c_obs, team, _, c_trunc, c_info = central.step(a)
        requests += int(c_info["active"].sum())
        # RLlib sums the agents' rewards: the divisor gives back the centralised env's team reward
        assert sum(rewards.values()) / divisor == pytest.approx(team, rel=1e-6, abs=1e-9)
        assert truncs["__all__"] == c_trunc
        if c_trunc:
            break
    assert c_trunc  # a whole 50-step episode, ended for every agent at once
    assert 0 < ma.requests_served == requests < 150  # the training cost: requests served (arrival 0.75), not UE-steps


def test_split_and_spaces_refuse_what_is_not_a_cell():
    assert split_centralised_obs(np.zeros((5, 3 * 5 + 4)), 3).shape == (5, 3, 9)
    with pytest.raises(ValueError, match=r"N \* \(F \+ 1\) \+ 4 values for N = 3"):
        split_centralised_obs(np.zeros(18), 3)
    with pytest.raises(ValueError, match="MultiDiscrete"):
        agent_spaces(gym.spaces.Box(-1, 1, (19,)), gym.spaces.Discrete(30))
    with pytest.raises(ValueError, match="num_envs_per_env_runner"):
        make_cell_multi_agent_env({"num_envs": 2})


# --- RLlib itself: one shared module, a remote env runner -----------------------------------------------------------


def test_registered_cell_trains_one_shared_module_on_an_env_runner(local_ray):
    from ray.rllib.algorithms.ppo import PPOConfig

    assert register_cell_with_rllib() == CELL_MA_ID
    register_cell_with_rllib()  # twice is fine
    config = (
        PPOConfig()
        .environment(CELL_MA_ID, env_config=dict(CELL3))
        .env_runners(num_env_runners=1, num_cpus_per_env_runner=0.5)
        .multi_agent(**shared_policy())
        .training(train_batch_size_per_learner=100, minibatch_size=100, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 100
        assert result["env_runners"]["num_agent_steps_sampled"] == {f"ue_{i}": pytest.approx(100, abs=5)
                                                                    for i in range(3)}  # fmt: skip
        assert set(result["learners"]) == {SHARED_MODULE_ID, "__all_modules__"}  # one module for all three UEs

        def env_of(runner):
            env = runner.env.envs[0].unwrapped
            return type(env).__name__, sorted(env.possible_agents)

        assert algo.env_runner_group.foreach_env_runner(env_of, local_env_runner=False) == [
            ("CellMultiAgentEnv", ["ue_0", "ue_1", "ue_2"])
        ]
    finally:
        algo.stop()


# --- the rllib_ppo agent on the cell --------------------------------------------------------------------------------

BUSY3 = {"cell": {"n_ues": 3, "arrival_prob": 1.0}}  # every UE has a request every step: the count is exact
TINY = {"num_env_runners": 0, "num_envs_per_env_runner": 2, "train_batch_size": 100, "minibatch_size": 100,
        "num_epochs": 2}  # fmt: skip


@pytest.fixture(scope="module")
def trained_cell(local_ray, tmp_path_factory):
    from agents.rllib_ppo import RLlibPPOAgent

    out = tmp_path_factory.mktemp("cell-rllib")
    env = gym.make("LLMSplit-Cell-v0", **BUSY3)
    agent = RLlibPPOAgent(env, env_id="LLMSplit-Cell-v0", env_kwargs=dict(BUSY3), seed=3,
                          tensorboard_log=str(out / "tb"), **TINY)  # fmt: skip
    agent.learn(200)
    agent.save(out / "agent.zip")
    return agent, out


def test_agent_trains_the_shared_policy_and_logs_the_team_return(trained_cell):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    agent, out = trained_cell
    # 3 requests per cell step, and the step RLlib's env checker takes in each of the 2 envs (served: counted)
    assert agent.num_timesteps == 200 and agent.quality_evals == 600 + 2 * 3
    runs = list((out / "tb").glob("RLLIB_PPO_*"))
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("rollout/ep_rew_mean", "reward/quality", "reward/deadline", "model/policy_loss", "cost/quality_evals",
                "cell/team_reward", "cell/deadline_miss_rate"):  # fmt: skip
        assert tag in tags, tag
    assert [e.value for e in acc.Scalars("cost/quality_evals")] == [306, 606]
    # the team return of a 50-step episode: at most 50 steps of at most the best per-step reward, not 3x it
    assert abs(acc.Scalars("rollout/ep_rew_mean")[-1].value) < 50 * 10


def test_saved_cell_agent_loads_as_data_and_acts_the_same(trained_cell):
    from agents.rllib_ppo import RLlibPPOAgent

    agent, out = trained_cell
    path = out / "agent.zip"
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("llmsplit.json"))
    assert meta["env_id"] == "LLMSplit-Cell-v0" and meta["shared_policy"]["module_id"] == SHARED_MODULE_ID
    env = gym.make("LLMSplit-Cell-v0", **BUSY3)
    again = RLlibPPOAgent.load(path, env)
    obs = []
    o, _ = env.reset(seed=11)
    for _ in range(20):
        obs.append(o)
        o, *_ = env.step(env.action_space.sample())
    obs = np.stack(obs)
    a, _ = agent.predict(obs)
    b, _ = again.predict(obs)
    assert a.shape == (20, 3) and a.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    one, _ = again.predict(obs[0])
    assert one.shape == (3,) and env.action_space.contains(one)
    np.testing.assert_array_equal(one, a[0])
    # each UE's action is the shared module on that UE's view: permuting two UEs' own features swaps their actions
    swapped = obs[:, [5, 6, 7, 8, 9, 0, 1, 2, 3, 4, *range(10, obs.shape[1])]]
    np.testing.assert_array_equal(again.predict(swapped)[0], a[:, [1, 0, 2]])
    with pytest.raises(ValueError, match="observation_space differs"):
        RLlibPPOAgent.load(path, gym.make("LLMSplit-Cell-v0", cell={"n_ues": 4}))
    with pytest.raises(ValueError, match=r"shape \[19\] or \[B, 19\]"):
        again.predict(np.zeros(20, dtype=np.float32))
