"""Env throughput: steps/s of `LLMSplit-v0` vs `CartPole-v1` through `gym.make`, and of the batched vector env.

    python benchmarks/env_throughput.py [--steps 200000] [--vector-steps 300] [--num-envs 1024] [--repeats 3]

Single envs are stepped through ``gym.make`` (with its wrappers) on pre-drawn random actions, resetting on episode
end; the vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``) steps ``num_envs`` sub-envs per
call with next-step autoreset. Each figure is the best of ``--repeats`` timed runs (the machine is shared), and all
are measured in one process, interleaved, so their ratios compare like with like.
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np

import llmsplit_env  # noqa: F401  (registers the ids)


def single_steps_per_s(env_id: str, steps: int, seed: int = 0) -> float:
    env = gym.make(env_id)
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, steps).tolist()
    step, reset = env.step, env.reset
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def vector_steps_per_s(env_id: str, num_envs: int, calls: int, seed: int = 0) -> float:
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
    envs.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, envs.single_action_space.n, (calls, num_envs))
    step = envs.step
    t0 = time.perf_counter()
    for a in actions:
        step(a)
    dt = time.perf_counter() - t0
    envs.close()
    return calls * num_envs / dt


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200_000, help="single-env steps per timed run")
    p.add_argument("--vector-steps", type=int, default=300, help="vector step() calls per timed run")
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    best = {"CartPole-v1": 0.0, "LLMSplit-v0": 0.0, "vector": 0.0}
    for r in range(args.repeats):
        best["CartPole-v1"] = max(best["CartPole-v1"], single_steps_per_s("CartPole-v1", args.steps, r))
        best["LLMSplit-v0"] = max(best["LLMSplit-v0"], single_steps_per_s("LLMSplit-v0", args.steps, r))
        best["vector"] = max(best["vector"], vector_steps_per_s("LLMSplit-v0", args.num_envs, args.vector_steps, r))
    single = best["LLMSplit-v0"]
    print(f"python {platform.python_version()}, gymnasium {gym.__version__}, numpy {np.__version__}")
    print(f"best of {args.repeats} runs; single envs: {args.steps} steps; vector: {args.vector_steps} calls\n")
    print(f"| {'env':<42} | {'steps/s':>12} | {'ratio':>24} |")
    print(f"|{'-' * 44}|{'-' * 14}|{'-' * 26}|")
    print(f"| {'CartPole-v1 (gym.make)':<42} | {best['CartPole-v1']:>12,.0f} | {'':>24} |")
    ratio = single / best["CartPole-v1"]
    print(f"| {'LLMSplit-v0 (gym.make)':<42} | {single:>12,.0f} | {f'{ratio:.2f}x CartPole-v1':>24} |")
    vratio = best["vector"] / single
    name = f"LLMSplit-v0 vector, {args.num_envs} envs (make_vec)"
    print(f"| {name:<42} | {best['vector']:>12,.0f} | {f'{vratio:.1f}x LLMSplit-v0':>24} |")
    # the floor (issue 3) and the goal (issue 7) of the project's throughput
    checks = (("LLMSplit-v0 / CartPole-v1", ratio, 0.5, 1.0), ("vector / single", vratio, 20, 40))
    for name, value, floor, goal in checks:
        verdict = "meets the goal" if value >= goal else ("above the floor" if value >= floor else "BELOW THE FLOOR")
        print(f"{name}: {value:.2f}x (floor {floor}x, goal {goal}x): {verdict}")
    return {**best, "single_ratio": ratio, "vector_ratio": vratio}


if __name__ == "__main__":
    main()
