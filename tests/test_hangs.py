"""No hangs (issue 16, items 4 and 5), on real local Ray instances and clusters: a request for resources that can
never be granted (sweep trials, RLlib env runners, profile workers) fails within seconds naming what was asked and
what the cluster has (a cluster that may grow: after a bounded wait, and it is used if it grows in time); a quality
server that stops answering makes ``env.step`` raise naming the server and its timeout; a bad request sent with good
ones at the same split fails alone.

Order matters a little: the tests that need this process without Ray (a local instance started by the command
itself) run first, each after `no_ray` shut down whatever an earlier test left.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest

import llmsplit_env  # noqa: F401
from agents.zoo import sweep
from llmsplit_env.profiling import builder
from llmsplit_env.util.ray_cluster import WAIT_ENV, connect_ray, require_resources, resource_wait_s, unplaceable

ray = pytest.importorskip("ray")
from llmsplit_env.quality import client as qs  # noqa: E402

HUGE = 10_000  # CPUs no test machine has


def run_cli(main, argv: list[str]) -> tuple[int, str, float]:
    """``main(argv)`` in this process: exit status, stderr, seconds."""
    err = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue(), time.monotonic() - t0


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def no_ray():
    """This process without Ray before and after the test (the command under test starts its own instance)."""
    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


# --- what can never be placed: the rule, without Ray -----------------------------------------------------------------


def test_unplaceable_names_each_kind_of_impossibility():
    node2 = [{"CPU": 2.0, "memory": 1e9}]
    # one bundle larger than every node
    assert unplaceable([{"CPU": 4}], node2) == (
        "4 CPUs on one node; the Ray cluster has at most 2 CPUs on a node (2 CPUs in all)"
    )
    # a resource the cluster lacks altogether
    assert unplaceable([{"CPU": 1, "GPU": 1}], node2) == "1 CPU + 1 GPU on one node; the Ray cluster has no GPU"
    # more in all than the cluster has
    assert unplaceable([{"CPU": 1}] * 1000, node2) == "1000 CPUs in all; the Ray cluster has 2 CPUs"
    # enough in all, but not side by side: 3 bundles of 2 CPUs on two 3-CPU nodes
    assert unplaceable([{"CPU": 2}] * 3, [{"CPU": 3}, {"CPU": 3}]) == (
        "3 x (2 CPUs), each on one node; the Ray cluster holds at most 2 of them"
    )
    # no room at all (a placement group without worker bundles)
    assert unplaceable([{"CPU": 1}] * 2, [], "the group", "bundle") == "2 CPUs; the group has none"
    # what fits is never refused: spread over nodes, fractions, nothing asked
    assert unplaceable([{"CPU": 1}] * 3, [{"CPU": 2}, {"CPU": 2}]) is None
    assert unplaceable([{"CPU": 0.5}] * 4, node2) is None
    assert unplaceable([{"CPU": 0}] * 9, node2) is None
    assert unplaceable([{"CPU": 1, "GPU": 0.5}] * 2, [{"CPU": 2, "GPU": 1}]) is None


def test_the_wait_setting_is_checked(monkeypatch):
    assert resource_wait_s() == 30.0
    monkeypatch.setenv(WAIT_ENV, "2.5")
    assert resource_wait_s() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(WAIT_ENV, bad)
        with pytest.raises(ValueError, match=rf"environment variable {WAIT_ENV} must be a number of seconds .*'{bad}'"):
            resource_wait_s()


# --- sweep -----------------------------------------------------------------------------------------------------------

SWEEP = ["--algo", "random", "--eval-episodes", "1"]


def test_sweep_asking_more_cpus_than_a_local_instance_has_fails_at_once(no_ray, tmp_path):
    """The issue's case: ``--cpus-per-trial 4 --num-cpus 2`` (known before Ray starts), and a trial larger than the
    whole machine on a local instance of its default size (found once Ray runs): exit 2, both numbers named, no
    file written, no Ray left running."""
    out = tmp_path / "sweep"
    rc, err, seconds = run_cli(sweep.main, [*SWEEP, "--out", str(out), "--cpus-per-trial", "4", "--num-cpus", "2"])
    line = error_line(err)
    assert rc == 2 and seconds < 30
    assert "--cpus-per-trial 4" in line and "needs 4 CPUs" in line and "--num-cpus 2" in line
    rc, err, seconds = run_cli(sweep.main, [*SWEEP, "--out", str(out), "--num-cpus", "2", "--worker-cpus-per-trial",
                                            "2"])  # fmt: skip
    assert rc == 2 and "needs 3 CPUs" in error_line(err) and "--worker-cpus-per-trial 2" in error_line(err)

    rc, err, seconds = run_cli(sweep.main, [*SWEEP, "--out", str(out), "--cpus-per-trial", str(HUGE)])
    line = error_line(err)
    assert rc == 2 and seconds < 30, (rc, seconds, err)
    assert f"--cpus-per-trial {HUGE}" in line and f"{HUGE} CPUs on one node; the Ray cluster has at most" in line
    assert not ray.is_initialized()  # the sweep shut down the instance it started
    assert not out.exists()  # refused before any file


@pytest.mark.skipif(bool(os.environ.get("CUDA_VISIBLE_DEVICES")), reason="needs a machine Ray sees no GPU on")
def test_sweep_asking_a_gpu_on_a_cpu_machine_fails_at_once(no_ray, tmp_path):
    rc, err, seconds = run_cli(sweep.main, [*SWEEP, "--out", str(tmp_path / "s"), "--gpus-per-trial", "1",
                                            "--num-cpus", "1"])  # fmt: skip
    if rc == 0:
        pytest.skip("this machine has a GPU")
    line = error_line(err)
    assert rc == 2 and seconds < 30
    assert "--gpus-per-trial 1" in line and "1 GPU on one node" in line and "has no GPU" in line


def test_sweep_of_rllib_without_room_for_its_env_runners_fails_before_ray(no_ray, tmp_path):
    """RLlib PPO's env runners go into the trial's placement group: without worker bundles for them they would wait
    for ever; the plan says how many to give, before Ray starts."""
    rc, err, seconds = run_cli(sweep.main, ["--algo", "rllib_ppo", "--out", str(tmp_path / "s"), "-n", "200",
                                            "-params", "rllib_ppo.num_env_runners:3"])  # fmt: skip
    line = error_line(err)
    assert rc == 2 and seconds < 30
    assert "3 env runners x 1 CPU" in line and "need 3 CPUs" in line and "--worker-cpus-per-trial 0 has none" in line
    assert "give --worker-cpus-per-trial 3" in line
    assert not ray.is_initialized()
    rc, err, _ = run_cli(sweep.main, ["--algo", "rllib_ppo", "--out", str(tmp_path / "s"), "-n", "200", "-params",
                                      "rllib_ppo.num_env_runners:3", "rllib_ppo.num_cpus_per_env_runner:0.6",
                                      "--worker-cpus-per-trial", "2"])  # fmt: skip
    line = error_line(err)  # 1.8 CPUs in all fit in 2, but one 0.6-CPU runner per 1-CPU bundle: 2, not 3
    assert rc == 2 and "3 x (0.6 CPUs), each on one bundle" in line and "holds at most 2 of them" in line
    assert "give --worker-cpus-per-trial 3" in line


# --- profile workers -------------------------------------------------------------------------------------------------


def profile_args(tiny_models, out: Path, *extra: str) -> list[str]:
    return ["--model", str(tiny_models["llama"]), "--text", "pydoc", "--scheme", "analog", "--out", str(out),
            "--num-tokens", "64", "--window", "32", "--levels", "0", "10", "--seeds", "0", "--dtype", "float32",
            "--probe-fit-tokens", "256", "--probe-test-tokens", "64", *extra]  # fmt: skip


def test_profile_with_more_workers_than_the_machine_fails_at_once(no_ray, tiny_models, tmp_path):
    """``--workers 1000`` on a local instance: refused before Ray starts, naming the workers and the machine's CPUs
    (it used to start a 1000-CPU local instance: 1000 model loads on a few cores)."""
    from llmsplit_env.profiling.ray_runner import _cpu_count

    machine = _cpu_count()
    out = tmp_path / "p.json"
    rc, err, seconds = run_cli(builder.main, profile_args(tiny_models, out, "--ray", "--workers", "1000"))
    line = error_line(err)
    assert rc == 2 and seconds < 30
    assert f"--workers 1000 x --cpus-per-worker 1 needs 1000 CPUs; this machine has {machine}" in line
    assert f"give --workers {machine} or fewer" in line
    rc, err, _ = run_cli(builder.main, profile_args(tiny_models, out, "--ray", "--cpus-per-worker", str(HUGE)))
    assert rc == 2 and f"needs {HUGE} CPUs" in error_line(err) and f"--cpus-per-worker {machine} or fewer" in err
    assert not ray.is_initialized() and not out.exists()


# --- RLlib env runners -----------------------------------------------------------------------------------------------


def test_rllib_runners_a_local_instance_cannot_place_fail_at_once(no_ray):
    """2 env runners x 1 CPU on a 1-CPU local instance: RLlib would wait for ever for the second runner."""
    pytest.importorskip("ray.rllib")
    from agents.rllib_ppo import RLlibPPOAgent

    env = gym.make("LLMSplit-v0")
    agent = RLlibPPOAgent(env, num_env_runners=2, train_batch_size=100, minibatch_size=50)
    connect_ray(None, 1)
    t0 = time.monotonic()
    with pytest.raises(ValueError) as e:
        agent.learn(100)
    assert time.monotonic() - t0 < 30
    assert str(e.value) == (
        "rllib_ppo: 2 env runners x 1 CPU (num_env_runners 2, num_cpus_per_env_runner 1) needs 2 CPUs in all; "
        "the Ray cluster has 1 CPU"
    )


def test_rllib_runners_a_placement_group_cannot_hold_fail_at_once(no_ray):
    """Inside a placement group (as in a Tune trial) the runners go into the bundles after the trial's own: a task
    placed in bundle 0 of a group without room for them is refused, naming the sweep flag to give."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    connect_ray(None, 2)
    pg = placement_group([{"CPU": 1}, {"CPU": 0.5}])
    ray.get(pg.ready(), timeout=60)

    @ray.remote(num_cpus=1)
    def check(hp):
        from agents.rllib_ppo import check_runner_resources

        try:
            check_runner_resources(hp)
        except ValueError as e:
            return str(e)
        return None

    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0,
                                                placement_group_capture_child_tasks=True)  # fmt: skip
    try:
        msg = ray.get(check.options(scheduling_strategy=strategy).remote({"num_env_runners": 1}), timeout=120)
        assert msg is not None and "1 env runner x 1 CPU" in msg
        assert "1 CPU on one bundle; the Tune trial's placement group beyond its own bundle has at most 0.5 CPUs" in msg
        assert "give --worker-cpus-per-trial 1" in msg
        hp = {"num_env_runners": 1, "num_cpus_per_env_runner": 0.5}  # fits the second bundle
        assert ray.get(check.options(scheduling_strategy=strategy).remote(hp), timeout=120) is None
    finally:
        remove_placement_group(pg)


# --- a cluster that may grow: a bounded wait ------------------------------------------------------------------------


@pytest.fixture(scope="class")
def cluster():
    """A real local cluster, joined as any cluster (not started by this process's `connect_ray`): one 1-CPU node
    (the tests add nodes, in their order)."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


class TestAClusterThatMayGrow:
    """One cluster for the three tests (in this order): the sweep and the profile fail after the bounded wait; a
    node that joins during the wait is used."""

    def test_sweep_on_a_cluster_fails_after_the_bounded_wait(self, cluster, tmp_path, monkeypatch):
        monkeypatch.setenv(WAIT_ENV, "1")
        argv = [*SWEEP, "--out", str(tmp_path / "s"), "--ray-address", cluster.address, "--cpus-per-trial", "2"]
        rc, err, seconds = run_cli(sweep.main, argv)
        line = error_line(err)
        assert rc == 2 and seconds < 30
        assert "a trial (--cpus-per-trial 2) needs 2 CPUs on one node" in line and "after waiting 1 s" in line
        assert ray.is_initialized()  # the sweep leaves the connection it did not make

    def test_profile_workers_no_node_can_hold_fail_after_the_bounded_wait(
        self, cluster, tiny_models, tmp_path, monkeypatch
    ):
        """``--ray ADDRESS``: 2 CPUs per worker on a cluster of two 1-CPU nodes (2 CPUs in all, but not on one)."""
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        monkeypatch.setenv(WAIT_ENV, "1")
        argv = profile_args(tiny_models, tmp_path / "p.json", "--ray", cluster.address, "--workers", "1",
                            "--cpus-per-worker", "2")  # fmt: skip
        rc, err, seconds = run_cli(builder.main, argv)
        line = error_line(err)
        assert rc == 2 and seconds < 30
        assert "--workers 1 x --cpus-per-worker 2 needs 2 CPUs on one node" in line
        assert "at most 1 CPU on a node (2 CPUs in all)" in line and "after waiting 1 s" in line

    def test_the_wait_is_bounded_and_a_node_that_joins_in_time_is_used(self, cluster):
        t0 = time.monotonic()
        with pytest.raises(ValueError) as e:
            require_resources([{"CPU": 2}], "--thing 2", wait_s=2)
        waited = time.monotonic() - t0
        assert 2 <= waited < 10
        assert str(e.value) == (
            "--thing 2 needs 2 CPUs on one node; the Ray cluster has at most 1 CPU on a node (2 CPUs in all) (after "
            f"waiting 2 s for it to grow; {WAIT_ENV} sets how long)"
        )
        # a node that joins during the wait is taken: no error, as soon as it is there (the wait runs in a thread:
        # Ray starts nodes only from the main thread)
        outcome: dict = {}

        def wait() -> None:
            t0 = time.monotonic()
            try:
                require_resources([{"CPU": 2}], "--thing 2", wait_s=60)
                outcome["ok"] = time.monotonic() - t0
            except Exception as e:  # reported below
                outcome["error"] = e

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.0)
        cluster.add_node(num_cpus=2)
        waiter.join(90)
        assert "ok" in outcome and outcome["ok"] < 45, outcome


# --- the quality server: a timeout, and a bad request fails alone ----------------------------------------------------


@pytest.fixture(scope="module")
def quality_ray():
    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20)
    yield ray
    ray.shutdown()


def settings(section: dict) -> dict:
    return {k: section[k] for k in ("model", "text", "num_tokens", "window", "dtype", "device")}


def test_a_stopped_server_makes_step_raise_within_its_timeout(quality_ray, tiny_llm_section):
    """SIGSTOP the server's process: ``env.step`` raises naming ``llm.server`` and the timeout instead of blocking for
    ever; once the process runs again, the env steps again."""
    handle = qs.start_quality_server("stoppable", **settings(tiny_llm_section), request_timeout_s=2)
    pid = ray.get(handle.info.remote())["pid"]
    env = gym.make("LLMSplit-LLM-v0", config={"llm": {**tiny_llm_section, "server": "stoppable"}})
    env.reset(seed=0)
    env.step(0)  # split 1: one evaluation, answered
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(qs.ServerTimeout) as e:
            env.step(0)
        seconds = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
    assert 2 <= seconds < 10
    msg = str(e.value)
    assert "config 'llm.server' = 'stoppable'" in msg and "did not answer evaluate within 2 s" in msg
    assert env.unwrapped.quality_backend.evaluations == 1  # the unanswered request is not counted
    env.step(0)  # the server answers again
    assert env.unwrapped.quality_backend.evaluations == 2
    with pytest.raises(ValueError, match=r"request_timeout_s must be a number of seconds in \(0, 86400\], got 0"):
        qs.start_quality_server("x", request_timeout_s=0)
    assert qs.stop_quality_server("stoppable")


BAD_REQUESTS = [
    ((2, "analog", 10.0, {}, 2**70), r"seed must be an integer in \[0, 2\*\*64 - 1\], got 1180591620717411303424"),
    ((2, "analog", 10.0, {}, -1), r"seed must be an integer .* got -1"),
    ((2, "analog", 10.0, {}, 1.5), r"seed must be an integer .* got 1.5"),
    ((2, "analog", float("nan"), {}, 7), r"snr_db must be a finite number .* got nan"),
    ((2, "analog", 10.0, {"m": "x"}, 7), r"m \(Nakagami shape\) must be a number"),
    ((2, "radio", 10.0, {}, 7), r"unknown channel scheme 'radio'"),
    ((0, "analog", 10.0, {}, 7), r"split must be an integer \[1, 4\], got 0"),
]


GOOD = [(2, "analog", level, {}, seed) for level, seed in ((0.0, 1), (10.0, 2), (20.0, 3))]


@pytest.fixture(scope="module")
def batching_server(quality_ray, tiny_llm_section):
    """Batches of up to 4; a request waits up to 1 s for company, so 4 sent together form one batch. With the good
    requests' answers, each asked alone."""
    handle = qs.start_quality_server("batcher", **settings(tiny_llm_section), max_batch=4, batch_wait_s=1.0)
    assert ray.get(handle.info.remote())["batching"] is True
    yield handle, [ray.get(handle.evaluate.remote(*g)) for g in GOOD]
    qs.stop_quality_server("batcher")


@pytest.mark.parametrize("bad, error", BAD_REQUESTS, ids=[str(b[0][-1]) + " " + b[1][:20] for b in BAD_REQUESTS])
def test_a_bad_request_fails_alone_in_its_batch(batching_server, bad, error):
    """The issue's seed 2**70 and every other kind of bad request, sent with 3 good ones at the same split."""
    server, want = batching_server
    good = GOOD
    ray.get(server.reset_stats.remote())
    refs = [server.evaluate.remote(*r) for r in (good[0], good[1], bad, good[2])]
    with pytest.raises(ray.exceptions.RayTaskError) as e:
        ray.get(refs[2], timeout=60)
    assert isinstance(e.value.cause, ValueError)
    assert re.search(error, str(e.value.cause)), str(e.value.cause)
    got = ray.get([refs[0], refs[1], refs[3]], timeout=60)
    assert got == want  # the 3 good ones: their answers, bit for bit
    stats = ray.get(server.stats.remote())
    assert stats["requests"] == 3 and stats["batch_sizes"] == {3: 1}  # one batch of the 3 good ones


def test_the_env_side_gets_the_bad_request_as_a_value_error(batching_server):
    """Through `client.call` (what the env uses): the server's ValueError comes back as a plain ValueError."""
    handle, want = batching_server
    qs.connect("batcher")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64 - 1\]"):
        qs.call(handle, "batcher", "evaluate", 2, "analog", 10.0, {}, 2**70)
    assert qs.call(handle, "batcher", "evaluate", *GOOD[0]) == want[0]
