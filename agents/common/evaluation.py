"""Evaluation on fixed seeds: `evaluate_agent`, the oracle-normalised score and the references it needs.

Oracle-normalised score: ``(R − R_random) / (R_oracle − R_random)`` with ``R_random`` (`RandomAgent`, seed 0) and
``R_oracle`` (`OracleAgent`) measured once on the same seeds as ``R`` (`OracleNormalizer`).

"The oracle" is `agents.baselines.OracleAgent` everywhere; "the best fixed split" is `best_fixed_split` everywhere (the
allowed split whose `FixedSplitAgent` has the highest mean return under `evaluate_agent` on given seeds: a privileged
reference, like the oracle). `agents.baselines.BestFixedSplitAgent` is its *learned estimate* from random real steps.

**The edge cell** (``LLMSplit-Cell-v0``, `is_cell_env`): the same functions dispatch on the env. An action is one
split per UE (``MultiDiscrete``), the return is the team reward's; the references are `agents.cell.CellRandomAgent`
(seed 0) and `agents.cell.CellPlannerAgent` (the coordinated planner: the cell's "oracle", since no per-UE oracle knows
what the others do), and the best fixed split is that of `agents.cell.CellFixedAgent` (every UE at one split).
Per-request figures (PPL, splits, components) count the requests served (UEs with a request), not the steps.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import FixedSplitAgent, OracleAgent, RandomAgent
from agents.common.env_util import EnvLike, env_layout, lifetime_quality_evals, make_env

__all__ = [
    "OracleNormalizer",
    "best_fixed_split",
    "evaluate_agent",
    "is_cell_env",
    "lifetime_quality_evals",
    "normalized_score",
]


def is_cell_env(env: gym.Env) -> bool:
    """Whether ``env`` (or the env it wraps) is the edge cell's centralised env (``LLMSplit-Cell-v0``): N UEs, one
    ``MultiDiscrete`` action of N splits, the team reward."""
    u = env.unwrapped
    return hasattr(u, "sim") and hasattr(u, "n_ues")


def reference_names(env: gym.Env) -> tuple[str, str]:
    """The registry names of the agents `OracleNormalizer` measures ``R_random`` and ``R_oracle`` with on ``env``."""
    return ("cell_random", "cell_planner") if is_cell_env(env) else ("random", "oracle")


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

    :return: ``mean_return``, ``std_return``, ``returns`` (``[n]``), ``mean_length``, ``mean_ppl`` (over steps; NaN
        when the env reports no perplexity, as the reward surrogate's), ``split_counts`` (``{split: steps}``),
        ``mean_components`` (per-step means of ``info["rewards"]``),
        ``quality_evals`` (real evaluations the evaluation itself ran, resets included: live env only), ``seeds``;
        with ``trace=True`` also ``levels`` (the observed ``level`` at each decision) and ``step_splits``.

        On the edge cell (`is_cell_env`) the agent returns one action per UE, the return is the team's, and
        ``mean_ppl``, ``split_counts``, ``mean_components`` and the trace are over requests (the UEs with a request in
        a step), plus ``requests``, ``offload_share`` (requests sent to the edge), ``deadline_miss_rate`` (per
        request), ``edge_utilisation`` (edge work over the steps' time), ``mean_latency_s`` (per request) and
        ``ue_returns`` (``[N]``: each UE's mean return per episode), as `evaluate_cell` reports them.
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
    if is_cell_env(env):
        try:
            return _evaluate_cell(env, predict, seeds, deterministic, trace, with_masks)
        finally:
            if isinstance(env_id_or_factory, str):
                env.close()
    level_dim = env_layout(env).index("level") if trace else -1
    returns, lengths = [], []
    ppl_sum, n_steps, n_ppl = 0.0, 0, 0
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
                    n_ppl += 1
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
        "mean_ppl": ppl_sum / n_ppl if n_ppl else float("nan"),
        "split_counts": dict(sorted(split_counts.items())),
        "mean_components": {c: v / n_steps for c, v in comp_sums.items()},
        "quality_evals": lifetime_quality_evals(env) - evals_start,
        "seeds": seeds,
    }


def _evaluate_cell(env: gym.Env, predict: Callable, seeds: list[int], deterministic: bool, trace: bool,
                   with_masks: bool) -> dict[str, Any]:  # fmt: skip
    """`evaluate_agent`'s episodes on the edge cell (see its doc)."""
    u = env.unwrapped
    n_ues, slot_s = int(u.n_ues), float(u.sim.slot_s)
    n_own = int(u.sim.n_own)
    # the observed level of each UE (the policy map's x): its own features come first, F + 1 per UE
    level_col = list(u.problem.describe()["observation_names"]).index("level")
    returns, lengths, ue_returns = [], [], []
    split_counts: dict[int, int] = {int(k): 0 for k in u.problem.allowed_splits}
    comp_sums: dict[str, float] = {}
    ppl_sum = latency_sum = work_s = 0.0
    requests = offloaded = misses = n_steps = 0
    levels: list[np.ndarray] = []
    step_splits: list[np.ndarray] = []
    evals_start = lifetime_quality_evals(env)
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        state, episode_start = None, np.ones((1,), dtype=bool)
        done, ret, length = False, 0.0, 0
        ue_ret = np.zeros(n_ues)
        while not done:
            kwargs = {"action_masks": u.action_masks()} if with_masks else {}
            action, state = predict(obs, state=state, episode_start=episode_start, deterministic=deterministic,
                                    **kwargs)  # fmt: skip
            a = np.asarray(action).reshape(-1)
            if a.size != n_ues:
                raise ValueError(f"the agent returned {a.size} actions for one observation of a cell of {n_ues} UEs "
                                 f"(one split per UE)")  # fmt: skip
            level_now = np.asarray(obs, dtype=np.float64)[: n_ues * n_own].reshape(n_ues, n_own)[:, level_col]
            obs, reward, terminated, truncated, info = env.step(a.astype(np.int64))
            episode_start = np.zeros((1,), dtype=bool)
            ret += float(reward)
            length += 1
            done = terminated or truncated
            act = np.asarray(info["active"], dtype=bool)
            ue_ret += np.asarray(info["reward"], dtype=np.float64)
            served = info["split"][act]
            for k, c in zip(*np.unique(served, return_counts=True), strict=True):
                split_counts[int(k)] = split_counts.get(int(k), 0) + int(c)
            requests += int(act.sum())
            ppl_sum += float(np.sum(info["ppl"][act]))
            for c, v in info["rewards"].items():
                comp_sums[c] = comp_sums.get(c, 0.0) + float(np.sum(np.asarray(v)[act]))
            offloaded += int(np.sum(info["offloaded"]))
            misses += int(np.sum(info["deadline_miss"]))
            latency_sum += float(np.sum(info["latency_s"][act]))
            work_s += float(info["edge_work_s"])
            if trace:
                levels.append(level_now[act])
                step_splits.append(served)
        returns.append(ret)
        lengths.append(length)
        ue_returns.append(ue_ret)
        n_steps += length
    arr = np.asarray(returns, dtype=np.float64)
    n_req = max(requests, 1)
    extra = ({"levels": np.concatenate(levels) if levels else np.zeros(0),
              "step_splits": np.concatenate(step_splits) if step_splits else np.zeros(0, dtype=np.int64)}
             if trace else {})  # fmt: skip
    return extra | {
        "mean_return": float(arr.mean()),
        "std_return": float(arr.std()),
        "returns": arr,
        "mean_length": float(np.mean(lengths)),
        "mean_ppl": ppl_sum / requests if requests else float("nan"),
        "split_counts": dict(sorted(split_counts.items())),
        "mean_components": {c: v / n_req for c, v in comp_sums.items()},
        "quality_evals": lifetime_quality_evals(env) - evals_start,
        "seeds": seeds,
        "requests": requests,
        "offload_share": offloaded / n_req,
        "deadline_miss_rate": misses / n_req,
        "edge_utilisation": work_s / (n_steps * slot_s) if n_steps else float("nan"),
        "mean_latency_s": latency_sum / n_req,
        "ue_returns": np.mean(ue_returns, axis=0),
    }


def evaluate_cell(agent: Any, env: gym.Env, seeds: Sequence[int]) -> dict[str, Any]:
    """Whole episodes of the centralised cell env, one per seed (`evaluate_agent`'s cell episodes), in the cell's terms.

    :return: ``mean_return``, ``returns``, ``split_share`` (share of requests at each split used), ``offload_share``
        (requests sent to the edge), ``deadline_miss_rate`` (per request), ``edge_utilisation`` (edge work over the
        slots' time), ``mean_latency_s`` (per request), ``steps``
    """
    res = evaluate_agent(agent, env, seeds)
    n = max(res["requests"], 1)
    return {
        "mean_return": res["mean_return"],
        "returns": [float(r) for r in res["returns"]],
        "split_share": {k: c / n for k, c in res["split_counts"].items() if c},
        "offload_share": res["offload_share"],
        "deadline_miss_rate": res["deadline_miss_rate"],
        "edge_utilisation": res["edge_utilisation"],
        "mean_latency_s": res["mean_latency_s"],
        "steps": round(res["mean_length"] * len(res["returns"])),
    }


def best_fixed_split(
    env_id_or_factory: EnvLike, seeds: Sequence[int], env_kwargs: dict | None = None
) -> tuple[int, dict[int, float]]:
    """The best fixed split: the allowed split whose `FixedSplitAgent` has the highest mean return under
    `evaluate_agent` on ``seeds`` (ties: the smallest split), and every allowed split's mean return. On the edge
    cell: `agents.cell.CellFixedAgent` (every UE at that split), on the team return.

    A privileged reference, like the oracle: for profile envs it costs no real evaluations (the return of every split
    is measured on the env itself). Its learned estimate from random real steps is
    `agents.baselines.BestFixedSplitAgent`.
    """
    env = make_env(env_id_or_factory, env_kwargs)
    if is_cell_env(env):  # every UE at the same split
        from agents.cell import CellFixedAgent

        fixed, allowed = CellFixedAgent, env.unwrapped.problem.allowed_splits
    else:
        fixed, allowed = FixedSplitAgent, env_layout(env).allowed_splits
    try:
        returns = {int(k): evaluate_agent(fixed(env, int(k)), env, seeds)["mean_return"] for k in allowed}
    finally:
        if isinstance(env_id_or_factory, str):
            env.close()
    best = max(returns, key=lambda k: (returns[k], -k))
    return best, returns


_REFERENCE_CACHE: dict[str, tuple[float, float]] = {}


class OracleNormalizer:
    """``R_random`` and ``R_oracle`` on fixed seeds (computed once, cached per env id, env kwargs and seeds), and the
    oracle-normalised evaluation of any agent on the same seeds.

    On the edge cell the references are `agents.cell.CellRandomAgent` (seed 0) and `agents.cell.CellPlannerAgent`
    (``reference_names``: their registry names, for the front doors' tables).

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
        self.reference_names = reference_names(self._env)

    @property
    def reference(self) -> tuple[float, float]:
        """``(R_random, R_oracle)``: mean returns of `RandomAgent` (seed 0) and `OracleAgent` on the seeds (on the
        edge cell: `CellRandomAgent` (seed 0) and `CellPlannerAgent`)."""
        if self._ref is None:
            if self._key is not None and self._key in _REFERENCE_CACHE:
                self._ref = _REFERENCE_CACHE[self._key]
            else:
                if is_cell_env(self._env):
                    from agents.cell import CellPlannerAgent, CellRandomAgent

                    rand, oracle = CellRandomAgent(self._env, seed=0), CellPlannerAgent(self._env)
                else:
                    rand, oracle = RandomAgent(self._env, seed=0), OracleAgent(self._env)
                r_rand = evaluate_agent(rand, self._env, self.seeds)["mean_return"]
                r_orc = evaluate_agent(oracle, self._env, self.seeds)["mean_return"]
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
