"""The split map: best split per level agrees with the env's own expected rewards; the CLI writes a PNG."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401
from llmsplit_env.profiling.split_map import main, split_map


@pytest.mark.parametrize("profile", ["smollm2-135m-analog", "smollm2-135m-erasure"])
def test_best_split_is_where_the_env_would_stay(profile):
    weights = {"reward": {"weights": {"switching": 0.2, "privacy": 0.3}}}
    m = split_map(profile, weights)
    assert m.mean_ppl.shape == m.expected_reward.shape == (len(m.splits), len(m.levels))
    assert np.all(np.isfinite(m.expected_reward))
    scheme = profile.rsplit("-", 1)[1]
    for j in range(0, len(m.levels), 4):
        x, best = float(m.levels[j]), int(m.best_split[j])
        # the env at a channel held at x, starting at the best split: staying there is its best action
        cfg = {**weights, "scheme": scheme, "initial_split": best,
               "channel": {"model": "static", "csi_error": 0.0, "static": {"low": x, "high": x}}}  # fmt: skip
        env = gym.make("LLMSplit-v0", config=cfg).unwrapped
        env.reset(seed=0)
        er = env.expected_rewards()
        assert env.prev_split == best
        assert env.action_to_split(int(np.argmax(er))) == best, (profile, x)
        np.testing.assert_allclose(er[best - env.k_min], m.expected_reward[best - 1, j], rtol=1e-12)


def test_cli_prints_the_table_and_writes_a_png(tmp_path, capsys):
    out = tmp_path / "map.png"
    assert main(["smollm2-135m-analog", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "best split" in printed and len(printed.strip().splitlines()) == 1 + 17 + 1
    assert main(["smollm2-135m-analog", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["no-such-profile"]) == 2
    assert main(["smollm2-135m-analog", "--config", '{"reward": {"weights": {"qualityy": 1}}}']) == 2
    assert "qualityy" in capsys.readouterr().err


def test_the_colour_scale_is_capped_so_the_range_near_clean_is_legible(tmp_path, capsys):
    from llmsplit_env.profiling.split_map import DEFAULT_PPL_CAP, colour_position

    m = split_map("smollm2-135m-analog")
    pos = colour_position(m)
    ratio = m.mean_ppl / m.clean_ppl
    assert ratio.max() > 1e3 and DEFAULT_PPL_CAP == 10.0  # uncapped, 1–3× would be a sliver of the scale
    assert np.all((pos >= 0) & (pos <= 1))
    np.testing.assert_array_equal(pos[ratio >= 10], 1.0)
    near = (ratio > 1.0) & (ratio <= 3.0)
    assert near.any()
    np.testing.assert_allclose(pos[near], np.log(ratio[near]) / np.log(10.0))  # 3× sits at 0.48: half the scale
    assert colour_position(m, cap=3.0)[near].max() <= 1.0
    with pytest.raises(ValueError, match="finite ratio > 1"):
        colour_position(m, cap=1.0)
    assert main(["smollm2-135m-analog", "--out", str(tmp_path / "m.png"), "--ppl-cap", "3"]) == 0
    assert main(["smollm2-135m-analog", "--ppl-cap", "0.5"]) == 2
    assert "--ppl-cap must be a finite ratio > 1" in capsys.readouterr().err
