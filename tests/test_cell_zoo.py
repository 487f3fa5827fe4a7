"""The edge cell through the front doors: ``llmsplit train`` / ``evaluate`` on ``LLMSplit-Cell-v0`` (SB3 PPO on the
centralised env and the cell baselines), normalised with the cell's references (random = 0, planner = 1), the cell's
figures in the table and the JSON, its TensorBoard tags (team and per-UE), and algos that cannot act on the cell
refused by name. Small: 3 UEs, 10-step episodes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import train  # noqa: E402

CELL = "LLMSplit-Cell-v0"
ENV_KWARGS = ["cell.n_ues:3", "max_episode_steps:10"]
ALGOS = ["ppo", "cell_planner", "cell_selfish", "cell_fixed", "cell_random"]
N_STEPS = 64  # PPO: two rollouts of 32 steps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny real run: (its log folder, what train printed)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("cell")
    args = ["--env", CELL, "--env-kwargs", *ENV_KWARGS, "--algo", *ALGOS, "-n", str(N_STEPS),
            "--hyperparams", "ppo.n_steps:32", "ppo.batch_size:32", "--eval-episodes", "2", "--no-progress",
            "-f", str(root), "-tb", str(root / "tb")]  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main(args) == 0
    return root, out.getvalue()


def _cell_env():
    return gym.make(CELL, config={"cell": {"n_ues": 3}, "max_episode_steps": 10})


def test_train_scores_every_cell_agent_against_the_cells_references(trained):
    root, printed = trained
    summary = json.loads((root / CELL / "summary.json").read_text())
    agents = summary["agents"]
    assert set(agents) == {f"{a}_seed0" for a in ALGOS}
    assert summary["env_kwargs"] == {"cell": {"n_ues": 3}, "max_episode_steps": 10}
    for name, rec in agents.items():
        assert Path(rec["path"]).is_file(), name
        assert 0.0 <= rec["final"]["offload_share"] <= 1.0 and 0.0 <= rec["final"]["deadline_miss_rate"] <= 1.0
    # normalised with R_random = CellRandomAgent (seed 0) and R_oracle = CellPlannerAgent on the same seeds
    assert agents["cell_planner_seed0"]["final"]["normalized_score"] == pytest.approx(1.0)
    assert agents["cell_random_seed0"]["final"]["normalized_score"] == pytest.approx(0.0)
    for heuristic in ("cell_planner", "cell_selfish", "cell_fixed", "cell_random"):
        assert agents[f"{heuristic}_seed0"]["quality_evals"] == 0
    # PPO's real evaluations are the requests it was served: up to 3 per step, at least one over its steps
    ppo = agents["ppo_seed0"]
    assert N_STEPS < ppo["quality_evals"] <= 3 * N_STEPS
    assert ppo["curve"] and {"offload_share", "deadline_miss_rate"} <= set(ppo["curve"][-1])
    assert "cell_planner" in printed and "(score 1)" in printed and "offload" in printed and "dl. miss" in printed


def test_cell_fixed_is_the_best_fixed_split(trained):
    from agents.cell import CellFixedAgent
    from agents.common.evaluation import best_fixed_split
    from agents.zoo.registry import BEST_FIXED_EPISODES

    root, _ = trained
    path = json.loads((root / CELL / "summary.json").read_text())["agents"]["cell_fixed_seed0"]["path"]
    env = _cell_env()
    agent = CellFixedAgent.load(path, env=env)
    best, returns = best_fixed_split(env, [10_000_000 + ep for ep in range(BEST_FIXED_EPISODES)])
    assert agent.split == best and returns[best] == max(returns.values())


def test_ppo_logs_the_tag_tree_and_the_cells_team_and_per_ue_tags(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = trained
    acc = EventAccumulator(str(root / "tb" / CELL / "PPO_1"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    want = {"cell/team_reward", "cell/deadline_miss_rate", "cell/offload_share", "ue/0/reward", "ue/1/reward",
            "ue/2/reward", "reward/quality", "reward/deadline", "cost/quality_evals", "eval/normalized_score",
            "eval/offload_share", "eval/deadline_miss_rate", "rollout/ep_rew_mean"}  # fmt: skip
    assert want <= tags, sorted(want - tags)
    assert any(t.startswith("model/") for t in tags)
    miss = [e.value for e in acc.Scalars("cell/deadline_miss_rate")]
    assert all(0.0 <= v <= 1.0 for v in miss)


def test_evaluate_scores_the_cell_run_and_writes_json_and_plots(trained, tmp_path, capsys):
    from agents.zoo.evaluate import CELL_KEYS

    root, _ = trained
    out = tmp_path / "eval.json"
    assert evaluate.main(["--env", CELL, "-f", str(root), "--n-eval-episodes", "2", "--json", str(out),
                          "--plots", str(tmp_path / "plots")]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert set(res) == {f"{a}_seed0" for a in ALGOS}
    for r in res.values():
        assert set(r) == {"mean_return", "ci95", "normalized_score", "mean_ppl", "quality_evals", *CELL_KEYS,
                          "ue_returns"}  # fmt: skip
        assert len(r["ue_returns"]) == 3
        assert 0.0 <= r["offload_share"] <= 1.0 and 0.0 <= r["deadline_miss_rate"] <= 1.0
    assert res["cell_planner_seed0"]["normalized_score"] == pytest.approx(1.0)
    assert res["cell_random_seed0"]["normalized_score"] == pytest.approx(0.0)
    assert res["cell_fixed_seed0"]["offload_share"] in (0.0, 1.0)  # every UE at one split: all local or all offloaded
    for png in ("learning_curves.png", "policy_map.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "cell_planner" in printed and "offload" in printed and "top splits (requests)" in printed


@pytest.mark.parametrize(("env", "algo", "needle"), [
    (CELL, "dqn", "for LLMSplit-Cell-v0: ppo, a2c, rllib_ppo, cell_planner, cell_selfish, cell_fixed, cell_random"),
    (CELL, "mbrl", "mbrl cannot act on LLMSplit-Cell-v0"),
    (CELL, "oracle", "oracle cannot act on LLMSplit-Cell-v0"),
    ("LLMSplit-v0", "cell_planner", "cell_planner cannot act on LLMSplit-v0"),
])  # fmt: skip
def test_an_algo_that_cannot_act_on_the_env_is_refused_naming_those_that_can(env, algo, needle, tmp_path, capsys):
    from agents.zoo.cli import main

    argv = ["train", "--env", env, "--algo", algo, "-f", str(tmp_path / "runs"), "-tb", "", "--no-progress"]
    if env == CELL:
        argv += ["--env-kwargs", *ENV_KWARGS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert not (tmp_path / "runs" / env / "summary.json").exists()


def test_loading_a_single_env_agent_onto_the_cell_is_refused(tmp_path):
    from agents.zoo.registry import load_agent

    with pytest.raises(ValueError, match="fixed cannot act on LLMSplit-Cell-v0"):
        load_agent("fixed", tmp_path / "agent.json", _cell_env())


def test_the_cells_default_algos_can_all_act_on_it():
    from agents.zoo.registry import CELL as KIND
    from agents.zoo.registry import algos_for
    from agents.zoo.train import DEFAULT_ALGOS_BY_ENV

    assert set(DEFAULT_ALGOS_BY_ENV[CELL]) <= set(algos_for(KIND))
    assert "rllib_ppo" in algos_for(KIND) and "dqn" not in algos_for(KIND)


def test_evaluate_agent_on_the_cell_matches_evaluate_cell():
    from agents.cell import CellPlannerAgent, CellRandomAgent, SelfishAgent
    from agents.common.evaluation import evaluate_agent, evaluate_cell

    env = _cell_env()
    seeds = [5, 6]
    for make in (CellPlannerAgent, SelfishAgent, lambda e: CellRandomAgent(e, seed=3)):
        a, b = evaluate_agent(make(env), env, seeds, trace=True), evaluate_cell(make(env), env, seeds)
        assert a["mean_return"] == pytest.approx(b["mean_return"], rel=1e-12)
        for key in ("offload_share", "deadline_miss_rate", "edge_utilisation", "mean_latency_s"):
            assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-15), key
        shares = {k: c / a["requests"] for k, c in a["split_counts"].items() if c}
        assert shares == pytest.approx(b["split_share"])
        assert len(a["levels"]) == len(a["step_splits"]) == a["requests"]  # the policy map: one point per request
        assert a["ue_returns"].shape == (3,)
    with pytest.raises(ValueError, match="returned 1 actions for one observation of a cell of 3 UEs"):
        evaluate_agent(lambda obs: 0, env, seeds)


def test_the_tracker_logs_the_cells_figures_per_request_and_per_ue():
    from agents.common.callbacks import RewardComponentTracker

    tr = RewardComponentTracker("requests")

    def info(active, miss, off, rew, q):
        return {"active": np.array(active), "deadline_miss": np.array(miss), "offloaded": np.array(off),
                "reward": np.array(rew), "team_reward": float(np.mean(rew)), "quality_evals": 0,
                "rewards": {"quality": np.array(q)}}  # fmt: skip

    tr.update([info([True, False], [True, False], [True, False], [1.0, 0.0], [0.5, 0.0])], [False])
    tr.update([info([True, True], [False, False], [True, False], [2.0, 4.0], [0.7, 0.9])], [True])
    assert tr.quality_evals == 3  # three requests served
    assert tr.window_means() == pytest.approx({"quality": (0.5 + 0.7 + 0.9) / 3})  # per request: idle zeros left out
    assert tr.cell_means() == pytest.approx(
        {
            "cell/team_reward": (0.5 + 3.0) / 2,
            "cell/deadline_miss_rate": 1 / 3,
            "cell/offload_share": 2 / 3,
            "ue/0/reward": 1.5,
            "ue/1/reward": 2.0,
        }
    )
    tr.reset_window()
    assert tr.cell_means() == {} and tr.window_means() == {}
