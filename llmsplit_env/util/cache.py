"""Where LLMSplit keeps derived artefacts (converted models, token ids, hidden-state prefixes).

Never inside the repository: ``$LLMSPLIT_CACHE`` if set, else ``$XDG_CACHE_HOME/llmsplit``, else
``~/.cache/llmsplit``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "LLMSPLIT_CACHE"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a sub-directory of the user cache."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llmsplit"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
