"""Evaluate the agents saved by ``llmsplit train`` on held-out seeds: ``llmsplit evaluate``.

Prints, per agent, the mean return with a 95% confidence interval, the oracle-normalised score
``(R − R_random) / (R_oracle − R_random)`` (random and oracle run on the same seeds), the mean perplexity, the split
histogram and the real quality evaluations spent in training. Writes PNG plots (return vs real evaluations; split vs
SNR policy map) and, with ``--json FILE``, ``{agent: {mean_return, ci95, normalized_score, mean_ppl, quality_evals}}``
(``{agent: {error}}`` for an agent that could not be loaded or failed while acting). Every agent that can be is
evaluated; each other one is listed with its reason. Exit status: 0 every agent evaluated, `PARTIAL` (3) some,
1 none (2: bad input, 130: Ctrl-C).

On the edge cell (``--env LLMSplit-Cell-v0``) the return is the team's, normalised with `agents.cell.CellRandomAgent`
(seed 0) and `agents.cell.CellPlannerAgent` (the cell's "oracle"); the table and the JSON add the offload share and the
deadline-miss rate (per request), the JSON also the edge utilisation, the mean latency and ``ue_returns`` (each UE's
mean return per episode); PPL and splits are over requests, and the policy map plots each request's split against its
UE's observed level.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from agents.zoo.common import check_output_folder, cli_main, read_summary

PARTIAL = 3  # exit status: some agents evaluated, the others listed with their reasons
#: the edge cell's figures (`agents.common.evaluation.evaluate_agent`) in the results and the JSON
CELL_KEYS = ("offload_share", "deadline_miss_rate", "edge_utilisation", "mean_latency_s")
#: what the JSON holds per agent (the edge cell's figures and per-UE returns only on the cell)
JSON_KEYS = ("mean_return", "ci95", "normalized_score", "mean_ppl", "quality_evals", *CELL_KEYS, "ue_returns")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--env", default="LLMSplit-v0", help="environment id (default: LLMSplit-v0)")
    p.add_argument("-f", "--log-folder", default="runs", help="the train command's log folder (default: runs)")
    p.add_argument("--algo", nargs="+", help="only these agents (default: every agent in the summary)")
    p.add_argument("--n-eval-episodes", type=int, default=30, help="held-out episodes per agent (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="held-out seeds start at 2,000,000 + 1000·seed")
    p.add_argument("--json", type=Path, help="write the results as JSON to this file")
    p.add_argument("--plots", type=Path, help="folder for the PNG plots (default: <log-folder>/<env>/plots)")
    return p


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean."""
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``llmsplit evaluate ARGS``: 0 when at least one agent was evaluated, 1 when none could be, 2 (one ``error:``
    line) for bad input, 130 on Ctrl-C."""
    return cli_main(lambda: build_parser(prog), run, argv)


def run(args: argparse.Namespace) -> int:
    from agents.common.env_util import make_env
    from agents.common.evaluation import OracleNormalizer, evaluate_agent, is_cell_env
    from agents.zoo.registry import load_agent

    if args.n_eval_episodes < 2:
        raise ValueError(f"--n-eval-episodes must be >= 2 (for a confidence interval), got {args.n_eval_episodes}")
    summary_path = Path(args.log_folder) / args.env / "summary.json"
    for folder in (Path(args.log_folder), summary_path.parent):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"-f/--log-folder {args.log_folder}: {folder} is a file, not the train command's folder")
    if not summary_path.is_file():
        raise FileNotFoundError(f"no training summary at {summary_path}: run `llmsplit train --env {args.env}` first")
    summary = read_summary(summary_path)
    env_kwargs = summary.get("env_kwargs") or {}
    entries = summary["agents"]
    if not entries:
        raise ValueError(f"{summary_path} lists no saved agents")
    if args.algo:
        missing = [a for a in args.algo if not any(e["algo"] == a for e in entries.values())]
        if missing:
            have = sorted({e["algo"] for e in entries.values()})
            raise ValueError(f"no saved agent for {', '.join(missing)} in {summary_path}; saved: {', '.join(have)}")
        entries = {k: e for k, e in entries.items() if e["algo"] in args.algo}
    plots = args.plots or summary_path.parent / "plots"
    check_output_folder(plots, "--plots" if args.plots else "-f/--log-folder (the default --plots)")
    if args.json:
        check_output_file(args.json, "--json")
    seeds = [2_000_000 + 1000 * args.seed + i for i in range(args.n_eval_episodes)]

    # one env, built once: the reference runs, every agent loads onto it and is evaluated on it (each episode starts
    # from env.reset(seed))
    env = make_env(args.env, env_kwargs)
    reference = OracleNormalizer(env, seeds)
    r_random, r_oracle = reference.reference
    n_random, n_oracle = reference.reference_names
    cell = is_cell_env(env)

    results, traces, failed = {}, {}, {}
    try:
        for name, e in entries.items():
            try:  # one agent that cannot be loaded (missing, damaged, refused) must not cost the others
                agent = load_agent(e["algo"], e["path"], env)
                stale = stale_entry(e)  # a whole file, but not the one the entry describes
                if stale:
                    raise ValueError(stale)
            except (ValueError, FileNotFoundError, OSError) as err:
                failed[name] = str(err)
                print(f"skipped {name}: {err}", file=sys.stderr, flush=True)
                continue
            try:  # nor one that loads but fails to act (a crafted file, a bug): it is listed with the reason
                tr = evaluate_agent(agent, env, seeds, trace=True)
            except Exception as err:
                failed[name] = f"evaluation failed: {type(err).__name__}: {err}"
                print(f"skipped {name}: {failed[name]}", file=sys.stderr, flush=True)
                continue
            traces[name] = tr
            mean = float(tr["mean_return"])
            results[name] = {
                "algo": e["algo"],
                "mean_return": mean,
                "ci95": ci95(tr["returns"]),
                "normalized_score": float((mean - r_random) / (r_oracle - r_random)),
                "mean_ppl": float(tr["mean_ppl"]),
                "quality_evals": int(e.get("quality_evals", 0)),
                "split_histogram": {int(k): int(c) for k, c in tr["split_counts"].items() if c},
            }
            if cell:  # the edge cell's figures (`evaluate_agent`), and each UE's mean return per episode
                results[name] |= {k: float(tr[k]) for k in CELL_KEYS} | {"ue_returns": tr["ue_returns"].tolist()}
    except KeyboardInterrupt:
        if args.json and results:  # keep what finished
            write_json(args.json, results, failed)
        raise

    print(f"{args.env}: {len(seeds)} held-out episodes (seeds {seeds[0]}…{seeds[-1]}); "
          f"{n_oracle} {r_oracle:.2f} (score 1), {n_random} {r_random:.2f} (score 0)")  # fmt: skip
    extra = f"{'offload':>9}{'dl. miss':>10}" if cell else ""
    print(f"{'agent':<18}{'return ± 95% CI':>20}{'norm. score':>13}{extra}{'mean PPL':>10}{'real evals':>12}  "
          f"top splits{' (requests)' if cell else ''}")  # fmt: skip
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["mean_return"]):
        top = sorted(r["split_histogram"].items(), key=lambda kv: -kv[1])[:4]
        tops = " ".join(f"k{k}:{c / sum(r['split_histogram'].values()):.0%}" for k, c in top)
        extra = f"{r['offload_share']:>9.1%}{r['deadline_miss_rate']:>10.1%}" if cell else ""
        print(f"{name:<18}{r['mean_return']:>12.2f} ± {r['ci95']:<5.2f}{r['normalized_score']:>13.3f}{extra}"
              f"{r['mean_ppl']:>10.1f}{r['quality_evals']:>12d}  {tops}")  # fmt: skip
    for name, why in failed.items():
        print(f"{name:<18}not evaluated: {why}")
    if args.json:
        write_json(args.json, results, failed)
        print(f"json: {args.json}")
    if not results:
        print(f"error: none of the {len(entries)} agents could be evaluated", file=sys.stderr)
        return 1
    write_plots(plots, {k: e for k, e in entries.items() if k in results}, traces, cell=cell)
    print(f"plots: {plots}/learning_curves.png, {plots}/policy_map.png")
    if failed:
        print(f"partial: {len(failed)} of the {len(entries)} agents could not be evaluated", file=sys.stderr)
        return PARTIAL
    return 0


def stale_entry(entry: dict) -> str | None:
    """Why a summary entry no longer describes its agent file (the file was replaced after the entry was written),
    or None. Entries written before digests were recorded are taken as they are."""
    from llmsplit_env.util.files import file_digest

    want, path = entry.get("sha256"), Path(entry["path"])
    if want is None or not path.is_file():  # a missing file is the loader's to report
        return None
    if file_digest(path) != want:
        return (f"{path} changed after its summary entry was written (an interrupted or concurrent run?): its "
                "real-evaluation count and curve are not this file's; train it again")  # fmt: skip
    return None


def check_output_file(path: Path, flag: str) -> None:
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    check_output_folder(path.parent, flag)


def write_json(path: Path, results: dict, failed: dict) -> None:
    from llmsplit_env.util.files import atomic_write_json

    out = {name: {k: r[k] for k in JSON_KEYS if k in r} for name, r in results.items()}
    out |= {name: {"error": why} for name, why in failed.items()}
    atomic_write_json(path, out)


def save_png(fig, path: Path) -> None:
    """Render to memory, then replace the file atomically (a reader never sees half a PNG)."""
    import io

    from llmsplit_env.util.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def write_plots(folder: Path, entries: dict, traces: dict, cell: bool = False) -> None:
    """Learning curves and the policy map (each decision's split against the observed level; on the edge cell, each
    request's split against its UE's own observed level: the cell's shared load is not on that axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    # Everything in this figure is on training's evaluation seeds (curves and "final" scores), not the held-out ones.
    for ax, key in ((axes[0], "mean_reward"), (axes[1], "normalized_score")):
        for i, (name, e) in enumerate(entries.items()):
            curve = e.get("curve") or []
            if curve:
                x = [max(1, c["quality_evals"]) for c in curve]
                ax.plot(x, [c[key] for c in curve], marker="o", ms=3, color=f"C{i % 10}", label=name)
            elif "final" in e:
                value = e["final"]["mean_return" if key == "mean_reward" else key]
                ax.axhline(value, ls=":", lw=1, color=f"C{i % 10}", label=f"{name} (no training curve)")
        ax.set_xscale("log")
        ax.set_xlabel("real quality evaluations spent in training")
    axes[0].set_ylabel("mean return (training's evaluation seeds)")
    axes[1].set_ylabel("oracle-normalised score")
    axes[1].axhline(0.95, color="k", lw=0.6, ls=":")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, folder / "learning_curves.png")
    plt.close(fig)

    n = len(traces)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharex=True, sharey=True)
    for ax, (name, tr) in zip(axes.flat, traces.items(), strict=False):
        ax.scatter(tr["levels"], tr["step_splits"], s=3, alpha=0.4)
        ax.set_title(name, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("the UE's observed level (SNR dB or ρ)" if cell else "observed level (SNR dB or ρ)")
    for ax in axes[:, 0]:
        ax.set_ylabel("chosen split k (per request)" if cell else "chosen split k")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    save_png(fig, folder / "policy_map.png")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
