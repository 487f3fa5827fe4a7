"""The shared live-quality server (`llmsplit_env.quality.server`, config ``llm.server``) on a real local Ray instance:
envs that use it get the same rewards, infos and evaluation counts, bit for bit, as envs with their own model, whether
the server batched their requests or not; concurrent requests from several processes are batched; bad settings get
errors naming ``llm.server``.

The tiny random Llama serves the fast tests; the real SmolLM2 (256 tokens) the slow one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import llmsplit_env  # noqa: F401
from llmsplit_env.config import resolve_config

ray = pytest.importorskip("ray")
from llmsplit_env.quality import client as qs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = [0, 1, 1, 2, 0, 3, 1]  # splits 1, 2, 2, 3, 1, L (no evaluation), 2 on the tiny 4-layer model


# --- config and errors that need no server ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, "", "  ", ["q"]])
def test_server_key_is_validated(bad):
    with pytest.raises(ValueError, match=r"config 'llm.server' must be None .* or the name of a running quality"):
        resolve_config({"llm": {"server": bad}}, "llm")
    assert resolve_config(None, "llm")["llm"]["server"] is None  # default: the model in this process, as before
    with pytest.raises(ValueError, match=r"config 'llm.server' = 'q' evaluates from cached prefixes; llm.cached"):
        resolve_config({"llm": {"server": "q", "cached": False}}, "llm")


def test_server_needs_ray_initialised(tiny_llm_section):
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    with pytest.raises(RuntimeError) as e:
        gym.make("LLMSplit-LLM-v0", llm={**tiny_llm_section, "server": "quality"})
    msg = str(e.value)
    assert "config 'llm.server' = 'quality'" in msg and "Ray is not initialised" in msg and "ray.init(" in msg


# --- a local Ray instance with a tiny-model server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        # 4 logical CPUs on a 2-core machine: the module's tiny server (1) and the slow test's real one (2) both fit,
        # else the real one would wait for ever for the CPUs the tiny one holds
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20)
    yield ray
    if started:
        ray.shutdown()


def server_settings(section: dict) -> dict:
    return {k: section[k] for k in ("model", "text", "num_tokens", "window", "dtype", "device")}


@pytest.fixture(scope="module")
def tiny_server(local_ray, tiny_llm_section):
    """A server on the tiny model; a lone request waits up to 0.3 s for company (its forwards take milliseconds)."""
    handle = qs.start_quality_server("tiny", **server_settings(tiny_llm_section), max_batch=4, batch_wait_s=0.3)
    yield handle
    qs.stop_quality_server("tiny")


def run(config: dict, seed: int, actions=ACTIONS) -> tuple[list, int]:
    """One episode's reset and steps, as plain values (exact float comparison), and the backend's evaluations."""
    env = gym.make("LLMSplit-LLM-v0", config=config)
    obs, info = env.reset(seed=seed)
    out = [(obs.tolist(), info)]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs.tolist(), r, term, trunc, info))
    return out, env.unwrapped.quality_backend.evaluations


@pytest.fixture(scope="module")
def own_model_runs(tiny_llm_section):
    """The reference: each env loads its own model (``llm.server`` None), seeds 0..3."""
    config = {"llm": dict(tiny_llm_section), "max_episode_steps": 20}
    return {seed: run(config, seed) for seed in range(4)}


def test_server_envs_equal_own_model_envs(tiny_server, tiny_llm_section, own_model_runs):
    qs.call(tiny_server, "tiny", "reset_stats")
    config = {"llm": {**tiny_llm_section, "server": "tiny"}, "max_episode_steps": 20}
    for seed in range(4):
        got, evaluations = run(config, seed)
        assert got == own_model_runs[seed][0]  # observations, rewards, infos: bit for bit
        assert evaluations == own_model_runs[seed][1] == 6  # one per step with k < L
        assert got[-1][-1]["quality_evals"] == 6
    assert ray.get(tiny_server.stats.remote())["requests"] == 4 * 6  # the server saw exactly the envs' requests

    env = gym.make("LLMSplit-LLM-v0", config=config).unwrapped
    own = gym.make("LLMSplit-LLM-v0", config={"llm": dict(tiny_llm_section)}).unwrapped
    qb, mine = env.quality_backend, own.quality_backend
    assert qb.runner is None and qb.server_name == "tiny"  # no model in this env
    assert (qb.num_layers, qb.hidden_size, qb.clean_ppl) == (mine.num_layers, mine.hidden_size, mine.clean_ppl)
    assert qb.leakage == mine.leakage and qb.leakage_source == "probe"  # the probe ran on the server
    d = qb.describe()
    assert d["server"] == "tiny" and d["num_layers"] == 4 and d["model"] == tiny_llm_section["model"]


def _benchmark_module():
    """``benchmarks/quality_server.py``, imported from its file; Ray ships its classes by value (the workers cannot
    import it by name)."""
    spec = importlib.util.spec_from_file_location("quality_server_benchmark", ROOT / "benchmarks" / "quality_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    ray.cloudpickle.register_pickle_by_value(module)
    return module


#: an env in its own process (as an RLlib env runner holds one): the benchmark's, so both measure the same thing
EnvHost = ray.remote(num_cpus=0)(_benchmark_module().EnvHost)


def lockstep(hosts: list, seeds: list[int], actions=ACTIONS) -> list[list]:
    """Reset and step every host together (their requests reach the server concurrently); per host, its episode."""
    out = [[first] for first in ray.get([h.reset.remote(s) for h, s in zip(hosts, seeds, strict=True)])]
    for a in actions:
        for episode, step in zip(out, ray.get([h.step.remote(a) for h in hosts]), strict=True):
            episode.append(step)
    return out


def test_concurrent_requests_from_several_processes_are_batched_and_identical(
    tiny_server, tiny_llm_section, own_model_runs
):
    config = {"llm": {**tiny_llm_section, "server": "tiny"}, "max_episode_steps": 20}
    hosts = [EnvHost.remote(config) for _ in range(4)]
    try:
        ray.get([h.loaded.remote() for h in hosts])  # all constructed before the clock starts
        qs.call(tiny_server, "tiny", "reset_stats")
        episodes = lockstep(hosts, [0, 1, 2, 3])
        stats = ray.get(tiny_server.stats.remote())
        for seed, episode in enumerate(episodes):
            assert episode == own_model_runs[seed][0]
        assert ray.get([h.evaluations.remote() for h in hosts]) == [6, 6, 6, 6]
        assert stats["requests"] == 24
        assert stats["forwards"] < stats["requests"]  # batched: 6 lockstep rounds of 4 same-split requests
        assert sum(n * c for n, c in stats["batch_sizes"].items()) == 24 and max(stats["batch_sizes"]) > 1
        for loaded in ray.get([h.loaded.remote() for h in hosts]):
            assert loaded == {"torch": False, "runner": False}  # the env processes hold no model, not even torch
    finally:
        for h in hosts:
            ray.kill(h)
    info = ray.get(tiny_server.info.remote())
    assert info["batch_invariant"] is True and info["batching"] is True and info["max_batch"] == 4


def test_a_cell_sends_its_slot_s_requests_together_and_the_server_batches_them(tiny_server, tiny_llm_section):
    """The edge cell (``backend="llm"``): its UEs' requests of a slot reach the server together and are batched (at
    the same split: one forward), and the cell gets bit for bit what it gets with the model in its own process."""
    import numpy as np

    config = {"backend": "llm", "llm": dict(tiny_llm_section), "max_episode_steps": 20,
              "cell": {"n_ues": 4, "arrival_prob": 1.0}}  # fmt: skip
    plan = [np.array(a) for a in ([0, 0, 0, 0], [1, 1, 0, 3], [2, 0, 2, 0])]  # the tiny model: split 4 sends nothing

    def episode(cfg: dict) -> tuple[list, int]:
        env = gym.make("LLMSplit-Cell-v0", config=cfg)
        out = [env.reset(seed=5)[0].tolist()]
        for a in plan:
            obs, r, _, _, info = env.step(a)
            out.append((obs.tolist(), r, info["reward"].tolist(), info["ppl"].tolist(), info["packet_loss"].tolist()))
        return out, info["quality_evals"]

    own, own_evals = episode(config)
    qs.call(tiny_server, "tiny", "reset_stats")
    served, served_evals = episode({**config, "llm": {**tiny_llm_section, "server": "tiny"}})
    stats = qs.server_stats("tiny")
    assert served == own and served_evals == own_evals == 11  # 12 requests, one at k = L
    assert stats["requests"] == 11
    # slot 1: one batch of 4 at split 1; slot 2: splits 2, 2, 1; slot 3: splits 3, 3, 1, 1
    assert stats["batch_sizes"].get(4) == 1 and stats["forwards"] == 5


def test_batches_give_the_bits_of_single_forwards(tiny_models):
    """Why batching cannot change a number: the runner's batched forward gives each draw, at every position and batch
    size, exactly its single forward's log-PPL and lost fraction (what the server checks at start-up)."""
    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.llm.channel import make_channel

    r = SplitRunner.from_pretrained(str(tiny_models["llama"]), "pydoc", num_tokens=64, window=32, dtype="float32")
    draws = [(make_channel("analog", lvl, m=2.0), seed) for lvl, seed in ((0.0, 3), (12.5, 7), (30.0, 3), (5.0, 11))]
    for split in (1, 2, 3):
        single = [r.forward_draws(split, [d]) for d in draws]
        assert single[0].log_ppl[0] != single[1].log_ppl[0]  # the draws differ
        for n in (2, 3, 4):
            ev = r.forward_draws(split, draws[:n])
            assert ev.log_ppl.tolist() == [s.log_ppl[0] for s in single[:n]]
            assert ev.loss_fraction.tolist() == [s.loss_fraction[0] for s in single[:n]]
        # and the env's own-model path (`evaluate`, one draw) is that single forward
        ch, seed = draws[1]
        assert r.evaluate(split, ch, [seed]).log_ppl[0] == single[1].log_ppl[0]


def test_a_separate_driver_finds_the_server_by_name(tiny_server, tiny_llm_section, own_model_runs):
    """Another Ray job (its own driver process, connected by address) reaches the same server through its name and
    the fixed namespace, and gets the same episode."""
    config = {"llm": {**tiny_llm_section, "server": "tiny"}, "max_episode_steps": 20}
    code = (
        "import json, sys, ray, gymnasium as gym, llmsplit_env\n"
        f"ray.init(address={ray.get_runtime_context().gcs_address!r}, log_to_driver=False)\n"
        f"env = gym.make('LLMSplit-LLM-v0', config={config!r})\n"
        "obs, info = env.reset(seed=2)\nout = [[obs.tolist(), info]]\n"
        f"for a in {ACTIONS!r}:\n"
        "    obs, r, te, tr, info = env.step(a); out.append([obs.tolist(), r, te, tr, info])\n"
        "print(json.dumps({'out': out, 'torch': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    want = json.loads(json.dumps([list(s) for s in own_model_runs[2][0]]))  # tuples -> lists, as JSON has them
    assert got["out"] == want and got["torch"] is False


def test_server_errors_name_the_key(tiny_server, tiny_llm_section):
    config = {"llm": {**tiny_llm_section, "server": "nope"}}
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", config=config)
    msg = str(e.value)
    assert "config 'llm.server' = 'nope'" in msg and "no quality server of that name" in msg
    assert "running: tiny" in msg and "start_quality_server" in msg

    # the env's llm settings must be what the server measures
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", llm={**tiny_llm_section, "server": "tiny", "num_tokens": 96, "dtype": "bf16"})
    msg = str(e.value)
    assert "config 'llm.server' = 'tiny' measures something else" in msg
    assert "llm.num_tokens 96 (server: 64)" in msg and "llm.dtype 'bf16' (server: 'float32')" in msg

    # starting a server of the same name: the same actor if the settings agree, an error if not
    same = qs.start_quality_server("tiny", **server_settings(tiny_llm_section), max_batch=4, batch_wait_s=0.3)
    assert ray.get(same.info.remote())["pid"] == ray.get(tiny_server.info.remote())["pid"]
    with pytest.raises(ValueError, match=r"already runs with other settings \(max_batch: running 4, asked 2\)"):
        qs.start_quality_server("tiny", **server_settings(tiny_llm_section), max_batch=2, batch_wait_s=0.3)
    with pytest.raises(ValueError, match="batching must be one of"):
        qs.start_quality_server("x", batching="sometimes")


def test_unbatched_server_and_a_dead_server(local_ray, tiny_llm_section, own_model_runs):
    """``batching="off"``: one forward per request, same numbers; a server that died: the env's next evaluation
    raises naming ``llm.server``."""
    qs.start_quality_server("solo", **server_settings(tiny_llm_section), batching="off")
    config = {"llm": {**tiny_llm_section, "server": "solo"}, "max_episode_steps": 20}
    hosts = [EnvHost.remote(config) for _ in range(2)]
    try:
        episodes = lockstep(hosts, [0, 3])
        assert episodes[0] == own_model_runs[0][0] and episodes[1] == own_model_runs[3][0]
        stats = qs.server_stats("solo")
        assert stats["forwards"] == stats["requests"] == 12 and stats["batch_sizes"] == {1: 12}
    finally:
        for h in hosts:
            ray.kill(h)
    env = gym.make("LLMSplit-LLM-v0", config=config)
    env.reset(seed=0)
    assert qs.stop_quality_server("solo") and not qs.stop_quality_server("solo")
    with pytest.raises(RuntimeError, match=r"config 'llm.server' = 'solo': the server is not reachable"):
        env.step(0)
    assert env.unwrapped.quality_backend.evaluations == 0  # a failed evaluation is not counted


# --- the real model ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_server_equals_own_model(local_ray):
    """SmolLM2-135M (256 tokens of Python docs, fp32): 2 envs in their own processes share one server, step in
    lockstep (the server batches their requests), and get bit for bit what envs with their own model get. (Small, to
    keep the suite's time: the benchmark runs 8 envs on 512 tokens.)"""
    # leakage from the shipped profile (same model and scheme, other text): the probe path is the tiny tests' job
    section = {"model": "smollm2-135m", "text": "pydoc", "num_tokens": 256, "window": 128, "dtype": "float32",
               "device": "cpu", "profile_match": "model"}  # fmt: skip
    actions = [0, 0, 13, 29, 0]  # splits 1, 1, 14, L (nothing sent), 1
    # the reference: one env with its own model, reseeded per episode (a reseeded env replays a fresh one)
    env = gym.make("LLMSplit-LLM-v0", config={"llm": section, "max_episode_steps": 20})
    own = []
    for seed in range(2):
        obs, info = env.reset(seed=seed)
        own.append([(obs.tolist(), info)] + [(o.tolist(), *rest) for o, *rest in map(env.step, actions)])
    assert env.unwrapped.quality_backend.evaluations == 8 and own[-1][-1][-1]["quality_evals"] == 4

    qs.start_quality_server("real", **server_settings(section), num_cpus=2, max_batch=2, batch_wait_s=0.5)
    try:
        info = ray.get(ray.get_actor("real", namespace=qs.NAMESPACE).info.remote())
        assert info["batch_invariant"] is True  # checked at start-up: batches of 2, every position
        config = {"llm": {**section, "server": "real"}, "max_episode_steps": 20}
        hosts = [EnvHost.remote(config) for _ in range(2)]
        ray.get([h.loaded.remote() for h in hosts])
        qs.call(ray.get_actor("real", namespace=qs.NAMESPACE), "real", "reset_stats")
        episodes = lockstep(hosts, [0, 1], actions)
        stats = qs.server_stats("real")
        for want, got in zip(own, episodes, strict=True):
            assert got == want  # rewards, ppl, packet loss, quality_evals: bit for bit
        assert ray.get([h.evaluations.remote() for h in hosts]) == [4, 4]
        assert stats["requests"] == 8 and stats["forwards"] < 8
        for h in hosts:
            ray.kill(h)
    finally:
        qs.stop_quality_server("real")


def test_a_server_that_cannot_be_placed_fails_naming_what_it_asked_for(local_ray, tiny_llm_section):
    """More CPUs than the cluster has: a clear error after ``timeout_s``, not a silent wait; nothing is left behind."""
    with pytest.raises(RuntimeError, match=r"'huge' did not start within 3 s: it asked for 64 CPU\(s\)"):
        qs.start_quality_server("huge", **server_settings(tiny_llm_section), num_cpus=64, timeout_s=3)
    with pytest.raises(ValueError):
        ray.get_actor("huge", namespace=qs.NAMESPACE)
