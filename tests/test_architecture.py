"""The package's shape: no import cycles in `agents` or `llmsplit_env` (function-level imports included), modules of
a readable size, no private name used outside its module, and ``from agents import ...`` as ``from stable_baselines3
import PPO``."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "llmsplit_env")
MAX_LINES = 450
# Modules over MAX_LINES, each one subject (splitting it would scatter one idea over files).
LONG_MODULES = {
    "agents/mbrl/ensemble.py": "the probabilistic ensemble: network, standardisers, bootstrapped fit, early stopping",
    "llmsplit_env/env.py": "one Gymnasium env class; 150 of its lines are the docstring's tables of spaces and rewards",
    "agents/rllib_ppo.py": "one RLlib PPO agent, for the single env and the cell's shared policy: build, learn, save",
    "agents/zoo/registry.py": "the one table of algos: each one's build, fit, save and load, single env and cell",
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
    for path in _modules().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if rel in LONG_MODULES:
            continue
        assert lines <= MAX_LINES, f"{rel} has {lines} lines (> {MAX_LINES}): split it, or list it with its subject"
    for rel in LONG_MODULES:  # an exception that no longer needs to be one is stale
        assert len((ROOT / rel).read_text().splitlines()) > MAX_LINES, f"stale exception {rel}"


# Private names of other libraries that the package uses, each with the reason there is no public way.
FOREIGN_PRIVATE = {
    ("llmsplit_env/llm/channel.py", "torch._standard_gamma"): "torch's only Gamma sampler that takes a Generator: "
    "the fading draws must come from the seed's CPU generator (the profiles' stored draws depend on it)",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(path: Path) -> list[str]:
    """Where ``path`` imports or touches a private name (``_x``) that it does not define itself.

    Defined here: functions, classes and names the module binds, attributes it sets on ``self``/``cls`` (or through
    ``setattr``/``object.__setattr__`` with a literal name). Anything else spelled ``obj._x`` belongs to another
    module, or to another library."""
    tree = ast.parse(path.read_text(), str(path))
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                defined.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("setattr", "object.__setattr__")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            defined.add(str(node.args[1].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [*(node.module or "").split("."), *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [part for a in node.names for part in a.name.split(".")]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in defined:
            names = [node.attr]
        else:
            continue
        if any(_private(n) for n in names):
            found.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_name_crosses_a_module():
    """A name starting with ``_`` is used only in the module that defines it: every module of both packages."""
    found = [u for p in _modules().values() for u in _private_uses(p)]
    bad = [u for u in found if (u.split(":", 1)[0], u.split(": ", 1)[1]) not in FOREIGN_PRIVATE]
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_the_private_name_check_sees_them(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    mod = tmp_path / "m.py"
    mod.write_text(
        "from a import _hidden\nimport b._inner\nclass C:\n    def __init__(self):\n        self._mine = 1\n"
        "    def f(self, other):\n        return self._mine, other._mine, other._theirs, self.__dict__\n"
    )
    uses = _private_uses(mod)
    assert [u.split(": ", 1)[1] for u in uses] == ["from a import _hidden", "import b._inner", "other._theirs"]


def test_no_private_env_attributes_and_no_stdlib_shadowing():
    assert not any(p.name == "logging.py" for p in (ROOT / "agents").rglob("*.py"))
    for path in sorted((ROOT / "agents").rglob("*.py")):
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
    # the package, and the heuristics, the oracle and evaluation (numpy and gymnasium only)
    code = (
        "import sys, agents, agents.baselines, agents.common.evaluation; "
        "print([m for m in ('torch', 'stable_baselines3', 'ray') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
