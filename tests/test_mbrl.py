"""The MBRL agent: learns LLMSplit-v0 to near-oracle within a small real-evaluation budget; persistence; errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import llmsplit_env  # noqa: F401
from agents.common.evaluation import OracleNormalizer, evaluate_agent
from agents.mbrl.agent import MBRLAgent

EVAL_SEEDS = list(range(7000, 7010))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    agent = MBRLAgent("LLMSplit-v0", seed=0, warmup_steps=300, refit_every=100)
    agent.learn(700)
    return agent


def test_mbrl_reaches_095_of_oracle_within_700_real_evaluations(trained):
    assert trained.quality_evals == 700 and trained.num_timesteps == 700
    res = OracleNormalizer(gym.make("LLMSplit-v0"), EVAL_SEEDS)(trained)
    assert res["normalized_score"] >= 0.95, res["normalized_score"]


def test_reward_model_learns_the_quality_surface(trained):
    env = gym.make("LLMSplit-v0")
    qb = env.unwrapped.quality_backend
    q_col = trained.spec["components"].index("quality")
    for snr in (10.0, 25.0):  # where the decision is close, the agent has sampled both ends
        x = trained._reward_inputs(np.array([snr, 0.0], np.float32), np.array([1, 30]))
        pred = trained.reward_model.predict(x).mean[:, q_col]
        true = [qb.expectations(k, snr)[0] for k in (1, 30)]
        np.testing.assert_allclose(pred, true, atol=0.15)
    # and the planner's preference flips with the channel, as the oracle's does
    obs = np.array([0.0, 0.0, 0.0, 1.0], np.float32)
    assert trained.spec["splits"][int(trained.predict(obs)[0])] == 30
    obs[0] = 25.0
    assert trained.spec["splits"][int(trained.predict(obs)[0])] < 30


def test_save_load_gives_identical_actions(trained, tmp_path):
    path = tmp_path / "mbrl.pt"
    trained.save(path)
    loaded = MBRLAgent.load(path)
    env = gym.make("LLMSplit-v0")
    obs, _ = env.reset(seed=3)
    batch = []
    for _ in range(20):
        a, _ = trained.predict(obs)
        b, _ = loaded.predict(obs)
        assert int(a) == int(b)
        batch.append(obs)
        obs, *_ = env.step(int(a))
    # a batch of observations gives the per-observation actions
    single = [int(trained.predict(o)[0]) for o in batch]
    np.testing.assert_array_equal(trained.predict(np.stack(batch))[0], single)
    assert loaded.quality_evals == trained.quality_evals


def test_training_is_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        agent = MBRLAgent("LLMSplit-v0", seed=5, warmup_steps=60, refit_every=30, max_epochs=20, horizon=2)
        agent.learn(90)
        runs.append(evaluate_agent(agent, "LLMSplit-v0", [1, 2])["returns"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_warm_up_tries_every_split_equally():
    agent = MBRLAgent("LLMSplit-v0", seed=1, warmup_steps=60)
    agent.learn(60)
    counts = np.bincount(agent.data["split"], minlength=31)[1:]
    assert counts.min() == counts.max() == 2
    assert agent.reward_model is not None  # fitted once the warm-up ends


def test_masks_are_respected():
    env = gym.make("LLMSplit-v0", config={"splits": {"excluded": [1, 30]}})
    agent = MBRLAgent(env, seed=0, warmup_steps=60, max_epochs=30)
    agent.learn(100)
    assert not {1, 30} & set(agent.data["split"])
    res = evaluate_agent(agent, env, [4])
    assert res["split_counts"].get(1, 0) == 0 and res["split_counts"].get(30, 0) == 0
    assert sum(res["split_counts"].values()) == 50


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"planner": "softmax"}, "unknown planner 'softmax'"),
        ({"horizon": 0}, "horizon must be an integer >= 1"),
        ({"warmup_steps": 2.5}, "warmup_steps"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=None) as err:
        MBRLAgent("LLMSplit-v0", **kwargs)
    assert needle in str(err.value)


def test_relative_actions_and_untrained_predict_are_refused(tmp_path):
    with pytest.raises(ValueError, match="action_mode='absolute'"):
        MBRLAgent(gym.make("LLMSplit-v0", config={"action_mode": "relative"}))
    agent = MBRLAgent("LLMSplit-v0")
    obs, _ = agent.env.reset(seed=0)
    with pytest.raises(ValueError, match="no model yet"):
        agent.predict(obs)
    with pytest.raises(FileNotFoundError, match="no saved MBRL agent"):
        MBRLAgent.load(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="total_timesteps"):
        agent.learn(0)


@pytest.mark.parametrize("planner", ["ucb", "thompson", "greedy"])
def test_one_step_planning_is_planning_select_action(trained, planner):
    """Without a switching cost, a one-step plan is `planning.select_action` on the elite members' rewards."""
    from agents.mbrl.planning import select_action

    agent = MBRLAgent.__new__(MBRLAgent)
    agent.__dict__.update(trained.__dict__)
    agent.hparams = {**trained.hparams, "horizon": 1, "planner": planner, "beta": 2.0}
    agent.spec = {**trained.spec, "switch_weight": 0.0}
    env = gym.make("LLMSplit-v0", config={"splits": {"excluded": [2, 3]}})
    obs, _ = env.reset(seed=1)
    mask = env.unwrapped.action_masks()
    for explore in (True, False):
        agent.rng = np.random.default_rng(7)
        x = agent._reward_inputs(agent._channel(obs), np.asarray(agent.spec["splits"]))
        members = agent._weighted(agent.reward_model.predict_members(x)[0][agent.reward_model.elites])
        method = planner if explore else "greedy"
        want = select_action(members, method, beta=2.0, rng=np.random.default_rng(7), mask=mask)
        assert agent._plan(obs, explore=explore, mask=mask) == want
