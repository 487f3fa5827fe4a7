"""RLlib PPO with one policy shared by every UE on the edge cell, against the coordinated planner and selfish UEs.

    nice -n 19 python benchmarks/cell_rllib.py [--steps 100000] [--episodes 20] [--seed 0] [-params key=value ...]

Trains `agents.rllib_ppo.RLlibPPOAgent` on ``LLMSplit-Cell-v0`` (default config, N = 8 UEs) as RLlib multi-agent
(`llmsplit_env.cell.rllib`: agents ``ue_0 … ue_7``, one shared module, team reward) with the hyperparameters of
``agents/hyperparams/rllib_ppo.yml`` (``-params`` overrides them), on a local Ray instance. Then every policy plays
the same ``--episodes`` episodes (seeds 100, 101, …) of the centralised env through
`agents.common.evaluation.evaluate_cell`; the trained agent acts through ``predict`` on the centralised observation
(the shared module on each UE's view).

It prints the learning curve (team return on those seeds every ``--curve`` steps) and a table: policy, team return,
ratio to the planner's, offload share, deadline-miss rate, train steps (cell steps; N agent steps each) and wall
seconds (training; for the baselines, evaluation).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym
import yaml

import llmsplit_env  # noqa: F401  (registers the ids)
from agents.cell import CellFixedAgent, CellPlannerAgent, SelfishAgent
from agents.common.evaluation import evaluate_cell
from agents.common.hyperparameters import load_hyperparams

ENV_ID = "LLMSplit-Cell-v0"


def parse_params(items: list[str]) -> dict:
    """``key=value`` pairs, each value read as YAML (``lr=1e-3``, ``fcnet_hiddens=[128,128]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"-params takes key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="training budget in cell steps (default: the yml's)")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes (seeds 100, 101, …)")
    p.add_argument("--seed", type=int, default=0, help="RLlib's seed")
    p.add_argument("--curve", type=int, default=None, help="evaluate every this many steps (default: budget / 5)")
    p.add_argument("--save", default=None, help="save the trained agent here (a .zip)")
    p.add_argument("-params", nargs="*", default=[], help="hyperparameter overrides, key=value")
    args = p.parse_args(argv)

    import ray

    from agents.rllib_ppo import RLlibPPOAgent

    hp = load_hyperparams("rllib_ppo", ENV_ID, parse_params(args.params))
    steps = int(args.steps if args.steps is not None else hp.pop("n_timesteps"))
    hp.pop("n_timesteps", None)
    seeds = list(range(100, 100 + args.episodes))
    env = gym.make(ENV_ID)

    rows: dict[str, dict] = {}
    for name, agent in (("planner (privileged)", CellPlannerAgent(env)), ("selfish", SelfishAgent(env)),
                        ("all local (k = L)", CellFixedAgent(env, env.unwrapped.num_layers))):  # fmt: skip
        t0 = time.perf_counter()
        rows[name] = evaluate_cell(agent, env, seeds) | {"train_steps": None, "wall_s": time.perf_counter() - t0}
    planner = rows["planner (privileged)"]["mean_return"]

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    curve: list[tuple[int, float, float]] = []
    t_train = time.perf_counter()
    paused = 0.0  # evaluation time inside learn(), not counted as training

    def score(agent: RLlibPPOAgent) -> dict:
        nonlocal paused
        t0 = time.perf_counter()
        r = evaluate_cell(agent, env, seeds)["mean_return"]
        curve.append((agent.num_timesteps, time.perf_counter() - t_train - paused, r))
        paused += time.perf_counter() - t0
        return {"team_return": r}

    agent = RLlibPPOAgent(env, env_id=ENV_ID, seed=args.seed, **hp)
    agent.learn(steps, eval_fn=score, eval_freq=args.curve or max(steps // 5, 1))
    train_s = time.perf_counter() - t_train - paused
    ray.shutdown()
    if args.save:
        agent.save(args.save)
    rows["RLlib PPO, shared policy"] = evaluate_cell(agent, env, seeds) | {"train_steps": agent.num_timesteps,
                                                                          "wall_s": train_s}  # fmt: skip

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\n### Edge cell, RLlib PPO with a shared policy ({ENV_ID}, N = {env.unwrapped.n_ues}, seeds "
          f"{seeds[0]}..{seeds[-1]}; {machine})\n")  # fmt: skip
    print("hyperparameters:", {k: hp[k] for k in sorted(hp)})
    print("\nlearning curve (cell steps, training wall s, team return, ratio to planner):")
    for n, s, r in curve:
        print(f"  {n:>8,} {s:7.0f} {r:8.2f} {r / planner:6.3f}")
    print("\n| policy | team return | ratio to planner | offload share | deadline-miss rate | train steps | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        trained = f"{r['train_steps']:,}" if r["train_steps"] is not None else "-"
        print(f"| {name} | {r['mean_return']:.2f} | {r['mean_return'] / planner:.3f} | {r['offload_share']:.3f} | "
              f"{r['deadline_miss_rate']:.3f} | {trained} | {r['wall_s']:.0f} |")  # fmt: skip
    return {"rows": rows, "curve": curve, "hyperparams": hp, "steps": steps}


if __name__ == "__main__":
    main()
