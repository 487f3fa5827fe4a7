"""Saturation is explicit: ``info["outside_grid"]`` marks the steps a profile scored at its grid's end, and building
an env whose channel leaves the grid too often (at an end where the profile's quality has not settled) warns once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401  (registers the ids)
from llmsplit_env.config import resolve_config
from llmsplit_env.factory import (
    SATURATION_WARN_SHARE,
    GridSaturationWarning,
    grid_coverage,
    make_backend,
)
from llmsplit_env.quality.profile import load_profile


def _sub_grid_profile(tmp_path, low: float) -> str:
    """The shipped analog profile cut to its levels >= ``low`` (a user profile measured over a narrower grid)."""
    src = load_profile("smollm2-135m-analog").source
    data = json.loads(Path(src).read_text())
    keep = [i for i, v in enumerate(data["levels"]) if v >= low]
    for key in ("log_ppl", "mean_log_ppl", "std_log_ppl", "loss_fraction"):
        data[key] = [[row[i] for i in keep] for row in data[key]]
    data["levels"] = data["metadata"]["levels"] = [data["levels"][i] for i in keep]
    path = tmp_path / f"analog-from-{low:g}dB.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_info_flags_exactly_the_steps_outside_the_grid():
    env = gym.make("LLMSplit-v0")
    lo, hi = env.unwrapped.quality_backend.level_lo, env.unwrapped.quality_backend.level_hi
    assert (lo, hi) == (-5.0, 35.0)
    flags, levels = [], []
    env.reset(seed=3)
    for t in range(600):
        _, _, _, trunc, info = env.step(env.action_space.sample() if t % 2 else 0)
        flags.append(info["outside_grid"])
        levels.append(info["snr_db"])
        if trunc:
            env.reset()
    flags, levels = np.array(flags), np.array(levels)
    assert flags.dtype == bool
    np.testing.assert_array_equal(flags, (levels < lo) | (levels > hi))
    assert 0 < flags.sum() < len(flags) // 4  # the default cell reaches past both ends now and then


def test_default_env_leaves_the_grid_only_where_the_profile_has_settled():
    cfg = resolve_config({})
    cov = grid_coverage(cfg, make_backend(cfg))
    # about 8 % of the default cell's steps lie outside [-5, 35] dB, but every split's quality is within 0.02 of 0
    # below -5 dB and of 1 above 35 dB: clamping there does not change the numbers, so no warning
    assert 0.02 < cov["below"] < 0.07 and 0.02 < cov["above"] < 0.07
    assert cov["settled_low"] and cov["settled_high"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridSaturationWarning)
        gym.make("LLMSplit-v0", channel={"path_loss": {"exponent": 3.6}})  # a config never built before: checked


def test_a_profile_over_a_narrow_grid_warns_once_with_the_share_and_the_grid(tmp_path):
    profile = _sub_grid_profile(tmp_path, 20.0)
    cfg = resolve_config({"profile": profile})
    cov = grid_coverage(cfg, make_backend(cfg))
    assert not cov["settled_low"] and cov["settled_high"]
    assert cov["below"] > 0.7  # most of the cell lies under 20 dB
    with pytest.warns(GridSaturationWarning) as caught:
        env = gym.make("LLMSplit-v0", profile=profile)
    (w,) = [c for c in caught if c.category is GridSaturationWarning]
    msg = str(w.message)
    assert "[20, 35]" in msg and profile in msg and "info['outside_grid']" in msg
    assert f"{100 * (cov['below'] + cov['above']):.1f} % of steps" in msg
    # the same channel and profile again (also as a vector env): no second warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridSaturationWarning)
        gym.make("LLMSplit-v0", profile=profile)
        gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point", profile=profile)
    # the steps it warned about are the ones flagged
    env.reset(seed=0)
    flags = [env.step(0)[4]["outside_grid"] for _ in range(200)]
    assert np.mean(flags) > 0.5


def test_the_share_is_deterministic_and_the_threshold_is_the_documented_one(tmp_path):
    cfg = resolve_config({"profile": _sub_grid_profile(tmp_path, 10.0)})
    qb = make_backend(cfg)
    a, b = grid_coverage(cfg, qb), grid_coverage(cfg, qb)
    assert a == b
    assert SATURATION_WARN_SHARE == 0.05
    # another seed of the simulation agrees to within sampling error (4,000 steps, correlated within episodes)
    c = grid_coverage(cfg, qb, seed=1)
    assert abs(a["below"] - c["below"]) < 0.05


def test_vector_env_flags_match_the_levels(tmp_path):
    env = gym.make_vec("LLMSplit-v0", num_envs=4, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    seen = 0
    for _ in range(120):
        _, _, _, _, info = env.step(np.zeros(4, dtype=np.int64))
        if "outside_grid" not in info:
            continue
        m = info["_outside_grid"]
        lv = info["snr_db"][m]
        np.testing.assert_array_equal(info["outside_grid"][m], (lv < -5.0) | (lv > 35.0))
        seen += int(info["outside_grid"][m].sum())
    assert seen > 0
