"""Front doors: train.py and evaluate.py with tiny budgets; their outputs; bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import train  # noqa: E402

TINY = ["-n", "400", "--eval-episodes", "2", "--no-progress",
        "--hyperparams", "mbrl.warmup_steps:100", "mbrl.max_epochs:30", "rsm_ppo.n_real:60", "threshold.num_steps:60",
        "ppo.n_steps:128", "ppo.batch_size:64"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    args = ["--algo", "mbrl", "ppo", "rsm_ppo", "oracle", "random", "fixed", "threshold",
            "-f", str(root), "-tb", str(root / "tb"), *TINY]  # fmt: skip
    assert train.main(args) == 0
    return root


def test_train_writes_agents_summary_and_tensorboard(trained_run, capsys):
    summary = json.loads((trained_run / "LLMSplit-v0" / "summary.json").read_text())
    agents = summary["agents"]
    assert set(agents) == {f"{a}_seed0" for a in ("mbrl", "ppo", "rsm_ppo", "oracle", "random", "fixed", "threshold")}
    for name, rec in agents.items():
        assert Path(rec["path"]).exists(), name
    assert agents["mbrl_seed0"]["quality_evals"] == 400
    assert agents["rsm_ppo_seed0"]["quality_evals"] == 60
    assert agents["ppo_seed0"]["quality_evals"] == 512  # whole rollouts of 128 steps: 4 of them
    assert agents["oracle_seed0"]["final"]["normalized_score"] == pytest.approx(1.0)
    assert agents["random_seed0"]["final"]["normalized_score"] == pytest.approx(0.0)
    assert agents["mbrl_seed0"]["curve"], "MBRL logs a learning curve after its warm-up"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {p.name: p for p in (trained_run / "tb" / "LLMSplit-v0").iterdir()}
    assert {"MBRL_1", "PPO_1", "RSM-PPO_1"} <= set(runs)
    for name in ("MBRL_1", "PPO_1", "RSM-PPO_1"):
        acc = EventAccumulator(str(runs[name]))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        for prefix in ("rollout/", "eval/", "model/", "reward/quality", "cost/quality_evals"):
            assert any(t.startswith(prefix) for t in tags), (name, prefix, sorted(tags))


def test_evaluate_scores_saved_agents_and_writes_json_and_plots(trained_run, capsys):
    out = trained_run / "eval.json"
    assert evaluate.main(["-f", str(trained_run), "--n-eval-episodes", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"mbrl_seed0", "ppo_seed0", "rsm_ppo_seed0", "oracle_seed0"}
    for r in res.values():
        assert set(r) == {"mean_return", "ci95", "normalized_score", "mean_ppl", "quality_evals"}
    assert res["oracle_seed0"]["normalized_score"] == pytest.approx(1.0)
    assert res["mbrl_seed0"]["quality_evals"] == 400
    plots = trained_run / "LLMSplit-v0" / "plots"
    for png in ("learning_curves.png", "policy_map.png"):
        assert (plots / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "norm. score" in printed and "mbrl_seed0" in printed


def test_evaluate_only_some_agents(trained_run, tmp_path):
    out = tmp_path / "e.json"
    assert evaluate.main(["-f", str(trained_run), "--algo", "oracle", "random", "--n-eval-episodes", "2",
                          "--json", str(out), "--plots", str(tmp_path)]) == 0  # fmt: skip
    assert set(json.loads(out.read_text())) == {"oracle_seed0", "random_seed0"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "LLMSplit-v9"], "unknown env id 'LLMSplit-v9'"),
        (["--env-kwargs", "reward.weights.quallity:1"], "unknown config key 'reward.weights.quallity'"),
        (["--env-kwargs", "scheme"], "--env-kwargs expects key:value pairs"),
        (["-n", "0"], "-n/--n-timesteps must be >= 1"),
        (["--hyperparams", "ppo.learning_rat:0.1"], "learning_rat"),
        (["--hyperparams", "n_steps:128"], "--hyperparams keys must start with an algo being trained"),
        (["--hyperparams", "mbrl.n_steps:128"], "--hyperparams keys must start with an algo being trained"),
        (["--eval-freq", "0"], "--eval-freq must be >= 1"),
    ],
)
def test_train_bad_input(tmp_path, capsys, argv, needle):
    code = train.main(["--algo", "ppo", "-f", str(tmp_path), "-tb", "", "--no-progress", "-n", "64", *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_unknown_hyperparameters_of_our_own_agents_are_rejected(tmp_path, capsys):
    code = train.main(["--algo", "mbrl", "-f", str(tmp_path), "-tb", "", "--no-progress", "-n", "10",
                       "--hyperparams", "mbrl.bogus:1"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter(s) ['bogus'] for mbrl" in err and "warmup_steps" in err


def test_train_unknown_algo_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as err:
        train.main(["--algo", "sac"])
    assert err.value.code == 2
    assert "invalid choice: 'sac'" in capsys.readouterr().err


def test_evaluate_bad_input(tmp_path, trained_run, capsys):
    assert evaluate.main(["-f", str(tmp_path)]) == 2
    assert "no training summary" in capsys.readouterr().err
    assert evaluate.main(["-f", str(trained_run), "--algo", "dqn"]) == 2
    assert "no saved agent for dqn" in capsys.readouterr().err
    assert evaluate.main(["-f", str(trained_run), "--n-eval-episodes", "1"]) == 2
    assert "--n-eval-episodes must be >= 2" in capsys.readouterr().err


def test_env_kwargs_parse_nested_yaml_values():
    parsed = train.parse_key_values(["reward.weights.switching:0.5", "scheme:digital", "splits.excluded:[1, 2]"], "x")
    assert parsed == {"reward": {"weights": {"switching": 0.5}}, "scheme": "digital", "splits": {"excluded": [1, 2]}}
