"""Lazy exports: a package names what it offers at its top level, and each name's module loads on first use.

So ``import llmsplit_env`` (which registers the ids) and ``import agents`` stay light: neither imports torch, SB3 nor
Ray until a name that needs them is touched.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each exported name to the module that defines it.

    A name is imported once, then stored in the package's namespace (later look-ups skip ``__getattr__``); an
    unknown name raises ``AttributeError`` as a plain module would.
    """
    names = dict(names)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
