"""Train LLMSplit agents and compare them: ``llmsplit train`` (flags follow rl-baselines3-zoo).

With no arguments: MBRL, PPO and RSM-PPO (plus the oracle, random, best-fixed and SNR-threshold heuristics for
reference) on ``LLMSplit-v0``; TensorBoard runs under ``runs/tb`` (``tensorboard --logdir runs/tb``), agents under
``runs/<env>/<algo>_seed<seed>/``, a summary in ``runs/<env>/summary.json``, and a comparison table at the end.
``--algo rllib_ppo`` trains RLlib PPO with env runners on a local Ray instance, or the cluster ``--ray-address`` names.

On the edge cell (``--env LLMSplit-Cell-v0``; default algos: PPO on the centralised env, the coordinated planner, the
selfish UEs, the best fixed split and random) scores are normalised with ``R_random`` = `agents.cell.CellRandomAgent`
(seed 0) and ``R_oracle`` = `agents.cell.CellPlannerAgent` on the same seeds, and the table adds the offload share and
the deadline-miss rate; an algo that cannot act on the env is refused, naming those that can.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agents.zoo.args import parse_key_values
from agents.zoo.common import check_output_folder, cli_main, read_summary, train_eval_seeds

#: the edge cell's figures the table and the summary's "final" carry beside the return
CELL_FIGURES = ("offload_share", "deadline_miss_rate")
DEFAULT_ALGOS = ["mbrl", "ppo", "rsm_ppo", "oracle", "random", "fixed", "threshold"]
#: the default algos of the envs whose kind takes others (`agents.zoo.registry.algos_for`)
DEFAULT_ALGOS_BY_ENV = {"LLMSplit-Cell-v0": ["ppo", "cell_planner", "cell_selfish", "cell_fixed", "cell_random"]}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from agents.zoo.registry import ALGOS

    cell_default = f"on LLMSplit-Cell-v0: {' '.join(DEFAULT_ALGOS_BY_ENV['LLMSplit-Cell-v0'])}"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument(
        "--algo",
        nargs="+",
        default=None,
        choices=ALGOS,
        metavar="ALGO",
        help=f"agents to train (default: {' '.join(DEFAULT_ALGOS)}; {cell_default}; choices: {', '.join(ALGOS)})",
    )
    p.add_argument("--env", default="LLMSplit-v0", help="environment id (default: LLMSplit-v0)")
    p.add_argument("--env-kwargs", nargs="*", metavar="KEY:VALUE", help="env config overrides, e.g. scheme:digital")
    p.add_argument("-params", "--hyperparams", nargs="*", metavar="KEY:VALUE", help="hyperparameter overrides")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-n", "--n-timesteps", type=int, help="training budget for every learning agent (default: YAML)")
    p.add_argument("-tb", "--tensorboard-log", default="runs/tb", help="TensorBoard root ('' to disable)")
    p.add_argument("-f", "--log-folder", default="runs", help="where agents and the summary go (default: runs)")
    p.add_argument("--eval-freq", type=int, default=None, help="evaluate every N steps (default: budget / 10)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster for rllib_ppo's env runners (default: $RAY_ADDRESS, else a local instance)",
    )
    return p  # fmt: skip


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``llmsplit train ARGS``: 0 when every agent trained; 2 (one ``error:`` line) for bad input; 130 on Ctrl-C."""
    return cli_main(lambda: build_parser(prog), run, argv)


def run(args: argparse.Namespace) -> int:
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer, is_cell_env
    from agents.zoo.registry import REGISTRY, check_agent, load_agent, train_agent
    from llmsplit_env.util.files import atomic_write_json, file_digest

    if args.algo is None:
        args.algo = list(DEFAULT_ALGOS_BY_ENV.get(args.env, DEFAULT_ALGOS))
    env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    if args.n_timesteps is not None and args.n_timesteps < 1:
        raise ValueError(f"-n/--n-timesteps must be >= 1, got {args.n_timesteps}")
    if args.eval_freq is not None and args.eval_freq < 1:
        raise ValueError(f"--eval-freq must be >= 1, got {args.eval_freq}")
    stray = sorted(set(hyperparams) - set(args.algo))
    if stray:
        raise ValueError(f"--hyperparams keys must start with an algo being trained ({', '.join(args.algo)}); got "
                         f"{', '.join(stray)} (write e.g. ppo.learning_rate:0.001)")  # fmt: skip
    if args.eval_episodes < 1:
        raise ValueError(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
    if args.ray_address and "rllib_ppo" not in args.algo:
        raise ValueError("--ray-address is for rllib_ppo (its env runners); no rllib_ppo in --algo")
    # the output folders, before any env is built or agent trained: a file or a read-only folder there is named now
    run_dir = Path(args.log_folder) / args.env
    for folder in (run_dir, *(run_dir / f"{algo}_seed{args.seed}" for algo in args.algo)):
        check_output_folder(folder, "-f/--log-folder")
    if (run_dir / "summary.json").exists() and not (run_dir / "summary.json").is_file():
        raise ValueError(f"-f/--log-folder {args.log_folder}: {run_dir / 'summary.json'} exists and is not a file")
    if args.tensorboard_log:
        check_output_folder(Path(args.tensorboard_log) / args.env, "-tb/--tensorboard-log")
    # One env, built once: it checks the id and config, every agent is built on it (a bad hyperparameter or budget
    # fails before the first agent trains), the scorer evaluates on it (each episode starts from env.reset(seed)) and
    # each saved agent reloads onto it. Training builds its own envs.
    env = make_env(args.env, env_kwargs)
    for algo in args.algo:
        check_agent(algo, env, args.env, args.seed,
                    args.n_timesteps if REGISTRY[algo].uses_budget else None, hyperparams.get(algo))  # fmt: skip
    if args.ray_address:
        from llmsplit_env.util.ray_cluster import connect_ray

        # fails fast, naming the flag, when nothing answers there
        connect_ray(args.ray_address, who="--ray-address", extra="rllib")
    eval_seeds = train_eval_seeds(args.seed, args.eval_episodes)
    scorer = OracleNormalizer(env, eval_seeds)
    tb = args.tensorboard_log or None
    if tb:
        tb = str(Path(tb) / args.env)
    summary_path = run_dir / "summary.json"
    summary = read_summary(summary_path) if summary_path.is_file() else {"env_id": args.env, "agents": {}}
    if summary.get("env_kwargs", env_kwargs) != env_kwargs:
        raise ValueError(f"{summary_path} holds agents trained with other --env-kwargs; use another --log-folder")
    summary["env_kwargs"] = env_kwargs
    rows = []
    for algo in args.algo:
        t0 = time.perf_counter()
        print(f"== {algo} on {args.env} (seed {args.seed})", flush=True)
        name = f"{algo}_seed{args.seed}"
        # The entry carries the digest of the file it describes (evaluate refuses an entry whose file has changed
        # since) and is written as soon as the file is saved; the final score follows once the saved agent is
        # re-scored (a Ctrl-C in between leaves an entry without "final", never one of another file).
        record = train_agent(
            algo,
            args.env,
            env_kwargs,
            seed=args.seed,
            n_timesteps=args.n_timesteps if REGISTRY[algo].uses_budget else None,
            out_dir=run_dir / f"{algo}_seed{args.seed}",
            tensorboard_log=tb,
            eval_freq=args.eval_freq,
            scorer=scorer,
            progress_bar=not args.no_progress,
            hyperparams=hyperparams.get(algo),
        )
        summary["agents"][name] = entry = record.to_json() | {"sha256": file_digest(record.path)}
        atomic_write_json(summary_path, summary)
        res = scorer(load_agent(record.algo, record.path, env))  # the saved agent: what evaluate will load
        # the edge cell's own figures beside the return (`evaluate_agent`: present on the cell only)
        final = {k: float(res[k]) for k in ("mean_return", "normalized_score", *CELL_FIGURES) if k in res}
        rows.append((algo, final, record.quality_evals, time.perf_counter() - t0))
        entry["final"] = final
        atomic_write_json(summary_path, summary)

    cell = is_cell_env(env)
    print(f"\n{args.env}: mean {'team ' if cell else ''}return over {len(eval_seeds)} evaluation episodes "
          f"(seeds {eval_seeds[0]}…)")  # fmt: skip
    r_random, r_oracle = scorer.reference
    n_random, n_oracle = scorer.reference_names
    print(f"{n_oracle} {r_oracle:.2f} (score 1), {n_random} {r_random:.2f} (score 0)")
    extra = f"{'offload':>9}{'dl. miss':>10}" if cell else ""
    print(f"{'agent':<14}{'return':>10}{'norm. score':>13}{extra}{'real evals':>12}{'wall s':>9}")
    for algo, final, evals, wall in rows:
        extra = f"{final['offload_share']:>9.1%}{final['deadline_miss_rate']:>10.1%}" if cell else ""
        print(f"{algo:<14}{final['mean_return']:>10.2f}{final['normalized_score']:>13.3f}{extra}{evals:>12d}"
              f"{wall:>9.1f}")  # fmt: skip
    if cell:
        print("offload: share of requests sent to the edge; dl. miss: share over the deadline; real evals: requests "
              "served in training")  # fmt: skip
    print(f"\nsummary: {summary_path}" + (f"; TensorBoard: tensorboard --logdir {tb}" if tb else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
