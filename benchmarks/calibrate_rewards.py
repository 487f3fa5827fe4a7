"""Calibration of the default reward weights of `LLMSplit-v0` against the oracle.

    python benchmarks/calibrate_rewards.py [--episodes 200] [--weights '{"privacy": 0.3}'] [--scan] [--profile P]

Runs, with `agents.common.evaluation.evaluate_agent` on the same seeds (common random numbers), the oracle
(`agents.baselines.OracleAgent`: true expected rewards, dynamic programming over the true future channel when
switching costs), every fixed split (`best_fixed_split`) and the random policy (`RandomAgent`, seed
0), and prints:

* the oracle's mean return and its split histogram (how many distinct splits it uses);
* the best fixed split's mean return and its share of the oracle's, the next fixed splits, and the random policy's;
* the two acceptance criteria: the oracle takes >= 4 distinct splits; the best fixed split earns <= 90 % of it;
* the histogram of the default channel's true mean SNR over ``--snr-episodes`` episodes (2.5 dB bins; the channel
  does not depend on the actions).

``--scan`` also maps, on expected rewards over a grid of weights, the lowest ratio of the best fixed split's return to
a myopic argmax policy's (argmax of the expected rewards each step, on a precomputed quality table: a fast screen, not
the oracle) reachable for each number of distinct splits that policy uses (each in at least 1 % of steps), which shows
what the shipped profile allows.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math

import numpy as np

from agents.baselines import OracleAgent, RandomAgent
from agents.common.env_util import make_env
from agents.common.evaluation import best_fixed_split, evaluate_agent

ENV_ID = "LLMSplit-v0"


def env_config(profile: str | None = None, weights: dict | None = None) -> dict:
    """The env config of a calibration run: ``profile`` (a shipped name or a path; None: the default's, its scheme
    taken from it) and reward ``weights`` over the defaults."""
    cfg: dict = {"reward": {"weights": weights or {}}}
    if profile is not None:
        cfg["profile"] = profile
    return cfg


def run_policies(weights: dict | None, episodes: int, seed0: int = 0, profile: str | None = None) -> dict:
    """Mean returns of the oracle, every fixed split and the random policy on seeds ``seed0 .. seed0+episodes-1``."""
    env = make_env(ENV_ID, env_config(profile, weights))
    seeds = list(range(seed0, seed0 + episodes))
    oracle = evaluate_agent(OracleAgent(env), env, seeds, trace=True)
    best, fixed = best_fixed_split(env, seeds)
    rand = evaluate_agent(RandomAgent(env, seed=0), env, seeds)
    return {
        "env": env.unwrapped,
        "oracle": oracle["mean_return"],
        "oracle_splits": oracle["step_splits"].tolist(),
        "best_split": best,
        "fixed": fixed,
        "random": rand["mean_return"],
    }


def channel_levels(episodes: int, profile: str | None = None) -> np.ndarray:
    """True mean SNR of every state of ``episodes`` default episodes (seeds 0..episodes-1)."""
    env = make_env(ENV_ID, env_config(profile)).unwrapped
    out = []
    for ep in range(episodes):
        env.reset(seed=ep)
        for _ in range(env.max_episode_steps):
            out.append(env.level)
            env.step(0)
    return np.asarray(out)


def snr_histogram(levels: np.ndarray, lo: float = -10.0, hi: float = 45.0, width: float = 2.5) -> str:
    edges = np.arange(lo, hi + 1e-9, width)
    counts, _ = np.histogram(np.clip(levels, lo, hi - 1e-9), bins=edges)
    total = len(levels)
    lines = ["| mean SNR (dB) | share | |", "|---|---:|---|"]
    for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True):
        left = f"< {b:g}" if a == lo else (f">= {a:g}" if b >= hi else f"[{a:g}, {b:g})")
        share = c / total
        lines.append(f"| {left} | {100 * share:5.1f} % | {'#' * round(200 * share)} |")
    p = np.percentile(levels, [5, 25, 50, 75, 95])
    lines.append(
        f"\n{total} states; percentiles 5/25/50/75/95: {', '.join(f'{v:.1f}' for v in p)} dB; "
        f"min {levels.min():.1f}, max {levels.max():.1f} dB"
    )
    return "\n".join(lines)


def scan(episodes: int, profile: str | None = None) -> None:
    """Best fixed split / myopic argmax policy per number of distinct splits it uses, over a grid of weights."""
    env = make_env(ENV_ID, env_config(profile)).unwrapped
    qb = env.quality_backend
    L = env.num_layers
    ks = np.arange(1, L + 1)
    # True levels and initial splits of `episodes` episodes (the channel does not depend on the actions).
    lv, k0 = np.zeros((episodes, env.max_episode_steps)), np.zeros(episodes, dtype=int)
    for ep in range(episodes):
        env.reset(seed=ep)
        k0[ep] = env.prev_split
        for t in range(env.max_episode_steps):
            lv[ep, t] = env.level
            env.step(env.prev_split - env.k_min)
    grid = np.arange(math.floor(lv.min()) - 1, math.ceil(lv.max()) + 1, 0.05)
    eq = np.array([[qb.expectations(int(k), float(x))[0] for k in ks] for x in grid])
    idx = np.clip(np.round((lv - grid[0]) / 0.05).astype(int), 0, len(grid) - 1)
    # the problem's own per-split tables (k = 1..L); the weights vary over the grid, so they are combined here
    ue, privacy = env.problem.ue_compute.array[1:], env.problem.privacy.array[1:]
    best: dict[int, tuple] = {}
    vals = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0]
    for wc, wp, ws in itertools.product(vals[1:], vals, [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]):
        base = eq[idx] + wc * ue + wp * privacy  # [E, T, L], quality weight 1
        prev = k0.copy()
        ret = np.zeros(episodes)
        used = collections.Counter()
        for t in range(lv.shape[1]):
            r = base[:, t, :] - ws * np.abs(ks[None, :] - prev[:, None]) / L
            a = r.argmax(1)
            ret += r[np.arange(episodes), a]
            prev = a + 1
            used.update(prev.tolist())
        fixed = (base.sum(1) - ws * np.abs(ks[None, :] - k0[:, None]) / L).mean(0)
        ratio = fixed.max() / ret.mean()
        n_used = sum(1 for c in used.values() if c >= 0.01 * lv.size)
        if n_used not in best or ratio < best[n_used][0]:
            best[n_used] = (ratio, wc, wp, ws, dict(sorted(used.items())))
    # Not the oracle (`OracleAgent`): a myopic argmax of expected rewards, so the scan stays a fast screen.
    print("\n## Scan: best fixed split / myopic argmax policy (expected rewards, quality weight 1), per number of "
          "distinct splits the myopic policy uses")  # fmt: skip
    print("| distinct splits (>= 1 % of steps) | lowest best-fixed/myopic | ue_compute | privacy | switching |")
    print("|---|---:|---:|---:|---:|")
    for n_used in sorted(best):
        ratio, wc, wp, ws, _ = best[n_used]
        print(f"| {n_used} | {ratio:.3f} | {wc} | {wp} | {ws} |")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--weights", type=json.loads, default=None, help="JSON dict of weights overriding the defaults")
    p.add_argument("--snr-episodes", type=int, default=2000, help="episodes for the SNR histogram")
    p.add_argument("--scan", action="store_true", help="also scan a grid of weights (expected rewards)")
    p.add_argument(
        "--profile", help="quality profile, a shipped name or a path (default: the env's; its scheme is used)"
    )
    args = p.parse_args(argv)

    res = run_policies(args.weights, args.episodes, profile=args.profile)
    env = res["env"]
    weights = env.reward_weights
    print(f"## Reward calibration on {ENV_ID}" + (f" with profile {args.profile}" if args.profile else ""))
    print(f"weights: {json.dumps({k: v for k, v in weights.items() if v})}")
    print(f"{args.episodes} episodes x {env.max_episode_steps} steps, seeds 0..{args.episodes - 1}\n")
    oracle, fixed, k_best = res["oracle"], res["fixed"], res["best_split"]
    hist = collections.Counter(res["oracle_splits"])
    total = sum(hist.values())
    print("| policy | mean return | share of oracle |")
    print("|---|---:|---:|")
    print(f"| oracle (OracleAgent) | {oracle:.2f} | 100.0 % |")
    print(f"| best fixed split (k = {k_best}) | {fixed[k_best]:.2f} | {100 * fixed[k_best] / oracle:.1f} % |")
    for k in sorted(set(fixed) - {k_best}, key=lambda k: -fixed[k])[:3]:
        print(f"| fixed split k = {k} | {fixed[k]:.2f} | {100 * fixed[k] / oracle:.1f} % |")
    print(f"| random (RandomAgent) | {res['random']:.2f} | {100 * res['random'] / oracle:.1f} % |")
    print("\noracle split histogram:")
    print("| split k | share of steps |")
    print("|---:|---:|")
    for k in sorted(hist):
        print(f"| {k} | {100 * hist[k] / total:.1f} % ({hist[k]}) |")
    n_distinct = len(hist)
    n_common = sum(1 for c in hist.values() if c >= 0.01 * total)
    share = fixed[k_best] / oracle
    print(f"\ndistinct oracle splits: {n_distinct} ({n_common} used in >= 1 % of steps)")
    print(f"criterion 1, oracle takes >= 4 distinct splits: {'PASS' if n_distinct >= 4 else 'FAIL'} ({n_distinct})")
    print(f"criterion 2, best fixed <= 90 % of oracle: {'PASS' if share <= 0.9 else 'FAIL'} ({100 * share:.1f} %)")
    print(f"\n## Channel SNR histogram (true mean SNR of every state, {args.snr_episodes} episodes, seeds 0..)")
    print(snr_histogram(channel_levels(args.snr_episodes, args.profile)))
    if args.scan:
        scan(min(args.episodes, 300), args.profile)
    return {"oracle": oracle, "best_fixed": float(fixed[k_best]), "share": share, "distinct": n_distinct}


if __name__ == "__main__":
    main()
