"""Exact look-ahead for `agents.baselines.OracleAgent` where one step's best split is not the plan's: relative moves
(a split more than ``max_move`` layers away takes several steps) on a channel whose true level moves only with the
actions (`llmsplit_env.dynamics.UniformLevelChannel`: the paper's drift, a static level).

There the future is a function of the action sequence alone, so every sequence of the next ``h`` actions is scored
with the env's own expected rewards (`SplitProblem.score` over arrays, the dynamics' batched `on_action_batch`) and
the first action of the best one is played (sequences that reach the same split and level are merged: the same future
follows, so only the better one can be best); ``h`` is the rest of the episode, or fewer steps where ``A^h`` sequences
would exceed ``max_leaves`` (a receding horizon). The paper's surrogate env (9 moves, 5 steps: 59,049 sequences) is
searched to its end.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from llmsplit_env.dynamics import UniformLevelChannel
from llmsplit_env.reward import outcome

MAX_LEAVES = 100_000


def searchable(env: gym.Env) -> bool:
    """Whether `best_sequence` applies: relative actions on a channel whose level only the actions move."""
    u = env.unwrapped
    problem = getattr(u, "problem", None)
    return problem is not None and problem.relative and isinstance(getattr(u, "dynamics", None), UniformLevelChannel)


def _expectations(backend, split: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(E[quality], E[PPL])`` over arrays, each distinct (split, level) pair computed once."""
    pairs, inverse = np.unique(np.stack([split.astype(np.float64), level]), axis=1, return_inverse=True)
    table = np.array([backend.expectations(int(k), float(x)) for k, x in pairs.T]).reshape(-1, 2)
    inverse = inverse.ravel()
    return table[inverse, 0], table[inverse, 1]


def best_sequence(env: gym.Env, max_leaves: int = MAX_LEAVES) -> tuple[np.ndarray, float]:
    """``(actions, value)``: the action sequence over the searched horizon with the highest sum of expected rewards
    from the env's current state (ties: the lowest actions, in order), and that sum."""
    if not searchable(env):
        raise ValueError("best_sequence needs relative actions on a channel whose level only the actions move")
    u = env.unwrapped
    p, dyn, qb = u.problem, u.dynamics, u.quality_backend
    n = p.n_actions
    left = int(u.max_episode_steps) - int(u.elapsed_steps)
    if left < 1:
        raise ValueError("the episode is over: reset the env")
    horizon = max(1, min(left, int(math.log(max_leaves) / math.log(n)) if n > 1 else left))
    split = np.array([int(u.prev_split)])
    level = np.array([float(u.level)])
    value = np.zeros(1)
    paths = np.zeros((1, 0), dtype=np.int64)
    actions = np.arange(n)
    for _ in range(horizon):
        m = len(split)
        a = np.tile(actions, m)
        prev = np.repeat(split, n)
        k = p.splits_of(a, prev)
        move = k - prev
        state = {"level": np.repeat(level, n)}
        dyn.on_action_batch(state, move)
        x = state["level"]
        eq, eppl = _expectations(qb, k, x)
        ppl0 = np.full(len(k), float(u.ppl0))
        r = np.asarray(p.score(outcome(k, move, x, eq, eppl, ppl0, p.airtime(k, x)))[1], dtype=np.float64)
        value = np.repeat(value, n) + r
        paths = np.concatenate([np.repeat(paths, n, axis=0), a[:, None]], axis=1)
        # paths that reach the same (split, level) have the same future: keep the best of each (ties: the first in
        # lexicographic order of actions, which the nodes are in), so the frontier stays small (cut-back moves, stays)
        order = np.lexsort((np.arange(len(k)), -value, x, k))
        ks, xs = k[order], x[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (ks[1:] != ks[:-1]) | (xs[1:] != xs[:-1])
        keep = np.sort(order[first])
        split, level, value, paths = k[keep], x[keep], value[keep], paths[keep]
    best = int(np.argmax(value))  # the first maximum: paths are in lexicographic order of their actions
    return paths[best], float(value[best])
