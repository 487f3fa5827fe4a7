"""The package's shape: no import cycles in `agents` or `llmsplit_env` (function-level imports included), modules of
a readable size, and ``from agents import ...`` as ``from stable_baselines3 import PPO``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "llmsplit_env")
MAX_LINES = 500
# Modules over MAX_LINES, each one cohesive algorithm (splitting it would scatter one idea over files).
LONG_MODULES = {
    "agents/mbrl/ensemble.py": "the probabilistic ensemble: network, standardisers, bootstrapped fit, early stopping",
    "agents/rsm.py": "RSM-PPO as published: its surrogate models, the surrogate-reward env and the agent",
    "llmsplit_env/env.py": "one Gymnasium env class; 150 of its lines are the docstring's tables of spaces and rewards",
    "llmsplit_env/quality/server.py": "the quality server's actor, its start/connect/call client and CLI; 50 lines of "
    "design docstring (batching, batch invariance, counting)",
}


def _modules() -> dict[str, Path]:
    """Every module of the packages by dotted name (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``name`` imports anywhere in its file (module level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            # `from pkg import mod` imports the submodule pkg.mod; `from mod import name` the module itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a non-module attribute: its longest module prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycles():
    mods = _modules()
    graph = {n: _imports(n, p, set(mods)) for n, p in mods.items()}
    assert "agents.baselines" in graph["agents.common.evaluation"]  # the graph sees the imports at all
    assert "agents.mbrl.agent" in graph["agents.zoo.registry"]  # ... function-level ones included
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_sizes():
    for path in sorted([*(ROOT / "agents").glob("*.py"), *(ROOT / "llmsplit_env").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if rel in LONG_MODULES:
            continue
        assert lines <= MAX_LINES, f"{rel} has {lines} lines (> {MAX_LINES}): split it, or list it with a reason"
    for rel in LONG_MODULES:  # an exception that no longer needs to be one is stale
        assert len((ROOT / rel).read_text().splitlines()) > MAX_LINES, f"stale exception {rel}"


def test_no_private_env_attributes_and_no_stdlib_shadowing():
    assert not (ROOT / "agents" / "logging.py").exists()
    for path in sorted((ROOT / "agents").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("_t", "_relative", "_extras"):
                pytest.fail(f"{path.name}:{node.lineno} reads the env's private {node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmsplit_env."):
                public = not any(p.startswith("_") for p in node.module.split("."))
                assert public, f"{path.name}:{node.lineno} imports the private {node.module}"


def test_top_level_names():
    import agents

    for name in agents.__all__:
        assert getattr(agents, name) is not None, name
    from agents import (  # noqa: F401
        BestFixedSplitAgent,
        FixedSplitAgent,
        GaussianEnsemble,
        MBRLAgent,
        OracleAgent,
        OracleNormalizer,
        RandomAgent,
        RSMPPOAgent,
        SNRThresholdAgent,
        evaluate_agent,
    )

    assert MBRLAgent is importlib.import_module("agents.mbrl.agent").MBRLAgent
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        agents.Nope  # noqa: B018


def test_import_agents_is_light():
    code = "import sys, agents; bad = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
