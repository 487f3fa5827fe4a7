"""Planners native to a discrete split choice.

The action space is small (``K ≤ L + 1`` splits), so nothing here samples actions: the one-step planners score every
allowed split, and the H-step planner solves the switching-cost-coupled problem exactly by dynamic programming.

Conventions
-----------
- An *action* is a column index ``a ∈ {0..K-1}`` of a reward table; ``splits[a]`` is the split point ``k`` it stands
  for (the agent uses ``k = a + k_min``). Switching costs are computed from split values, never from indices.
- A *mask* is boolean, ``True`` = allowed (the MaskablePPO convention).
- Ties go to the lowest allowed index, so every planner here is deterministic given its inputs (and ``rng``).

One-step tables are ``[K]`` (a mean per split) or ``[M, K]`` (one row per ensemble member, or per sample).
Horizon tables are ``[H, K]`` or ``[N, H, K]`` for ``N`` sampled rollouts; the rollouts are averaged, which gives
the open-loop plan that maximises the expected return, since the objective is linear in the rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

ArrayLike = np.ndarray | Sequence[float] | Sequence[Sequence[float]]
METHODS = ("greedy", "ucb", "thompson")


def _finite_table(rewards: ArrayLike, ndims: tuple[int, ...], name: str) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {r.shape}")
    if r.shape[-1] < 1 or r.size == 0:
        raise ValueError(f"{name} is empty (shape {r.shape})")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name} contains non-finite values")
    return r


def _check_mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """Boolean mask broadcast to ``shape`` (``[K]`` or ``[H, K]``); every row must allow at least one action."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if not np.all(np.isin(m, (0, 1))):
            raise ValueError("mask must be boolean (True = allowed)")
        m = m.astype(bool)
    try:
        m = np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"mask shape {m.shape} does not match the reward table's {shape}") from None
    if not np.all(m.any(axis=-1)):
        raise ValueError("mask allows no action (at some step)")
    return m


def _masked_argmax(scores: np.ndarray, mask: np.ndarray | None) -> int:
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return int(np.argmax(scores))


# ---------------------------------------------------------------------- one step
def one_step_scores(
    member_rewards: ArrayLike,
    method: str = "greedy",
    *,
    beta: float = 1.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The ``[K]`` scores a one-step planner maximises, from an ``[M, K]`` member table (or ``[K]`` means: greedy).

    ``greedy``: the member mean; ``ucb``: ``mean + beta * std`` over members; ``thompson``: one member's row, drawn
    with ``rng`` (one ``rng.integers`` call). `greedy_action`, `ucb_action` and `thompson_action` are the masked
    argmax of these scores; a horizon planner takes them as its first step's rewards (`plan_dp`), which is how the
    MBRL agent explores.
    """
    if method == "greedy":
        r = _finite_table(member_rewards, (1, 2), "rewards")
        return r if r.ndim == 1 else r.mean(axis=0)
    if method == "ucb":
        r = _finite_table(member_rewards, (2,), "member_rewards")
        if not (np.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        return r.mean(axis=0) + beta * r.std(axis=0)
    if method == "thompson":
        r = _finite_table(member_rewards, (2,), "member_rewards")
        if rng is None:
            raise ValueError("thompson needs rng")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        return r[rng.integers(r.shape[0])]
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def greedy_action(rewards: ArrayLike, mask: ArrayLike | None = None) -> int:
    """Allowed action with the highest mean predicted reward.

    :param rewards: ``[K]`` means, or ``[M, K]`` member predictions (averaged over members)
    :param mask: ``[K]`` booleans, ``True`` = allowed
    """
    score = one_step_scores(rewards, "greedy")
    return _masked_argmax(score, _check_mask(mask, score.shape))


def ucb_action(member_rewards: ArrayLike, beta: float = 1.0, mask: ArrayLike | None = None) -> int:
    """Optimism under epistemic uncertainty: argmax of ``mean + beta * std`` over members.

    :param member_rewards: ``[M, K]`` predictions of ``M ≥ 1`` ensemble members (std is 0 for ``M = 1``)
    :param beta: exploration bonus per standard deviation of member disagreement (``beta = 0`` is greedy)
    :param mask: ``[K]`` booleans, ``True`` = allowed
    """
    score = one_step_scores(member_rewards, "ucb", beta=beta)
    return _masked_argmax(score, _check_mask(mask, score.shape))


def thompson_action(member_rewards: ArrayLike, rng: np.random.Generator, mask: ArrayLike | None = None) -> int:
    """Thompson sampling over the ensemble: draw one member per decision and act greedily on its predictions.

    :param member_rewards: ``[M, K]`` predictions of ``M`` members (or ``M`` posterior samples)
    :param rng: numpy generator that picks the member
    :param mask: ``[K]`` booleans, ``True`` = allowed
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    score = one_step_scores(member_rewards, "thompson", rng=rng)
    return _masked_argmax(score, _check_mask(mask, score.shape))


def select_action(
    member_rewards: ArrayLike,
    method: str = "greedy",
    *,
    beta: float = 1.0,
    rng: np.random.Generator | None = None,
    mask: ArrayLike | None = None,
) -> int:
    """Dispatch to ``greedy_action``, ``ucb_action`` or ``thompson_action`` on an ``[M, K]`` member table."""
    if method == "greedy":
        return greedy_action(member_rewards, mask)
    if method == "ucb":
        return ucb_action(member_rewards, beta, mask)
    if method == "thompson":
        if rng is None:
            raise ValueError("thompson needs rng")
        return thompson_action(member_rewards, rng, mask)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


# ---------------------------------------------------------------------- horizon H
class SplitPlan(NamedTuple):
    """An open-loop plan over the horizon."""

    #: action index to take now (``actions[0]``)
    first_action: int
    #: ``[H]`` action indices, one per step
    actions: np.ndarray
    #: the plan's objective ``Σ_t r[t, a_t] − w·|k_t − k_{t−1}| / L`` (switching from ``prev_split`` included)
    value: float


def switching_cost_matrix(splits: ArrayLike, num_layers: int, switch_weight: float) -> np.ndarray:
    """``C[i, j] = switch_weight · |splits[i] − splits[j]| / num_layers`` (cost of moving from action i to j)."""
    s = _check_splits(splits, None)
    num_layers, switch_weight = _check_layers_weight(num_layers, switch_weight)
    return switch_weight * np.abs(s[:, None] - s[None, :]) / num_layers


def _check_splits(splits: ArrayLike, k: int | None) -> np.ndarray:
    s = np.asarray(splits, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"splits must be a non-empty 1-D array of finite split values, got shape {s.shape}")
    if k is not None and s.size != k:
        raise ValueError(f"splits has {s.size} entries but the reward table has {k} columns")
    return s


def _check_layers_weight(num_layers: int, switch_weight: float) -> tuple[int, float]:
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if not (np.isfinite(switch_weight) and switch_weight >= 0):
        raise ValueError(f"switch_weight must be a finite number >= 0, got {switch_weight!r}")
    return int(num_layers), float(switch_weight)


def _prepare(
    rewards: ArrayLike,
    splits: ArrayLike,
    num_layers: int,
    switch_weight: float,
    prev_split: float | None,
    mask: ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``[H, K]`` table with masked entries at -inf, the ``[K, K]`` cost matrix, and the first-step cost."""
    r = _finite_table(rewards, (2, 3), "rewards")
    if r.ndim == 3:
        r = r.mean(axis=0)
    s = _check_splits(splits, r.shape[1])
    num_layers, w = _check_layers_weight(num_layers, switch_weight)
    m = _check_mask(mask, r.shape)
    if m is not None:
        r = np.where(m, r, -np.inf)
    cost = w * np.abs(s[:, None] - s[None, :]) / num_layers
    if prev_split is None:
        first_cost = np.zeros_like(s)
    else:
        if not np.isfinite(prev_split):
            raise ValueError(f"prev_split must be finite or None, got {prev_split!r}")
        first_cost = w * np.abs(s - float(prev_split)) / num_layers
    return r, s, cost, first_cost


def plan_dp(
    rewards: ArrayLike,
    splits: ArrayLike,
    num_layers: int,
    switch_weight: float,
    prev_split: float | None = None,
    mask: ArrayLike | None = None,
) -> SplitPlan:
    """Exact H-step plan over splits by dynamic programming (Viterbi), ``O(H·K²)`` vectorised.

    Maximises ``Σ_t r[t, a_t] − switch_weight · |splits[a_t] − splits[a_{t−1}]| / num_layers`` with
    ``splits[a_{−1}] = prev_split`` (no first-step switching cost when ``prev_split`` is ``None``).

    :param rewards: ``[H, K]`` predicted rewards without the switching term, or ``[N, H, K]`` over ``N`` rollouts
        (averaged)
    :param splits: ``[K]`` split value of each column
    :param num_layers: ``L`` in the switching cost
    :param switch_weight: ``w ≥ 0``
    :param prev_split: the split in force before step 0
    :param mask: ``[K]`` or ``[H, K]`` booleans, ``True`` = allowed
    """
    r, _, cost, first_cost = _prepare(rewards, splits, num_layers, switch_weight, prev_split, mask)
    horizon, k = r.shape
    # score[j]: best value of steps 0..t ending in action j; back[t, j]: the predecessor achieving it.
    score = r[0] - first_cost
    back = np.zeros((horizon, k), dtype=np.int64)
    for t in range(1, horizon):
        cand = score[:, None] - cost  # [from, to]
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(k)] + r[t]
    actions = np.empty(horizon, dtype=np.int64)
    actions[-1] = int(np.argmax(score))
    for t in range(horizon - 1, 0, -1):
        actions[t - 1] = back[t, actions[t]]
    return SplitPlan(int(actions[0]), actions, float(score[actions[-1]]))


def plan_value(
    rewards: ArrayLike,
    actions: Sequence[int] | np.ndarray,
    splits: ArrayLike,
    num_layers: int,
    switch_weight: float,
    prev_split: float | None = None,
) -> float:
    """Objective of a given action sequence (rollouts averaged), as maximised by ``plan_dp``."""
    r, s, _, first_cost = _prepare(rewards, splits, num_layers, switch_weight, prev_split, None)
    a = np.asarray(actions, dtype=np.int64)
    if a.shape != (r.shape[0],) or np.any(a < 0) or np.any(a >= r.shape[1]):
        raise ValueError(f"actions must be {r.shape[0]} indices in [0, {r.shape[1]}), got {a!r}")
    value = r[np.arange(len(a)), a].sum() - first_cost[a[0]]
    value -= float(switch_weight) * np.abs(np.diff(s[a])).sum() / int(num_layers)
    return float(value)


# ---------------------------------------------------------------------- where to spend a real evaluation
def decision_acquisition(
    member_rewards: ArrayLike, evaluable: ArrayLike, beta: float = 1.0, mask: ArrayLike | None = None
) -> int:
    """The split whose real evaluation can change the decision at this channel: uncertainty sampling among the
    splits that may be best.

    With ``mean`` and ``std`` over the ``[M, K]`` member table, the plausible best are the allowed splits whose upper
    bound ``mean + beta·std`` reaches the best lower bound ``max(mean − beta·std)`` (a split with a known reward, std
    0, takes part in that bound without being evaluable). Among the plausible evaluable splits the one with the
    largest ``std`` is evaluated; when none is plausible (the decision here is settled) the evaluable split with the
    highest upper bound, the nearest challenger, is. Deterministic; ties go to the lowest index.

    :param member_rewards: ``[M, K]`` predicted rewards per member (known components included)
    :param evaluable: ``[K]`` booleans: the splits where an evaluation can teach something (at least one allowed)
    :param beta: width of the plausible set in member standard deviations
    :param mask: ``[K]`` booleans, ``True`` = allowed
    """
    r = _finite_table(member_rewards, (2,), "member_rewards")
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    k = r.shape[1]
    allowed = np.ones(k, bool) if mask is None else _check_mask(mask, (k,))
    ev = np.asarray(evaluable)
    if ev.shape != (k,) or ev.dtype != np.bool_:
        raise ValueError(f"evaluable must be {k} booleans (one per split), got {ev.dtype} of shape {ev.shape}")
    ev = ev & allowed
    if not ev.any():
        raise ValueError("no allowed split is evaluable")
    mean, std = r.mean(axis=0), r.std(axis=0)
    best_lower = np.max(np.where(allowed, mean - beta * std, -np.inf))
    upper = mean + beta * std
    plausible = ev & (upper >= best_lower)
    if plausible.any():
        return _masked_argmax(std, plausible)
    return _masked_argmax(upper, ev)
