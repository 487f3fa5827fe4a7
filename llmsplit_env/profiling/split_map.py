"""A profile's split map: perplexity over split × channel level, and the best split at each level.

``llmsplit map PROFILE --out map.png`` (``PROFILE``: a shipped name or a path) plots the mean
perplexity of every measured (split, level) cell, and over it the split that earns the highest expected reward when
the channel holds still at that level (no switching cost: the split the oracle settles on under a constant channel),
for the env's reward weights (``--config`` JSON overrides them, as in ``gym.make(id, config=...)``). It prints the
best split per level as a table. Colours are the cell's PPL relative to the clean PPL on a log scale that ends at
``--ppl-cap`` times clean (default 10×; worse cells share the top colour), so the range just above clean stays
legible. The same numbers come from `split_map` in Python.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmsplit_env.factory import make_backend
from llmsplit_env.problem import compile_problem
from llmsplit_env.util.files import atomic_write_bytes


@dataclass(frozen=True)
class SplitMap:
    """``mean_ppl[k, v]`` (splits × levels, from the profile's mean log-perplexity), ``expected_reward[k, v]`` of
    holding split ``k`` at level ``v``, and ``best_split[v]``, its argmax over the allowed splits."""

    splits: np.ndarray
    levels: np.ndarray
    level_name: str
    mean_ppl: np.ndarray
    expected_reward: np.ndarray
    best_split: np.ndarray
    clean_ppl: float


#: the split map's colour scale ends at this many times the clean perplexity (``--ppl-cap``): cells beyond it share
#: the top colour, so the informative range just above clean (1–3×) spans half the scale instead of a sliver of it
DEFAULT_PPL_CAP = 10.0


def colour_position(m: SplitMap, cap: float = DEFAULT_PPL_CAP) -> np.ndarray:
    """Where each cell's mean perplexity sits on the colour scale: ``log(PPL / PPL_clean) / log(cap)`` in [0, 1]
    (1: ``cap`` times clean or worse)."""
    if not math.isfinite(cap) or cap <= 1.0:
        raise ValueError(f"the perplexity cap must be a finite ratio > 1 to the clean perplexity, got {cap!r}")
    ratio = np.maximum(m.mean_ppl / m.clean_ppl, 1.0)
    return np.minimum(np.log(ratio) / math.log(cap), 1.0)


def split_map(profile: str, config: Mapping | None = None) -> SplitMap:
    """The split map of ``profile`` under the env config ``config`` (its scheme is the profile's)."""
    from llmsplit_env.config import resolve_config
    from llmsplit_env.quality import load_profile

    prof = load_profile(profile)
    user = dict(config or {})
    m = prof.metadata.get("scheme_params", {}).get("m")
    if m is not None and "nakagami_m" not in user.get("channel", {}):  # the fading the profile was measured with
        user["channel"] = {**user.get("channel", {}), "nakagami_m": m}
    if prof.scheme == "erasure" and "model" not in user.get("channel", {}):  # ρ needs a ρ channel; any will do here
        lo, hi = float(np.min(prof.levels)), float(np.max(prof.levels))
        user["channel"] = {"csi_error": 0.0, **user.get("channel", {}), "model": "static",
                           "static": {"low": lo, "high": hi}}  # fmt: skip
    cfg = resolve_config({"scheme": prof.scheme, **user, "profile": str(profile)})
    qb = make_backend(cfg)
    problem = compile_problem(cfg, qb)
    splits = np.asarray(prof.splits)
    levels = np.asarray(prof.levels, dtype=float)
    reward = np.full((len(splits), len(levels)), -np.inf)
    for i, k in enumerate(splits.tolist()):
        if not problem.is_allowed(k):
            continue
        for j, x in enumerate(levels.tolist()):
            reward[i, j] = problem.expected_reward(k, 0, x, qb.expectations)
    best = splits[np.argmax(reward, axis=0)]
    mean_ppl = np.exp(np.asarray(prof.mean_log_ppl))
    return SplitMap(splits, levels, prof.level_name, mean_ppl, reward, best, float(prof.clean_ppl))


def plot_split_map(m: SplitMap, path: str | Path, title: str = "", cap: float = DEFAULT_PPL_CAP) -> None:
    """Heat map of the mean PPL over split × level, relative to the clean PPL on a log scale capped at ``cap`` times
    clean (`colour_position`), with the best split per level on top; written atomically (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    mesh = ax.pcolormesh(m.levels, m.splits, colour_position(m, cap), shading="nearest", cmap="viridis",
                         vmin=0.0, vmax=1.0)  # fmt: skip
    ticks = [r for r in (1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100, 1000) if r <= cap] + [cap]
    bar = fig.colorbar(mesh, ax=ax, extend="max", ticks=[math.log(r) / math.log(cap) for r in sorted(set(ticks))])
    bar.ax.set_yticklabels([f"{r:g}×" for r in sorted(set(ticks))])
    bar.set_label(f"mean PPL / clean PPL ({m.clean_ppl:.2f}); ≥ {cap:g}× one colour")
    ax.plot(m.levels, m.best_split, "w-o", ms=3, lw=1.5, label="best split (channel held at the level)")
    ax.set_xlabel("SNR (dB)" if m.level_name == "snr_db" else "erasure probability ρ")
    ax.set_ylabel("split k (layers on the UE)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv: list[str] | None = None, prog: str = "python -m llmsplit_env.profiling.split_map") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("profile", help="a shipped profile name (e.g. smollm2-135m-analog) or a profile JSON path")
    p.add_argument("--out", type=Path, help="PNG to write (default: only print the table)")
    p.add_argument("--config", default="{}", help="env config overrides as JSON, e.g. '{\"reward\": {...}}'")
    p.add_argument("--ppl-cap", type=float, default=DEFAULT_PPL_CAP,
                   help=f"the colour scale's top, in clean PPLs (default {DEFAULT_PPL_CAP:g})")  # fmt: skip
    args = p.parse_args(argv)
    try:
        config = json.loads(args.config)
        if not isinstance(config, dict):
            raise ValueError(f"--config must be a JSON object, got {args.config!r}")
        if args.out is not None and args.out.is_dir():
            raise ValueError(f"--out {args.out} is a directory; give a .png file name")
        if not math.isfinite(args.ppl_cap) or args.ppl_cap <= 1.0:
            raise ValueError(f"--ppl-cap must be a finite ratio > 1 to the clean perplexity, got {args.ppl_cap:g}")
        m = split_map(args.profile, config)
    except (ValueError, FileNotFoundError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    unit = "dB" if m.level_name == "snr_db" else ""
    print(f"{'level':>8}  best split  mean PPL there")
    for j, x in enumerate(m.levels):
        i = int(np.flatnonzero(m.splits == m.best_split[j])[0])
        print(f"{x:>6.3g}{unit:>2}  {int(m.best_split[j]):>10}  {m.mean_ppl[i, j]:>14.2f}")
    if args.out is not None:
        plot_split_map(m, args.out, title=str(args.profile), cap=args.ppl_cap)
        print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
