"""How a profile's cells are measured: the shared cell and probe measurements, the build's state (`Job`), and the
serial backend. `llmsplit_env.profiling.builder` drives a backend; `llmsplit_env.profiling.ray_runner` is the other one.

Kept apart from the builder so that the Ray backend can use these without importing the builder (no import cycle).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from llmsplit_env.util.files import atomic_write_json


class UsageError(ValueError):
    """A bad command line, found before any work: ``main`` prints it as one ``error:`` line and returns 2."""


class WorkersLost(RuntimeError):
    """Every Ray worker of a ``--ray`` build died for good: ``main`` prints one ``error:`` line and returns 1 (the
    finished cells are in the partial file)."""


@dataclass
class Plan:
    """A checked command line: what `build_profile` will measure."""

    levels: list[float]
    params: dict
    splits: list[int] | None  # None: 1..L once the model is loaded (its config was not readable up front)
    num_layers: int | None
    partial_path: Path


def flag_error(flag: str, check, *args, **kwargs):
    """``check(*args, **kwargs)``, its ValueError re-raised as a `UsageError` naming ``flag``."""
    try:
        return check(*args, **kwargs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"{flag}: {e}") from None


def measure_cell(runner, scheme: str, level: float, params: dict, seeds: list[int], split: int) -> tuple[dict, float]:
    """One cell (``split`` at channel ``level``, every seed) as the partial file stores it, and its seconds.

    The serial build and the Ray workers (`llmsplit_env.profiling.ray_runner`) both measure with this function."""
    from llmsplit_env.llm.channel import make_channel

    t0 = time.perf_counter()
    ev = runner.evaluate(split, make_channel(scheme, level, **params), seeds, cached=True)
    cell = {"log_ppl": ev.log_ppl.tolist(), "loss_fraction": float(ev.loss_fraction.mean())}
    return cell, time.perf_counter() - t0


def measure_probe(runner, splits: list[int], fit_tokens: int, test_tokens: int, window: int) -> tuple[list, float]:
    """The leakage probe's accuracy per split, fitted and scored on the text after the evaluation tokens (windows of
    the runner's, its BOS included), and its seconds (serial build and Ray worker alike). Read from the user cache
    when the same model, dtype, device type and tokens were probed before (another scheme's build, an earlier run):
    see `llmsplit_env.llm.probe`."""
    from llmsplit_env.llm.probe import runner_probe_accuracy

    if window != runner.window:
        raise ValueError(f"the probe's window ({window}) differs from the runner's ({runner.window})")
    t0 = time.perf_counter()
    acc = runner_probe_accuracy(runner, splits, fit_tokens, test_tokens)
    return acc.tolist(), time.perf_counter() - t0


class SerialBackend:
    """Measures in this process: one runner, the cells one after the other."""

    def __init__(self, args: argparse.Namespace, plan: Plan | None = None) -> None:
        # Torch comes in only now; the device and dtype are resolved (CUDA present?) before the model loads.
        from llmsplit_env.llm.model import resolve_device, resolve_dtype

        self.args = args
        device = flag_error("--device", resolve_device, args.device)
        if device.type == "cuda" and device.index is None:
            import torch

            device = torch.device("cuda", torch.cuda.current_device())  # as the loaded parameters will report it
        self.device = str(device)
        self.dtype = str(flag_error("--dtype", resolve_dtype, args.dtype, device)).removeprefix("torch.")
        self.runner = None

    def load(self) -> None:
        from llmsplit_env.llm import SplitRunner

        a = self.args
        self.runner = SplitRunner.from_pretrained(
            a.model,
            a.text,
            num_tokens=a.num_tokens,
            window=a.window,
            dtype=self.dtype,
            device=self.device,
            draws_per_forward=a.draws_per_forward,
        )
        self.num_layers = self.runner.num_layers
        self.extra_tokens = 0 if self.runner.extra_ids is None else len(self.runner.extra_ids)

    def describe(self) -> dict:
        return self.runner.describe()

    def measure(self, job: Job) -> None:
        a, state = self.args, job.state
        if job.need_clean:
            state["clean_ppl"] = self.runner.clean_perplexity()
        if job.need_probe:
            acc, seconds = measure_probe(self.runner, job.splits, a.probe_fit_tokens, a.probe_test_tokens, a.window)
            state["probe_accuracy"] = acc
            state["timings"]["probe_s"] = seconds
            job.save()
        for k, i in job.todo:
            cell, seconds = measure_cell(self.runner, a.scheme, job.levels[i], job.params, a.seeds, k)
            job.record(k, i, cell, seconds)

    def close(self) -> None:
        pass


@dataclass
class Job:
    """What is left to measure, and the state the driver saves after every result."""

    state: dict
    partial_path: Path
    splits: list[int]
    levels: list[float]
    params: dict
    todo: list[tuple[int, int]]
    need_clean: bool
    need_probe: bool
    bar: object = None
    measured: int = 0  # cells recorded by this run

    def save(self) -> None:
        atomic_write_json(self.partial_path, self.state)

    def record(self, k: int, i: int, cell: dict, seconds: float) -> bool:
        """Store one finished cell and save; ``False`` (and nothing stored) if it was already there."""
        key = f"{k},{i}"
        if key in self.state["cells"]:
            return False
        self.state["cells"][key] = cell
        self.state["timings"]["eval_s"] += seconds
        self.measured += 1
        self.save()
        if self.bar is not None:
            self.bar.update(1)
        return True
