"""The edge cell: its three faces pass their libraries' checks, one UE without contention is `LLMSplit-v0` draw for
draw, the UEs are really coupled (uplink shares, edge queue), and bad configs are named."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401  (registers the ids)
from llmsplit_env.cell.simulator import CellSimulator
from llmsplit_env.link import airtime_s


def _cell_latency() -> dict:
    from llmsplit_env.cell import default_cell_config

    return default_cell_config()["latency"]


def test_check_env_and_parallel_api_test_pass():
    from gymnasium.utils.env_checker import check_env
    from pettingzoo.test import parallel_api_test

    from llmsplit_env.cell import parallel_env

    env = gym.make("LLMSplit-Cell-v0")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space == gym.spaces.MultiDiscrete([30] * 8)
    assert env.observation_space.shape == (8 * 5 + 4,)
    parallel_api_test(parallel_env(cell={"n_ues": 3}), num_cycles=60)


@pytest.mark.parametrize("mode", ["absolute", "relative"])
def test_one_ue_without_contention_is_llmsplit_v0_draw_for_draw(mode):
    common = {"latency": _cell_latency(), "action_mode": mode}
    single = gym.make("LLMSplit-v0", config=common).unwrapped
    cell = gym.make("LLMSplit-Cell-v0", config={**common, "cell": {"n_ues": 1, "arrival_prob": 1.0},
                                                "reward": {"weights": {"deadline": 0.0}}}).unwrapped  # fmt: skip
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        o1, i1 = single.reset(seed=seed)
        o2, i2 = cell.reset(seed=seed)
        np.testing.assert_array_equal(o2[:4], o1)
        assert i2["split"][0] == i1["split"] and i2["snr_db"][0] == pytest.approx(i1["snr_db"], rel=1e-12)
        for _ in range(120):
            a = int(rng.integers(single.action_space.n))
            o1, r1, _, tr1, i1 = single.step(a)
            o2, r2, _, tr2, i2 = cell.step(np.array([a]))
            np.testing.assert_allclose(o2[:4], o1, rtol=1e-6, atol=1e-6)
            # the same draws; the cell's batch arithmetic (numpy) and the single env's (math) differ in the last bit
            assert i2["split"][0] == i1["split"]
            for key in ("snr_db", "ppl", "packet_loss"):
                assert i2[key][0] == pytest.approx(i1[key], rel=1e-12, abs=1e-12), key
            assert r2 == pytest.approx(r1, rel=1e-12, abs=1e-12)
            for c, v in i1["rewards"].items():
                assert i2["rewards"][c][0] == pytest.approx(v, rel=1e-12, abs=1e-12), c
            assert tr1 == tr2 and i2["edge_backlog_s"] == 0.0
            if tr1:
                single.reset()
                cell.reset()


def test_ue0s_latency_and_reward_depend_on_what_the_others_do():
    sim = CellSimulator({"cell": {"arrival_prob": 1.0}})
    L = sim.num_layers
    # a seed where UE 0, offloading at k = 1 alone, meets its deadline
    seed = next(s for s in range(100) if _alone_latency(sim, s) < sim.deadline_s)
    results = {}
    for others in ("offload", "local"):
        sim.reset(seed=seed)
        a = np.full(sim.n_ues, 0 if others == "offload" else L - 1)
        a[0] = 0  # UE 0 offloads at k = 1 either way
        out = sim.step(a)
        results[others] = (out["latency_s"][0], out["reward"][0], out["airtime_s"][0])
    (lat_busy, r_busy, air_busy), (lat_idle, r_idle, air_idle) = results["offload"], results["local"]
    assert air_busy == pytest.approx(sim.n_ues * air_idle, rel=1e-12)  # eight equal shares of the band
    assert lat_idle < sim.deadline_s < lat_busy  # alone it meets the deadline; sharing the band with 7 it misses
    assert r_busy == pytest.approx(r_idle - 1.0)  # the deadline component, weight 1


def _alone_latency(sim: CellSimulator, seed: int) -> float:
    sim.reset(seed=seed)
    a = np.full(sim.n_ues, sim.num_layers - 1)
    a[0] = 0
    return float(sim.step(a)["latency_s"][0])


def test_contention_is_the_documented_model():
    sim = CellSimulator({"cell": {"n_ues": 4, "arrival_prob": 1.0}})
    sim.reset(seed=0)
    p, L = sim.problem, sim.num_layers
    k = np.array([1, 10, L, 1])
    level = np.array([10.0, 20.0, 5.0, 0.0])
    active = np.array([True, True, True, False])
    c = sim.contention(k, level, active, backlog_s=0.3)
    alone = airtime_s(p.payload_bits, p.bandwidth_hz, level)
    # UEs 0 and 1 transmit (UE 2 computes everything, UE 3 is idle): two shares each
    np.testing.assert_allclose(c.airtime_s, [2 * alone[0], 2 * alone[1], 0.0, 0.0], rtol=1e-12)
    s0, s1 = (L - 1) * sim.edge_layer_s, (L - 10) * sim.edge_layer_s
    # processor sharing after the backlog: the smaller job finishes at 2·s1, the larger at s1 + s0
    np.testing.assert_allclose(c.edge_finish_s, [0.3 + s1 + s0, 0.3 + 2 * s1, 0.0, 0.0], rtol=1e-12)
    np.testing.assert_allclose(
        c.latency_s,
        [1 * sim.ue_layer_s + 2 * alone[0] + 0.3 + s1 + s0, 10 * sim.ue_layer_s + 2 * alone[1] + 0.3 + 2 * s1,
         L * sim.ue_layer_s, 0.0],
        rtol=1e-12,
    )  # fmt: skip
    assert c.backlog_after_s[0] == pytest.approx(max(0.0, 0.3 + s0 + s1 - sim.slot_s))


def test_a_slow_edge_builds_a_backlog_that_carries_over():
    # an edge 1,000 times slower than the default: 29 layers of one request take 0.53 s, eight of them 4.2 s a slot
    slow = _cell_latency() | {"edge_layer_s": 1000 * _cell_latency()["edge_layer_s"]}
    sim = CellSimulator({"latency": slow, "cell": {"arrival_prob": 1.0}})
    sim.reset(seed=1)
    backlog = []
    for _ in range(3):
        out = sim.step(np.zeros(sim.n_ues, dtype=np.int64))
        backlog.append(float(out["edge_backlog_s"][0]))
    work = sim.n_ues * (sim.num_layers - 1) * slow["edge_layer_s"]
    assert backlog[0] == 0.0
    assert backlog[1] == pytest.approx(work - sim.slot_s) and backlog[2] == pytest.approx(2 * (work - sim.slot_s))
    assert sim.shared_features()[0, 0] == pytest.approx(min(3 * (work - sim.slot_s) / sim.slot_s, 10.0))


def test_idle_ues_keep_their_split_and_earn_nothing():
    sim = CellSimulator({"cell": {"arrival_prob": 0.5}})
    sim.reset(seed=3)
    seen_idle = 0
    for _ in range(20):
        prev = sim.ues._ep.prev_split.copy()
        active = sim.active.copy()
        out = sim.step(np.zeros(sim.n_ues, dtype=np.int64))
        idle = ~active
        seen_idle += int(idle.sum())
        np.testing.assert_array_equal(out["split"][idle], prev[idle])
        np.testing.assert_array_equal(out["reward"][idle], 0.0)
        assert not out["offloaded"][idle].any() and not out["deadline_miss"][idle].any()
        np.testing.assert_array_equal(out["split"][active], 1)
        assert out["team_reward"][0] == pytest.approx(out["reward"].mean())
    assert seen_idle > 0


def test_same_seed_same_episode_and_ue_streams_are_independent():
    a = CellSimulator({"cell": {"n_ues": 3}})
    b = CellSimulator({"cell": {"n_ues": 3}})
    acts = np.array([0, 5, 29])
    a.reset(seed=11)
    b.reset(seed=11)
    for _ in range(10):
        oa, ob = a.step(acts), b.step(acts)
        np.testing.assert_array_equal(oa["reward"], ob["reward"])
    # UE 1 of seed s is not UE 0 of seed s + 1 (the vector env's seed + i would make them one stream)
    assert a.ue_seeds(5)[1] != a.ue_seeds(6)[0] and len(set(a.ue_seeds(5))) == 3


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"cell": {"n_ues": 0}}, "'cell.n_ues' must be an integer in [1, 4096]"),
        ({"cell": {"arrival_prob": 1.5}}, "'cell.arrival_prob'"),
        ({"cell": {"deadline": 0.05}}, "unknown config key 'cell.deadline'"),
        ({"cell": {"slot_s": 0.5}}, "differs from 'channel.mobility.dt' = 1.0"),
        ({"cell": {"team": {"aggregate": "max"}}}, "'cell.team.aggregate' must be 'mean' or 'sum'"),
        ({"reward": {"weights": {"deadline": math.nan}}}, "'reward.weights.deadline'"),
        ({"backend": "remote"}, "config 'backend' must be one of 'profile', 'llm'"),
        ({"preset": "paper"}, "default preset"),
        ({"cell": 3}, "config 'cell' must be a dict"),
    ],
)
def test_bad_cell_configs_are_named(config, needle):
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-Cell-v0", config=config)
    assert needle in str(e.value)


def test_bad_actions_name_the_ue():
    env = gym.make("LLMSplit-Cell-v0", config={"splits": {"excluded": [5]}, "cell": {"arrival_prob": 1.0}}).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"UE 2's action 30 is out of range 0\.\.29"):
        env.step(np.array([0, 0, 30, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="UE 1's action 4 selects split 5, which the config excludes"):
        env.step(np.array([0, 4, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape \\(8,\\)"):
        env.step(np.zeros(3, dtype=np.int64))


def test_the_vector_env_of_cells_is_each_cell_alone():
    vec = gym.make_vec("LLMSplit-Cell-v0", num_envs=3, vectorization_mode="vector_entry_point", cell={"n_ues": 4})
    singles = [gym.make("LLMSplit-Cell-v0", cell={"n_ues": 4}).unwrapped for _ in range(3)]
    obs, info = vec.reset(seed=20)
    for c, env in enumerate(singles):
        o, i = env.reset(seed=20 + c)
        np.testing.assert_array_equal(obs[c], o)
        np.testing.assert_array_equal(info["split"][c], i["split"])
    rng = np.random.default_rng(0)
    for t in range(60):  # past the end of the 50-step episodes: the autoreset step, then a new episode
        a = rng.integers(30, size=(3, 4))
        obs, r, _, trunc, info = vec.step(a)
        for c, env in enumerate(singles):
            if t == 50:  # the autoreset step: reset observations, reward 0
                o, _ = env.reset()
                assert r[c] == 0.0 and not trunc[c]
            else:
                o, rc, _, tc, ic = env.step(a[c])
                assert r[c] == pytest.approx(rc, rel=1e-12, abs=1e-12) and trunc[c] == tc
                np.testing.assert_array_equal(info["split"][c], ic["split"])
                assert info["edge_work_s"][c] == pytest.approx(ic["edge_work_s"], rel=1e-12, abs=0.0)
            np.testing.assert_allclose(obs[c], o, rtol=1e-6, atol=1e-6)


def test_a_phone_layer_cap_bounds_every_ues_split():
    """``splits.ue_max_layers`` (the layers a phone can hold) applies to every UE: the action space shrinks to the
    allowed splits, the planner never plans past the cap, and every request (none can stay local) offloads."""
    from agents.cell import CellPlannerAgent
    from agents.common.evaluation import evaluate_cell

    env = gym.make("LLMSplit-Cell-v0", config={"splits": {"ue_max_layers": 12}, "cell": {"n_ues": 4}})
    assert env.action_space == gym.spaces.MultiDiscrete([12] * 4)
    res = evaluate_cell(CellPlannerAgent(env), env, [100])
    assert set(res["split_share"]) <= set(range(1, 13))
    assert res["offload_share"] == pytest.approx(1.0)  # k = L is out of reach: every request crosses the uplink


def test_the_live_model_scores_the_cell_and_one_ue_is_llmsplit_llm_v0(tiny_llm_section):
    """``backend="llm"``: every request that crosses the link is one real evaluation of the live model, and a one-UE
    cell equals `LLMSplit-LLM-v0` draw for draw (the channel seeds come from the UE's generator, as the env's)."""
    common = {"llm": dict(tiny_llm_section), "latency": _cell_latency(), "max_episode_steps": 4,
              "channel": {"model": "static", "static": {"low": 0.0, "high": 30.0}}}  # fmt: skip
    single = gym.make("LLMSplit-LLM-v0", config=common).unwrapped
    cell = gym.make("LLMSplit-Cell-v0", config={**common, "backend": "llm", "cell": {"n_ues": 1, "arrival_prob": 1.0},
                                                "reward": {"weights": {"deadline": 0.0}}}).unwrapped  # fmt: skip
    single.reset(seed=3)
    cell.reset(seed=3)
    for a in (0, 3, 1, 2):
        _, r1, _, _, i1 = single.step(a)
        _, r2, _, _, i2 = cell.step(np.array([a]))
        assert i2["ppl"][0] == pytest.approx(i1["ppl"], rel=1e-12) and r2 == pytest.approx(r1, rel=1e-12, abs=1e-12)
        assert i2["quality_evals"] == i1["quality_evals"]
    three = gym.make("LLMSplit-Cell-v0", config={**common, "backend": "llm", "cell": {"n_ues": 3}}).unwrapped
    _, info = three.reset(seed=0)
    total = 0
    for _ in range(3):
        _, _, _, _, info = three.step(np.array([0, 1, 3]))  # the tiny model has 4 layers: split 4 sends nothing
        total += int((info["active"] & (info["split"] < 4)).sum())
        assert info["quality_evals"] == total
    assert total > 0
