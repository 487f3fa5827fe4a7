"""A short real split-inference demo: SmolLM2-135M split at a few layers over a few channels.

python -m llmsplit_env.llm.demo [--num-tokens 1024] [--text wiki]
"""

from __future__ import annotations

import argparse

from llmsplit_env.llm import SplitRunner
from llmsplit_env.llm.channel import AnalogChannel, DigitalChannel, ErasureChannel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--text", default="wiki")
    p.add_argument("--num-tokens", type=int, default=1024)
    p.add_argument("--splits", type=int, nargs="+", default=[1, 8, 15, 22, 29, 30])
    args = p.parse_args(argv)
    runner = SplitRunner.from_pretrained(args.model, args.text, num_tokens=args.num_tokens)
    channels = [AnalogChannel(5.0), AnalogChannel(15.0), AnalogChannel(30.0), DigitalChannel(10.0), ErasureChannel(0.1)]
    print(f"{runner.name}: {runner.num_layers} layers, clean PPL {runner.clean_perplexity():.2f} "
          f"on {runner.num_tokens} tokens of {runner.text_name!r} ({runner.dtype}, {runner.device})")  # fmt: skip
    print("split | " + " | ".join(f"{c!r:>32}" for c in channels))
    for k in args.splits:
        ppl = [runner.perplexity(k, c, seed=0) for c in channels]
        print(f"{k:5d} | " + " | ".join(f"{x:32.2f}" for x in ppl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
