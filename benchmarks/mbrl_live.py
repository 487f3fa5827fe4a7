"""MBRL on the live model: what ≤ 100 real evaluations cost in seconds, not only in counts.

    python benchmarks/mbrl_live.py [--steps 100] [--seed 0] [--eval-episodes 10] [--llm KEY:VALUE ...]

Trains `agents.mbrl.MBRLAgent` (default settings) on ``LLMSplit-LLM-v0`` (SmolLM2-135M evaluated at every step
that sends something: 2,048 tokens of the offline wiki text in windows of 512, cached prefixes) for ``--steps`` real
env steps, timing the whole ``learn`` and counting the real evaluations with the env's own counter. The trained agent
is then scored with `benchmarks/sample_efficiency.py`'s protocol on ``LLMSplit-v0``, whose profile is the same
measurement (model, text, tokens, window) as the live env's: oracle-normalised (random 0, `OracleAgent` 1) on the
held-out episodes 3,000,000…, so scoring spends no further real evaluation. The table adds what the same count of
evaluations would take for PPO's measured 50,000–75,000 (`benchmarks/RESULTS.md`, sample efficiency) at the cost of
one evaluation alone, timed in the same run (5 evaluations after training).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import llmsplit_env  # noqa: E402, F401  (registers the ids)
from agents.common.evaluation import OracleNormalizer  # noqa: E402
from agents.mbrl.agent import MBRLAgent  # noqa: E402
from agents.zoo.args import parse_key_values  # noqa: E402

EVAL_SEED0 = 3_000_000  # benchmarks/sample_efficiency.py's held-out episodes
PPO_EVALS = (50_000, 75_000)  # real evaluations PPO needed to reach 0.95, 3 of 5 seeds (RESULTS.md, sample efficiency)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="real env steps of learn() (evaluations: at most that)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--llm", nargs="*", default=[], help="llm config keys of the live env, KEY:VALUE (YAML values)")
    args = p.parse_args(argv)
    try:
        llm = parse_key_values(args.llm, "--llm")
    except ValueError as e:
        p.error(str(e))
    env = gym.make("LLMSplit-LLM-v0", llm=llm) if llm else gym.make("LLMSplit-LLM-v0")
    qb = env.unwrapped.quality_backend
    agent = MBRLAgent(env, seed=args.seed)
    t0 = time.perf_counter()
    agent.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - t0
    evals = qb.evaluations
    scorer = OracleNormalizer(gym.make("LLMSplit-v0"), [EVAL_SEED0 + i for i in range(args.eval_episodes)])
    res = scorer.evaluate(agent)
    per_step = wall / args.steps
    # the cost of one real evaluation alone (what PPO's steps would pay), measured here: 5 at split 1 and 10 dB
    rng = np.random.default_rng(0)
    t1 = time.perf_counter()
    for _ in range(5):
        qb.sample(1, 10.0, 0.0, rng)
    per_eval = (time.perf_counter() - t1) / 5
    print(f"\n### MBRL on the live model ({platform.processor() or platform.machine()}; {qb.describe()['dtype']} on "
          f"{qb.describe()['device']}; seed {args.seed})\n")  # fmt: skip
    print(
        "| real env steps | real evaluations | learn wall s (evaluations and model fits) | s per step | s per "
        f"evaluation alone | oracle-normalised score (LLMSplit-v0, {args.eval_episodes} episodes) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.steps} | {evals} | {wall:.0f} | {per_step:.2f} | {per_eval:.2f} | {res['normalized_score']:.3f} |")
    lo, hi = (n * per_eval / 3600 for n in PPO_EVALS)
    print(f"\nPPO's {PPO_EVALS[0]:,}-{PPO_EVALS[1]:,} real evaluations at {per_eval:.2f} s each: {lo:.1f}-{hi:.1f} h")
    return {"steps": args.steps, "evaluations": evals, "wall_s": wall, "per_eval_s": per_eval,
            "score": res["normalized_score"]}  # fmt: skip


if __name__ == "__main__":
    main()
