"""Discrete split planners: one-step choices and the exact H-step DP with switching costs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from agent_helpers import plan_brute_force

from agents.mbrl.planning import (
    greedy_action,
    one_step_scores,
    plan_dp,
    plan_value,
    select_action,
    switching_cost_matrix,
    thompson_action,
    ucb_action,
)


# ---------------------------------------------------------------------- one step
def test_greedy_picks_argmax_and_respects_mask():
    table = np.array([0.1, 0.7, 0.3, 0.9, 0.2])
    assert greedy_action(table) == 3
    mask = np.array([True, True, True, False, True])
    assert greedy_action(table, mask) == 1
    # Only one allowed action: it is chosen even though it is the worst.
    assert greedy_action(table, np.arange(5) == 0) == 0
    # Integer 0/1 masks are accepted.
    assert greedy_action(table, [1, 0, 1, 0, 1]) == 2


def test_greedy_averages_members():
    members = np.array([[1.0, 0.0, 0.5], [0.0, 0.9, 0.5]])  # means 0.5, 0.45, 0.5: first tie wins
    assert greedy_action(members) == 0
    members[1, 2] = 0.6  # mean of column 2 becomes 0.55
    assert greedy_action(members) == 2


def test_ucb_prefers_uncertain_arm_when_beta_large():
    # Arm 0: certain, mean 1.0. Arm 1: mean 0.9, member std 0.2.
    members = np.array([[1.0, 0.7], [1.0, 1.1], [1.0, 0.7], [1.0, 1.1]])
    assert np.isclose(members[:, 1].std(), 0.2)
    assert ucb_action(members, beta=0.0) == 0
    assert ucb_action(members, beta=0.49) == 0  # 0.9 + 0.098 < 1.0
    assert ucb_action(members, beta=0.51) == 1  # 0.9 + 0.102 > 1.0
    assert ucb_action(members, beta=10.0) == 1
    assert ucb_action(members, beta=10.0, mask=[True, False]) == 0


def test_thompson_samples_members_and_respects_mask():
    # Member m prefers arm m; Thompson should pick each arm about equally often.
    members = np.eye(4) + 0.01 * np.arange(4)
    rng = np.random.default_rng(0)
    picks = np.array([thompson_action(members, rng) for _ in range(4000)])
    freq = np.bincount(picks, minlength=4) / len(picks)
    assert np.allclose(freq, 0.25, atol=0.03)
    mask = np.array([True, False, True, True])
    picks = np.array([thompson_action(members, rng, mask) for _ in range(400)])
    assert 1 not in picks
    # Same seed, same decisions.
    a = [thompson_action(members, np.random.default_rng(5)) for _ in range(3)]
    b = [thompson_action(members, np.random.default_rng(5)) for _ in range(3)]
    assert a == b


def test_select_action_dispatch():
    members = np.array([[1.0, 0.7], [1.0, 1.1], [1.0, 0.7], [1.0, 1.1]])
    assert select_action(members, "greedy") == 0
    assert select_action(members, "ucb", beta=5.0) == 1
    assert select_action(members, "thompson", rng=np.random.default_rng(0)) in (0, 1)
    with pytest.raises(ValueError, match="method"):
        select_action(members, "softmax")
    with pytest.raises(ValueError, match="rng"):
        select_action(members, "thompson")


def test_one_step_scores_are_what_the_actions_maximise():
    rng = np.random.default_rng(0)
    members = rng.normal(size=(5, 7))
    mask = np.array([True, False, True, True, False, True, True])
    np.testing.assert_array_equal(one_step_scores(members), members.mean(axis=0))
    np.testing.assert_array_equal(one_step_scores(members[0]), members[0])  # [K] means: greedy as is
    np.testing.assert_array_equal(one_step_scores(members, "ucb", beta=2.0), members.mean(0) + 2.0 * members.std(0))
    for method in ("greedy", "ucb", "thompson"):
        for seed in range(5):
            scores = one_step_scores(members, method, beta=0.7, rng=np.random.default_rng(seed))
            want = int(np.argmax(np.where(mask, scores, -np.inf)))
            assert select_action(members, method, beta=0.7, rng=np.random.default_rng(seed), mask=mask) == want
    # thompson draws one member with one rng.integers call (the MBRL agent's generator stays in step)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(one_step_scores(members, "thompson", rng=a), members[b.integers(5)])
    assert a.integers(1000) == b.integers(1000)
    with pytest.raises(ValueError, match="method"):
        one_step_scores(members, "softmax")
    with pytest.raises(ValueError, match="thompson needs rng"):
        one_step_scores(members, "thompson")
    with pytest.raises(ValueError, match="beta"):
        one_step_scores(members, "ucb", beta=np.inf)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: greedy_action([1.0, np.nan]), "non-finite"),
        (lambda: greedy_action(np.zeros((2, 2, 2))), "dimensions"),
        (lambda: greedy_action([1.0, 2.0], mask=[False, False]), "allows no action"),
        (lambda: greedy_action([1.0, 2.0], mask=[True, False, True]), "mask shape"),
        (lambda: greedy_action([1.0, 2.0], mask=[0.5, 1.0]), "boolean"),
        (lambda: ucb_action([1.0, 2.0]), "dimensions"),
        (lambda: ucb_action([[1.0, 2.0]], beta=-1.0), "beta"),
        (lambda: thompson_action([[1.0, 2.0]], rng=0), "Generator"),
    ],
)
def test_one_step_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------- horizon
def _objective(rewards, actions, splits, layers, w, prev):
    """The planning objective written out term by term, independently of the module under test."""
    total, last = 0.0, prev
    for t, a in enumerate(actions):
        total += rewards[t][a]
        if last is not None:
            total -= w * abs(splits[a] - last) / layers
        last = splits[a]
    return total


def test_switching_cost_matrix():
    c = switching_cost_matrix([1, 3, 30], num_layers=30, switch_weight=0.6)
    assert np.allclose(c, 0.6 / 30 * np.array([[0, 2, 29], [2, 0, 27], [29, 27, 0]]))


def test_dp_hand_example_switch_or_stay():
    # Two splits far apart; the far one is better by 0.2 per step over 2 steps.
    rewards = np.array([[0.5, 0.7], [0.5, 0.7]])
    splits, layers = [1, 30], 30
    # Switching costs w * 29/30: 0.967 > 0.4 gained, so stay; at w = 0.1 it costs 0.097 < 0.4, so switch.
    stay = plan_dp(rewards, splits, layers, switch_weight=1.0, prev_split=1)
    assert stay.first_action == 0 and stay.actions.tolist() == [0, 0] and np.isclose(stay.value, 1.0)
    move = plan_dp(rewards, splits, layers, switch_weight=0.1, prev_split=1)
    assert move.actions.tolist() == [1, 1] and np.isclose(move.value, 1.4 - 0.1 * 29 / 30)
    # Without a previous split the first choice is free.
    free = plan_dp(rewards, splits, layers, switch_weight=1.0, prev_split=None)
    assert free.actions.tolist() == [1, 1] and np.isclose(free.value, 1.4)


def test_dp_looks_ahead_past_a_myopic_choice():
    # Step 0 slightly favours split 1, but steps 1-2 strongly favour split 3 and switching is expensive:
    # the myopic first action (0) is not the planned one.
    rewards = np.array([[0.60, 0.0, 0.55], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    splits = [1, 2, 3]
    plan = plan_dp(rewards, splits, num_layers=3, switch_weight=1.5, prev_split=None)
    assert greedy_action(rewards[0]) == 0
    assert plan.first_action == 2 and plan.actions.tolist() == [2, 2, 2] and np.isclose(plan.value, 2.55)


@pytest.mark.parametrize("horizon", [1, 2, 3, 4])
@pytest.mark.parametrize("switch_weight", [0.0, 0.3, 2.0, 20.0])
def test_dp_matches_brute_force(horizon, switch_weight):
    rng = np.random.default_rng(1000 * horizon + int(10 * switch_weight))
    for trial in range(25):
        k = int(rng.integers(1, 7))
        layers = 30
        splits = np.sort(rng.choice(np.arange(1, layers + 1), size=k, replace=False))
        rewards = rng.normal(size=(horizon, k))
        prev = None if trial % 3 == 0 else float(rng.integers(1, layers + 1))
        mask = None
        if trial % 2:
            mask = rng.random((horizon, k)) < 0.6
            mask[np.arange(horizon), rng.integers(k, size=horizon)] = True
        dp = plan_dp(rewards, splits, layers, switch_weight, prev, mask)
        bf = plan_brute_force(rewards, splits, layers, switch_weight, prev, mask)
        assert np.isclose(dp.value, bf.value, rtol=0, atol=1e-12)
        assert dp.actions.tolist() == bf.actions.tolist()
        assert dp.first_action == dp.actions[0]
        assert np.isclose(_objective(rewards, dp.actions, splits, layers, switch_weight, prev), dp.value)
        assert np.isclose(plan_value(rewards, dp.actions, splits, layers, switch_weight, prev), dp.value)
        if mask is not None:
            assert mask[np.arange(horizon), dp.actions].all()


def test_brute_force_enumerates_every_plan():
    # Independent check of the reference itself against an explicit enumeration via plan_value.
    rng = np.random.default_rng(7)
    rewards, splits, layers, w, prev = rng.normal(size=(3, 4)), [2, 5, 6, 9], 10, 0.8, 4
    values = {a: _objective(rewards, a, splits, layers, w, prev) for a in itertools.product(range(4), repeat=3)}
    best = max(values, key=values.get)
    bf = plan_brute_force(rewards, splits, layers, w, prev)
    assert tuple(bf.actions) == best and np.isclose(bf.value, values[best])
    assert all(np.isclose(plan_value(rewards, a, splits, layers, w, prev), v) for a, v in values.items())


def test_dp_zero_switching_is_per_step_greedy():
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=(8, 30))
    plan = plan_dp(rewards, np.arange(1, 31), 30, switch_weight=0.0, prev_split=15)
    assert plan.actions.tolist() == rewards.argmax(axis=1).tolist()
    assert np.isclose(plan.value, rewards.max(axis=1).sum())


def test_dp_averages_rollouts():
    rng = np.random.default_rng(4)
    rollouts = rng.normal(size=(16, 5, 6))
    splits = np.arange(1, 7)
    a = plan_dp(rollouts, splits, 6, 0.5, prev_split=3)
    b = plan_dp(rollouts.mean(axis=0), splits, 6, 0.5, prev_split=3)
    assert a.actions.tolist() == b.actions.tolist() and np.isclose(a.value, b.value)


def test_dp_full_size_beats_alternatives():
    # L = 30 splits, H = 10: too big for brute force; the DP plan must beat greedy, "stay" and random plans.
    rng = np.random.default_rng(5)
    layers, horizon = 30, 10
    splits = np.arange(1, layers + 1)
    rewards = rng.normal(size=(horizon, layers))
    w, prev = 3.0, 10
    plan = plan_dp(rewards, splits, layers, w, prev)
    assert np.isclose(_objective(rewards, plan.actions, splits, layers, w, prev), plan.value)
    alternatives = [rewards.argmax(axis=1), np.full(horizon, prev - 1)]
    alternatives += [rng.integers(layers, size=horizon) for _ in range(200)]
    alternatives += [np.full(horizon, a) for a in range(layers)]
    for alt in alternatives:
        assert _objective(rewards, alt, splits, layers, w, prev) <= plan.value + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": np.zeros(3)}, "dimensions"),
        ({"rewards": np.full((2, 3), np.inf)}, "non-finite"),
        ({"splits": [1, 2]}, "columns"),
        ({"num_layers": 0}, "num_layers"),
        ({"switch_weight": -0.1}, "switch_weight"),
        ({"prev_split": np.nan}, "prev_split"),
        ({"mask": np.array([[True, False, True], [False, False, False]])}, "allows no action"),
    ],
)
def test_dp_bad_inputs(kwargs, match):
    args = {"rewards": np.zeros((2, 3)), "splits": [1, 2, 3], "num_layers": 3, "switch_weight": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plan_dp(**args)
