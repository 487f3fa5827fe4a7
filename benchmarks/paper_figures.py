"""The paper's figures on the authors' surrogate env and on the shipped SmolLM2 erasure profile.

    python benchmarks/paper_figures.py --surrogate path/to/reward_predictor.pth [--out paper_figures]
        [--steps 240000] [--seeds 0 1 2] [--algos ppo a2c dqn] [--envs surrogate profile]
        [--eval-every 12000] [--eval-episodes 200]

Trains Stable-Baselines3 PPO, A2C and DQN with the authors' settings (`agents/hyperparams/*.yml`, section
``LLMSplit-Paper-v0``: PPO ``n_steps`` 400, ``batch_size`` 100, 240,000 steps, SB3 defaults otherwise) on each env,
one run per seed:

* ``surrogate``: ``gym.make("LLMSplit-Paper-v0", surrogate=PATH)``, the authors' surrogate env on their released MLP
  (the file is not shipped; see `llmsplit_env.quality.surrogate`);
* ``profile``: the plain ``LLMSplit-Paper-v0`` (SmolLM2-135M's measured erasure profile, the paper's reward with
  PPL₀, absolute splits).

Every ``--eval-every`` steps (and at the end) each run's deterministic policy is scored on ``--eval-episodes``
held-out episodes (the same seeds for every run, algo and reference). References on the same episodes: the oracle
(`agents.baselines.OracleAgent`: the best sequence of moves by exhaustive search on the exact expected rewards, on the
surrogate env's relative moves; the argmax of them on the profile env's absolute splits), the random
policy, and the never-moving policy (surrogate env: action 0) or the best fixed split (profile env).

Writes to ``--out``: ``learning_curves.png`` (mean return against training steps, mean ± std over seeds, with the
references), ``split_vs_rho.png`` (the split each trained policy and the oracle choose at an episode's last step,
against the true ρ of that step, binned; every split is reachable by then), ``results.md`` (the table of final
returns) and ``results.json`` (every curve point and trace); each training run is also kept in ``runs/`` as it
finishes, so an interrupted command resumes where it stopped (a run cached with other settings is refused).
``--steps``, ``--seeds`` and ``--eval-episodes`` shrink a run for a smoke test. Each process uses one torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import llmsplit_env  # noqa: E402, F401  (registers the ids)
from agents.baselines import OracleAgent, RandomAgent  # noqa: E402
from agents.common.callbacks import CurveCallback  # noqa: E402
from agents.common.evaluation import best_fixed_split, evaluate_agent  # noqa: E402
from agents.common.hyperparameters import load_hyperparams  # noqa: E402
from llmsplit_env.util.files import atomic_output, atomic_write_bytes, atomic_write_json, file_digest  # noqa: E402

ENV_ID = "LLMSplit-Paper-v0"
ALGOS = ("ppo", "a2c", "dqn")
ENVS = ("surrogate", "profile")
EVAL_SEED0 = 7_000_000  # held-out episodes, disjoint from the training runs' seeds
RHO_BINS = np.linspace(0.0, 0.3, 16)


def make_env(kind: str, surrogate: str | None) -> gym.Env:
    return gym.make(ENV_ID, surrogate=surrogate) if kind == "surrogate" else gym.make(ENV_ID)


def last_step_choices(result: dict, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ρ, split)`` at each episode's last step, from an `evaluate_agent` trace (``trace=True``)."""
    levels = np.asarray(result["levels"]).reshape(-1, horizon)
    splits = np.asarray(result["step_splits"]).reshape(-1, horizon)
    return levels[:, -1], splits[:, -1]


def references(kind: str, surrogate: str | None, seeds: list[int]) -> dict:
    """Mean returns (and the oracle's last-step choices) of the reference policies on ``seeds``."""
    env = make_env(kind, surrogate)
    horizon = env.unwrapped.max_episode_steps
    oracle = evaluate_agent(OracleAgent(env), env, seeds, trace=True)
    rho, split = last_step_choices(oracle, horizon)
    out = {
        "oracle": oracle["mean_return"],
        "random": evaluate_agent(RandomAgent(env, seed=0), env, seeds)["mean_return"],
        "oracle_choices": {"rho": rho.tolist(), "split": split.tolist()},
    }
    if env.unwrapped.problem.relative:
        out["never_move"] = evaluate_agent(lambda obs: 0, env, seeds)["mean_return"]
    else:
        best, returns = best_fixed_split(env, seeds)
        out[f"best_fixed_split ({best})"] = returns[best]
    env.close()
    return out


def train_run(kind: str, surrogate: str | None, algo: str, seed: int, args, eval_seeds: list[int]) -> dict:
    """One SB3 run with the authors' settings: its learning curve and its final policy's last-step choices."""
    from agents.sb3 import make_sb3_agent

    hp = load_hyperparams(algo, ENV_ID, {"n_timesteps": args.steps})
    env = make_env(kind, surrogate)
    eval_env = make_env(kind, surrogate)
    model = make_sb3_agent(algo, env, hp, seed=seed)
    curve: list[dict] = []

    def point(m, steps: int) -> dict:
        r = evaluate_agent(m, eval_env, eval_seeds)
        curve.append({"steps": int(steps), "mean_return": r["mean_return"]})
        return {"mean_return": r["mean_return"]}

    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=CurveCallback(point, eval_freq=args.eval_every))
    train_s = time.perf_counter() - t0
    final = evaluate_agent(model, eval_env, eval_seeds, trace=True)
    rho, split = last_step_choices(final, eval_env.unwrapped.max_episode_steps)
    # the curve ends at the final policy (a point taken at the last step came before the last update)
    if curve and curve[-1]["steps"] == model.num_timesteps:
        curve.pop()
    curve.append({"steps": int(model.num_timesteps), "mean_return": final["mean_return"]})
    env.close()
    eval_env.close()
    return {
        "algo": algo,
        "seed": seed,
        "hyperparams": hp,
        "train_s": train_s,
        "curve": curve,
        "final_return": final["mean_return"],
        "choices": {"rho": rho.tolist(), "split": split.tolist()},
    }


def run_settings(args, kind: str, algo: str, seed: int) -> dict:
    """What a run is made with (its cache is reused only for the same)."""
    digest = file_digest(args.surrogate) if kind == "surrogate" else None
    hp = json.loads(json.dumps(load_hyperparams(algo, ENV_ID, {"n_timesteps": args.steps}), default=str))
    return {"env": kind, "algo": algo, "seed": seed, "steps": args.steps, "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes, "surrogate_sha256": digest, "hyperparams": hp}  # fmt: skip


def read_run(path: Path, want: dict) -> dict | None:
    """A cached run made with ``want``; None if there is none; a run made with other settings is refused."""
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    if run.get("settings") != want:
        raise ValueError(f"{path} holds a run made with other settings ({run.get('settings')}); use another --out")
    return run


def binned_split(rho: list[float], split: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and the mean split chosen in each ρ bin (NaN where a bin is empty)."""
    rho_a, split_a = np.asarray(rho), np.asarray(split, dtype=np.float64)
    idx = np.clip(np.digitize(rho_a, RHO_BINS) - 1, 0, len(RHO_BINS) - 2)
    means = np.array([split_a[idx == b].mean() if np.any(idx == b) else np.nan for b in range(len(RHO_BINS) - 1)])
    return 0.5 * (RHO_BINS[:-1] + RHO_BINS[1:]), means


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results)
    paths = []
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        res = results[kind]
        for i, algo in enumerate(res["algos"]):
            runs = res["algos"][algo]
            steps = np.array([p["steps"] for p in runs[0]["curve"]])
            n = min(len(r["curve"]) for r in runs)
            ys = np.array([[p["mean_return"] for p in r["curve"][:n]] for r in runs])
            m, s = ys.mean(axis=0), ys.std(axis=0)
            ax.plot(steps[:n], m, color=f"C{i}", label=f"{algo.upper()} ({len(runs)} seeds)")
            ax.fill_between(steps[:n], m - s, m + s, color=f"C{i}", alpha=0.2)
        for j, (name, value) in enumerate((k, v) for k, v in res["references"].items() if k != "oracle_choices"):
            ax.axhline(value, color="k", ls=("-", "--", ":", "-.")[j % 4], lw=0.9, label=name)
        ax.set_title(res["title"])
        ax.set_xlabel("training steps")
        ax.set_ylabel("mean episode return (held-out episodes)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_png(fig, out / "learning_curves.png"))

    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        res = results[kind]
        oc = res["references"]["oracle_choices"]
        x, y = binned_split(oc["rho"], oc["split"])
        ax.step(x, y, where="mid", color="k", lw=2, label="oracle")
        for i, algo in enumerate(res["algos"]):
            runs = res["algos"][algo]
            rho = [v for r in runs for v in r["choices"]["rho"]]
            split = [v for r in runs for v in r["choices"]["split"]]
            x, y = binned_split(rho, split)
            ax.plot(x, y, "o-", color=f"C{i}", ms=3, label=f"{algo.upper()} (seeds pooled)")
        ax.set_title(res["title"])
        ax.set_xlabel("true ρ at the episode's last step")
        ax.set_ylabel("mean split chosen (1..10)")
        ax.set_ylim(0.5, 10.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_png(fig, out / "split_vs_rho.png"))
    return paths


def table(results: dict, args) -> str:
    lines = [
        f"# Paper figures ({date.today()}): {args.steps} training steps, seeds {args.seeds}, "
        f"{args.eval_episodes} held-out episodes",
        "",
        "| env | policy | mean return (mean ± std over seeds) | share of the oracle's |",
        "|---|---|---|---|",
    ]
    for kind, res in results.items():
        oracle = res["references"]["oracle"]
        for algo, runs in res["algos"].items():
            finals = np.array([r["final_return"] for r in runs])
            share = finals.mean() / oracle if oracle > 0 else float("nan")  # a share of a return <= 0 means nothing
            lines.append(f"| {kind} | {algo.upper()} | {finals.mean():.3f} ± {finals.std():.3f} | {share:.3f} |")
        for name, value in res["references"].items():
            if name != "oracle_choices":
                ref_share = value / oracle if oracle > 0 else float("nan")
                lines.append(f"| {kind} | {name} | {value:.3f} | {ref_share:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--surrogate", help="path of the authors' reward_predictor.pth (not shipped; needed unless --envs profile)"
    )
    ap.add_argument("--out", default="paper_figures", help="output folder (PNGs, results.md, results.json)")
    ap.add_argument("--steps", type=int, default=240_000, help="training steps per run (the authors': 240,000)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    ap.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    ap.add_argument("--eval-every", type=int, default=None, help="steps between curve points (default: steps / 20)")
    ap.add_argument("--eval-episodes", type=int, default=200)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.eval_episodes < 1:
        ap.error("--steps and --eval-episodes must be >= 1")
    if args.eval_every is not None and args.eval_every < 1:
        ap.error(f"--eval-every must be >= 1 (or left out: steps / 20), got {args.eval_every}")
    if "surrogate" in args.envs and not args.surrogate:
        ap.error("--surrogate PATH is needed for --envs surrogate (the authors' reward_predictor.pth)")
    args.eval_every = args.eval_every or max(1, args.steps // 20)
    import torch

    # the networks are tiny: one thread each, so runs side by side do not fight over the cores (threads spin-wait)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_figures(args)
    finally:
        torch.set_num_threads(threads)


def make_figures(args) -> int:
    if "surrogate" in args.envs:
        make_env("surrogate", args.surrogate).close()  # refuse a bad file before any training (the error names it)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    eval_seeds = [EVAL_SEED0 + i for i in range(args.eval_episodes)]
    titles = {
        "surrogate": "authors' surrogate env (their reward_predictor.pth)",
        "profile": "LLMSplit-Paper-v0 (SmolLM2-135M erasure profile)",
    }
    results: dict = {}
    for kind in args.envs:
        sur = args.surrogate if kind == "surrogate" else None
        res = results[kind] = {"title": titles[kind], "references": references(kind, sur, eval_seeds), "algos": {}}
        for algo in args.algos:
            res["algos"][algo] = []
            for seed in args.seeds:
                want = run_settings(args, kind, algo, seed)
                path = out / "runs" / f"{kind}_{algo}_seed{seed}.json"
                run = read_run(path, want)
                if run is None:
                    run = train_run(kind, sur, algo, seed, args, eval_seeds) | {"settings": want}
                    atomic_write_json(path, run)  # a rerun resumes from the runs already made
                res["algos"][algo].append(run)
                print(f"{kind} {algo} seed {seed}: final return {run['final_return']:.3f} ({run['train_s']:.0f} s)")
    md = table(results, args)
    atomic_write_bytes(out / "results.md", md.encode())
    atomic_write_json(out / "results.json", {"args": vars(args), "results": results})
    for p in plot(results, out):
        print(f"plot: {p}")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
