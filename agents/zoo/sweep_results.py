"""What a sweep (`agents.zoo.sweep`) writes: one result file per finished trial, and the comparison table (markdown and
CSV, a row per trial) and plot of a sweep. Every file is written atomically (`llmsplit_env.util.files`)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

#: no return or score of an env of this package comes near it: a larger one is a damaged file, not a result
MAX_ABS = 1e12


def result_path(out: Path, spec: dict) -> Path:
    return out / "trials" / f"{spec['name']}.json"


def read_result(out: Path, spec: dict) -> dict | None:
    """A finished trial's result, or None; ``ValueError`` naming a damaged or foreign file."""
    path = result_path(out, spec)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, an integer too long, nested too deeply
        why = e if isinstance(e, ValueError) else "nested too deeply"
        raise ValueError(f"{path} is not a readable trial result ({why}); remove it to rerun that trial") from None
    if not isinstance(saved, dict) or saved.get("spec") != spec or not isinstance(saved.get("result"), dict):
        raise ValueError(f"{path} holds another trial's result; remove it to rerun that trial")
    problem = check_result(saved["result"])
    if problem:
        raise ValueError(f"{path} is damaged: 'result.{problem}; remove it to rerun that trial")
    return saved["result"]


def _number(value) -> float | None:
    """``value`` as a finite float within ±`MAX_ABS`, else None (NaN, inf, 1e308, a string, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return x if abs(x) <= MAX_ABS else None  # NaN fails the comparison


def check_result(result: dict) -> str | None:
    """What is wrong with a trial's saved ``result`` (``"field' must be …, got …"``), or None if the table can
    show it: finite numbers in range, counts as integers >= 0, and the score the one its return gives."""
    for key in ("mean_return", "normalized_score", "R_random", "R_oracle", "train_s", "quality_evals", "n_timesteps"):
        if key not in result:
            return f"{key}' is missing"
    for key in ("mean_return", "normalized_score", "R_random", "R_oracle", "train_s"):
        if _number(result[key]) is None:
            return f"{key}' must be a finite number within ±{MAX_ABS:g}, got {result[key]!r:.60}"
    if result["train_s"] < 0:
        return f"train_s' must be >= 0, got {result['train_s']!r}"
    for key in ("quality_evals", "n_timesteps"):
        value = result[key]
        count = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ABS
        if not count and not (key == "n_timesteps" and value is None):
            return f"{key}' must be an integer >= 0, got {value!r:.60}"
    r_random, r_oracle = float(result["R_random"]), float(result["R_oracle"])
    if r_oracle <= r_random:
        return f"R_oracle' ({r_oracle!r}) must exceed 'R_random' ({r_random!r})"
    score = (float(result["mean_return"]) - r_random) / (r_oracle - r_random)
    if not math.isclose(score, float(result["normalized_score"]), rel_tol=1e-9, abs_tol=1e-9):
        return f"normalized_score' ({result['normalized_score']!r}) is not the score of 'mean_return' ({score!r})"
    return None


COLUMNS = ["env_id", "env_config", "algo", "seed", "status", "mean_return", "normalized_score", "quality_evals",
           "n_timesteps", "train_s", "R_random", "R_oracle", "trial", "agent_path", "error"]  # fmt: skip


def table_rows(specs: list[dict], results: dict[str, dict], errors: dict[str, str]) -> list[dict]:
    """One row per trial of this sweep, in plan order: ``status`` done, error or not run."""
    rows = []
    for spec in specs:
        row = {k: "" for k in COLUMNS}
        row |= {"env_id": spec["env_id"], "env_config": spec["env_config"], "algo": spec["algo"],
                "seed": spec["seed"], "trial": spec["name"]}  # fmt: skip
        res = results.get(spec["name"])
        if res is not None:
            row |= {k: res[k] for k in COLUMNS if k in res} | {"status": "done"}
        elif spec["name"] in errors:
            row |= {"status": "error", "error": errors[spec["name"]]}
        else:
            row["status"] = "not run"
        rows.append(row)
    return rows


def write_outputs(out: Path, rows: list[dict], env_id: str, eval_episodes: int, env_kwargs: list[str] | None) -> str:
    """``sweep.csv``, ``sweep.md`` and ``sweep.png``, atomically; returns the markdown table."""
    from llmsplit_env.util.files import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: they read back exactly
    atomic_write_bytes(out / "sweep.csv", buf.getvalue().encode())

    fixed = " ".join(env_kwargs or []) or "none"
    lines = [
        f"# sweep on {env_id}: oracle-normalised score of each trained agent on train.py's evaluation episodes "
        f"({eval_episodes} per trial); --env-kwargs: {fixed}",
        "",
        "| env config | algo | seed | mean return | norm. score | real evals | budget | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["status"] == "done":
            cells = (f"{r['mean_return']:.2f}", f"{r['normalized_score']:.3f}", str(r["quality_evals"]),
                     str(r["n_timesteps"]), f"{r['train_s']:.1f}")  # fmt: skip
        else:
            cells = (r["status"] + (f": {r['error']}" if r["error"] else ""), "", "", "", "")
        lines.append(f"| {r['env_config']} | {r['algo']} | {r['seed']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    atomic_write_bytes(out / "sweep.md", table.encode())
    plot(out / "sweep.png", rows, env_id)
    return table


def plot(path: Path, rows: list[dict], env_id: str) -> None:
    """Oracle-normalised score per env config (groups) and algo (bars: mean over seeds; dots: each seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from llmsplit_env.util.files import atomic_output

    configs = list(dict.fromkeys(r["env_config"] for r in rows))
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    width = 0.8 / len(algos)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.5 * len(configs) * len(algos)), 4.5))
    for j, algo in enumerate(algos):
        for i, config in enumerate(configs):
            scores = [r["normalized_score"] for r in rows
                      if r["algo"] == algo and r["env_config"] == config and r["status"] == "done"]  # fmt: skip
            x = i + (j - (len(algos) - 1) / 2) * width
            if scores:
                ax.bar(x, float(np.mean(scores)), width * 0.9, color=f"C{j % 10}", label=algo if i == 0 else None)
                ax.scatter([x] * len(scores), scores, s=10, color="k", zorder=3)
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(range(len(configs)), configs, rotation=15 if len(configs) > 2 else 0, fontsize=8)
    ax.set_ylabel("oracle-normalised score")
    ax.set_title(f"{env_id}: mean over seeds (dots: each seed)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
