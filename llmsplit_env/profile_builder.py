"""Build a quality profile of a real split LLM: ``python -m llmsplit_env.profile_builder --scheme analog --out FILE``.

Measures log-perplexity at every split × channel level × seed, plus the clean perplexity and the leakage probe, and
writes a JSON profile (see `llmsplit_env.quality.profile`). Each finished cell is saved atomically to
``FILE.partial.json``; rerunning the same command resumes from it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

import llmsplit_env
from llmsplit_env.channel import SCHEMES, make_channel
from llmsplit_env.files import atomic_write_json
from llmsplit_env.quality.profile import FORMAT, FORMAT_VERSION, LEVEL_NAMES, profile_from_dict

DEFAULT_LEVELS = {
    "analog": np.round(np.arange(-5.0, 35.0 + 1e-9, 2.5), 6),
    "digital": np.round(np.arange(-5.0, 35.0 + 1e-9, 2.5), 6),
    "erasure": np.round(np.arange(0.0, 0.3 + 1e-9, 0.025), 6),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmsplit_env.profile_builder", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="alias, local path or hub id (default: smollm2-135m)")
    p.add_argument("--text", default="wiki", help="wiki, pydoc, a file path or literal text (default: wiki)")
    p.add_argument("--scheme", required=True, choices=SCHEMES)
    p.add_argument("--out", required=True, type=Path, help="profile JSON to write")
    p.add_argument("--num-tokens", type=int, default=2048, help="tokens per evaluation (default: 2048)")
    p.add_argument("--window", type=int, default=512, help="perplexity window (default: 512)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="channel seeds per cell (default: 0 1 2)")
    p.add_argument(
        "--levels",
        type=float,
        nargs="+",
        help="channel levels (default: SNR -5..35 step 2.5 dB, rho 0..0.3 step 0.025)",
    )
    p.add_argument("--splits", type=int, nargs="+", help="split points (default: 1..L)")
    p.add_argument("--m", type=float, default=2.0, help="Nakagami m of analog/digital fading (default: 2)")
    p.add_argument("--bits", type=int, default=8, help="digital: bits per element (default: 8)")
    p.add_argument("--threshold-db", type=float, default=10 * math.log10(3.0), help="digital: outage threshold (dB)")
    p.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (default: auto)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--probe-fit-tokens", type=int, default=12288, help="leakage probe: tokens to fit (default: 12288)")
    p.add_argument("--probe-test-tokens", type=int, default=4096, help="leakage probe: tokens to score (default: 4096)")
    p.add_argument(
        "--draws-per-forward", type=int, help="channel draws batched per forward (default: 8 on GPU, 1 on CPU)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing partial file and start over")
    return p


def _scheme_params(args) -> dict:
    if args.scheme == "analog":
        return {"m": args.m}
    if args.scheme == "digital":
        return {"m": args.m, "bits": args.bits, "threshold_db": args.threshold_db}
    return {}


def build_profile(args: argparse.Namespace, command: str) -> dict:
    from llmsplit_env.llm import SplitRunner, token_recovery_accuracy

    t_start = time.perf_counter()
    levels = [float(v) for v in (args.levels if args.levels else DEFAULT_LEVELS[args.scheme])]
    params = _scheme_params(args)
    for v in levels:
        make_channel(args.scheme, v, **params)  # validates every level and parameter before the long run starts
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ValueError(f"--seeds must be distinct non-negative integers, got {args.seeds}")
    runner = SplitRunner.from_pretrained(
        args.model,
        args.text,
        num_tokens=args.num_tokens,
        window=args.window,
        dtype=args.dtype,
        device=args.device,
        draws_per_forward=args.draws_per_forward,
    )
    L = runner.num_layers
    splits = args.splits or list(range(1, L + 1))
    if any(not 1 <= k <= L for k in splits) or splits != list(range(splits[0], splits[-1] + 1)):
        raise ValueError(f"--splits must be consecutive integers in [1, {L}], got {splits}")
    settings = {
        "model": str(args.model),
        "text": str(args.text),
        "scheme": args.scheme,
        "scheme_params": params,
        "num_tokens": args.num_tokens,
        "window": args.window,
        "dtype": str(runner.dtype).removeprefix("torch."),
        "device": str(runner.device),
        "splits": splits,
        "levels": levels,
        "seeds": list(args.seeds),
        "probe_fit_tokens": args.probe_fit_tokens,
        "probe_test_tokens": args.probe_test_tokens,
    }
    partial_path = args.out.with_name(args.out.name + ".partial.json")
    state = {"settings": settings, "cells": {}, "timings": {"load_s": time.perf_counter() - t_start, "eval_s": 0.0}}
    if partial_path.is_file() and not args.fresh:
        saved = json.loads(partial_path.read_text())
        if saved.get("settings") != settings:
            diff = sorted(k for k in settings if saved.get("settings", {}).get(k) != settings[k])
            raise ValueError(
                f"{partial_path} was started with different settings ({', '.join(diff)}); "
                "rerun with the same arguments, pass --fresh, or choose another --out"
            )
        state = saved
        print(f"resuming {partial_path}: {len(state['cells'])} cells done", file=sys.stderr)

    if "clean_ppl" not in state:
        state["clean_ppl"] = runner.clean_perplexity()
    if "probe_accuracy" not in state:
        t0 = time.perf_counter()
        extra = runner.extra_ids
        need = args.probe_fit_tokens + args.probe_test_tokens
        if extra is None or len(extra) < need:
            raise ValueError(
                f"text {args.text!r} is too short for the probe: needs {need} tokens after the evaluation text"
            )
        acc = token_recovery_accuracy(
            runner.model,
            extra[: args.probe_fit_tokens],
            extra[args.probe_fit_tokens : need],
            splits=splits,
            window=args.window,
        )
        state["probe_accuracy"] = acc.tolist()
        state["timings"]["probe_s"] = time.perf_counter() - t0
        atomic_write_json(partial_path, state)

    cells = [(k, i) for k in splits for i in range(len(levels))]
    todo = [(k, i) for k, i in cells if f"{k},{i}" not in state["cells"]]
    for k, i in tqdm(
        todo, desc=f"profile {args.scheme}", unit="cell", initial=len(cells) - len(todo), total=len(cells)
    ):
        t0 = time.perf_counter()
        ev = runner.evaluate(k, make_channel(args.scheme, levels[i], **params), args.seeds, cached=True)
        state["timings"]["eval_s"] += time.perf_counter() - t0
        state["cells"][f"{k},{i}"] = {"log_ppl": ev.log_ppl.tolist(), "loss_fraction": float(ev.loss_fraction.mean())}
        atomic_write_json(partial_path, state)

    log_ppl = np.array([[state["cells"][f"{k},{i}"]["log_ppl"] for i in range(len(levels))] for k in splits])
    loss = np.array([[state["cells"][f"{k},{i}"]["loss_fraction"] for i in range(len(levels))] for k in splits])
    probe = np.asarray(state["probe_accuracy"])
    leakage = np.where(np.asarray(splits) == L, 0.0, probe)  # at k = L nothing is transmitted
    n_evals = sum(len(args.seeds) for k in splits if k < L) * len(levels)
    metadata = {
        **settings,
        **runner.describe(),
        "level_name": LEVEL_NAMES[args.scheme],
        "num_layers": L,
        "leakage_probe": "ridge (lambda=10) from standardised H_k to input-embedding rows, cosine nearest-row "
        "decoding; fitted and scored on disjoint text after the evaluation tokens",
        "timings": {**state["timings"], "eval_per_draw_s": state["timings"]["eval_s"] / max(n_evals, 1)},
        "package_version": llmsplit_env.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scheme": args.scheme,
        "level_name": LEVEL_NAMES[args.scheme],
        "splits": splits,
        "levels": levels,
        "seeds": list(args.seeds),
        "clean_ppl": state["clean_ppl"],
        "log_ppl": log_ppl.tolist(),
        "mean_log_ppl": log_ppl.mean(axis=2).tolist(),
        "std_log_ppl": (log_ppl.std(axis=2, ddof=1) if len(args.seeds) > 1 else np.zeros(log_ppl.shape[:2])).tolist(),
        "loss_fraction": loss.tolist(),
        "leakage": leakage.tolist(),
        "probe_accuracy": probe.tolist(),
        "metadata": metadata,
    }
    profile_from_dict(data, str(args.out))  # never write a profile the loader would reject
    atomic_write_json(args.out, data)
    partial_path.unlink(missing_ok=True)
    return data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    command = "python -m llmsplit_env.profile_builder " + shlex.join(argv)
    try:
        data = build_profile(args, command)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t = data["metadata"]["timings"]
    print(f"wrote {args.out}: clean PPL {data['clean_ppl']:.3f}, {t['eval_per_draw_s']:.3f} s per draw")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
