"""What the front doors (``llmsplit train | evaluate | sweep``, ``benchmarks/sample_efficiency.py``) share: the entry
wrapper that turns bad input into one ``error:`` line, the evaluation episodes of a training seed and the checked
reading of a run's ``summary.json``. Light: no torch, no Ray."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmsplit_env.util.files import MIN_FREE_BYTES


class SaveFailed(RuntimeError):
    """Work finished but could not be saved where asked; the message says where it was kept instead (or that it could
    not be kept anywhere). A front door prints it as one ``error:`` line and exits 1."""


def cli_main(build_parser: Callable[[], Any], run: Callable[[Any], int], argv: list[str] | None) -> int:
    """Shared front-door entry: parse, run, and turn bad input (``ValueError``/``FileNotFoundError``) into a one-line
    ``error: …`` on stderr with exit status 2, like argparse's own errors; Ctrl-C is one line and exit status 130."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SaveFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # every file is written atomically, so what finished before the interrupt is whole and kept
        print("interrupted: stopped; everything saved before the interrupt is kept", file=sys.stderr)
        return 130


def check_output_folder(folder: str | Path, flag: str, min_free: int = MIN_FREE_BYTES) -> None:
    """``ValueError`` naming ``flag`` and the path now, before any work, if ``folder`` cannot be created or written:
    it (or the nearest existing folder above it) is a file, is not writable, or its disk has less than ``min_free``
    bytes free."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{flag} {folder} exists and is not a folder")
        parent = next((p for p in folder.parents if p.exists()), Path(".")) if not folder.exists() else folder
    except OSError as e:  # a folder on the way that may not be searched
        raise ValueError(f"{flag} {folder}: cannot be checked ({e.strerror or e})") from None
    if not parent.is_dir():
        raise ValueError(f"{flag} {folder}: {parent} is a file, so no folder can be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {folder}: cannot create or write to {parent} (not writable)")
    free = shutil.disk_usage(parent).free
    if free < min_free:
        raise ValueError(f"{flag} {folder}: its disk has {free / 2**20:.1f} MiB free, under the {min_free / 2**20:g} "
                         "MiB needed before any work starts; free space or choose another folder")  # fmt: skip


def train_eval_seeds(seed: int, n: int) -> list[int]:
    """The episodes ``llmsplit train`` (and the sweep) score an agent of training seed ``seed`` on."""
    return [1_000_000 + seed * 1000 + i for i in range(n)]


def read_summary(path: str | Path) -> dict:
    """``llmsplit train``'s ``summary.json``, checked: ``ValueError`` naming the file if it is unreadable or
    malformed."""
    path = Path(path)
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, an integer too long, nested too deeply
        why = e if isinstance(e, ValueError) else "nested too deeply"
        msg = f"{path} is not a readable training summary ({why}); remove it or use another --log-folder"
        raise ValueError(msg) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("agents"), dict):
        raise ValueError(f"{path} is not a training summary (no 'agents' table); remove it or use another --log-folder")
    for name, e in summary["agents"].items():
        if not isinstance(e, dict) or not isinstance(e.get("algo"), str) or not isinstance(e.get("path"), str):
            raise ValueError(f"{path}: entry {name!r} is malformed (needs 'algo' and 'path')")
    return summary
