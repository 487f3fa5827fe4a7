"""The oracle's look-ahead on relative moves (`agents.search`): on an env whose level only the actions move, the best
sequence found equals the best of every sequence stepped on copies of the env, and the oracle leaves a local optimum
that a one-step argmax cannot."""

from __future__ import annotations

import copy
import itertools

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401  (registers the ids)
from agents import OracleAgent
from agents.common.evaluation import evaluate_agent
from agents.search import best_sequence, searchable

torch = pytest.importorskip("torch")
from surrogate_nets import zeroed_net  # noqa: E402


@pytest.fixture
def two_peaks(tmp_path):
    """A surrogate of the authors' shape with a gain of 1 at p = 1 and a lesser peak of 0.5 at p = 7 (0 elsewhere):
    from p = 9, a one-step argmax over the reachable 5..10 goes to 7 and stays (1 is 6 layers away)."""
    m = zeroed_net()
    with torch.no_grad():
        w0, b0, w1, b1, w2 = m.fc[0].weight, m.fc[0].bias, m.fc[2].weight, m.fc[2].bias, m.fc[4].weight
        w0[0, 1], b0[0] = 1.0, -7.0  # relu(p - 7)
        w0[1, 1], b0[1] = -1.0, 7.0  # relu(7 - p)
        w0[2, 1], b0[2] = -1.0, 2.0  # relu(2 - p): 1 at p = 1
        w1[0, 0], w1[0, 1], b1[0] = -1.0, -1.0, 1.0  # relu(1 - |p - 7|): 1 at p = 7
        w1[1, 2] = 1.0
        w2[0, 0], w2[0, 1] = 0.5, 1.0
    path = tmp_path / "two_peaks.pth"
    torch.save(m.state_dict(), path)
    return path


def _env(path, steps: int = 3) -> gym.Env:
    config = {"surrogate": str(path), "initial_split": 9, "max_episode_steps": steps}
    return gym.make("LLMSplit-Paper-v0", config=config)


def test_the_best_sequence_is_the_best_of_every_sequence_stepped_on_copies(two_peaks):
    env = _env(two_peaks)
    assert searchable(env) and not searchable(gym.make("LLMSplit-v0"))
    for seed in range(3):
        env.reset(seed=seed)
        actions, value = best_sequence(env)
        returns = {}
        for seq in itertools.product(range(env.action_space.n), repeat=3):
            sim = copy.deepcopy(env)
            returns[seq] = sum(sim.step(a)[1] for a in seq)
        best = max(returns.values())
        assert value == pytest.approx(best, abs=1e-9)
        assert returns[tuple(actions.tolist())] == pytest.approx(best, abs=1e-9)
        assert value > 20.0  # 9 -> 5 -> 1 -> 1: 0.5 + 10.9 + 10.9; staying at 7 earns 3 x 5.3


def test_the_oracle_leaves_the_local_peak_that_a_one_step_argmax_keeps(two_peaks):
    env = _env(two_peaks)
    seeds = [0, 1]
    looking = evaluate_agent(OracleAgent(env), env, seeds)
    myopic = evaluate_agent(OracleAgent(env, lookahead=False), env, seeds)
    assert looking["mean_return"] == pytest.approx(0.5 + 2 * 10.9, abs=1e-4)
    assert myopic["mean_return"] == pytest.approx(3 * 5.3, abs=1e-4)
    with pytest.raises(ValueError, match="relative actions on a channel whose level only the actions move"):
        best_sequence(gym.make("LLMSplit-v0"))


def test_a_long_episode_is_searched_over_a_receding_horizon(two_peaks):
    env = _env(two_peaks, steps=50)
    env.reset(seed=0)
    actions, value = best_sequence(env, max_leaves=1_000)  # 9^3 = 729 <= 1,000 < 9^4: three steps ahead
    assert len(actions) == 3 and value == pytest.approx(0.5 + 2 * 10.9, abs=1e-4)
    assert np.isfinite(value)
