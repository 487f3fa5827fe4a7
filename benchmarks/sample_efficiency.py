"""Real quality evaluations each agent needs to reach 95% of the oracle-normalised score, over several seeds.

    python benchmarks/sample_efficiency.py [--seeds 0 1 2 3 4] [--algos mbrl threshold ppo a2c dqn rsm_ppo] [--out DIR]
    python benchmarks/sample_efficiency.py --ray [ADDRESS]  # the (agent, seed) runs as Ray tasks: same table
    python benchmarks/sample_efficiency.py --paper      # paper reproduction on LLMSplit-Paper-v0
    python benchmarks/sample_efficiency.py --algos mbrl --mbrl-ablations all --budget mbrl:100  # MBRL's ideas

Real evaluations are counted as the live model would run them (``COUNT``): on the profile, one per step at a split
that sends something; a step at ``k = L`` costs none. Every agent is scored on the same held-out seeds at the same
schedule of real-evaluation counts (``CHECKPOINTS``, log-spaced from 25); an agent has reached the target at the first
of two consecutive checkpoints scoring at least 95%, so one lucky evaluation does not count. The fitted SNR-threshold
rule (``threshold``) is fitted afresh on N random real steps at each checkpoint N (costing the ones that send).
RSM-PPO spends all its real evaluations up front, so it is trained once per surrogate size N (``--rsm-sizes``, its
collection steps) and needs the smallest whose last two evaluations (during its PPO training inside the surrogate)
both reach the target. A run that never reaches it is censored at the real evaluations it spent: reported as ``>N``,
counted as N in the IQM (which flatters that agent), and it makes a ratio against it a bound, not a value.
Results are cached per run in ``--out`` (rerunning resumes; a cached run made with other settings is refused), then
summarised as the interquartile mean (IQM) over seeds with a 95% bootstrap confidence interval, a table, the real
evaluations to 0.9 / 0.95 / 0.99 and the score at the checkpoints up to 200 (median, interquartile range, every seed),
and a plot of the score against real evaluations (log x; median and interquartile band over the seeds).

``--mbrl-ablations NAME... | all`` adds MBRL runs that each change one idea of the default agent (`MBRL_ABLATIONS`),
labelled ``mbrl_<name>``, with MBRL's budget and hyperparameters (``--budget mbrl:N``, ``--hyperparams mbrl.K:V``).

``--ray [ADDRESS]`` runs the (agent, seed) runs that are not cached yet as Ray tasks (a local instance, or the cluster
at ADDRESS; ``--cpus-per-job`` CPUs each), collects them with ``ray.wait`` as they finish and writes the same cache
files from the driver: the runs are seeded, so the table is the serial one, number for number. ``--budget ALGO:N``
and ``--hyperparams ALGO.KEY:VALUE`` shrink a run (the tests use them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from llmsplit_env.util.ray_cluster import add_ray_flag

TARGET = 0.95
BUDGETS = {"mbrl": 1200, "threshold": 1200, "ppo": 100_000, "a2c": 100_000, "dqn": 100_000}
CHECKPOINTS = [25, 50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 3000, 5000, 7500, 10_000,
               15_000, 20_000, 30_000, 50_000, 75_000, 100_000]  # fmt: skip


#: one idea of the default MBRL agent changed each (``--mbrl-ablations``); `ablation_hp` fills in the ``None`` values
MBRL_ABLATIONS = {
    "no_known_rewards": {"known_rewards": False},  # learn ue_compute, privacy and quality at k = L from steps
    "no_decision_acquisition": {"acquisition": "planner"},  # explore with the planner's UCB instead
    "round_warmup": {"warmup_steps": None},  # a round over every allowed split before the model decides
    "nll_fit": {"nll_beta": 0.0, "stop_on": "nll"},  # fit the ensembles with the plain Gaussian NLL (stop on it)
    "caution": {"caution": 1.0},  # plan on mean - 1 std of the members when acting
    "beta_1": {"beta": 1.0},  # a narrower plausible set (1 std of the members, not 2)
    "horizon_3": {"horizon": 3},  # plan 3 steps along the dynamics model's channel, not 1
}
#: the score table's checkpoints
SCORE_AT = [25, 50, 75, 100, 200]
#: how the real evaluations of a run are counted: on a profile, the steps at a split that sends something (a step at
#: k = L costs the live model nothing); recorded in each cached run's settings
COUNT = "sends"


def is_ablation(label: str) -> bool:
    """Whether a run label is one of MBRL's ablations (``mbrl_<name>``)."""
    return label.startswith("mbrl_") and label[5:] in MBRL_ABLATIONS


def algo_of(label: str) -> str:
    """The registry algo a run label trains (an MBRL ablation trains ``mbrl``)."""
    return "mbrl" if is_ablation(label) else label


def ablation_hp(args, label: str) -> dict | None:
    """A run's hyperparameter overrides: ``--hyperparams`` of its algo, then its ablation's change."""
    hp = args.hp.get(algo_of(label))
    if algo_of(label) == label:
        return hp
    change = dict(MBRL_ABLATIONS[label[5:]])
    if "warmup_steps" in change:
        from agents.common.env_util import env_layout, make_env

        change["warmup_steps"] = len(env_layout(make_env(args.env)).allowed_splits)
    return {**(hp or {}), **change}


def iqm(x: np.ndarray) -> float:
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    lo, hi = int(np.floor(0.25 * n)), int(np.ceil(0.75 * n))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


def bootstrap_ci(x: np.ndarray, reps: int = 5000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    stats = [iqm(rng.choice(x, size=len(x), replace=True)) for _ in range(reps)]
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def first_reaching(curve: list[dict], target: float) -> int | None:
    """Real evaluations at the first of two consecutive evaluations at or above ``target``."""
    for a, b in itertools.pairwise(curve):
        if a["normalized_score"] >= target and b["normalized_score"] >= target:
            return int(a["quality_evals"])
    return None


def cache_path(out: Path, algo: str, seed: int) -> Path:
    return out / f"{algo}_seed{seed}.json"


def budget_of(args, algo: str) -> int | None:
    algo = algo_of(algo)
    return args.rsm_sizes[-1] if algo == "rsm_ppo" else args.budgets.get(algo, BUDGETS.get(algo))


def settings(args, algo: str) -> dict:
    """What a run is made with: a cached run made with other settings is refused, not mixed in. The hyperparameters
    are the resolved ones (the algo's file with the overrides), so a changed default is a changed setting; ``count``
    names how real evaluations are counted (`agents.common.env_util.count_rule`)."""
    from agents.common.hyperparameters import hyperparam_algos, load_hyperparams

    hp = ablation_hp(args, algo)
    if algo_of(algo) in hyperparam_algos():
        hp = json.loads(json.dumps(load_hyperparams(algo_of(algo), args.env, hp), default=str))
    s = {"env": args.env, "budget": budget_of(args, algo), "hyperparams": hp, "eval_episodes": args.eval_episodes,
         "checkpoints": CHECKPOINTS, "count": COUNT}  # fmt: skip
    return s | ({"rsm_sizes": args.rsm_sizes, "rsm_steps": args.rsm_steps} if algo == "rsm_ppo" else {})


def read_cache(out: Path, algo: str, seed: int, want: dict) -> dict | None:
    path = cache_path(out, algo, seed)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("settings") != want:
        got = result.get("settings", "none recorded")
        raise ValueError(f"{path} holds a run made with other settings ({got}, not {want}); use another --out")
    return result


def train_one(algo: str, seed: int, args, out: Path, scorer) -> dict:
    """One (agent, seed) run: its curve at the checkpoints and when it first reached the target (not cached here)."""
    from agents.zoo.registry import train_agent

    t0 = time.perf_counter()
    hp = ablation_hp(args, algo)
    budget = budget_of(args, algo)
    if algo == "rsm_ppo":
        curve = []
        for n_real in args.rsm_sizes:
            rec = train_agent("rsm_ppo", args.env, seed=seed, n_timesteps=args.rsm_steps,
                              out_dir=out / f"rsm_{seed}_{n_real}", scorer=scorer,
                              hyperparams={**(hp or {}), "n_real": n_real})  # fmt: skip
            last_two = rec.curve[-2:]
            curve.append(
                {
                    "quality_evals": rec.quality_evals,  # its n_real steps that sent something
                    "normalized_score": min(p["normalized_score"] for p in last_two),
                }
            )
            if curve[-1]["normalized_score"] >= TARGET:
                break
        curve = [*curve, curve[-1]]  # the size that reached it stands for both of its evaluations
    elif algo == "threshold":  # the fitted SNR-threshold rule, fitted afresh on N random real steps at each checkpoint
        from agents.common.env_util import make_env
        from agents.zoo.registry import load_agent

        curve = []
        for n in [c for c in CHECKPOINTS if c <= budget]:
            rec = train_agent("threshold", args.env, seed=seed, n_timesteps=n, out_dir=out / f"threshold_{seed}_{n}",
                              hyperparams=hp)  # fmt: skip
            res = scorer(load_agent("threshold", rec.path, make_env(args.env)))
            curve.append({"quality_evals": rec.quality_evals, "normalized_score": res["normalized_score"]})
    else:
        rec = train_agent(algo_of(algo), args.env, seed=seed, n_timesteps=budget, out_dir=out / f"{algo}_{seed}",
                          eval_at=[c for c in CHECKPOINTS if c <= budget], scorer=scorer, hyperparams=hp)  # fmt: skip
        curve = rec.curve
    return {"algo": algo, "seed": seed, "budget": budget, "curve": curve,
            "evals_to_target": first_reaching(curve, TARGET), "wall_s": time.perf_counter() - t0,
            "settings": settings(args, algo)}  # fmt: skip


def eval_seeds(args) -> list[int]:
    return [3_000_000 + i for i in range(args.eval_episodes)]


def run_serial(args, out: Path, jobs: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The runs one after another in this process (one scorer, its references computed once)."""
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer
    from llmsplit_env.util.files import atomic_write_json

    scorer = OracleNormalizer(make_env(args.env), eval_seeds(args))
    results = {}
    for algo, seed in jobs:
        results[algo, seed] = read_cache(out, algo, seed, settings(args, algo))
        if results[algo, seed] is None:
            results[algo, seed] = train_one(algo, seed, args, out, scorer)
            atomic_write_json(cache_path(out, algo, seed), results[algo, seed])
    return results


def _ray_job(algo: str, seed: int, args, out: Path) -> dict:
    """One run as a Ray task: the scorer rebuilt here (the serial run's env and episodes, so the same numbers)."""
    import torch

    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer

    torch.set_num_threads(max(1, int(args.cpus_per_job)))
    return train_one(algo, seed, args, out, OracleNormalizer(make_env(args.env), eval_seeds(args)))


def run_on_ray(args, out: Path, jobs: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """The runs not cached yet as Ray tasks (``--cpus-per-job`` CPUs each), collected with ``ray.wait`` as they finish;
    the driver writes each one's cache file as it arrives, so Ctrl-C keeps the finished ones."""
    from llmsplit_env.util.files import atomic_write_json
    from llmsplit_env.util.ray_cluster import connect_ray

    results = {(a, s): read_cache(out, a, s, settings(args, a)) for a, s in jobs}
    todo = [job for job in jobs if results[job] is None]
    if not todo:
        return results
    owns = connect_ray(args.ray or None, flag="--ray", who="--ray")
    import ray

    task = ray.remote(num_cpus=args.cpus_per_job)(_ray_job)
    refs = {task.remote(algo, seed, args, out): (algo, seed) for algo, seed in todo}
    try:
        while refs:
            [ref], _ = ray.wait(list(refs), num_returns=1)
            algo, seed = refs.pop(ref)
            results[algo, seed] = ray.get(ref)
            atomic_write_json(cache_path(out, algo, seed), results[algo, seed])
            print(f"[{len(todo) - len(refs)}/{len(todo)}] {algo} seed {seed} ({results[algo, seed]['wall_s']:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    finally:
        for ref in refs:  # an error or Ctrl-C: stop what is still running
            ray.cancel(ref, force=True)
        if owns:
            ray.shutdown()
    return results


def check(args) -> None:
    """Every input, before any run."""
    from agents.zoo.args import parse_key_values
    from agents.zoo.registry import REGISTRY

    args.hp = parse_key_values(args.hyperparams, "--hyperparams")
    args.budgets = parse_key_values(args.budget, "--budget")
    for algo in args.algos:
        if algo not in REGISTRY:
            raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(REGISTRY)}")
        b = budget_of(args, algo)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"{algo}: needs a budget, an integer >= 1 (--budget {algo}:N), got {b!r}")
    names = list(MBRL_ABLATIONS) if args.mbrl_ablations == ["all"] else args.mbrl_ablations
    for name in names:
        if name not in MBRL_ABLATIONS:
            raise ValueError(f"unknown MBRL ablation {name!r}; allowed: all, {', '.join(MBRL_ABLATIONS)}")
    args.labels = [*args.algos, *(f"mbrl_{n}" for n in names if f"mbrl_{n}" not in args.algos)]
    stray = sorted((set(args.hp) | set(args.budgets)) - {algo_of(label) for label in args.labels})
    if stray:
        raise ValueError(f"--hyperparams/--budget keys must be algos of --algos ({', '.join(args.algos)}, or mbrl "
                         f"with --mbrl-ablations); got "
                         f"{', '.join(stray)}")  # fmt: skip
    if args.cpus_per_job is not None and args.ray is None:
        raise ValueError("--cpus-per-job only applies with --ray")
    args.cpus_per_job = 1.0 if args.cpus_per_job is None else args.cpus_per_job
    if not args.cpus_per_job > 0:
        raise ValueError(f"--cpus-per-job must be > 0, got {args.cpus_per_job}")


def sample_efficiency(args) -> None:
    check(args)
    out = Path(args.out).resolve()  # absolute: Ray tasks may run in other working directories
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(a, s) for a in args.labels for s in args.seeds]
    done = run_on_ray(args, out, jobs) if args.ray is not None else run_serial(args, out, jobs)
    results = {a: [done[a, s] for s in args.seeds] for a in args.labels}
    print(f"# sample efficiency on {args.env}: real quality evaluations to reach {TARGET:.0%} of the oracle-normalised"
          f" score ({len(args.seeds)} seeds, {args.eval_episodes} evaluation episodes; {date.today()})")  # fmt: skip
    print("| agent | per seed | IQM | 95% bootstrap CI | reached |")
    print("|---|---|---|---|---|")
    summary = {}
    for algo, runs in results.items():
        got = [r["evals_to_target"] for r in runs]
        vals, per = censored(got, runs)
        vals = np.array(vals)
        reached = sum(g is not None for g in got)
        lo, hi = bootstrap_ci(vals)
        summary[algo] = {"iqm": iqm(vals), "ci": (lo, hi), "reached": reached}
        print(f"| {algo} | {per} | {iqm(vals):.0f} | [{lo:.0f}, {hi:.0f}] | {reached}/{len(runs)} |")
    if "mbrl" in summary:
        m = summary["mbrl"]
        for algo, s in summary.items():
            if algo_of(algo) == "mbrl":
                continue
            ratio = m["iqm"] / s["iqm"]
            if m["reached"] < len(args.seeds):
                note = "not a valid comparison: MBRL did not reach the target on every seed"
            elif s["reached"] < len(args.seeds):
                note = f"an upper bound: {algo} did not reach the target on every seed within its budget"
            else:
                note = "both reached it on every seed"
            print(f"MBRL / {algo} real evaluations (IQM ratio): {ratio:.4f} ({note})")
    print_details(results)
    plot(results, out / "sample_efficiency.png")
    print(f"plot: {out / 'sample_efficiency.png'}")


def score_bands(runs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(evaluations, median, 25th, 75th percentile)`` of the score over the runs, at the checkpoints (and the counts
    every run was scored at) where every run has a score: a run's score at x is `score_at`, its last point at or below
    x, so runs whose counts differ by seed (the threshold rule's and RSM-PPO's, which pay only the steps that send)
    share one grid, and no run is carried past its own last point."""
    common = set.intersection(*({p["quality_evals"] for p in r["curve"]} for r in runs))
    grid = sorted(common | set(CHECKPOINTS))
    table = np.array([[np.nan if (v := score_at(r, x)) is None else v for x in grid] for r in runs], dtype=float)
    keep = ~np.isnan(table).any(axis=0)
    q = np.percentile(table[:, keep], [50, 25, 75], axis=0) if keep.any() else np.full((3, 0), np.nan)
    return np.asarray(grid, dtype=float)[keep], q[0], q[1], q[2]


def spent(run: dict) -> int:
    """The real evaluations a run spent in all (its last point; a run that never reached a target is censored there:
    on a profile a step at k = L costs none, so an agent's count can end below its step budget)."""
    return int(run["curve"][-1]["quality_evals"]) if run["curve"] else int(run["budget"])


def censored(got: list[int | None], runs: list[dict]) -> tuple[list[int], str]:
    """Each run's evaluations to a target (``got``; ``None``: never), a never counted as the evaluations it spent, and
    the per-seed text (``>N`` for those)."""
    vals = [g if g is not None else spent(r) for g, r in zip(got, runs, strict=True)]
    per = ", ".join(str(g) if g is not None else f">{v}" for g, v in zip(got, vals, strict=True))
    return vals, per


def score_at(run: dict, evals: int) -> float | None:
    """The run's score once it had spent at most ``evals`` real evaluations: its last point at or below ``evals``
    (``None`` if it has none, or if it never spent as many: its count stopped below)."""
    if not run["curve"] or run["curve"][-1]["quality_evals"] < evals:
        return None
    return next((p["normalized_score"] for p in reversed(run["curve"]) if p["quality_evals"] <= evals), None)


def print_details(results: dict) -> None:
    """Real evaluations to 0.9 / 0.95 / 0.99 and the score at the first checkpoints, per agent (median and per seed)."""
    print("\n| agent | evals to 0.90 | evals to 0.95 | evals to 0.99 | (median; per seed, >N: never, within its N) |")
    print("|---|---|---|---|---|")
    for algo, runs in results.items():
        cells = []
        for target in (0.9, 0.95, 0.99):
            got = [first_reaching(r["curve"], target) for r in runs]
            vals, per = censored(got, runs)
            bound = ">" if sorted(g is None for g in got)[len(got) // 2] else ""
            cells.append(f"{bound}{np.median(vals):.0f} ({per})")
        print(f"| {algo} | " + " | ".join(cells) + " | |")
    print("\n| agent | real evaluations | median score | interquartile range | per seed |")
    print("|---|---|---|---|---|")
    for algo, runs in results.items():
        for n in SCORE_AT:
            got = [score_at(r, n) for r in runs]
            if any(g is None for g in got):
                continue
            q = np.percentile(got, [50, 25, 75])
            print(f"| {algo} | {n} | {q[0]:.3f} | [{q[1]:.3f}, {q[2]:.3f}] | {', '.join(f'{g:.3f}' for g in got)} |")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from llmsplit_env.util.files import atomic_output

    fig, ax = plt.subplots(figsize=(9.5, 5))
    bottom = 0.5
    # the agents in tab10's colours, solid; MBRL's ablations dashed, in tab20's light shades, without bands
    agents = [a for a in results if not is_ablation(a)]
    for algo, runs in results.items():
        x, med, lo, hi = score_bands(runs)
        if not len(x):
            continue
        ablation = is_ablation(algo)
        i = list(MBRL_ABLATIONS).index(algo[5:]) if ablation else agents.index(algo)
        color = plt.get_cmap("tab20")(2 * i + 1) if ablation else plt.get_cmap("tab10")(i % 10)
        bottom = min(bottom, float(np.nanmin(lo)) - 0.05)
        ax.plot(x, med, color=color, lw=1.2 if ablation else 1.8, ls="--" if ablation else "-", marker=".",
                label=f"{algo} (median, {len(runs)} seeds)")  # fmt: skip
        if len(runs) > 1 and not ablation:
            ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    ax.axhline(TARGET, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = (25, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
    ax.set_xticks([t for t in ticks if lo <= t <= hi])
    label = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")
    ax.xaxis.set_major_formatter(label)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylim(max(-0.5, bottom), 1.05)  # what is shown, down to -0.5 (a policy worse than random is cut there)
    ax.set_xlabel("real quality evaluations")
    ax.set_ylabel("oracle-normalised score")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: none hides a curve
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def paper(args) -> None:
    """Paper reproduction: the chosen split vs ρ, and surrogate vs extrapolated live-LLM training time."""
    from agents.baselines import OracleAgent
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer, evaluate_agent
    from agents.zoo.registry import load_agent, train_agent
    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.llm.channel import ErasureChannel

    env_id = "LLMSplit-Paper-v0"
    out = Path(args.out) / "paper"
    scorer = OracleNormalizer(make_env(env_id), [4_000_000 + i for i in range(args.eval_episodes)])
    rec = train_agent("rsm_ppo", env_id, seed=0, out_dir=out / "rsm", scorer=scorer)
    rsm = load_agent("rsm_ppo", rec.path, make_env(env_id))
    mb = train_agent("mbrl", env_id, seed=0, out_dir=out / "mbrl", scorer=scorer)
    mbrl = load_agent("mbrl", mb.path, make_env(env_id))
    print(f"# paper reproduction on {env_id} ({date.today()})")
    print(f"RSM-PPO: {rec.quality_evals} real evaluations, {rec.n_timesteps} surrogate PPO steps in "
          f"{rec.train_s:.0f} s; normalised score {rec.curve[-1]['normalized_score']:.3f}")  # fmt: skip
    print(
        f"MBRL: {mb.quality_evals} real evaluations in {mb.train_s:.0f} s; score {mb.curve[-1]['normalized_score']:.3f}"
    )

    # The chosen split against the observed rho, binned, over held-out episodes of each policy.
    env = make_env(env_id)
    seeds = [5_000_000 + i for i in range(40)]
    traces = {name: evaluate_agent(agent, env, seeds, trace=True)
              for name, agent in (("oracle", OracleAgent(env)), ("RSM-PPO", rsm), ("MBRL", mbrl))}  # fmt: skip
    edges = np.linspace(0.0, 0.3, 7)
    print("\n| observed rho | " + " | ".join(f"{k} median split" for k in traces) + " |")
    print("|---|" + "---|" * len(traces))
    for lo, hi in itertools.pairwise(edges):
        cells = []
        for tr in traces.values():
            sel = (tr["levels"] >= lo) & (tr["levels"] < hi)
            cells.append(f"{np.median(tr['step_splits'][sel]):.0f} (n={sel.sum()})" if sel.any() else "-")
        print(f"| {lo:.2f}-{hi:.2f} | " + " | ".join(cells) + " |")

    runner = SplitRunner.from_pretrained("smollm2-135m", "wiki", num_tokens=2048)
    runner.prefixes()
    t0 = time.perf_counter()
    for k in (1, 4, 7, 10):
        runner.evaluate(k, ErasureChannel(0.15), [0])
    per_eval = (time.perf_counter() - t0) / 4
    live = per_eval * rec.n_timesteps
    print(
        f"\nlive SmolLM2 evaluation (2048 tokens, cached prefix, splits 1-10 of 30): {per_eval:.2f} s each on this CPU"
    )
    print(f"{rec.n_timesteps} PPO steps on live perplexity ≈ {live / 3600:.1f} h vs {rec.train_s / 60:.1f} min in the "
          f"surrogate ({live / rec.train_s:.0f}x); the paper reports ≈24 days vs 7.7 min for Llama-2-7B")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="LLMSplit-v0")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--algos", nargs="+", default=["mbrl", "threshold", "ppo", "a2c", "dqn", "rsm_ppo"])
    p.add_argument("--rsm-sizes", type=int, nargs="+", default=[90, 180, 360, 720, 1440])
    p.add_argument("--rsm-steps", type=int, default=20_000, help="PPO steps inside the surrogate per RSM run")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--out", default="runs/bench_sample_efficiency")
    p.add_argument("--budget", nargs="*", metavar="ALGO:N", help="real-evaluation budgets instead of BUDGETS")
    p.add_argument("-params", "--hyperparams", nargs="*", metavar="ALGO.KEY:VALUE", help="hyperparameter overrides")
    p.add_argument(
        "--mbrl-ablations",
        nargs="+",
        default=[],
        metavar="NAME",
        help=f"also run MBRL with one idea changed each: all, or some of {', '.join(MBRL_ABLATIONS)}",
    )
    p.add_argument("--paper", action="store_true", help="run the paper reproduction instead")
    add_ray_flag(p, "run the (agent, seed) jobs as Ray tasks")
    p.add_argument("--cpus-per-job", type=float, help="--ray: CPUs (and torch threads) per job (default: 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    from agents.zoo.common import cli_main

    def run(args: argparse.Namespace) -> int:
        paper(args) if args.paper else sample_efficiency(args)
        return 0

    return cli_main(build_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
