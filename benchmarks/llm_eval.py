"""Cached vs uncached split evaluation of the real SmolLM2, per split, against the FLOP-proportional limit.

    python benchmarks/llm_eval.py [--num-tokens 2048] [--repeats 2] [--dtype auto] [--splits 1 5 ...]

Per split k, the uncached evaluation runs the whole forward with the channel at boundary k; the cached one starts
from the stored clean ``H_k`` and runs layers k+1..L, the final norm and the LM head. The FLOP limit is the suffix's
share of the full forward's FLOPs (matmuls and attention scores). Timings interleave the two modes and keep the
fastest of ``--repeats`` runs of each, so a noisy neighbour slows both alike; the table reports ratios.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import torch

from llmsplit_env.llm import SplitRunner
from llmsplit_env.llm.channel import AnalogChannel


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
    p.add_argument("--repeats", type=int, default=2)
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
    runner.evaluate(1, channel, [0], cached=False)  # warm-up (allocator, kernels)

    rows = []
    for k in args.splits or range(1, L):
        cached, uncached = [], []
        for r in range(args.repeats):
            for mode, out in ((False, uncached), (True, cached)) if r % 2 == 0 else ((True, cached), (False, uncached)):
                t = time.perf_counter()
                runner.evaluate(k, channel, [r], cached=mode)
                out.append(time.perf_counter() - t)
        limit = ((L - k) * layer + head) / (L * layer + head)
        rows.append((k, min(uncached), min(cached), min(cached) / min(uncached), limit))

    machine = platform.processor() or platform.machine()
    print(f"# llm_eval: SmolLM2-135M, {runner.num_tokens} tokens (window {runner.window}), {runner.dtype}, "
          f"{torch.get_num_threads()} threads, {date.today()}, {machine}")  # fmt: skip
    print(f"# one-off prefix build (all {L + 1} boundaries): {prefix_s:.2f} s")
    print("| split k | uncached s | cached s | cached/uncached | FLOP limit |")
    print("|---|---|---|---|---|")
    for k, u, c, ratio, limit in rows:
        print(f"| {k} | {u:.3f} | {c:.3f} | {ratio:.3f} | {limit:.3f} |")
    mean_ratio = sum(r[3] for r in rows) / len(rows)
    mean_limit = sum(r[4] for r in rows) / len(rows)
    slower = [r[0] for r in rows if r[3] > 1.0]
    print(f"\nmean cached/uncached = {mean_ratio:.3f} (FLOP limit {mean_limit:.3f}); splits where cached is slower: "
          f"{slower or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
