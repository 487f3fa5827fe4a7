"""Cached vs uncached split evaluation of the real SmolLM2, per split, against the FLOP-proportional limit.

    python benchmarks/llm_eval.py [--num-tokens 2048] [--repeats 2] [--dtype auto] [--splits 1 5 ...]

Per split k, the uncached evaluation runs the whole forward with the channel at boundary k; the cached one starts
from the stored clean ``H_k`` and runs layers k+1..L, the final norm and the LM head. The FLOP limit is the suffix's
share of the full forward's FLOPs (matmuls and attention scores).

Timing on a shared machine: each repeat times one uncached and one cached evaluation back to back (the order
alternates), and its ratio is cached / uncached of that pair, so a neighbour's load slows both sides of a ratio alike.
The table gives the median time of each mode, the median of the pair ratios and their range, and the page faults of
one evaluation of each mode (the cost that made the cached path slower, see
`llmsplit_env.llm.runner.pin_malloc_thresholds`). A split counts as slower when its median ratio exceeds 1, and as
within noise when its pair ratios fall on both sides of 1. The load average is printed before and after the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from datetime import date

import torch

from llmsplit_env.llm import SplitRunner
from llmsplit_env.llm.channel import AnalogChannel
from llmsplit_env.llm.runner import pin_malloc_thresholds


def flops_per_token(runner: SplitRunner) -> tuple[float, float]:
    """(one decoder layer, final norm + LM head) multiply-add FLOPs per token, attention at the window's mean span."""
    cfg = runner.model.lm.config
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    kv = d * cfg.num_key_value_heads // cfg.num_attention_heads
    proj = 2 * (d * d * 2 + d * kv * 2)  # q, o and k, v projections
    mlp = 2 * 3 * d * f  # gate, up, down
    attn = 2 * 2 * d * (runner.window + 1) / 2  # scores and weighted sum over a causal window
    return proj + mlp + attn, 2 * d * v


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-tokens", type=int, default=2048)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="timed pairs per split (odd: a true median)")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--text", default="wiki")
    p.add_argument("--splits", type=int, nargs="+")
    args = p.parse_args()

    runner = SplitRunner.from_pretrained(
        "smollm2-135m", args.text, num_tokens=args.num_tokens, window=args.window, dtype=args.dtype, prefix_cache=False
    )
    L = runner.num_layers
    layer, head = flops_per_token(runner)
    channel = AnalogChannel(10.0)
    t0 = time.perf_counter()
    runner.prefixes()
    prefix_s = time.perf_counter() - t0
    for mode in (False, True):
        runner.evaluate(1, channel, [0], cached=mode)  # warm-up of both paths (allocator, kernels)

    def timed(k: int, seed: int, cached: bool) -> tuple[float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        runner.evaluate(k, channel, [seed], cached=cached)
        return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults

    load_before = os.getloadavg()
    rows = []
    for k in args.splits or range(1, L):
        u_s, c_s, ratios, faults = [], [], [], {False: [], True: []}
        for r in range(args.repeats):
            got = {}
            for mode in (False, True) if r % 2 == 0 else (True, False):
                got[mode] = timed(k, r, mode)
                faults[mode].append(got[mode][1])
            u_s.append(got[False][0])
            c_s.append(got[True][0])
            ratios.append(got[True][0] / got[False][0])
        limit = ((L - k) * layer + head) / (L * layer + head)
        med = statistics.median
        rows.append((k, med(u_s), med(c_s), med(ratios), min(ratios), max(ratios), med(faults[False]),
                     med(faults[True]), limit))  # fmt: skip
    load_after = os.getloadavg()

    machine = platform.processor() or platform.machine()
    print(f"# llm_eval: SmolLM2-135M, {runner.num_tokens} tokens (window {runner.window}), {runner.dtype}, "
          f"{torch.get_num_threads()} threads, {date.today()}, {machine}")  # fmt: skip
    print(f"# one-off prefix build (all {L + 1} boundaries): {prefix_s:.2f} s; malloc: {pin_malloc_thresholds()}")
    print(f"# {os.cpu_count()} CPUs; load average (1, 5, 15 min) before {_load(load_before)}, "
          f"after {_load(load_after)}")  # fmt: skip
    print(f"# medians of {args.repeats} interleaved pairs; ratio = cached / uncached of each pair")
    print("| split k | uncached s | cached s | cached/uncached | pair ratios | page faults u / c | FLOP limit |")
    print("|---|---|---|---|---|---|---|")
    for k, u, c, ratio, lo, hi, fu, fc, limit in rows:
        print(f"| {k} | {u:.3f} | {c:.3f} | {ratio:.3f} | {lo:.3f}-{hi:.3f} | {fu:,.0f} / {fc:,.0f} | {limit:.3f} |")
    mean_ratio = sum(r[3] for r in rows) / len(rows)
    mean_limit = sum(r[8] for r in rows) / len(rows)
    slower = [r[0] for r in rows if r[3] > 1.0]
    noisy = [r[0] for r in rows if r[4] <= 1.0 < r[5]]
    print(f"\nmean cached/uncached = {mean_ratio:.3f} (FLOP limit {mean_limit:.3f}); splits where cached is slower: "
          f"{slower or 'none'}; pair ratios on both sides of 1 (within noise): {noisy or 'none'}")  # fmt: skip


def _load(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
