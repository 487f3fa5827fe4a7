"""Bring your own model, end to end: build a profile of a GPT-NeoX model on Ray (cached suffix), run `LLMSplit-v0`
on it, train and evaluate agents with train.py / evaluate.py, and draw its split map."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import train  # noqa: E402

LEVELS = ["-5", "5", "15", "25", "35"]


@pytest.fixture(scope="module")
def neox_profile(tiny_models, tmp_path_factory) -> Path:
    from llmsplit_env.profiling.builder import main as build_profile

    out = tmp_path_factory.mktemp("byo") / "neox-analog.json"
    args = ["--model", str(tiny_models["gpt_neox"]), "--text", "pydoc", "--scheme", "analog", "--out", str(out),
            "--num-tokens", "64", "--window", "32", "--seeds", "0", "1", "--levels", *LEVELS, "--dtype", "float32",
            "--device", "cpu", "--probe-fit-tokens", "256", "--probe-test-tokens", "64",
            "--ray", "--workers", "2", "--cpus-per-worker", "1"]  # fmt: skip
    assert build_profile(args) == 0
    return out


def test_env_runs_on_the_profile(neox_profile):
    env = gym.make("LLMSplit-v0", config={"profile": str(neox_profile)})
    u = env.unwrapped
    assert u.num_layers == 3 and u.action_space.n == 3
    meta = u.quality_backend.profile.metadata
    assert meta["split_path"] == "stock forward, hooked at the split" and meta["ray"]["workers"] == 2
    obs, _ = env.reset(seed=0)
    total = 0.0
    for t in range(20):
        obs, r, *_ = env.step(t % 3)
        assert env.observation_space.contains(obs) and np.isfinite(r)
        total += r
    assert np.isfinite(total)


def test_train_evaluate_and_split_map(neox_profile, tmp_path, capsys):
    from llmsplit_env.profiling.split_map import main as split_map

    kw = ["--env-kwargs", f"profile:{neox_profile}"]
    assert train.main(["--algo", "oracle", "random", "fixed", "ppo", "-f", str(tmp_path), "-tb", "", "--no-progress",
                       "-n", "128", "--eval-episodes", "2", "--hyperparams", "ppo.n_steps:64", "ppo.batch_size:32",
                       *kw]) == 0  # fmt: skip
    out = tmp_path / "e.json"
    assert evaluate.main(["-f", str(tmp_path), "--n-eval-episodes", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"oracle_seed0", "random_seed0", "fixed_seed0", "ppo_seed0"}
    assert res["oracle_seed0"]["normalized_score"] == pytest.approx(1.0)
    png = tmp_path / "map.png"
    assert split_map([str(neox_profile), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert len([line for line in table.splitlines() if "dB" in line]) == len(LEVELS)
