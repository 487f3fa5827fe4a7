"""The edge cell: what coordination is worth, how the splits move with the load, and how fast a cell steps.

    python benchmarks/cell.py [--ns 1 4 8 16] [--episodes 20] [--ppo-steps 100000] [--speed-only]

For each number of UEs N (default config otherwise: 10 MHz shared uplink, 50 ms deadline, 128-token requests with
probability 0.75 per UE per 1-s slot, an edge GPU and phones as `llmsplit_env.cell.config` states), every policy plays
the same ``--episodes`` episodes (seeds 100, 101, …) of ``LLMSplit-Cell-v0``:

* the coordinated planner (`agents.cell.CellPlannerAgent`, privileged, the reference: score 1), the selfish policy
  (`SelfishAgent`: each UE the single-UE oracle, alone), every UE local (k = L), every UE at k = 1, random (score 0);
* SB3 PPO on the centralised env (``--ppo-steps`` steps, 4 envs, default hyperparameters), at N = 8 unless ``--ppo-ns``.

It prints, per N: team return and oracle-normalised score of each policy, the coordination gain (planner / selfish),
the share of requests at k = 1, at interior splits and at k = L, the offload share, the deadline-miss rate and the
edge utilisation. Then the speed: steps per second of `LLMSplit-v0`, of one cell (``gym.make``) and of a vector of 64
cells (``gym.make_vec``), at N = 8, best of 3 interleaved runs, with their ratios.
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np

import llmsplit_env  # noqa: F401  (registers the ids)
from agents.cell import (
    CellFixedAgent,
    CellPlannerAgent,
    CellRandomAgent,
    SelfishAgent,
)
from agents.common.evaluation import evaluate_cell


def policies(env: gym.Env) -> dict:
    L = env.unwrapped.num_layers
    return {
        "planner": CellPlannerAgent(env),
        "selfish": SelfishAgent(env),
        "all local (k = L)": CellFixedAgent(env, L),
        "all k = 1": CellFixedAgent(env, 1),
        "random": CellRandomAgent(env, seed=0),
    }


def train_ppo(n_ues: int, steps: int, seed: int = 0):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env("LLMSplit-Cell-v0", n_envs=4, seed=seed, env_kwargs={"cell": {"n_ues": n_ues}})
    model = PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model, time.perf_counter() - t0


def shares(res: dict, L: int) -> tuple[float, float, float]:
    s = res["split_share"]
    return s.get(1, 0.0), sum(v for k, v in s.items() if 1 < k < L), s.get(L, 0.0)


def quality_table(args) -> dict:
    seeds = list(range(100, 100 + args.episodes))
    out = {}
    for n in args.ns:
        env = gym.make("LLMSplit-Cell-v0", cell={"n_ues": n})
        L = env.unwrapped.num_layers
        rows = {}
        for name, agent in policies(env).items():
            t0 = time.perf_counter()
            rows[name] = evaluate_cell(agent, env, seeds) | {"wall_s": time.perf_counter() - t0}
        if args.ppo_steps and n in args.ppo_ns:
            model, train_s = train_ppo(n, args.ppo_steps)
            rows[f"SB3 PPO ({args.ppo_steps:,} steps)"] = evaluate_cell(model, env, seeds) | {"wall_s": train_s}
        r_plan, r_rand = rows["planner"]["mean_return"], rows["random"]["mean_return"]
        print(f"\n### N = {n} UEs ({args.episodes} episodes x 50 steps, seeds {seeds[0]}..{seeds[-1]})\n")
        print("| policy | team return | score | k = 1 | interior | k = L | offload | deadline miss | edge util. |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in rows.items():
            one, mid, local = shares(r, L)
            score = (r["mean_return"] - r_rand) / (r_plan - r_rand)
            cell_figures = f"{r['offload_share']:.2f} | {r['deadline_miss_rate']:.3f} | {r['edge_utilisation']:.4f}"
            print(f"| {name} | {r['mean_return']:.2f} | {score:.3f} | {one:.2f} | {mid:.2f} | {local:.2f} | "
                  f"{cell_figures} |")  # fmt: skip
        gain = r_plan / rows["selfish"]["mean_return"]
        print(f"\ncoordination gain (planner / selfish team return): {gain:.3f}")
        out[n] = {"rows": rows, "gain": gain}
    return out


def steps_per_s(make, steps: int, actions) -> float:
    env = make()
    env.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(steps):
        out = env.step(actions[i % len(actions)])
        if np.all(out[3]) or np.all(out[2]):
            env.reset()
    return steps / (time.perf_counter() - t0)


def speed(args) -> dict:
    rng = np.random.default_rng(0)
    cells = 64
    cases = {
        "LLMSplit-v0 (gym.make)": (lambda: gym.make("LLMSplit-v0"), 50_000, rng.integers(30, size=1000).tolist(), 1),
        "one cell, N = 8 (gym.make)": (
            lambda: gym.make("LLMSplit-Cell-v0"), 5_000, list(rng.integers(30, size=(100, 8))), 1
        ),
        f"{cells} cells, N = 8 (gym.make_vec)": (
            lambda: gym.make_vec("LLMSplit-Cell-v0", num_envs=cells, vectorization_mode="vector_entry_point"),
            300,
            list(rng.integers(30, size=(20, cells, 8))),
            cells,
        ),
    }  # fmt: skip
    best = dict.fromkeys(cases, 0.0)
    for _ in range(3):
        for name, (make, steps, actions, per_call) in cases.items():
            best[name] = max(best[name], per_call * steps_per_s(make, steps, actions))
    base = best["LLMSplit-v0 (gym.make)"]
    print(f"\n### Speed (best of 3 interleaved runs; {platform.processor() or platform.machine()})\n")
    print("| what | steps/s (cell steps for cells) | ratio to LLMSplit-v0 |")
    print("|---|---:|---:|")
    for name, v in best.items():
        print(f"| {name} | {v:,.0f} | {v / base:.3f} |")
    return best


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="+", default=[1, 4, 8, 16], help="numbers of UEs")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--ppo-steps", type=int, default=100_000, help="SB3 PPO training steps (0: skip)")
    p.add_argument("--ppo-ns", type=int, nargs="*", default=[8], help="the N at which PPO is trained")
    p.add_argument("--speed-only", action="store_true")
    args = p.parse_args(argv)
    out = {}
    if not args.speed_only:
        out["quality"] = quality_table(args)
    out["speed"] = speed(args)
    return out


if __name__ == "__main__":
    main()
