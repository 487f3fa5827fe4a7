"""Profiles built on Ray (``--ray``) equal the serial build, bit for bit: on a local Ray instance, on a two-node
cluster, with a worker killed mid-build, and resuming a partial file of the other kind.

One serial reference profile (the tiny random Llama) is built once per module; the Ray builds run 2 workers x 1 CPU
against it. Ray is an optional dependency: without it these tests skip, apart from the ones that check the builder
and the package without Ray.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_profile import build_args

from llmsplit_env.profiling import builder
from llmsplit_env.profiling.ray_runner import IN_FLIGHT

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ["--levels", "-5", "5", "10", "20", "30"]  # 4 splits x 5 levels = 20 cells
N_CELLS = 20
NUMBERS = ("splits", "levels", "seeds", "clean_ppl", "log_ppl", "mean_log_ppl", "std_log_ppl", "loss_fraction")
NUMBERS += ("leakage", "probe_accuracy")
SETTINGS = ("model", "text", "scheme", "scheme_params", "num_tokens", "window", "dtype", "device", "model_class")


def args_for(tiny_models, out: Path, *extra) -> list[str]:
    return [*build_args(tiny_models["llama"], out, *LEVELS), *extra]


def assert_same_profile(a: dict, b: dict) -> None:
    """The numbers bit for bit (JSON floats round-trip exactly), and the settings that made them."""
    for key in NUMBERS:
        assert a[key] == b[key], key
    for key in SETTINGS:
        assert a["metadata"][key] == b["metadata"][key], key


@pytest.fixture(scope="module")
def reference(tiny_models, tmp_path_factory) -> dict:
    """The serial build (this process, torch's default thread count: 2 on the project's machines)."""
    out = tmp_path_factory.mktemp("serial") / "serial.json"
    assert builder.main(args_for(tiny_models, out)) == 0
    return json.loads(out.read_text())


@pytest.fixture
def no_ray_left():
    """Every test that starts Ray leaves no connection behind (the builder shuts down what it started)."""
    yield
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


# --- checks before any work, and the package without Ray -----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--workers", "2"], "error: --workers only applies with --ray"),
        (["--cpus-per-worker", "1"], "error: --cpus-per-worker only applies with --ray"),
        (["--ray", "--workers", "0"], "error: --workers must be an integer >= 1, got 0"),
        (["--ray", "--cpus-per-worker", "0"], "error: --cpus-per-worker must be an integer >= 1, got 0"),
        (["--ray", "--device", "cuda:1"], "error: --device cuda:1 cannot be used with --ray"),
        (["--workers", "x", "--ray"], "error: argument --workers: invalid int value: 'x'"),
    ],
)
def test_ray_flags_are_checked_before_any_work(tiny_models, tmp_path, capsys, monkeypatch, extra, needle):
    from llmsplit_env.llm import SplitRunner

    monkeypatch.setattr(SplitRunner, "from_pretrained", lambda *a, **k: pytest.fail("loaded the model"))
    try:
        rc = builder.main(args_for(tiny_models, tmp_path / "x.json", *extra))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(needle) and err.count("\n") == 1, err


def test_ray_missing_is_one_line_naming_the_extra(tiny_models, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert builder.main(args_for(tiny_models, tmp_path / "x.json", "--ray")) == 2
    err = capsys.readouterr().err
    assert err == "error: --ray needs Ray, which is not installed: pip install 'llmsplit[ray]'\n"


def test_the_package_and_the_serial_build_work_without_ray(tiny_models, tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "import llmsplit_env, llmsplit_env.profiling.builder as b, llmsplit_env.profiling.ray_runner\n"
        "out = sys.argv[1]; args = sys.argv[2:]\n"
        "assert b.main([*args, '--ray']) == 2\n"
        "assert b.main(args) == 0, 'serial build failed'\n"
        "print('ok')\n"
    )
    out = tmp_path / "p.json"
    args = args_for(tiny_models, out)
    r = subprocess.run(
        [sys.executable, "-c", code, str(out), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    assert "pip install 'llmsplit[ray]'" in r.stderr and out.is_file()


def test_cells_are_cut_into_contiguous_split_major_runs():
    pytest.importorskip("ray")
    from llmsplit_env.profiling.ray_runner import _chunks

    cells = [(k, i) for k in (1, 2, 3) for i in range(4)]
    runs = _chunks(cells, 5)
    assert [len(r) for r in runs] == [3, 3, 2, 2, 2] and [c for r in runs for c in r] == cells
    assert _chunks(cells[:1], 3) == [[(1, 0)], [], []]


def test_torch_numbers_do_not_depend_on_the_thread_count(tiny_models):
    """Why a 1-CPU worker reproduces a 2-thread serial build: the same forward, bit for bit, at 1, 2 and 3 threads."""
    import torch

    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.llm.channel import make_channel

    r = SplitRunner.from_pretrained(str(tiny_models["llama"]), "pydoc", num_tokens=128, window=64, dtype="float32")
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            ev = r.evaluate(2, make_channel("analog", 5.0, m=2.0), [0, 1], cached=False)  # the whole forward
            results.append(ev.log_ppl.tolist())
    finally:
        torch.set_num_threads(before)
    assert results[0] == results[1] == results[2]


# --- builds on Ray ---------------------------------------------------------------------------------------------------


def test_a_local_ray_build_equals_the_serial_build(tiny_models, tmp_path, reference, no_ray_left):
    pytest.importorskip("ray")
    out = tmp_path / "ray.json"
    assert builder.main(args_for(tiny_models, out, "--ray", "--workers", "2", "--cpus-per-worker", "1")) == 0
    data = json.loads(out.read_text())
    assert_same_profile(data, reference)
    meta = data["metadata"]
    assert meta["ray"] == {
        "address": "local",
        "workers": 2,
        "cpus_per_worker": 1,
        "gpus_per_worker": 0,
        "torch_threads_per_worker": 1,
        "nodes": 1,
        "worker_restarts": 0,
        "duplicates": 0,
        "lost_tasks_resubmitted": 0,
    }
    assert meta["timings"]["cells_measured"] == N_CELLS
    assert meta["command"].endswith("--ray --workers 2 --cpus-per-worker 1")


@pytest.fixture(scope="module")
def cluster():
    """A local two-node Ray cluster: a head and one worker node, one CPU each."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


def test_a_two_node_cluster_build_equals_the_serial_build(cluster, tiny_models, tmp_path, reference, no_ray_left):
    out = tmp_path / "cluster.json"
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address)) == 0  # 2 workers: one per CPU
    data = json.loads(out.read_text())
    assert_same_profile(data, reference)
    ray_meta = data["metadata"]["ray"]
    assert ray_meta["address"] == cluster.address and ray_meta["workers"] == 2 and ray_meta["nodes"] == 2


@pytest.fixture
def on_result(monkeypatch):
    """Install a driver-side hook, called after each stored result."""
    from llmsplit_env.profiling.ray_runner import RayBackend

    def install(fn):
        monkeypatch.setattr(RayBackend, "on_result", fn)

    return install


def test_a_killed_worker_is_replaced_and_nothing_is_lost_or_counted_twice(
    cluster, tiny_models, tmp_path, reference, on_result, no_ray_left
):
    import ray

    killed = []

    def kill_worker_0(backend, job):
        if job.measured >= 1 and not killed:
            ray.kill(backend.actors[0], no_restart=False)  # as if its process crashed: Ray restarts it
            killed.append(job.measured)

    on_result(kill_worker_0)
    out = tmp_path / "killed.json"
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address)) == 0
    data = json.loads(out.read_text())
    assert killed and killed[0] < N_CELLS
    assert_same_profile(data, reference)
    meta = data["metadata"]
    assert meta["ray"]["worker_restarts"] >= 1 and meta["ray"]["duplicates"] == 0, meta["ray"]
    assert meta["timings"]["cells_measured"] == N_CELLS  # every cell stored once


def test_a_worker_dead_for_good_leaves_its_cells_to_the_others(
    cluster, tiny_models, tmp_path, reference, on_result, no_ray_left
):
    import ray

    killed = []

    def kill_worker_0(backend, job):
        if job.measured >= 1 and not killed:
            ray.kill(backend.actors[0], no_restart=True)
            killed.append(job.measured)

    on_result(kill_worker_0)
    out = tmp_path / "dead.json"
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address)) == 0
    data = json.loads(out.read_text())
    assert killed
    assert_same_profile(data, reference)
    assert data["metadata"]["timings"]["cells_measured"] == N_CELLS
    ray_meta = data["metadata"]["ray"]
    assert ray_meta["lost_tasks_resubmitted"] >= 1 and ray_meta["duplicates"] == 0, ray_meta


def test_a_serial_partial_file_completes_on_ray(
    cluster, tiny_models, tmp_path, reference, interrupt_evaluation, capsys, no_ray_left
):
    out = tmp_path / "resumed.json"
    partial = out.with_name(out.name + ".partial.json")
    interrupt_evaluation(4)
    assert builder.main(args_for(tiny_models, out)) == 130
    interrupt_evaluation.restore()
    assert len(json.loads(partial.read_text())["cells"]) == 3
    capsys.readouterr()
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address)) == 0
    assert f"resuming {partial}: 3 cells done" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert_same_profile(data, reference)
    assert data["metadata"]["timings"]["cells_measured"] == N_CELLS - 3 and not partial.exists()


def test_a_ray_partial_file_completes_serially(cluster, tiny_models, tmp_path, reference, on_result, no_ray_left):
    def interrupt(_backend, job):
        if job.measured == 5:
            raise KeyboardInterrupt  # Ctrl-C on the driver

    on_result(interrupt)
    out = tmp_path / "resumed.json"
    partial = out.with_name(out.name + ".partial.json")
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address)) == 130
    state = json.loads(partial.read_text())
    assert len(state["cells"]) == 5
    on_result(None)
    assert builder.main(args_for(tiny_models, out)) == 0
    data = json.loads(out.read_text())
    assert_same_profile(data, reference)
    assert data["metadata"]["timings"]["cells_measured"] == N_CELLS - 5
    np.testing.assert_array_equal(data["log_ppl"], reference["log_ppl"])


def test_when_every_worker_is_gone_the_build_stops_with_one_line_keeping_its_cells(
    cluster, tiny_models, tmp_path, on_result, capsys, no_ray_left
):
    import ray

    def kill_all(backend, job):
        if job.measured == 2:
            for w in backend.actors:
                ray.kill(w, no_restart=True)

    on_result(kill_all)
    out = tmp_path / "lost.json"
    assert builder.main(args_for(tiny_models, out, "--ray", cluster.address, "--workers", "1")) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: every Ray worker died") and "rerun the same command to resume" in err
    partial = out.with_name(out.name + ".partial.json")
    # the cell queued behind the second (IN_FLIGHT per worker) may finish before the kill lands: Ray keeps its result
    # and the build keeps it; nothing after it can have run
    kept = len(json.loads(partial.read_text())["cells"])
    assert 2 <= kept <= 1 + IN_FLIGHT and not out.exists()
