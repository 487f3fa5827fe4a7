"""The edge cell: what coordination is worth, how the splits move with the load, and how fast a cell steps.

    python benchmarks/cell.py [--ns 1 4 8 16] [--episodes 20] [--ppo-steps 100000] [--speed-only]
    python benchmarks/cell.py --live-only [--live-n 4] [--live-episodes 2] [--live-steps 10] [--live-tokens 256]

For each number of UEs N (default config otherwise: 10 MHz shared uplink, 50 ms deadline, 128-token requests with
probability 0.75 per UE per 1-s slot, an edge GPU and phones as `llmsplit_env.cell.config` states), every policy plays
the same ``--episodes`` episodes (seeds 100, 101, …) of ``LLMSplit-Cell-v0``:

* the coordinated planner (`agents.cell.CellPlannerAgent`, privileged, the reference: score 1), the selfish policy
  (`SelfishAgent`: each UE the single-UE oracle, alone), every UE local (k = L), every UE at k = 1, random (score 0);
* SB3 PPO on the centralised env (``--ppo-steps`` steps, 4 envs, default hyperparameters), at N = 8 unless ``--ppo-ns``.

First, the live model at a small N (``--live-n``, 0 skips it): SmolLM2-135M evaluated at every request that crosses
the link (``--live-tokens`` tokens, fp32, CPU), every policy above but PPO, run twice: with the model in the cell's
process, then with a quality server on a local Ray instance that batches each slot's requests (the returns must be
the same); the planner and the selfish policy plan on the shipped profile (a prior measured on other text).

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


def wall(rows: dict) -> float:
    return sum(r["wall_s"] for r in rows.values())


def live_table(args) -> dict:
    """The live model for a small N: every policy's team return from real evaluations, with the model in the cell's
    process and with a quality server that batches a slot's requests (same bits, so the same returns)."""
    import ray

    from llmsplit_env.quality.client import server_stats, start_quality_server, stop_quality_server

    n, seeds = args.live_n, list(range(100, 100 + args.live_episodes))
    llm = {"model": "smollm2-135m", "text": "wiki", "num_tokens": args.live_tokens, "window": args.live_tokens // 2,
           "dtype": "float32", "device": "cpu", "profile_match": "model"}  # fmt: skip
    config = {"backend": "llm", "llm": llm, "max_episode_steps": args.live_steps, "cell": {"n_ues": n}}
    out = {}
    for mode in ("in process", "quality server"):
        if mode == "quality server":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            start_quality_server("cell-bench", **{k: llm[k] for k in ("model", "text", "num_tokens", "window", "dtype",
                                                                       "device")}, num_cpus=2, max_batch=n)  # fmt: skip
            config = {**config, "llm": {**llm, "server": "cell-bench"}}
        env = gym.make("LLMSplit-Cell-v0", config=config)
        rows = {}
        for name, agent in policies(env).items():
            t0 = time.perf_counter()
            evals0 = env.unwrapped.sim.qb.evaluations
            rows[name] = evaluate_cell(agent, env, seeds) | {
                "wall_s": time.perf_counter() - t0,
                "evaluations": env.unwrapped.sim.qb.evaluations - evals0,
            }
        stats = server_stats("cell-bench") if mode == "quality server" else None
        if stats is not None:
            stop_quality_server("cell-bench")
            ray.shutdown()
        out[mode] = {"rows": rows, "server": stats}
    rows = out["in process"]["rows"]
    r_plan, r_rand = rows["planner"]["mean_return"], rows["random"]["mean_return"]
    print(f"\n### Live SmolLM2-135M, N = {n} UEs ({args.live_episodes} episodes x {args.live_steps} steps, "
          f"{args.live_tokens}-token windows, fp32 on the CPU; seeds {seeds[0]}..{seeds[-1]})\n")  # fmt: skip
    print(
        "| policy | team return | score | k = 1 | k = L | offload | real evaluations | wall s (in process) | "
        "wall s (server) | same returns |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|")
    L = env.unwrapped.num_layers
    for name, r in rows.items():
        served = out["quality server"]["rows"][name]
        one, _, local = shares(r, L)
        score = (r["mean_return"] - r_rand) / (r_plan - r_rand)
        print(f"| {name} | {r['mean_return']:.3f} | {score:.3f} | {one:.2f} | {local:.2f} | {r['offload_share']:.2f} | "
              f"{r['evaluations']} | {r['wall_s']:.1f} | {served['wall_s']:.1f} | "
              f"{'yes' if served['returns'] == r['returns'] else 'NO'} |")  # fmt: skip
    stats = out["quality server"]["server"]
    sizes = stats["batch_sizes"]
    print(
        f"\nserver: {stats['requests']} requests in {stats['forwards']} forwards (batch sizes "
        f"{dict(sorted(sizes.items()))}); wall time server / in process: "
        f"{wall(out['quality server']['rows']) / wall(rows):.2f}"
    )
    print(f"coordination gain (planner / selfish team return): {r_plan / rows['selfish']['mean_return']:.3f}")
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
    p.add_argument("--live-n", type=int, default=4, help="UEs of the live-model table (0: skip it)")
    p.add_argument("--live-episodes", type=int, default=2)
    p.add_argument("--live-steps", type=int, default=10, help="steps per live episode")
    p.add_argument("--live-tokens", type=int, default=256, help="evaluation tokens of the live model")
    p.add_argument("--live-only", action="store_true")
    args = p.parse_args(argv)
    out = {}
    if args.live_n and not args.speed_only:
        out["live"] = live_table(args)
    if args.live_only:
        return out
    if not args.speed_only:
        out["quality"] = quality_table(args)
    out["speed"] = speed(args)
    return out


if __name__ == "__main__":
    main()
