"""RLlib front door: the env creator, RLlib's by-id path on real env runners, and the `rllib_ppo` agent (train, tag
tree, save/load as data, errors before work). Ray runs for real: a local instance with 2 CPUs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray.rllib")

import ray

from llmsplit_env.env import LLMSplitEnv
from llmsplit_env.rllib import make_rllib_env, register_rllib_envs, vectorize_mode
from llmsplit_env.vector import LLMSplitVectorEnv

SWITCHING = {"reward": {"weights": {"switching": 0.3}}}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _switching_weight(env) -> float:
    return float(env.unwrapped.config["reward"]["weights"]["switching"])


# --- the creator (no Ray needed) -----------------------------------------------------------------------------------


def test_creator_returns_one_env_or_the_numpy_vector_env():
    env = make_rllib_env(dict(SWITCHING))
    assert isinstance(env.unwrapped, LLMSplitEnv)
    assert _switching_weight(env) == 0.3
    venv = make_rllib_env({**SWITCHING, "num_envs": 3})  # what RLlib passes when it wants a vector env
    assert isinstance(venv.unwrapped, LLMSplitVectorEnv) and venv.num_envs == 3
    assert venv.unwrapped.config["reward"]["weights"]["switching"] == 0.3
    paper = make_rllib_env({"num_envs": 2}, env_id="LLMSplit-Paper-v0")
    assert paper.unwrapped.config["preset"] == "paper"
    # the same sub-env seeds give the same first observations as single envs of the same config
    obs, _ = venv.reset(seed=[5, 6, 7])
    single, _ = env.reset(seed=6)
    np.testing.assert_allclose(obs[1], single)


def test_creator_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="env_id must be one of LLMSplit-v0"):
        make_rllib_env({"env_id": "CartPole-v1"})
    with pytest.raises(ValueError, match="'env_id' is 'LLMSplit-Paper-v0' but this creator makes 'LLMSplit-v0'"):
        make_rllib_env({"env_id": "LLMSplit-Paper-v0"}, env_id="LLMSplit-v0")
    with pytest.raises(ValueError, match="rewardd"):
        make_rllib_env({"rewardd": {}})


def test_vectorize_mode_per_id():
    assert vectorize_mode("LLMSplit-v0") == "vector_entry_point"
    assert vectorize_mode("llmsplit_env:LLMSplit-Paper-v0") == "vector_entry_point"
    assert vectorize_mode("LLMSplit-LLM-v0") == "sync"  # no numpy vector env for the live model


# --- RLlib itself, on real env runners ------------------------------------------------------------------------------


def _runner_weights(algo) -> list[float]:
    """The switching weight of the first env in every remote env runner."""

    def weight(runner):
        u = runner.env.unwrapped
        sub = u.envs[0].unwrapped if hasattr(u, "envs") else u
        return float(sub.config["reward"]["weights"]["switching"]), type(u).__name__

    return algo.env_runner_group.foreach_env_runner(weight, local_env_runner=False)


def test_rllib_by_id_with_env_config_keys_trains_without_glue(local_ray):
    """The issue's acceptance call, unchanged: config keys straight in env_config, 2 env runners."""
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .environment("llmsplit_env:LLMSplit-v0", env_config={"reward": {"weights": {"switching": 0.3}}})
        .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.5)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 200
        got = _runner_weights(algo)
        assert len(got) == 2 and all(w == 0.3 for w, _ in got)
    finally:
        algo.stop()


def test_registered_creator_gives_runners_the_numpy_vector_env(local_ray):
    from ray.rllib.algorithms.ppo import PPOConfig

    assert "LLMSplit-v0" in register_rllib_envs()
    register_rllib_envs()  # twice is fine
    config = (
        PPOConfig()
        .environment("LLMSplit-v0", env_config=dict(SWITCHING))
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4, num_cpus_per_env_runner=0.5,
                     gym_env_vectorize_mode="vector_entry_point")
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
    )  # fmt: skip
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] >= 200
        assert _runner_weights(algo) == [(0.3, "LLMSplitVectorEnv")] * 2
    finally:
        algo.stop()


# --- the rllib_ppo agent --------------------------------------------------------------------------------------------

TINY = {"num_env_runners": 1, "num_envs_per_env_runner": 2, "num_cpus_per_env_runner": 0.5, "train_batch_size": 200,
        "minibatch_size": 100, "num_epochs": 2}  # fmt: skip


@pytest.fixture(scope="module")
def trained(local_ray, tmp_path_factory):
    from agents.common.evaluation import OracleNormalizer
    from agents.zoo.registry import train_agent

    out = tmp_path_factory.mktemp("rllib")
    scorer = OracleNormalizer("LLMSplit-v0", [1_000_000, 1_000_001], {"reward": {"weights": {"switching": 0.3}}})
    record = train_agent("rllib_ppo", "LLMSplit-v0", dict(SWITCHING), seed=1, n_timesteps=400, out_dir=out / "agent",
                         tensorboard_log=str(out / "tb"), scorer=scorer, hyperparams=dict(TINY))  # fmt: skip
    return record, out, scorer


def test_agent_trains_scores_and_counts_evaluations(trained):
    record, _, _ = trained
    assert record.algo == "rllib_ppo" and record.n_timesteps == 400
    assert record.quality_evals == 400  # a profile env: one per env step, two iterations of 200
    assert [p["quality_evals"] for p in record.curve] == [200, 400]  # eval_freq = budget / 10 -> every iteration
    assert all(np.isfinite(p["normalized_score"]) for p in record.curve)
    with zipfile.ZipFile(record.path) as z:
        meta = json.loads(z.read("llmsplit.json"))
    assert meta["env_kwargs"] == SWITCHING and meta["hyperparams"]["train_batch_size"] == 200


def test_agent_writes_the_shared_tag_tree(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out, _ = trained
    runs = list((out / "tb").glob("RLLIB_PPO_*"))
    assert len(runs) == 1
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "reward/quality", "reward/switching",
                "model/policy_loss", "model/vf_loss", "cost/quality_evals", "eval/normalized_score"):  # fmt: skip
        assert tag in tags, tag
    assert [e.value for e in acc.Scalars("cost/quality_evals")] == [200, 400]
    assert [e.value for e in acc.Scalars("rollout/ep_len_mean")][-1] == 50


def test_saved_agent_loads_as_data_and_acts_the_same(trained):
    from agents.zoo.registry import load_agent

    record, _, scorer = trained
    env = gym.make("LLMSplit-v0", **SWITCHING)
    agent = load_agent("rllib_ppo", record.path, env)
    again = load_agent("rllib_ppo", record.path, env)
    obs = np.stack([env.reset(seed=s)[0] for s in range(20)])
    a, _ = agent.predict(obs)
    b, _ = again.predict(obs)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20,) and all(env.action_space.contains(int(x)) for x in a)
    assert isinstance(agent.predict(obs[0])[0], int)
    # the table train.py prints scores the reloaded agent: the same as the curve's last point
    assert scorer(agent)["normalized_score"] == pytest.approx(record.curve[-1]["normalized_score"])


class PicklePayload:
    """An object pickled into a crafted weights file."""


def test_damaged_or_foreign_files_are_refused_by_name(trained, tmp_path):
    from agents.zoo.registry import load_agent

    record, _, _ = trained
    torn = tmp_path / "torn.zip"
    data = Path(record.path).read_bytes()
    torn.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"torn\.zip"):
        load_agent("rllib_ppo", torn)
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("llmsplit.json", json.dumps({"format": "llmsplit-sb3"}))
        z.writestr("module.pt", b"")
    with pytest.raises(ValueError, match=r"foreign\.zip is not a saved rllib_ppo agent"):
        load_agent("rllib_ppo", foreign)
    with pytest.raises(ValueError, match="observation_space differs"):
        load_agent("rllib_ppo", record.path, gym.make("LLMSplit-v0", observation={"extras": ["log_ppl0"]}))
    # weights replaced by pickled data: plain data (which weights_only lets through) and an object (refused)
    import io

    import torch

    for name, payload, needle in (
        ("data", {"w": [1, 2, 3]}, r"holds list under 'w' where a state dict has tensors"),
        (
            "object",
            {"w": PicklePayload()},
            r"refused: it holds pickled objects, not only tensors \(.*PicklePayload.*\); no code ran",
        ),
    ):
        buf = io.BytesIO()
        torch.save(payload, buf)
        crafted = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(record.path) as src, zipfile.ZipFile(crafted, "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                dst.writestr(info, buf.getvalue() if info.filename.endswith(".pt") else data)
        with pytest.raises(ValueError, match=needle):
            load_agent("rllib_ppo", crafted)


@pytest.mark.parametrize(
    ("hp", "message"),
    [
        ({"fcnet_activation": "bogus"}, "fcnet_activation must be one of tanh"),
        ({"num_epochs": "x"}, "num_epochs must be int"),
        ({"lr": -1.0}, r"rllib_ppo.lr must be > 0, got -1.0"),
        ({"lr": 0.0}, r"rllib_ppo.lr must be > 0"),
        ({"train_batch_size": 100, "minibatch_size": 200}, "minibatch_size .200. must be <= train_batch_size"),
        ({"fcnet_hiddens": [64, 0]}, "fcnet_hiddens must be a list of positive ints"),
        ({"learning_rate": 0.1}, "unknown hyperparameter"),
    ],
)
def test_bad_hyperparameters_fail_before_any_work(hp, message):
    from agents.zoo.registry import check_agent

    env = gym.make("LLMSplit-v0")
    with pytest.raises(ValueError, match=message):
        check_agent("rllib_ppo", env, "LLMSplit-v0", hyperparams=hp)


def test_train_and_evaluate_on_a_ray_cluster_by_address(tmp_path):
    """`train.py --algo rllib_ppo --ray-address ADDR` trains with env runners on an existing cluster (a real head node
    started here), and evaluate.py reads the summary and scores the saved agent."""
    import subprocess
    import sys

    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        hp = [f"rllib_ppo.{k}:{v}" for k, v in TINY.items()]
        cmd = [sys.executable, "train.py", "--algo", "rllib_ppo", "-n", "200", "-f", str(tmp_path), "-tb", "",
               "--eval-episodes", "2", "--no-progress", "--ray-address", cluster.address, "-params", *hp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "rllib_ppo" in done.stdout
        # the env runners ran on the cluster's node, not in a fresh local instance
        assert "Started a local Ray instance" not in done.stderr
    finally:
        cluster.shutdown()
    summary = json.loads((tmp_path / "LLMSplit-v0" / "summary.json").read_text())
    entry = summary["agents"]["rllib_ppo_seed0"]
    assert entry["quality_evals"] == 200 and entry["algo"] == "rllib_ppo"

    import evaluate

    out = tmp_path / "eval.json"
    assert evaluate.main(["-f", str(tmp_path), "--n-eval-episodes", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["rllib_ppo_seed0"]
    assert "error" not in row and np.isfinite(row["normalized_score"])


def test_ray_address_without_rllib_ppo_is_refused(tmp_path):
    import train

    with pytest.raises(ValueError, match="--ray-address is for rllib_ppo"):
        train.run(train.build_parser().parse_args(["--algo", "oracle", "--ray-address", "auto", "-f", str(tmp_path)]))


def test_learn_twice_and_untrained_use_are_refused(trained):
    from agents.zoo.registry import load_agent

    record, _, _ = trained
    agent = load_agent("rllib_ppo", record.path)
    with pytest.raises(ValueError, match="trained already; build a new one"):
        agent.learn(200)
    from agents.rllib_ppo import RLlibPPOAgent

    fresh = RLlibPPOAgent(gym.make("LLMSplit-v0"), **TINY)
    with pytest.raises(ValueError, match="untrained"):
        fresh.predict(np.zeros(fresh.observation_space.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="untrained: nothing to save"):
        fresh.save("never-written.zip")
    assert not Path("never-written.zip").exists()


def test_live_env_counts_the_models_evaluations_exactly(local_ray, tiny_llm_section, tmp_path):
    """On the live env a step at k = L costs nothing and resets cost what they cost: the agent's count is the sum of
    the env runners' envs' own lifetime counters, whatever RLlib's episode chunking."""
    from agents.rllib_ppo import RLlibPPOAgent

    config = {"llm": {**tiny_llm_section, "profile_match": "model"}, "max_episode_steps": 7}
    env = gym.make("LLMSplit-LLM-v0", **config)
    agent = RLlibPPOAgent(env, env_id="LLMSplit-LLM-v0", env_kwargs=config, seed=0, num_env_runners=1,
                          num_envs_per_env_runner=2, num_cpus_per_env_runner=0.5, train_batch_size=30,
                          minibatch_size=15, num_epochs=1)  # fmt: skip
    seen = []
    agent.learn(60, eval_fn=lambda a: seen.append((a.num_timesteps, a.quality_evals)) or {}, eval_freq=30)
    # 7-step episodes over 15-step chunks per sub-env: RLlib cuts episodes, the count must not care
    assert [t for t, _ in seen] == [30, 60]
    # every evaluation the runner's envs ran: at most one per step plus the resets, and none lost between chunks
    (_, first), (_, evals) = seen
    assert 0 < first < evals <= 60 + 2 * (60 // 7 + 2)
    assert agent.quality_evals == evals
