"""Ray Tune sweeps (``python -m agents.zoo.sweep``) and ``benchmarks/sample_efficiency.py --ray`` on a real local Ray
instance (2 CPUs, started once for the module): a sweep's table equals serial `train_agent` runs number for number,
a rerun skips finished trials, bad input fails before anything starts, and the benchmark prints the serial table.

Ray is an optional dependency: without it the Ray tests skip (the input checks still run).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
import re
from pathlib import Path

import pytest

from agents.zoo import sweep

ROOT = Path(__file__).resolve().parents[1]
ALGOS = ["oracle", "random", "fixed", "ppo"]
SWITCHING = [0.1, 0.3]
SEEDS = [1]  # one seed keeps the module fast; several seeds: the plan test and the benchmark test
EVAL_EPISODES = 3
SWEEP = ["--algo", *ALGOS, "--seeds", *map(str, SEEDS), "--grid", "reward.weights.switching:[0.1, 0.3]",
         "-n", "64", "--eval-freq", "32", "--eval-episodes", str(EVAL_EPISODES),
         "--hyperparams", "ppo.n_steps:32", "ppo.batch_size:32"]  # fmt: skip
PPO_HP = {"n_steps": 32, "batch_size": 32}


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray instance with 2 CPUs; the sweep and the benchmark use this connection (and leave it up)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20)
    yield ray
    ray.shutdown()


def read_csv(out: Path) -> list[dict]:
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "train_s"} for r in rows]


@pytest.fixture(scope="module")
def swept(local_ray, tmp_path_factory) -> tuple[Path, str]:
    """The tiny sweep: 4 algos x 1 seed x 2 env configs = 8 Tune trials, 1 CPU each."""
    out = tmp_path_factory.mktemp("sweep")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert sweep.main([*SWEEP, "--out", str(out)]) == 0
    return out, buf.getvalue()


def serial_row(algo: str, seed: int, switching: float, out: Path) -> dict:
    """What train.py does for one agent: train_agent, then the reloaded agent scored on its evaluation episodes."""
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer
    from agents.zoo.common import train_eval_seeds
    from agents.zoo.registry import load_agent, train_agent

    kwargs = {"reward": {"weights": {"switching": switching}}}
    scorer = OracleNormalizer(make_env("LLMSplit-v0", kwargs), train_eval_seeds(seed, EVAL_EPISODES))
    learning = algo == "ppo"
    rec = train_agent(algo, "LLMSplit-v0", kwargs, seed=seed, n_timesteps=64 if learning else None, out_dir=out,
                      eval_freq=32, scorer=scorer, hyperparams=PPO_HP if learning else None)  # fmt: skip
    final = scorer(load_agent(algo, rec.path, make_env("LLMSplit-v0", kwargs)))
    return {"mean_return": final["mean_return"], "normalized_score": final["normalized_score"],
            "quality_evals": rec.quality_evals, "n_timesteps": rec.n_timesteps, "curve": rec.curve}  # fmt: skip


def test_a_sweep_table_equals_serial_train_agent_runs(swept, tmp_path):
    out, stdout = swept
    rows = read_csv(out)
    # one row per (env config, algo, seed), in that order
    expected_keys = [(f"reward.weights.switching={w}", a, str(s)) for w in SWITCHING for a in ALGOS for s in SEEDS]
    assert [(r["env_config"], r["algo"], r["seed"]) for r in rows] == expected_keys
    assert {r["status"] for r in rows} == {"done"} and {r["env_id"] for r in rows} == {"LLMSplit-v0"}
    for r in rows:
        ref = serial_row(r["algo"], int(r["seed"]), float(r["env_config"].split("=")[1]), tmp_path / r["trial"])
        where = (r["env_config"], r["algo"], r["seed"])
        assert float(r["mean_return"]) == ref["mean_return"], where  # CSV floats are repr: exact
        assert float(r["normalized_score"]) == ref["normalized_score"], where
        assert int(r["quality_evals"]) == ref["quality_evals"] and int(r["n_timesteps"]) == ref["n_timesteps"], where
        saved = json.loads((out / "trials" / f"{r['trial']}.json").read_text())["result"]
        assert saved["curve"] == ref["curve"], where  # the learning curve too
        assert Path(r["agent_path"]).is_file() and Path(r["agent_path"]).is_relative_to(out / "agents")
    by = {(r["env_config"], r["algo"], r["seed"]): r for r in rows}
    for w in SWITCHING:
        for s in SEEDS:
            assert float(by[f"reward.weights.switching={w}", "oracle", str(s)]["normalized_score"]) == 1.0
            assert 0 < int(by[f"reward.weights.switching={w}", "ppo", str(s)]["quality_evals"]) <= 64
    # the markdown table has the same rows, and the run said what it did
    md = (out / "sweep.md").read_text().splitlines()
    assert sum(line.startswith("| reward.weights.switching=") for line in md) == 8
    assert "| reward.weights.switching=0.3 | ppo | 1 |" in "\n".join(md)
    assert "8 trials (4 algos x 1 seed x 2 env configs); 0 already done" in stdout and "[8/8]" in stdout
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # Tune got each curve point as an intermediate report, then the final one
    [experiment] = (out / "tune").iterdir()
    ppo = next(r for r in rows if r["algo"] == "ppo")
    reports = [json.loads(line) for line in (experiment / ppo["trial"] / "result.json").read_text().splitlines()]
    curve = json.loads((out / "trials" / f"{ppo['trial']}.json").read_text())["result"]["curve"]
    assert len(curve) == 2 and len(reports) == 3
    assert [{k: r[k] for k in curve[0]} for r in reports[:-1]] == curve
    assert reports[-1]["normalized_score"] == float(ppo["normalized_score"]) and "row" in reports[-1]


def test_a_rerun_skips_finished_trials_and_runs_only_missing_ones(swept, capsys):
    out, _ = swept
    before = read_csv(out)
    trials = sorted((out / "trials").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in trials}
    assert sweep.main([*SWEEP, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 already done" in text and "0 to run" in text
    assert {p.name: p.stat().st_mtime_ns for p in trials} == stamps  # nothing was run again
    assert read_csv(out) == before
    assert len(list((out / "tune").iterdir())) == 1  # and Tune was not started
    # one result lost: only that trial runs again, to the same numbers
    gone = next(p for p in trials if p.name.startswith("oracle_seed1_"))
    gone.unlink()
    assert sweep.main([*SWEEP, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "7 already done" in text and "1 to run" in text and "[8/8] oracle seed 1" in text
    assert without_times(read_csv(out)) == without_times(before)  # the same numbers (its wall time aside)
    assert {p.name: p.stat().st_mtime_ns for p in trials if p != gone} == {
        k: v for k, v in stamps.items() if k != gone.name
    }


def test_trial_names_change_with_any_setting():
    """A result file is reused only for the very same settings: -n renames the learning agents' trials only."""
    args = sweep.build_parser().parse_args([*SWEEP, "--seeds", "0", "1", "--out", "unused"])
    specs = sweep.plan(args)
    assert [(s["env_config"], s["algo"], s["seed"]) for s in specs] == [
        (f"reward.weights.switching={w}", a, s) for w in SWITCHING for a in ALGOS for s in (0, 1)
    ]
    assert [s["env_kwargs"]["reward"]["weights"]["switching"] for s in specs] == [0.1] * 8 + [0.3] * 8
    names = [s["name"] for s in specs]
    args.n_timesteps = 128
    renamed = [s["name"] for s in sweep.plan(args)]
    changed = [a for a, b in zip(names, renamed, strict=True) if a != b]
    assert len(set(names)) == 16 and all(n.startswith("ppo_") for n in changed) and len(changed) == 4


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--algo", "oracle", "nope"], "unknown algo 'nope'; allowed: mbrl, ppo"),
        (["--algo", "ppo", "--hyperparams", "ppo.bogus:1"], "unknown hyperparameter(s) ['bogus'] for ppo"),
        (["--algo", "oracle", "--hyperparams", "ppo.n_steps:8"], "--hyperparams keys must start with an algo of"),
        (
            ["--algo", "oracle", "--grid", "reward.weights.switching:0.3"],
            "--grid reward.weights.switching: expects a non-empty YAML list",
        ),
        (["--algo", "oracle", "--grid", "reward.weights.switching:[]"], "expects a non-empty YAML list"),
        (["--algo", "oracle", "--grid", "scheme:[analog, analog]"], "--grid scheme: a value is listed twice"),
        (["--algo", "oracle", "--grid", "nosuch:[1, 2]"], "env config nosuch=1: unknown config key 'nosuch'"),
        (["--algo", "oracle", "--grid", "scheme:[analog, bogus]"], "env config scheme=\"bogus\": config 'scheme'"),
        (["--algo", "oracle", "--grid", "reward:[1]", "reward.weights.switching:[0.1]"], "overlaps another --grid key"),
        (
            ["--algo", "oracle", "--env-kwargs", "reward.weights.switching:0.2", "--grid", "reward.weights:[{}]"],
            "--grid reward.weights is also set by --env-kwargs (reward.weights.switching)",
        ),
        (["--algo", "oracle", "--seeds", "0", "0"], "--seeds: 0 given more than once"),
        (["--algo", "oracle", "--seeds", "-1"], "--seeds must be integers >= 0, got -1"),
        (["--algo", "ppo", "-n", "0"], "-n/--n-timesteps must be an integer >= 1, got 0"),
        (["--algo", "oracle", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0, got 0.0"),
        (["--algo", "oracle", "--env", "Nope-v0"], "unknown env id 'Nope-v0'"),
    ],
)
def test_bad_input_fails_before_anything_starts(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    assert sweep.main([*extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err, err
    assert not out.exists()  # no trial, no file


# --- benchmarks/sample_efficiency.py --ray ---------------------------------------------------------------------------


def _benchmark():
    spec = importlib.util.spec_from_file_location("sample_efficiency", ROOT / "benchmarks" / "sample_efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sample_efficiency_on_ray_prints_the_serial_table(local_ray, tmp_path, capsys):
    bench = _benchmark()
    tiny = ["--algos", "ppo", "--seeds", "0", "1", "--budget", "ppo:150", "--eval-episodes", "2",
            "--hyperparams", "ppo.n_steps:64", "ppo.batch_size:64"]  # fmt: skip
    tables = {}
    for kind, extra in (("serial", []), ("ray", ["--ray"])):
        assert bench.main([*tiny, "--out", str(tmp_path / kind), *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        tables[kind] = [line for line in lines if not line.startswith("plot: ")]
    assert tables["ray"] == tables["serial"]
    # censored where each run's count ended: at most its 192 steps (whole rollouts of 64; k = L costs no evaluation)
    (spent,) = [m.groups() for line in tables["ray"] if (m := re.match(r"\| ppo \| >(\d+), >(\d+) \|", line))]
    assert all(150 < int(n) <= 192 for n in spent)
    for seed in (0, 1):  # the cached runs, curve point for curve point
        serial, on_ray = (json.loads((tmp_path / k / f"ppo_seed{seed}.json").read_text()) for k in ("serial", "ray"))
        assert on_ray.pop("wall_s") > 0 and serial.pop("wall_s") > 0
        assert on_ray == serial and len(serial["curve"]) >= 3
    # the two seeds differ (so equal tables are not equal by accident)
    a, b = (json.loads((tmp_path / "ray" / f"ppo_seed{s}.json").read_text())["curve"] for s in (0, 1))
    assert a != b
    # a rerun on Ray reads the cache files instead of running anything
    assert bench.main([*tiny, "--out", str(tmp_path / "ray"), "--ray"]) == 0
    captured = capsys.readouterr()
    assert "[1/" not in captured.err
    # and other settings in the same --out are refused, not mixed in
    assert bench.main([*tiny[:-2], "ppo.batch_size:32", "--out", str(tmp_path / "ray"), "--ray"]) == 2
    assert "holds a run made with other settings" in capsys.readouterr().err
