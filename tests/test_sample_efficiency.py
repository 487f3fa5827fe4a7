"""`benchmarks/sample_efficiency.py`'s bookkeeping on synthetic runs: when a curve reaches a target, where a run that
never does is censored, the score table's lookup, the IQR bands, and a cache made with other settings refused."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sample_efficiency_mod", ROOT / "benchmarks" / "sample_efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(points, budget=1200):
    return {"budget": budget, "curve": [{"quality_evals": n, "normalized_score": s} for n, s in points]}


def test_a_target_is_reached_at_the_first_of_two_consecutive_points(bench):
    r = run([(25, 0.96), (50, 0.80), (75, 0.93), (100, 0.992), (150, 0.95), (200, 0.999)])
    # 0.96 at 25 alone does not count: the next point falls below
    assert bench.first_reaching(r["curve"], 0.9) == 75
    assert bench.first_reaching(r["curve"], 0.95) == 100
    assert bench.first_reaching(r["curve"], 0.99) is None  # 0.992 then 0.95
    assert bench.first_reaching(run([(25, 0.99)])["curve"], 0.9) is None  # one point is never two


def test_a_run_is_censored_where_its_count_ended_not_at_its_step_budget(bench):
    # a profile run of 1,200 steps that spent 1,161 evaluations (steps at k = L cost none)
    r = run([(25, 0.5), (1000, 0.6), (1161, 0.7)])
    assert bench.spent(r) == 1161
    assert bench.spent(run([], budget=300)) == 300


def test_score_at_is_the_score_after_at_most_n_evaluations(bench):
    r = run([(24, 0.5), (48, 0.7), (73, 0.9), (96, 0.95), (190, 0.99)])
    assert [bench.score_at(r, n) for n in (25, 50, 75, 100, 200)] == [0.5, 0.7, 0.9, 0.95, None]
    assert bench.score_at(r, 20) is None  # nothing spent that few
    assert bench.score_at(r, 190) == 0.99


def test_bands_are_the_median_and_quartiles_over_seeds(bench):
    runs = [run([(25, s), (50, s + 0.1)]) for s in (0.1, 0.2, 0.3, 0.4, 0.5)]
    x, med, lo, hi = bench.score_bands(runs)
    assert x.tolist() == [25, 50]
    assert np.allclose(med, [0.3, 0.4]) and np.allclose(lo, [0.2, 0.3]) and np.allclose(hi, [0.4, 0.5])


def test_a_cached_run_made_with_other_settings_is_refused(bench, tmp_path):
    args = argparse.Namespace(env="LLMSplit-v0", eval_episodes=10, hp={}, budgets={}, rsm_sizes=[90], rsm_steps=10)
    want = bench.settings(args, "mbrl")
    assert want["count"] == "sends" and want["checkpoints"] == bench.CHECKPOINTS
    assert want["hyperparams"]["beta"] == 2.0  # resolved: the agent's file, not only the overrides
    path = bench.cache_path(tmp_path, "mbrl", 0)
    path.write_text(json.dumps({"curve": [], "settings": want}))
    assert bench.read_cache(tmp_path, "mbrl", 0, want)["settings"] == want
    ablation = bench.settings(args, "mbrl_beta_1")
    assert ablation["hyperparams"]["beta"] == 1.0
    with pytest.raises(ValueError, match=r"mbrl_seed0\.json holds a run made with other settings"):
        bench.read_cache(tmp_path, "mbrl", 0, ablation)
    path.write_text(json.dumps({"curve": []}))  # a run cached before settings were recorded
    with pytest.raises(ValueError, match="none recorded"):
        bench.read_cache(tmp_path, "mbrl", 0, want)


def test_runs_whose_counts_differ_by_seed_share_the_checkpoint_grid(bench):
    # the threshold rule fitted on 25 and 50 steps pays only those that send: its counts differ by seed
    runs = [run([(24, 0.4), (49, 0.8)]), run([(25, 0.6), (48, 0.9)]), run([(23, 0.5), (50, 1.0)])]
    x, med, lo, hi = bench.score_bands(runs)
    assert x.tolist() == [25]  # at 50 the second run has not spent as many: no band is carried past a run's end
    assert med.tolist() == [0.5] and lo.tolist() == [0.45] and hi.tolist() == [0.55]
