"""Evaluation on fixed seeds: `evaluate_agent`, the oracle-normalised score and the references it needs.

Oracle-normalised score: ``(R − R_random) / (R_oracle − R_random)`` with ``R_random`` (`RandomAgent`, seed 0) and
``R_oracle`` (`OracleAgent`) measured once on the same seeds as ``R`` (`OracleNormalizer`).

"The oracle" is `agents.baselines.OracleAgent` everywhere; "the best fixed split" is `best_fixed_split` everywhere (the
allowed split whose `FixedSplitAgent` has the highest mean return under `evaluate_agent` on given seeds: a privileged
reference, like the oracle). `agents.baselines.BestFixedSplitAgent` is its *learned estimate* from random real steps.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agents.baselines import FixedSplitAgent, OracleAgent, RandomAgent
from agents.common.env_util import EnvLike, env_layout, lifetime_quality_evals, make_env

__all__ = [
    "OracleNormalizer",
    "best_fixed_split",
    "evaluate_agent",
    "lifetime_quality_evals",
    "normalized_score",
]


def normalized_score(R: float | np.ndarray, R_random: float, R_oracle: float) -> float | np.ndarray:
    """Oracle-normalised score ``(R − R_random) / (R_oracle − R_random)``: 0 = random, 1 = oracle.

    Raises ``ValueError`` if the oracle does not beat random (the score would be undefined or flipped).
    """
    R_random, R_oracle = float(R_random), float(R_oracle)
    if not (np.isfinite(R_random) and np.isfinite(R_oracle)):
        raise ValueError(f"R_random and R_oracle must be finite, got {R_random!r}, {R_oracle!r}")
    if R_oracle <= R_random:
        raise ValueError(
            f"normalized_score needs R_oracle > R_random, got R_oracle={R_oracle!r} <= R_random={R_random!r}"
        )
    out = (np.asarray(R, dtype=np.float64) - R_random) / (R_oracle - R_random)
    return float(out) if out.ndim == 0 else out


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def evaluate_agent(
    agent_or_predict_fn: Any,
    env_id_or_factory: EnvLike,
    seeds: Sequence[int],
    env_kwargs: dict | None = None,
    deterministic: bool = True,
    trace: bool = False,
) -> dict[str, Any]:
    """Run one whole episode per seed (``env.reset(seed=s)``) and summarise.

    ``agent_or_predict_fn`` is anything with SB3's ``predict(obs, state, episode_start, deterministic)``
    (``action_masks`` is passed when its ``predict`` accepts it, as in MaskablePPO), or a callable ``obs -> action``.
    Privileged agents (``privileged = True``, e.g. `OracleAgent`) are re-bound with ``set_env(env)`` to the evaluation
    env, since they read its true state. ``env_id_or_factory`` and ``env_kwargs``: see `make_env`.

    :return: ``mean_return``, ``std_return``, ``returns`` (``[n]``), ``mean_length``, ``mean_ppl`` (over steps),
        ``split_counts`` (``{split: steps}``), ``mean_components`` (per-step means of ``info["rewards"]``),
        ``quality_evals`` (real evaluations the evaluation itself ran, resets included: live env only), ``seeds``;
        with ``trace=True`` also ``levels`` (the observed ``level`` at each decision) and ``step_splits``
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one episode seed")
    env = make_env(env_id_or_factory, env_kwargs)
    u = env.unwrapped
    if getattr(agent_or_predict_fn, "privileged", False):
        agent_or_predict_fn.set_env(env)
    predict = getattr(agent_or_predict_fn, "predict", None)
    if predict is None:
        if not callable(agent_or_predict_fn):
            raise ValueError(
                f"expected an agent with predict() or a callable, got {type(agent_or_predict_fn).__name__}"
            )
        fn = agent_or_predict_fn

        def predict(obs, state=None, episode_start=None, deterministic=True, **_):
            out = fn(obs)
            return (out[0], None) if isinstance(out, tuple) else (out, None)

    with_masks = hasattr(u, "action_masks") and _accepts(predict, "action_masks")
    level_dim = env_layout(env).index("level") if trace else -1
    returns, lengths = [], []
    ppl_sum, n_steps = 0.0, 0
    comp_sums: dict[str, float] = {}
    splits = list(getattr(u, "allowed_splits", []))
    split_counts: dict[int, int] = {int(k): 0 for k in splits}
    evals_start = lifetime_quality_evals(env)
    levels: list[float] = []
    step_splits: list[int] = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            state, episode_start = None, np.ones((1,), dtype=bool)
            done, ret, length = False, 0.0, 0
            while not done:
                kwargs = {"action_masks": u.action_masks()} if with_masks else {}
                action, state = predict(
                    obs, state=state, episode_start=episode_start, deterministic=deterministic, **kwargs
                )
                a = np.asarray(action).reshape(-1)
                if a.size != 1:
                    raise ValueError(f"the agent returned {a.size} actions for one observation")
                if trace:
                    levels.append(float(np.asarray(obs).reshape(-1)[level_dim]))
                obs, reward, terminated, truncated, info = env.step(int(a[0]))
                if trace:
                    step_splits.append(int(info["split"]))
                episode_start = np.zeros((1,), dtype=bool)
                ret += float(reward)
                length += 1
                done = terminated or truncated
                if "ppl" in info:
                    ppl_sum += float(info["ppl"])
                if "split" in info:
                    split_counts[int(info["split"])] = split_counts.get(int(info["split"]), 0) + 1
                for c, v in info.get("rewards", {}).items():
                    comp_sums[c] = comp_sums.get(c, 0.0) + float(v)
            returns.append(ret)
            lengths.append(length)
            n_steps += length
    finally:
        if isinstance(env_id_or_factory, str):  # we made it; factories' envs may be shared
            env.close()
    arr = np.asarray(returns, dtype=np.float64)
    extra = {"levels": np.asarray(levels), "step_splits": np.asarray(step_splits)} if trace else {}
    return extra | {
        "mean_return": float(arr.mean()),
        "std_return": float(arr.std()),
        "returns": arr,
        "mean_length": float(np.mean(lengths)),
        "mean_ppl": ppl_sum / n_steps if n_steps else float("nan"),
        "split_counts": dict(sorted(split_counts.items())),
        "mean_components": {c: v / n_steps for c, v in comp_sums.items()},
        "quality_evals": lifetime_quality_evals(env) - evals_start,
        "seeds": seeds,
    }


def best_fixed_split(
    env_id_or_factory: EnvLike, seeds: Sequence[int], env_kwargs: dict | None = None
) -> tuple[int, dict[int, float]]:
    """The best fixed split: the allowed split whose `FixedSplitAgent` has the highest mean return under
    `evaluate_agent` on ``seeds`` (ties: the smallest split), and every allowed split's mean return.

    A privileged reference, like the oracle: for profile envs it costs no real evaluations (the return of every split
    is measured on the env itself). Its learned estimate from random real steps is
    `agents.baselines.BestFixedSplitAgent`.
    """
    env = make_env(env_id_or_factory, env_kwargs)
    try:
        returns = {
            int(k): evaluate_agent(FixedSplitAgent(env, int(k)), env, seeds)["mean_return"]
            for k in env_layout(env).allowed_splits
        }
    finally:
        if isinstance(env_id_or_factory, str):
            env.close()
    best = max(returns, key=lambda k: (returns[k], -k))
    return best, returns


_REFERENCE_CACHE: dict[str, tuple[float, float]] = {}


class OracleNormalizer:
    """``R_random`` and ``R_oracle`` on fixed seeds (computed once, cached per env id, env kwargs and seeds), and the
    oracle-normalised evaluation of any agent on the same seeds.

    :param env: env id, factory or instance (an instance is reused for every evaluation)
    :param seeds: evaluation episode seeds
    :param env_kwargs: see `agents.common.env_util.make_env`
    """

    def __init__(self, env: EnvLike, seeds: Sequence[int], env_kwargs: dict | None = None) -> None:
        self.env_or_id = env
        self.env_kwargs = env_kwargs
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one episode seed")
        self._env = make_env(env, env_kwargs)
        self._key = (
            json.dumps([env, env_kwargs, self.seeds], sort_keys=True, default=str) if isinstance(env, str) else None
        )
        self._ref: tuple[float, float] | None = None

    @property
    def reference(self) -> tuple[float, float]:
        """``(R_random, R_oracle)``: mean returns of `RandomAgent` (seed 0) and `OracleAgent` on the seeds."""
        if self._ref is None:
            if self._key is not None and self._key in _REFERENCE_CACHE:
                self._ref = _REFERENCE_CACHE[self._key]
            else:
                r_rand = evaluate_agent(RandomAgent(self._env, seed=0), self._env, self.seeds)["mean_return"]
                r_orc = evaluate_agent(OracleAgent(self._env), self._env, self.seeds)["mean_return"]
                self._ref = (float(r_rand), float(r_orc))
                if self._key is not None:
                    _REFERENCE_CACHE[self._key] = self._ref
        return self._ref

    def evaluate(self, agent: Any, deterministic: bool = True) -> dict[str, Any]:
        """`evaluate_agent` on the seeds, plus ``normalized_score``, ``R_random`` and ``R_oracle``."""
        res = evaluate_agent(agent, self._env, self.seeds, deterministic=deterministic)
        r_rand, r_orc = self.reference
        res["normalized_score"] = normalized_score(res["mean_return"], r_rand, r_orc)
        res["R_random"], res["R_oracle"] = r_rand, r_orc
        return res

    __call__ = evaluate
