"""The wheel holds everything the ``llmsplit`` command needs: built from a copy of the sources, installed into a fresh
venv, and run from a folder outside the repository with the repository on no path.

The fresh venv (no pip, no system site-packages) sees the project venv's third-party packages through a ``.pth``
line naming that site-packages folder: a plain path line, so that folder's own ``.pth`` files (among them the editable
install's finder, which would map ``agents`` and ``llmsplit_env`` back to this checkout) are not run.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "agents", "llmsplit_env")


def _run(argv: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv}: status {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built (offline, no build isolation) from a copy of the sources: a build in the checkout would leave
    ``build/`` there, whose stale copies of removed modules would go into later wheels."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    # offline, with the venv's setuptools: --check-build-dependencies names an old one instead of failing obscurely
    r = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
              "--check-build-dependencies",
              "-w", str(tmp / "dist"), str(src)], tmp, dict(os.environ))  # fmt: skip
    warnings = [ln for ln in (r.stdout + r.stderr).splitlines() if "warn" in ln.lower()]
    assert not [ln for ln in warnings if "license" in ln.lower()], warnings  # setuptools' warning on a table license
    [whl] = (tmp / "dist").glob("llmsplit-*.whl")
    return whl


def test_wheel_contents(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n.rsplit("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        metadata = z.read(f"{info}/METADATA").decode()
    assert "[console_scripts]" in entry_points and "llmsplit = agents.zoo.cli:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert any(n.endswith("LICENSE") and ".dist-info/" in n for n in names)  # the licence's text ships too
    # every module of both packages, among them the commands' code (train.py / evaluate.py are only wrappers)
    packaged = {
        p.relative_to(ROOT).as_posix() for pkg in ("agents", "llmsplit_env") for p in (ROOT / pkg).rglob("*.py")
    }
    assert {"agents/zoo/cli.py", "agents/zoo/train.py", "agents/zoo/evaluate.py"} <= packaged <= names, packaged - names
    for pattern, folder in (("*.yml", "agents/hyperparams"), ("*.json", "llmsplit_env/profiles")):
        shipped = {f"{folder}/{p.name}" for p in (ROOT / folder).glob(pattern)}
        assert shipped and shipped <= names, shipped - names
    assert not any(n.startswith(("tests/", "benchmarks/")) or n in ("train.py", "evaluate.py") for n in names)


def test_installed_wheel_trains_and_evaluates_outside_the_repository(wheel, tmp_path):
    """The acceptance check: ``llmsplit --help``, ``llmsplit train --algo ppo -n 2000``, then ``llmsplit evaluate`` on
    the run folder train wrote, all through the installed console script, from a folder outside the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    deps = [p for p in {*site.getsitepackages(), sysconfig.get_path("purelib")} if Path(p).is_dir()]
    Path(purelib, "llmsplit-deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONNOUSERSITE": "1"}
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         tmp_path, env)  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in (work, *work.parents)

    # the installed packages, not this checkout's: nothing on the path leads back to it
    where = _run([str(python), "-c", "import sys, agents.zoo.train, llmsplit_env\n"
                  "print(agents.zoo.train.__file__); print(llmsplit_env.__file__); print('\\n'.join(sys.path))"],
                 work, env).stdout.splitlines()  # fmt: skip
    for f in where[:2]:
        assert Path(f).is_relative_to(venv), where
    for p in where[2:]:
        assert not p or not Path(p).resolve().is_relative_to(ROOT) or Path(p).resolve().is_relative_to(ROOT / ".venv")

    llmsplit = str(venv / "bin" / "llmsplit")
    out = _run([llmsplit, "--help"], work, env).stdout
    for command in ("train", "evaluate", "sweep", "profile", "map", "server"):
        assert f"    {command} " in out, out
    out = _run([llmsplit, "train", "--algo", "ppo", "-n", "2000", "--no-progress", "--eval-episodes", "3"],
               work, env).stdout  # fmt: skip
    assert "ppo" in out and (work / "runs" / "LLMSplit-v0" / "ppo_seed0" / "agent.zip").is_file()
    out = _run([llmsplit, "evaluate", "--n-eval-episodes", "5", "--json", "eval.json"], work, env).stdout
    assert "ppo_seed0" in out and (work / "eval.json").is_file()
    assert (work / "runs" / "LLMSplit-v0" / "plots" / "policy_map.png").is_file()
    r = subprocess.run([llmsplit, "evaluate", "-f", "nowhere"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: no training summary at nowhere/LLMSplit-v0")
