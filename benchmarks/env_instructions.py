"""Env cost in CPU instructions per step (valgrind callgrind): this tree against a baseline git revision, and both
against `CartPole-v1`.

    python benchmarks/env_instructions.py [--baseline-rev REV] [--steps 5000] [--vector-calls 200]

Wall-clock throughput (`env_throughput.py`) swings by ±25 % on a shared machine; instruction counts do not (the same
count for the same code, inputs and interpreter, whatever else runs). Each case runs twice under callgrind, with 0 and
with N steps, so interpreter start-up and imports cancel: cost per step = (I_N − I_0) / N. Single envs step through
``gym.make`` on pre-drawn random actions, resetting on episode end; the vector env steps 1024 sub-envs per call
(``--vector-calls`` crosses a refill of its normal streams, every ~170 calls). The baseline is checked out into a
temporary git worktree and imported from there. Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASE = r"""
import gc, sys, numpy as np, gymnasium as gym, llmsplit_env
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "vector":
    envs = gym.make_vec("LLMSplit-v0", num_envs=1024, vectorization_mode="vector_entry_point")
    envs.reset(seed=0)
    acts = np.random.default_rng(0).integers(0, 30, (max(n, 1), 1024))
    gc.collect()
    gc.freeze()  # what the imports allocated is not rescanned by the step loop's collections
    for i in range(n):
        envs.step(acts[i])
else:
    env = gym.make(kind)
    env.reset(seed=0)
    acts = np.random.default_rng(0).integers(0, env.action_space.n, max(n, 1)).tolist()
    gc.collect()
    gc.freeze()
    for a in acts[:n]:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
"""


def instructions(tree: Path, kind: str, n: int) -> int:
    """Instructions callgrind counts for one run of `CASE` importing `llmsplit_env` from ``tree``."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CASE)
    try:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, f.name, kind, str(n)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},  # hashing: the same count twice
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(f.name)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(m.group(1))


def per_step(tree: Path, kind: str, n: int) -> float:
    return (instructions(tree, kind, n) - instructions(tree, kind, 0)) / n


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-rev", default="HEAD", help="git revision to compare with (default: HEAD)")
    p.add_argument("--steps", type=int, default=5000, help="single-env steps per counted run")
    p.add_argument("--vector-calls", type=int, default=200, help="vector step() calls per counted run")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("error: valgrind is not installed (Debian: apt-get install valgrind)")

    base = Path(tempfile.mkdtemp(prefix="llmsplit-baseline-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline_rev], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        rows = {}
        for label, tree in (("baseline", base), ("this tree", ROOT)):
            cart = per_step(tree, "CartPole-v1", args.steps)
            single = per_step(tree, "LLMSplit-v0", args.steps)
            vector = per_step(tree, "vector", args.vector_calls) / 1024
            rows[label] = {"cartpole": cart, "single": single, "vector": vector}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)

    print(f"instructions per step (valgrind callgrind); baseline = {args.baseline_rev}\n")
    print("| tree | CartPole-v1 | LLMSplit-v0 (gym.make) | vs CartPole | vector, per sub-env step | single / vector |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in rows.items():
        print(f"| {label} | {r['cartpole']:,.0f} | {r['single']:,.0f} | {r['cartpole'] / r['single']:.2f}x | "
              f"{r['vector']:,.0f} | {r['single'] / r['vector']:.1f}x |")  # fmt: skip
    b, t = rows["baseline"], rows["this tree"]
    print(f"\nthis tree / baseline: single env {t['single'] / b['single']:.3f}, vector {t['vector'] / b['vector']:.3f}")
    return rows


if __name__ == "__main__":
    main()
