"""The partial file of an interrupted profile build: read back and checked before a build resumes from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from llmsplit_env.profiling.cells import UsageError


def _corrupt(path: Path, reason: str) -> UsageError:
    return UsageError(
        f"partial file {path} {reason}; rerun with --fresh to start over (or delete it, or choose another --out)"
    )


def _cells_ok(cells: dict, splits: list[int], n_levels: int, n_seeds: int) -> bool:
    for key, cell in cells.items():
        try:
            k, i = (int(x) for x in key.split(","))
        except ValueError:
            return False
        if k not in splits or not 0 <= i < n_levels or not isinstance(cell, dict):
            return False
        log_ppl, loss = cell.get("log_ppl"), cell.get("loss_fraction")
        if not isinstance(log_ppl, list) or len(log_ppl) != n_seeds or not _finite(log_ppl):
            return False
        if not _finite([loss]) or not 0.0 <= loss <= 1.0:
            return False
    return True


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def load_partial(path: Path, settings: dict) -> dict:
    """The saved state of an interrupted build, checked against ``settings`` and for sound contents."""
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "is not valid JSON (truncated or overwritten)") from None
    except OSError as e:
        raise _corrupt(path, f"cannot be read ({e.__class__.__name__})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        raise _corrupt(path, "is not a partial profile (no 'settings' object)")
    if saved["settings"] != settings:
        diff = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        raise UsageError(
            f"{path} was started with different settings ({', '.join(diff)}); "
            "rerun with the same arguments, pass --fresh, or choose another --out"
        )
    timings = saved.get("timings")
    if not isinstance(saved.get("cells"), dict) or not isinstance(timings, dict):
        raise _corrupt(path, "has no 'cells' or 'timings' object")
    if not _finite([timings.get("load_s"), timings.get("eval_s")]):
        raise _corrupt(path, "has malformed 'timings'")
    splits, n_levels, n_seeds = settings["splits"], len(settings["levels"]), len(settings["seeds"])
    if not _cells_ok(saved["cells"], splits, n_levels, n_seeds):
        raise _corrupt(path, "has malformed cells (each needs a known 'k,i', one log_ppl per seed, a loss fraction)")
    clean = saved.get("clean_ppl")
    if "clean_ppl" in saved and not (_finite([clean]) and clean >= 1):
        raise _corrupt(path, f"has a malformed clean_ppl {clean!r}")
    probe = saved.get("probe_accuracy")
    if "probe_accuracy" in saved and not (
        isinstance(probe, list) and len(probe) == len(splits) and _finite(probe) and all(0 <= a <= 1 for a in probe)
    ):
        raise _corrupt(path, "has a malformed probe_accuracy (one value in [0, 1] per split)")
    return saved
