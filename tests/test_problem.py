"""`SplitProblem`: one compiled definition of the step, shared by the env, its expected rewards and the vector env."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401
from llmsplit_env.env import LLMSplitEnv
from llmsplit_env.episode import env_problem
from llmsplit_env.factory import make_backend
from llmsplit_env.problem import (
    BUILTIN_COMPONENTS,
    RewardComponent,
    SplitProblem,
    compile_problem,
    outcome,
)
from llmsplit_env.vector import LLMSplitVectorEnv


def energy(p: SplitProblem, o):
    """A new component: the UE's share of the compute time, negated (a float or an array, like every component)."""
    return -p.per_split(p.compute_s, o.split) / p.latency_ref_s


def test_a_new_reward_component_is_added_in_one_place():
    base = compile_problem({"reward": {"weights": {"latency": 0.2}}})
    problem = base.with_component(RewardComponent("energy", energy), weight=0.5)
    assert base.reported_components == ("quality", "ue_compute", "privacy", "switching", "latency")
    assert problem.reported_components[-1] == "energy" and problem.weights["energy"] == 0.5

    env, plain = LLMSplitEnv(problem=problem), LLMSplitEnv(problem=base)
    env.reset(seed=3)
    plain.reset(seed=3)
    er, er_plain = env.expected_rewards(), plain.expected_rewards()
    for a in (0, 7, 29):
        _, r, _, _, info = env.step(a)
        _, r_plain, _, _, info_plain = plain.step(a)
        k = info["split"]
        want = -problem.compute_s[k] / problem.latency_ref_s
        assert info["rewards"]["energy"] == want
        assert {c: v for c, v in info["rewards"].items() if c != "energy"} == info_plain["rewards"]
        assert r == pytest.approx(r_plain + 0.5 * want, rel=1e-12)
    # expected rewards carry it too: the same term, at every action
    ks = np.array(problem.splits)
    np.testing.assert_allclose(
        er - er_plain, 0.5 * -np.array(problem.compute_s)[ks] / problem.latency_ref_s, atol=1e-12
    )

    # the vector env takes the same object and reports the same values as N single envs
    vec = LLMSplitVectorEnv(4, problem=problem)
    vec.reset(seed=10)
    singles = [LLMSplitEnv(problem=problem) for _ in range(4)]
    for i, s in enumerate(singles):
        s.reset(seed=10 + i)
    actions = np.array([0, 5, 12, 29])
    _, r, _, _, info = vec.step(actions)
    for i, s in enumerate(singles):
        _, ri, _, _, infoi = s.step(int(actions[i]))
        assert info["rewards"]["energy"][i] == infoi["rewards"]["energy"]
        assert r[i] == pytest.approx(ri, rel=1e-12)


def test_components_are_matched_to_weights_by_name_not_position():
    shuffled = dict(reversed(list(LLMSplitEnv.default_config()["reward"]["weights"].items())))
    a = LLMSplitEnv({"reward": {"weights": shuffled}})
    b = LLMSplitEnv()
    a.reset(seed=1)
    b.reset(seed=1)
    for act in (3, 3, 17, 0):
        assert a.step(act)[1:] == b.step(act)[1:]
    p = a.problem
    comps = {"quality": 0.5, "ue_compute": 0.2, "privacy": 0.9, "switching": -0.1, "latency": -1.0}
    assert p.reward(comps) == pytest.approx(1.0 * 0.5 + 0.6 * 0.2 + 0.1 * 0.9 + 0.1 * -0.1, rel=1e-15)


def test_the_problem_is_immutable():
    p = compile_problem()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.k_min = 2
    with pytest.raises(ValueError):
        p.masks[0] = False
    with pytest.raises(TypeError):
        p.weights["quality"] = 0.0
    with pytest.raises(TypeError):
        p.config["reward"]["weights"]["quality"] = 0.0
    with pytest.raises(ValueError):
        p.ue_compute.array[1] = 0.0
    with pytest.raises(TypeError):
        p.ue_compute[1] = 0.0


def test_scalar_and_array_paths_agree():
    p = compile_problem({"reward": {"weights": {"latency": 0.3}}, "splits": {"excluded": [4]}})
    rng = np.random.default_rng(0)
    k = rng.choice(p.allowed_splits, 64).astype(np.int64)
    prev = rng.choice(p.allowed_splits, 64).astype(np.int64)
    level = rng.uniform(-10, 35, 64)
    quality = rng.uniform(0.01, 1.0, 64)
    ppl = 14.79 / quality
    o = outcome(k, k - prev, level, quality, ppl, np.full(64, np.nan), p.airtime(k, level))
    comps = p.reward_components(o)
    r = p.reward(comps)
    for i in range(64):
        ki, mi = int(k[i]), int(k[i] - prev[i])
        oi = outcome(
            ki, mi, float(level[i]), float(quality[i]), float(ppl[i]), math.nan, p.airtime(ki, float(level[i]))
        )
        ci = p.reward_components(oi)
        assert set(ci) == set(comps)
        for c in ci:
            assert comps[c][i] == pytest.approx(ci[c], rel=1e-13, abs=1e-15), c
        assert r[i] == pytest.approx(p.reward(ci), rel=1e-13)
    np.testing.assert_array_equal(p.splits_of(np.arange(p.n_actions), np.full(p.n_actions, 5)), np.arange(1, 31))


def test_airtime_is_capped_and_zero_when_nothing_is_sent():
    p = compile_problem({"latency": {"max_airtime_s": 0.05}})
    assert p.airtime(p.num_layers, -30.0) == 0.0
    assert p.airtime(1, -30.0) == 0.05
    assert 0 < p.airtime(1, 30.0) < 0.05
    np.testing.assert_array_equal(p.airtime(np.array([1, 30]), np.array([-30.0, -30.0])), [0.05, 0.0])


def test_relative_targets_and_paper_terms_compile_from_the_preset():
    p = compile_problem(preset="paper")
    assert p.relative is False and p.n_actions == 10 and p.needs_ppl0
    assert p.reported_components[-2:] == ("ppl_gain", "paper_load")
    r = compile_problem({"action_mode": "relative", "max_move": 2, "splits": {"excluded": [3]}})
    assert r.n_actions == 5 and r.masks.all()
    # from k = 2: stay, -1, +1 (3 is excluded: cut back to stay), -2 (cut back to 1), +2
    assert r.targets[2] == (2, 1, 2, 1, 4)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: RewardComponent("x"), "exactly one of fn and table"),
        (lambda: compile_problem().with_component(RewardComponent("quality", energy)), "distinct"),
        (lambda: compile_problem().with_component(RewardComponent("e", table="nope")), "per-split table"),
        (lambda: compile_problem().with_component(RewardComponent("e", energy), weight=math.inf), "finite"),
        (lambda: compile_problem().with_component("energy"), "RewardComponent"),
        (lambda: LLMSplitEnv({"max_episode_steps": 3}, problem=compile_problem()), "either problem="),
        (lambda: compile_problem().with_component(RewardComponent("e", energy), weight=True), "finite number"),
        (lambda: LLMSplitVectorEnv(2, problem=compile_problem(), max_episode_steps=7), "max_episode_steps"),
        (lambda: compile_problem({"splits": {"min": 5, "max": 4}}), "min <= max"),
    ],
)
def test_bad_problems_raise_naming_what_is_wrong(make, needle):
    with pytest.raises(ValueError) as err:
        make()
    assert needle in str(err.value)


@pytest.mark.parametrize("make", [LLMSplitEnv, lambda **kw: LLMSplitVectorEnv(2, **kw)], ids=["single", "vector"])
def test_both_envs_check_their_arguments_with_one_function(make):
    """`llmsplit_env.episode.env_config` and `env_problem`: the same checks and messages for both envs."""
    problem = compile_problem()
    for kwargs, needle in (
        ({"config": {}}, "pass either problem= (a compiled SplitProblem, preset 'default') or config/preset"),
        ({"preset": "paper"}, "pass either problem= (a compiled SplitProblem, preset 'default') or config/preset"),
        ({"reward": {"weights": {"quality": 2.0}}}, "pass either problem= or config keys, not both (got ['reward'])"),
    ):
        with pytest.raises(ValueError) as err:
            make(problem=problem, **kwargs)
        assert needle in str(err.value)
    paper = compile_problem(preset="paper")  # erasure profile: its level is rho
    erasure = make_backend(dict(paper.config))
    with pytest.raises(ValueError, match="the problem was compiled for 30 layers and level 'snr_db'; this backend has"):
        env_problem(paper.config, erasure, problem)
    assert env_problem(paper.config, erasure, paper) is paper
    assert make(problem=problem, preset="default").problem is problem


def test_builtin_components_follow_the_config_names():
    from llmsplit_env.config import COMPONENTS

    assert tuple(c.name for c in BUILTIN_COMPONENTS) == COMPONENTS


def test_env_and_vector_env_publish_the_same_problem_layout():
    env = gym.make("LLMSplit-v0", config={"observation": {"extras": ["time", "distance"]}}).unwrapped
    vec = gym.make_vec(
        "LLMSplit-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        config={"observation": {"extras": ["time", "distance"]}},
    ).unwrapped
    assert env.observation_names == ["level", "trend", "packet_loss", "prev_split", "time", "distance"]
    assert env.problem.describe() == vec.problem.describe()


def test_the_problem_pickles_and_deep_copies_and_so_does_the_env():
    import copy
    import pickle

    p = compile_problem({"action_mode": "relative", "splits": {"excluded": [4]}})
    assert copy.deepcopy(p) is p and copy.copy(p) is p
    q = pickle.loads(pickle.dumps(p))
    assert q.describe() == p.describe() and q.targets == p.targets and dict(q.config) == dict(p.config)
    o = outcome(5, 1, 10.0, 0.5, 30.0, math.nan, q.airtime(5, 10.0))
    assert q.score(o) == p.score(o)
    with pytest.raises(TypeError):
        q.config["reward"] = {}
    env = LLMSplitEnv()
    env.reset(seed=0)
    twin = copy.deepcopy(env)  # what OracleAgent does to peek at the future channel
    assert twin.problem is env.problem
    np.testing.assert_array_equal(twin.step(3)[0], env.step(3)[0])


def test_gym_make_and_make_vec_take_a_compiled_problem():
    problem = compile_problem(preset="paper").with_component(RewardComponent("bonus", lambda p, o: 1.0), weight=2.0)
    env = gym.make("LLMSplit-Paper-v0", problem=problem)
    assert env.unwrapped.problem is problem
    env.reset(seed=0)
    _, r, _, _, info = env.step(0)
    assert info["rewards"]["bonus"] == 1.0
    vec = gym.make_vec("LLMSplit-Paper-v0", num_envs=3, vectorization_mode="vector_entry_point", problem=problem)
    vec.reset(seed=0)
    _, rv, _, _, infov = vec.step(np.zeros(3, dtype=np.int64))
    np.testing.assert_array_equal(infov["rewards"]["bonus"], [1.0, 1.0, 1.0])  # a plain number, broadcast
    assert rv[0] == pytest.approx(r, rel=1e-12)
    with pytest.raises(ValueError, match="preset 'paper'"):
        gym.make("LLMSplit-v0", problem=problem)


def test_a_constant_component_alone_is_summed_in_the_vector_env():
    weights = {c: 0.0 for c in ("quality", "ue_compute", "privacy", "switching")}
    problem = compile_problem({"reward": {"weights": weights}}).with_component(
        RewardComponent("c", lambda p, o: 1.0), weight=2.0
    )
    vec = LLMSplitVectorEnv(2, problem=problem)
    vec.reset(seed=0)
    np.testing.assert_array_equal(vec.step(np.array([0, 1]))[1], [2.0, 2.0])
    single = LLMSplitEnv(problem=problem)
    single.reset(seed=0)
    assert single.step(0)[1] == 2.0


def test_a_component_that_reads_ppl0_makes_the_env_measure_it():
    gain = RewardComponent("gain", lambda p, o: (o.ppl0 - o.ppl) / o.ppl0, needs_ppl0=True)
    problem = compile_problem().with_component(gain, weight=1.0)
    assert problem.needs_ppl0 and not compile_problem().needs_ppl0
    env = LLMSplitEnv(problem=problem)
    _, info = env.reset(seed=0)
    assert math.isfinite(info["ppl0"]) and math.isfinite(env.step(0)[4]["rewards"]["gain"])


def test_unpickled_problems_stay_read_only():
    import pickle

    q = pickle.loads(pickle.dumps(compile_problem({"splits": {"excluded": [3]}})))
    assert not q.masks.flags.writeable and not q.ue_compute.array.flags.writeable
    assert q.ue_compute.array.tolist() == list(q.ue_compute) and not q.masks[2]
    with pytest.raises(TypeError):
        dataclasses.replace(q, weights={"quality": 2.0}).weights["quality"] = 3.0


def test_vector_expected_rewards_leave_the_dynamics_as_they_were():
    vec = LLMSplitVectorEnv(3)
    vec.reset(seed=0)
    before = vec.dynamics.get_state()
    vec.expected_rewards()
    assert vec.dynamics.get_state() == before


@pytest.mark.parametrize(
    ("drift", "needle"),
    [
        ({"rho_high": 0.5}, "config 'channel.paper_drift.rho_high' = 0.5 lies outside the profile's grid of rho"),
        ({"rho_low": 0.35, "rho_high": 0.4}, "config 'channel.paper_drift.rho_low' = 0.35 lies outside"),
    ],
)
def test_paper_drift_beyond_the_profiles_grid_is_refused_not_clamped(drift, needle):
    config = {"preset": "paper", "channel": {"paper_drift": drift}}
    for make in (compile_problem, LLMSplitEnv, lambda c: LLMSplitVectorEnv(2, c)):
        with pytest.raises(ValueError) as err:
            make(config)
        assert needle in str(err.value) and "[0.0, 0.3]" in str(err.value) and "smollm2-135m-erasure" in str(err.value)
    compile_problem({"preset": "paper", "channel": {"paper_drift": {"rho_high": 0.3}}})  # the grid's end is fine


def test_a_drifting_rho_needs_a_grid_from_zero(tmp_path):
    import json

    from llmsplit_env.quality import load_profile

    data = load_profile("smollm2-135m-erasure").to_json()
    data["levels"] = data["levels"][1:]  # rho 0.025 .. 0.3
    for key in ("log_ppl", "mean_log_ppl", "std_log_ppl", "loss_fraction"):
        data[key] = [row[1:] for row in data[key]]
    path = tmp_path / "from-0.025.json"
    path.write_text(json.dumps(data))
    config = {"preset": "paper", "profile": str(path), "channel": {"paper_drift": {"rho_low": 0.05}}}
    with pytest.raises(ValueError, match=r"'channel.paper_drift.rate' = 0.0005 drifts rho below rho_low"):
        compile_problem(config)
    compile_problem({**config, "channel": {"paper_drift": {"rho_low": 0.05, "rate": 0.0}}})
