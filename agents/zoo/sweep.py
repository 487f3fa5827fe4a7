"""Ray Tune sweeps of agents × seeds × env configs: ``llmsplit sweep`` (or ``python -m agents.zoo.sweep``).

    llmsplit sweep --algo oracle random fixed ppo --seeds 0 1 2 -n 20000 \\
        --grid reward.weights.switching:[0.1,0.3] --out runs/sweep
    llmsplit sweep ... --ray-address 10.0.0.1:6379     # an existing cluster (default: a local instance)

One Tune trial per (algo, seed, env config). The env configs are the product of the ``--grid KEY:[V1, V2, ...]``
axes (dotted keys nest, values are YAML, as ``--env-kwargs``), each merged over the fixed ``--env-kwargs``. A trial
does what ``llmsplit train --algo ALGO --seed SEED --env-kwargs CONFIG`` does for one agent: `agents.train_agent`
(any zoo algo), then the saved agent reloaded and scored by `agents.common.evaluation.OracleNormalizer` on the train
command's evaluation episodes (`agents.zoo.common.train_eval_seeds`), so a row equals its row for the same settings.
Learning agents report their curve points to Tune as they train; the final report carries the row.

Outputs in ``--out``: ``sweep.md`` and ``sweep.csv`` (one comparison table: a row per trial), ``sweep.png`` (the
oracle-normalised score per env config and algo, mean over seeds and each seed), ``trials/<trial>.json`` (one per
finished trial), the agents under ``agents/<trial>/`` (on the node that trained them) and Tune's own experiment
folders under ``tune/``. Every file is written atomically.

Resuming: the driver writes ``trials/<trial>.json`` as each trial finishes (a Tune callback, so on the driver
whatever node ran it). A rerun skips every trial whose file is there; the trial's name holds a hash of all its
settings, so changing ``-n``, a hyperparameter or a config runs new trials instead of reusing old ones. Ctrl-C stops
Tune (a second Ctrl-C skips its last save), writes the table of what finished and exits with status 130.

Every input is checked before Ray starts: each algo and its hyperparameters and budget
(`agents.zoo.registry.check_agent`), the env id, every env config (the env is built), the grid, the seeds and the
resources (with ``--num-cpus``; RLlib's env runners against ``--worker-cpus-per-trial``). Once connected, and before
any file is written, a trial the cluster can never hold fails naming what it needs and what the cluster has, rather
than pending for ever (`check_resources`).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agents.zoo.args import parse_grid
from agents.zoo.common import check_output_folder, cli_main
from agents.zoo.sweep_results import read_result, result_path, table_rows, write_outputs
from llmsplit_env.util.mapping import deep_merge, leaf_keys, nest
from llmsplit_env.util.ray_cluster import LOCAL, connect_ray, ray_missing

RAY_MISSING = ray_missing("the sweep", what="Ray Tune")


# ------------------------------------------------------------------------------------------------ the plan
def env_configs(env_kwargs: dict, axes: list[tuple[str, list]]) -> list[tuple[str, dict]]:
    """``[(label, config)]``: every point of the grid merged over ``env_kwargs`` (label ``default`` without a grid)."""
    fixed = leaf_keys(env_kwargs)
    for key, _ in axes:
        clash = [k for k in fixed if k == key or k.startswith(key + ".") or key.startswith(k + ".")]
        if clash:
            raise ValueError(f"--grid {key} is also set by --env-kwargs ({', '.join(clash)}); give it in one place")
    out = []
    for point in itertools.product(*(values for _, values in axes)):
        config = env_kwargs
        for (key, _), value in zip(axes, point, strict=True):
            config = deep_merge(config, nest(key, value))
        label = " ".join(f"{key}={json.dumps(v, default=str)}" for (key, _), v in zip(axes, point, strict=True))
        out.append((label or "default", config))
    return out


def trial_name(spec: dict) -> str:
    """``<algo>_seed<seed>_<hash of every setting>``: a different setting is a different trial (and result file)."""
    blob = json.dumps({k: v for k, v in spec.items() if k != "name"}, sort_keys=True, default=str)
    return f"{spec['algo']}_seed{spec['seed']}_{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def plan(args: argparse.Namespace) -> list[dict]:
    """Every trial's spec (JSON-clean dicts, in table order: config, algo, seed), after checking every input."""
    from agents.common.env_util import make_env
    from agents.zoo.args import parse_key_values
    from agents.zoo.registry import REGISTRY, check_agent

    for flag, values in (("--algo", args.algo), ("--seeds", args.seeds)):
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise ValueError(f"{flag}: {', '.join(map(str, twice))} given more than once")
    bad = [s for s in args.seeds if s < 0]
    if bad:
        raise ValueError(f"--seeds must be integers >= 0, got {', '.join(map(str, bad))}")
    for flag, value, lo in (("-n/--n-timesteps", args.n_timesteps, 1), ("--eval-freq", args.eval_freq, 1),
                            ("--eval-episodes", args.eval_episodes, 1),
                            ("--max-concurrent-trials", args.max_concurrent_trials, 1)):  # fmt: skip
        if value is not None and value < lo:
            raise ValueError(f"{flag} must be an integer >= {lo}, got {value}")
    if not args.cpus_per_trial > 0:
        raise ValueError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial < 0:
        raise ValueError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
    if args.worker_cpus_per_trial < 0:
        raise ValueError(f"--worker-cpus-per-trial must be an integer >= 0, got {args.worker_cpus_per_trial}")
    if args.num_cpus is not None and (args.num_cpus < 1 or args.ray_address not in (None, LOCAL)):
        raise ValueError(
            f"--num-cpus {args.num_cpus}: only for a local Ray instance (no --ray-address), as an integer >= 1"
        )
    hyperparams = parse_key_values(args.hyperparams, "--hyperparams")
    stray = sorted(set(hyperparams) - set(args.algo))
    if stray:
        raise ValueError(f"--hyperparams keys must start with an algo of the sweep ({', '.join(args.algo)}); got "
                         f"{', '.join(stray)} (write e.g. ppo.learning_rate:0.001)")  # fmt: skip
    env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    configs = env_configs(env_kwargs, parse_grid(args.grid))
    for label, config in configs:
        try:
            env = make_env(args.env, config)  # a bad env id, config key or value
        except ValueError as e:
            raise ValueError(f"env config {label}: {e}" if label != "default" else str(e)) from None
        for algo in args.algo:  # an unknown algo (naming the allowed ones), a bad hyperparameter or budget
            budget = args.n_timesteps if algo in REGISTRY and REGISTRY[algo].uses_budget else None
            check_agent(algo, env, args.env, args.seeds[0], budget, hyperparams.get(algo))
        env.close()
    if "rllib_ppo" in args.algo:  # its env runners go into the trial's worker bundles: without room they wait for ever
        from agents.common.hyperparameters import load_hyperparams
        from agents.rllib_ppo import runners_in_bundles

        hp = load_hyperparams("rllib_ppo", args.env, hyperparams.get("rllib_ppo"))
        room = trial_bundles(args)[1:]
        problem = runners_in_bundles(hp, room, f"--worker-cpus-per-trial {args.worker_cpus_per_trial}")
        if problem is not None:
            raise ValueError(f"--algo {problem}")
    specs = []
    for (label, config), algo, seed in itertools.product(configs, args.algo, args.seeds):
        spec = {
            "algo": algo,
            "env_id": args.env,
            "env_kwargs": config,
            "env_config": label,
            "seed": seed,
            "n_timesteps": args.n_timesteps if REGISTRY[algo].uses_budget else None,
            "hyperparams": hyperparams.get(algo),
            "eval_episodes": args.eval_episodes,
            "eval_freq": args.eval_freq,
        }
        specs.append(spec | {"name": trial_name(spec)})
    return specs


# ------------------------------------------------------------------------------------------------ one trial
def run_trial(
    spec: dict,
    agent_dir: str | Path,
    tensorboard_log: str | None = None,
    on_point: Callable[[dict], None] | None = None,
) -> dict:
    """Train and score one trial as train.py does one agent; ``on_point`` gets each curve point as it is scored
    (``{quality_evals, mean_reward, normalized_score}``)."""
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer
    from agents.zoo.common import train_eval_seeds
    from agents.zoo.registry import load_agent, train_agent

    env_id, env_kwargs = spec["env_id"], spec["env_kwargs"]
    scorer = OracleNormalizer(make_env(env_id, env_kwargs), train_eval_seeds(spec["seed"], spec["eval_episodes"]))
    t0 = time.perf_counter()
    record = train_agent(spec["algo"], env_id, env_kwargs, seed=spec["seed"], n_timesteps=spec["n_timesteps"],
                         out_dir=agent_dir, tensorboard_log=tensorboard_log, eval_freq=spec["eval_freq"],
                         scorer=scorer, hyperparams=spec["hyperparams"], on_point=on_point)  # fmt: skip
    # the reloaded agent, so the row scores exactly what evaluate.py would load
    final = scorer(load_agent(spec["algo"], record.path, make_env(env_id, env_kwargs)))
    r_random, r_oracle = scorer.reference
    return {
        "mean_return": float(final["mean_return"]),
        "normalized_score": float(final["normalized_score"]),
        "quality_evals": record.quality_evals,
        "n_timesteps": record.n_timesteps,
        "train_s": record.train_s,
        "wall_s": time.perf_counter() - t0,
        "R_random": r_random,
        "R_oracle": r_oracle,
        "agent_path": record.path,
        "hyperparams": record.hyperparams,
        "curve": record.curve,
        "node": os.uname().nodename,
    }


def _trainable(config: dict) -> None:
    """The Tune function trainable: one trial; each curve point (``quality_evals``, ``mean_reward``,
    ``normalized_score``) is an intermediate report, and the last report carries the row."""
    import torch
    from ray import tune

    # as many torch threads as CPUs the trial holds (Ray's OMP_NUM_THREADS says the same; be explicit)
    torch.set_num_threads(max(1, int(config["cpus"])))
    spec = config["spec"]
    # a TensorBoard folder per trial: concurrent trials would race for the same auto-numbered run name
    tb = str(Path(config["tensorboard_log"]) / spec["name"]) if config["tensorboard_log"] else None
    row = run_trial(spec, Path(config["out"]) / "agents" / spec["name"], tb, tune.report)
    final = {k: row[k] for k in ("mean_return", "normalized_score", "quality_evals", "n_timesteps", "train_s")}
    tune.report({**final, "row": json.dumps(row)})


# ------------------------------------------------------------------------------------------------ results
def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def _make_collector(out: Path, specs: dict[str, dict], errors: dict[str, str], total: int, done_before: int):
    """A Tune callback (on the driver): each finished trial's result file, written as it finishes; one line each."""
    from ray import tune

    from llmsplit_env.util.files import atomic_write_json

    class Collector(tune.Callback):
        finished = done_before

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            spec = specs[trial.config["spec"]["name"]]
            raw = (trial.last_result or {}).get("row")
            if raw is None:  # ended without its final report
                errors[spec["name"]] = "the trial ended without reporting its result"
                return
            row = json.loads(raw)
            atomic_write_json(result_path(out, spec), {"spec": spec, "result": row})
            self.finished += 1
            print(f"[{self.finished}/{total}] {_describe(spec)}: return {row['mean_return']:.2f}, "
                  f"score {row['normalized_score']:.3f} ({row['wall_s']:.1f} s)", flush=True)  # fmt: skip

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            spec = specs[trial.config["spec"]["name"]]
            err = trial.get_error()
            errors[spec["name"]] = _last_line(str(err)) if err is not None else "failed"
            print(f"[error] {_describe(spec)}: {errors[spec['name']]}", file=sys.stderr, flush=True)

    return Collector()


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _describe(spec: dict) -> str:
    return f"{spec['algo']} seed {spec['seed']} ({spec['env_config']})"


# ------------------------------------------------------------------------------------------------ Tune
def trial_bundles(args: argparse.Namespace) -> list[dict[str, float]]:
    """A trial's placement group: its own bundle, and one CPU bundle per Ray worker the agent starts itself (Tune
    schedules a trial's child tasks and actors inside its placement group, so they need room there, or they would
    wait for ever)."""
    head = {"CPU": args.cpus_per_trial} | ({"GPU": args.gpus_per_trial} if args.gpus_per_trial else {})
    return [head] + [{"CPU": 1.0}] * args.worker_cpus_per_trial


def check_resources(args: argparse.Namespace) -> None:
    """``ValueError`` (naming the flags, what a trial needs and what the cluster has) if the connected cluster can
    never run one trial: Tune would keep it pending for ever. A local instance fails at once; a cluster that may grow
    is watched for a bounded time (`llmsplit_env.util.ray_cluster.require_resources`)."""
    from llmsplit_env.util.ray_cluster import require_resources

    require_resources(trial_bundles(args), _trial_flags(args))


def _trial_flags(args: argparse.Namespace) -> str:
    flags = [f"--cpus-per-trial {args.cpus_per_trial:g}"]
    if args.gpus_per_trial:
        flags.append(f"--gpus-per-trial {args.gpus_per_trial:g}")
    if args.worker_cpus_per_trial:
        flags.append(f"--worker-cpus-per-trial {args.worker_cpus_per_trial}")
    return f"a trial ({', '.join(flags)})"


def _tune(args: argparse.Namespace, out: Path, todo: list[dict], errors: dict, total: int) -> None:
    """Run ``todo`` as Tune trials (returns when they have all ended, or when Ctrl-C stopped Tune)."""
    from ray import tune

    # Tune's newer console output prints a banner (and a TensorBoard hint for its own folder) whatever the verbosity;
    # its classic output prints nothing at verbose=0, and the collector prints a line per trial instead
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tb = str(Path(args.tensorboard_log).resolve()) if args.tensorboard_log else None
    trainable = tune.with_resources(_trainable, tune.PlacementGroupFactory(trial_bundles(args)))
    # out is absolute: Tune runs each trial in a working directory of its own
    space = {"spec": tune.grid_search(todo), "cpus": args.cpus_per_trial, "tensorboard_log": tb, "out": str(out)}

    def name(trial) -> str:
        return trial.config["spec"]["name"]

    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=args.max_concurrent_trials,
            trial_name_creator=name,
            trial_dirname_creator=name,
            reuse_actors=True,  # a trial's process is ready for the next one: no second start and import of torch
        ),
        run_config=tune.RunConfig(
            name=time.strftime("sweep-%Y%m%d-%H%M%S"),
            storage_path=str(out / "tune"),
            verbose=0,
            callbacks=[_make_collector(out, {s["name"]: s for s in todo}, errors, total, total - len(todo))],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


# ------------------------------------------------------------------------------------------------ CLI
def build_parser(prog: str = "python -m agents.zoo.sweep") -> argparse.ArgumentParser:
    from agents.zoo.registry import ALGOS

    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--algo", nargs="+", required=True, metavar="ALGO", help=f"agents (zoo names: {', '.join(ALGOS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="training seeds (default: 0)")
    p.add_argument("--env", default="LLMSplit-v0", help="environment id (default: LLMSplit-v0)")
    p.add_argument("--env-kwargs", nargs="*", metavar="KEY:VALUE", help="env config overrides for every trial")
    p.add_argument("--grid", nargs="*", metavar="KEY:[V1,V2]", help="env config axes (one config per grid point)")
    p.add_argument("-params", "--hyperparams", nargs="*", metavar="ALGO.KEY:VALUE", help="hyperparameter overrides")
    p.add_argument("-n", "--n-timesteps", type=int, help="training budget of every learning agent (default: YAML)")
    p.add_argument("--eval-freq", type=int, help="curve point every N steps (default: budget / 10)")
    p.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per trial (default: 10)")
    p.add_argument("--out", default="runs/sweep", help="table, plot, trial results and agents (default: runs/sweep)")
    p.add_argument("-tb", "--tensorboard-log", default="", help="TensorBoard root of the agents' logs (default: off)")
    p.add_argument("--ray-address", help="Ray cluster, e.g. 10.0.0.1:6379 or auto (default: a new local instance)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs (and torch threads) per trial (default: 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default: 0)")
    p.add_argument(
        "--worker-cpus-per-trial",
        type=int,
        default=0,
        help="1-CPU bundles per trial for Ray workers the agent starts itself (default: 0)",
    )
    p.add_argument("--max-concurrent-trials", type=int, help="at most N trials at once (default: as CPUs allow)")
    return p  # fmt: skip


def main(argv: list[str] | None = None, prog: str = "python -m agents.zoo.sweep") -> int:
    return cli_main(lambda: build_parser(prog), run, argv)


def check_out(out: Path) -> None:
    """``ValueError`` now, not after the sweep, if ``--out`` cannot hold the outputs."""
    check_output_folder(out, "--out")
    check_output_folder(out / "trials", "--out")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()  # absolute: Tune runs each trial in a working directory of its own
    check_out(out)
    specs = plan(args)  # every input checked: nothing has started yet
    errors: dict[str, str] = {}

    def finished() -> dict[str, dict]:
        return {s["name"]: r for s in specs if (r := read_result(out, s)) is not None}

    def write() -> str:
        rows = table_rows(specs, finished(), errors)
        return write_outputs(out, rows, args.env, args.eval_episodes, args.env_kwargs)

    todo = [s for s in specs if s["name"] not in finished()]
    n_configs = len(specs) // (len(args.algo) * len(args.seeds))
    print(f"sweep: {_n(len(specs), 'trial')} ({_n(len(args.algo), 'algo')} x {_n(len(args.seeds), 'seed')} x "
          f"{_n(n_configs, 'env config')}); {len(specs) - len(todo)} already done in {out}, {len(todo)} to run",
          flush=True)  # fmt: skip
    if todo:
        try:
            import ray.tune  # only the sweep needs Ray: the rest of the package works without it
        except ImportError:
            raise ValueError(RAY_MISSING) from None
        if args.num_cpus is not None:  # a local instance of that size: no need to start it to know
            need = sum(b["CPU"] for b in trial_bundles(args))
            if need > args.num_cpus:
                raise ValueError(f"{_trial_flags(args)} needs {need:g} CPUs; the local Ray instance has "
                                 f"--num-cpus {args.num_cpus}")  # fmt: skip
        owns = connect_ray(args.ray_address, args.num_cpus, who="the sweep")
        try:  # before any file is written, like every other input check
            check_resources(args)
        except BaseException:
            if owns:
                ray.shutdown()
            raise
        try:
            _tune(args, out, todo, errors, len(specs))
        finally:
            # each finished trial's file was written as it ended: the table shows them, even after a Ctrl-C
            table = write()
            if owns:
                ray.shutdown()
    else:
        table = write()
    print("\n" + table)
    print(f"table: {out / 'sweep.md'}, {out / 'sweep.csv'}; plot: {out / 'sweep.png'}")
    left = len(specs) - len(finished()) - len(errors)
    if left:  # Tune stopped on Ctrl-C and returned: cli_main says so (status 130)
        print(f"{_n(left, 'trial')} not run: rerun the same command to run them (finished trials are skipped)",
              file=sys.stderr)  # fmt: skip
        raise KeyboardInterrupt
    if errors:
        print(f"{len(errors)} trial(s) failed (listed in the table); rerun the same command to retry them",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
