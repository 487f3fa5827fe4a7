"""The cell's baselines: the selfish policy is each UE's lone optimum, the planner never does worse than it on the
expected team reward and wins under congestion, and every baseline saves and loads as data."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401
from agents.cell import CellFixedAgent, CellPlannerAgent, CellRandomAgent, SelfishAgent
from agents.common.evaluation import evaluate_cell
from agents.common.protocol import Agent, protocol_errors


def _env(n: int = 3, **cell):
    return gym.make("LLMSplit-Cell-v0", cell={"n_ues": n, **cell})


def test_every_baseline_implements_the_agent_protocol():
    for cls in (CellFixedAgent, CellRandomAgent, SelfishAgent, CellPlannerAgent):
        assert protocol_errors(cls) == [], cls
    assert isinstance(SelfishAgent(_env()), Agent)


def test_selfish_is_each_ues_best_split_alone():
    env = _env(3, arrival_prob=1.0)
    env.reset(seed=4)
    sim = env.unwrapped.sim
    action, _ = SelfishAgent(env).predict(None)
    for i in range(3):  # brute force: UE i alone in the cell (the others idle), every split
        best, arg = -np.inf, None
        for k in sim.problem.allowed_splits:
            ks = sim.ues._ep.prev_split.copy()
            ks[i] = k
            active = np.zeros(3, dtype=bool)
            active[i] = True
            saved, sim.active = sim.active, active
            v = sim.expected_rewards(ks, backlog_s=0.0)[i]
            sim.active = saved
            if v > best:
                best, arg = v, k
        assert action[i] == arg - sim.problem.k_min


def test_the_planner_finds_the_joint_optimum_of_a_small_cell_and_beats_selfish_under_congestion():
    env = _env(3, arrival_prob=1.0)
    planner, selfish = CellPlannerAgent(env, backlog_weight=0.0), SelfishAgent(env)
    sim = env.unwrapped.sim
    gaps = []
    for seed in range(6):
        env.reset(seed=seed)
        table = sim.expected_quality_table()
        a_plan = planner.predict(None)[0] + sim.problem.k_min
        a_self = selfish.predict(None)[0] + sim.problem.k_min
        v_plan, v_self = planner.objective(a_plan, table), planner.objective(a_self, table)
        assert v_plan >= v_self - 1e-12
        # the joint optimum over the vertices {1, L} of every UE (with linear costs the optimum sits at them)
        best = max(planner.objective(np.array(ks), table) for ks in itertools.product([1, sim.num_layers], repeat=3))
        assert v_plan >= best - 1e-9
        gaps.append(v_plan - v_self)
    assert max(gaps) > 0.0  # somewhere sharing the band made a selfish offload miss its deadline


def test_coordination_pays_at_the_default_load():
    """At N = 8 (the default), on 3 episodes, the planner's team return beats the selfish policy's by > 10 %."""
    env = gym.make("LLMSplit-Cell-v0")
    seeds = [100, 101, 102]
    plan = evaluate_cell(CellPlannerAgent(env), env, seeds)
    selfish = evaluate_cell(SelfishAgent(env), env, seeds)
    assert plan["mean_return"] >= 1.10 * selfish["mean_return"]
    assert plan["deadline_miss_rate"] < selfish["deadline_miss_rate"]
    assert plan["offload_share"] < selfish["offload_share"]  # it keeps some UEs local to leave the band to others


def test_baselines_save_and_load_as_data(tmp_path):
    env = _env(4)
    for agent in (CellFixedAgent(env, 12), CellRandomAgent(env, seed=3), SelfishAgent(env), CellPlannerAgent(env, 3)):
        path = tmp_path / f"{type(agent).__name__}.json"
        agent.save(path)
        back = type(agent).load(path, env=env)
        assert back.get_params() == agent.get_params()
        env.reset(seed=1)
        if not agent.privileged:
            a1 = type(agent).load(path, env=env).predict(np.zeros(4))[0]
            np.testing.assert_array_equal(a1, back.predict(np.zeros(4))[0])
    with pytest.raises(ValueError, match="not a saved CellPlannerAgent"):
        CellPlannerAgent.load(tmp_path / "SelfishAgent.json", env=env)
    with pytest.raises(ValueError, match=r"UEs or actions"):
        SelfishAgent.load(tmp_path / "SelfishAgent.json", env=_env(5))
    with pytest.raises(ValueError, match="split must be an allowed split"):
        CellFixedAgent(env, 0)
    with pytest.raises(ValueError, match="one observation at a time"):
        SelfishAgent(env).predict(np.zeros((2, 24)))
