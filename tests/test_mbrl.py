"""The MBRL agent: learns LLMSplit-v0 to near-oracle within 100 real evaluations; where it spends them; persistence;
errors."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import llmsplit_env  # noqa: F401
from agents.common.evaluation import OracleNormalizer, evaluate_agent
from agents.mbrl.agent import MBRLAgent
from agents.mbrl.planning import decision_acquisition

EVAL_SEEDS = list(range(7000, 7010))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    agent = MBRLAgent("LLMSplit-v0", seed=0)  # the defaults
    agent.learn(100)
    return agent


def test_mbrl_reaches_095_of_oracle_within_100_real_evaluations(trained):
    assert trained.quality_evals == 100 and trained.num_timesteps == 100
    # every step was a real evaluation: none where nothing is transmitted (k = L: its quality is known to be 1)
    assert 30 not in trained.data["split"] and len(trained.data["split"]) == 100
    res = OracleNormalizer(gym.make("LLMSplit-v0"), EVAL_SEEDS)(trained)
    assert res["normalized_score"] >= 0.95, res["normalized_score"]


def test_reward_model_learns_the_quality_surface(trained):
    env = gym.make("LLMSplit-v0")
    qb = env.unwrapped.quality_backend
    assert trained.learned == ["quality"]  # ue_compute and privacy are the problem's per-split tables
    problem, w = env.unwrapped.problem, env.unwrapped.problem.weights
    known_1 = w["ue_compute"] * problem.ue_compute[1] + w["privacy"] * problem.privacy[1]
    for snr in (10.0, 25.0):  # around the decision between k = 1 and k = L, and well above it
        quality_1 = (trained.member_rewards(np.array([snr, 0.0], np.float32))[:, 0] - known_1) / w["quality"]
        np.testing.assert_allclose(quality_1.mean(), qb.expectations(1, snr)[0], atol=0.15)
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


def test_warm_up_tries_every_transmitting_split_equally_and_never_k_L():
    agent = MBRLAgent("LLMSplit-v0", seed=1, warmup_steps=58, max_epochs=5)
    agent.learn(58)
    counts = np.bincount(agent.data["split"], minlength=31)[1:]
    assert counts[:29].min() == counts[:29].max() == 2 and counts[29] == 0
    assert agent.reward_model is not None  # fitted once the warm-up ends
    # without the known rewards, k = L is a split like the others (rounds over all 30)
    agent = MBRLAgent("LLMSplit-v0", seed=1, warmup_steps=60, max_epochs=5, known_rewards=False)
    agent.learn(60)
    assert np.bincount(agent.data["split"], minlength=31)[1:].tolist() == [2] * 30


def test_known_rewards_are_the_problems_tables_and_quality_1_at_k_L(trained):
    problem = gym.make("LLMSplit-v0").unwrapped.problem
    w = problem.weights
    r = trained.member_rewards(np.array([5.0, 0.0], np.float32))  # [E, K]
    # k = L: quality exactly 1 (nothing is sent), the tables' values, and no disagreement between members
    want_L = w["quality"] + w["ue_compute"] * problem.ue_compute[30] + w["privacy"] * problem.privacy[30]
    np.testing.assert_allclose(r[:, 29], want_L, rtol=0, atol=1e-12)
    assert trained.known.tables["privacy"] == tuple(problem.privacy[k] for k in range(1, 31))
    # a transmitting split: its quality (the one learned part) is bounded to [0, 1]
    q = r[:, :29] - w["ue_compute"] * problem.ue_compute.array[1:30] - w["privacy"] * problem.privacy.array[1:30]
    assert q.min() >= -1e-9 and q.max() <= w["quality"] + 1e-9


def test_decision_acquisition_evaluates_the_uncertain_contender():
    # split 0: known best so far (no spread); 1: uncertain but far below (cannot be best); 2: uncertain and may be best;
    # 3: not evaluable (known)
    members = np.array([[1.0, 0.2, 0.9, 1.05], [1.0, 0.6, 1.2, 1.05], [1.0, 0.4, 0.8, 1.05]])
    evaluable = np.array([True, True, True, False])
    assert decision_acquisition(members, evaluable, beta=1.0) == 2
    assert decision_acquisition(members, evaluable, beta=1.0, mask=[True, True, False, True]) == 0  # 2 masked
    # a settled decision (the known split clearly best): the nearest challenger, not the most uncertain split
    settled = np.array([[0.5, 0.1, 0.3, 2.0], [0.5, 0.5, 0.3, 2.0]])
    assert decision_acquisition(settled, evaluable, beta=1.0) == 0
    with pytest.raises(ValueError, match="evaluable must be 4 booleans"):
        decision_acquisition(members, [1, 1, 1, 0])
    with pytest.raises(ValueError, match="no allowed split is evaluable"):
        decision_acquisition(members, evaluable, mask=[False, False, False, True])


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
        ({"acquisition": "ei"}, "unknown acquisition 'ei'; allowed: decision, planner"),
        ({"caution": -1.0}, "caution must be a finite number >= 0, got -1.0"),
        ({"refit_growth": float("nan")}, "refit_growth must be a finite number >= 0, got nan"),
        ({"known_rewards": "yes"}, "known_rewards must be True or False, got 'yes'"),
        ({"nll_beta": 2.0}, "nll_beta must be a number in [0, 1], got 2.0"),
        ({"stop_on": "loss"}, "unknown stop_on 'loss'; allowed: nll, mse"),
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
    agent.hparams = {**trained.hparams, "horizon": 1, "planner": planner, "beta": 2.0, "acquisition": "planner"}
    agent.spec = {**trained.spec, "switch_weight": 0.0}
    env = gym.make("LLMSplit-v0", config={"splits": {"excluded": [2, 3]}})
    obs, _ = env.reset(seed=1)
    mask = env.unwrapped.action_masks()
    for explore in (True, False):
        agent.rng = np.random.default_rng(7)
        members = agent.member_rewards(agent._channel(obs))
        method = planner if explore else "greedy"
        want = select_action(members, method, beta=2.0, rng=np.random.default_rng(7), mask=mask)
        assert agent._plan(obs, explore=explore, mask=mask) == want


# An agent saved by the code before save version 2 (commit b53081e): MBRLAgent("LLMSplit-v0", seed=0, warmup_steps=90,
# refit_every=90, max_epochs=200, ensemble_size=2, num_elites=1, hidden_dims=(32, 32), dynamics_hidden_dims=(8,),
# horizon=2, n_rollouts=2).learn(90), and the actions that code chose on `V1_OBS`.
V1_FILE = Path(__file__).parent / "data" / "mbrl_v1_tiny.pt"
V1_OBS = np.array([[s, 0, 0, p] for p in (1 / 30, 1.0) for s in np.arange(-5, 36, 2.5)], np.float32)
V1_ACTIONS = [7] * 25 + [29] * 4 + [7] * 5


def test_version_1_files_load_with_their_behaviour_and_unknown_versions_are_refused(tmp_path):
    from agents.common.save_util import load_weights, weights_bytes

    legacy = MBRLAgent.load(V1_FILE, env=gym.make("LLMSplit-v0"))
    assert legacy.known is None and legacy.learned == ["quality", "ue_compute", "privacy"]
    old = ("acquisition", "caution", "refit_growth", "nll_beta", "stop_on")
    assert [legacy.hparams[k] for k in old] == ["planner", 0.0, 0.0, 0.0, "nll"]
    assert legacy.predict(V1_OBS)[0].tolist() == V1_ACTIONS
    legacy.save(tmp_path / "v2.pt")  # saved again: version 2, same behaviour
    state = load_weights((tmp_path / "v2.pt").read_bytes(), "v2.pt")
    assert state["version"] == 2 and MBRLAgent.load(tmp_path / "v2.pt").predict(V1_OBS)[0].tolist() == V1_ACTIONS
    (tmp_path / "v9.pt").write_bytes(weights_bytes({**state, "version": 9}))
    with pytest.raises(ValueError, match="unsupported MBRL agent save version 9"):
        MBRLAgent.load(tmp_path / "v9.pt")


def test_a_count_that_stalls_at_k_L_scores_each_checkpoint_once():
    """Without known rewards the agent also steps at k = L, which costs no evaluation on a profile: its count stalls
    there, and each checkpoint of a list ``eval_freq`` is still scored once, when the count first reaches it."""
    torch.set_num_threads(1)
    agent = MBRLAgent("LLMSplit-v0", seed=0, known_rewards=False, warmup_steps=30)
    seen = []
    agent.learn(80, eval_fn=lambda a: seen.append(a.quality_evals) or {}, eval_freq=[34, 39, 44])
    counts = np.cumsum(np.asarray(agent.data["split"]) != 30)
    assert agent.quality_evals == counts[-1] == 44  # 80 steps, 36 of them at k = L: free
    assert (counts == 34).sum() > 1 and (counts == 39).sum() > 1  # the count stalled at the checkpoints
    assert seen == [34, 39, 44]  # once each (44 is also the final count: not scored twice)
