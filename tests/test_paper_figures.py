"""``benchmarks/paper_figures.py`` end to end at a tiny budget, on a hand-written MLP of the authors' shape (their
``reward_predictor.pth`` is not shipped): it trains, evaluates, plots and writes its table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
from surrogate_nets import v_mlp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("paper_figures", ROOT / "benchmarks" / "paper_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_figures_at_a_tiny_budget(tmp_path, capsys):
    mlp = tmp_path / "reward_predictor.pth"
    v_mlp(mlp)
    out = tmp_path / "figs"
    args = ["--surrogate", str(mlp), "--out", str(out), "--steps", "400", "--seeds", "0", "--algos", "ppo",
            "--envs", "surrogate", "--eval-every", "400", "--eval-episodes", "4"]  # fmt: skip
    assert _benchmark().main(args) == 0
    for name in ("learning_curves.png", "split_vs_rho.png", "results.md", "results.json"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "results.md").read_text()
    assert "| surrogate | PPO |" in md and "| surrogate | oracle |" in md and "| surrogate | never_move |" in md
    res = json.loads((out / "results.json").read_text())["results"]["surrogate"]
    run = res["algos"]["ppo"][0]
    assert run["hyperparams"]["n_steps"] == 400 and run["hyperparams"]["batch_size"] == 100  # the authors' settings
    assert run["curve"][-1] == {"steps": run["curve"][-1]["steps"], "mean_return": run["final_return"]}
    # the oracle on the hand-set MLP ends each episode at the best split for its rho (about 30 rho)
    oc = res["references"]["oracle_choices"]
    for rho, split in zip(oc["rho"], oc["split"], strict=True):
        assert abs(split - min(max(30 * rho, 1), 10)) <= 0.51
    # a rerun resumes: the run cached in runs/ is taken as it is; other settings are refused, not mixed in
    cached = json.loads((out / "runs" / "surrogate_ppo_seed0.json").read_text())
    assert cached["final_return"] == run["final_return"] and cached["settings"]["steps"] == 400
    assert _benchmark().main(args) == 0
    again = json.loads((out / "results.json").read_text())["results"]["surrogate"]["algos"]["ppo"][0]
    assert again["train_s"] == run["train_s"]  # not trained again
    with pytest.raises(ValueError, match=r"surrogate_ppo_seed0\.json holds a run made with other settings"):
        _benchmark().main([*args[:-2], "--eval-episodes", "5"])
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        _benchmark().main(["--surrogate", str(tmp_path / "nowhere.pth"), "--out", str(out)])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--surrogate", "x.pth", "--eval-every", "0"], "--eval-every must be >= 1"),
        (["--envs", "surrogate"], "--surrogate PATH is needed for --envs surrogate"),
    ],
)
def test_bad_arguments_are_refused_by_name(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _benchmark().main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
