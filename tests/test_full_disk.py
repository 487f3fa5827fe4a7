"""Full and failing disks: output folders are checked for space before any work, and an agent whose save fails after
training is kept in a rescue folder with its training record (or the error says it could not be kept anywhere).

The real-disk cases run on a small tmpfs (root with mount rights, as on CI); the same paths are also driven by an
injected ``ENOSPC`` so they are checked everywhere."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train  # noqa: E402

PPO = ["--algo", "ppo", "-tb", "", "--no-progress", "--eval-episodes", "2", "-n", "64",
       "--hyperparams", "ppo.n_steps:32", "ppo.batch_size:32"]  # fmt: skip


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> None:
    """Fill ``folder``'s disk to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_a_nearly_full_output_disk_is_refused_before_any_work(tmp_path, capsys):
    with tmpfs(tmp_path / "small", "4m") as disk:
        t0 = time.perf_counter()
        assert train.main([*PPO, "-f", str(disk / "runs")]) == 2
        assert time.perf_counter() - t0 < 5
        err = capsys.readouterr().err
        assert "-f/--log-folder" in err and "MiB free, under the 32 MiB needed" in err
        assert not (disk / "runs").exists()


def _fill_after_fit(monkeypatch, algo: str, how) -> None:
    """Make ``algo``'s fit do its real work, then ``how()`` (fill the disk, or break the save)."""
    from agents.zoo import registry

    entry = registry.REGISTRY[algo]

    def fit(job, built):
        evals = entry.fit(job, built)
        how()
        return evals

    monkeypatch.setitem(registry.REGISTRY, algo, dataclasses.replace(entry, fit=fit))


def _check_rescued(err: str, runs: Path, rescue: Path) -> None:
    from agents.zoo.registry import load_agent

    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    target = runs / "LLMSplit-v0" / "ppo_seed0" / "agent.zip"
    assert f"to {target.resolve()} (No space left on device)" in line
    (folder,) = list(rescue.iterdir())
    assert str(folder / "agent.zip") in line and f"mv {folder / 'agent.zip'} {target.resolve()}" in line
    record = json.loads((folder / "train_record.json").read_text())
    assert record["algo"] == "ppo" and 0 < record["quality_evals"] <= 64
    load_agent("ppo", folder / "agent.zip", None)  # the work is whole: it loads and can act


def test_a_save_that_hits_a_full_disk_after_training_keeps_the_agent(tmp_path, capsys, monkeypatch):
    rescue = tmp_path / "rescue"
    monkeypatch.setenv("LLMSPLIT_RESCUE_DIR", str(rescue))
    with tmpfs(tmp_path / "disk", "40m") as disk:
        runs = disk / "runs"
        _fill_after_fit(monkeypatch, "ppo", lambda: fill(disk))  # a real ENOSPC, after the work
        assert train.main([*PPO, "-f", str(runs)]) == 1
        _check_rescued(capsys.readouterr().err, runs, rescue)


def test_a_failing_save_keeps_the_agent_anywhere(tmp_path, capsys, monkeypatch):
    """The same without a tmpfs: the save into the run folder fails with ENOSPC (injected at the rename)."""
    import llmsplit_env.util.files as files

    rescue = tmp_path / "rescue"
    monkeypatch.setenv("LLMSPLIT_RESCUE_DIR", str(rescue))
    runs = tmp_path / "runs"
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).is_relative_to(runs.resolve()) and Path(dst).name == "agent.zip":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    assert train.main([*PPO, "-f", str(runs)]) == 1
    _check_rescued(capsys.readouterr().err, runs, rescue)


def test_when_nothing_can_take_the_agent_the_error_says_so(tmp_path, capsys, monkeypatch):
    import llmsplit_env.util.files as files

    monkeypatch.setenv("LLMSPLIT_RESCUE_DIR", str(tmp_path / "rescue"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the last rescue folders tried: kept inside the test
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(files.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    # summary.json and agent files alike cannot be written: the run folder is checked, the work done, then lost
    assert train.main([*PPO, "-f", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert "nor to any rescue folder" in err and "The training is lost" in err and str(tmp_path / "rescue") in err
    assert str(tmp_path / "home" / "llmsplit-rescued") in err
    assert (
        not (tmp_path / "home" / "llmsplit-rescued").exists() and not (tmp_path / "tmp" / "llmsplit-rescued").exists()
    )


def test_atomic_writes_name_the_file_when_the_disk_is_full(tmp_path):
    from llmsplit_env.util.files import atomic_write_bytes

    with tmpfs(tmp_path / "disk", "1m") as disk:
        with pytest.raises(OSError, match=f"No space left on device: '{disk / 'big.bin'}'") as e:
            atomic_write_bytes(disk / "big.bin", b"\0" * (2 << 20))
        assert e.value.errno == errno.ENOSPC
        assert list(disk.iterdir()) == []  # no temporary file left behind


def test_profile_builder_refuses_a_nearly_full_disk_and_resumes_after_one_fills(
    tiny_models, tmp_path, capsys, monkeypatch
):
    """The builder checks --out's disk before loading the model; a disk that fills during the build ends it with exit
    1 naming the partial file (the finished cells kept); rerunning the same command once there is space finishes the
    profile, equal to one built in one go."""
    from test_profile import build_args

    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.profiling import builder

    with tmpfs(tmp_path / "small", "4m") as small:
        assert builder.main(build_args(tiny_models["llama"], small / "p.json")) == 2
        assert "MiB free, under the 32 MiB needed" in capsys.readouterr().err

    whole = tmp_path / "whole.json"
    assert builder.main(build_args(tiny_models["llama"], whole)) == 0
    with tmpfs(tmp_path / "disk", "40m") as disk:
        out = disk / "p.json"
        args = build_args(tiny_models["llama"], out)
        real, calls = SplitRunner.evaluate, {"n": 0}

        def evaluate(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 3:  # two cells are written: the disk fills up now
                fill(disk)
            return real(self, *a, **k)

        monkeypatch.setattr(SplitRunner, "evaluate", evaluate)
        assert builder.main(args) == 1
        err = capsys.readouterr().err
        partial = out.with_name("p.json.partial.json")
        assert f"No space left on device: '{partial}'" in err
        assert f"the finished cells are kept in {partial}" in err and "rerun the same command to resume" in err
        monkeypatch.setattr(SplitRunner, "evaluate", real)
        (disk / "filler").unlink()
        assert builder.main(args) == 0
        a, b = json.loads(out.read_text()), json.loads(whole.read_text())
        for key in ("log_ppl", "loss_fraction", "clean_ppl", "leakage"):
            assert a[key] == b[key], key
