"""The one agent protocol (`agents.common.protocol`): every registry algo's agent class implements it, and a trained
tiny agent of each kind round-trips save -> load with the same actions and real-evaluation count; and the shared
saving/loading helpers (`agents.common.save_util`)."""

from __future__ import annotations

import io
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest

from agents.common.protocol import Agent, protocol_errors
from agents.common.save_util import (
    SpacesOnlyEnv,
    check_spaces,
    describe_space,
    load_weights,
    predict_actions,
    read_files,
    read_json,
    space_from,
    weights_bytes,
    write_files,
)
from agents.zoo.registry import ALGOS, CELL, REGISTRY, SINGLE, TrainJob

ENV_ID = "LLMSplit-v0"
# algo -> (budget, hyperparameters): tiny, so each trains in about a second
TINY: dict[str, tuple[int, dict]] = {
    "mbrl": (30, {"warmup_steps": 20, "refit_every": 10, "max_epochs": 5, "ensemble_size": 2, "num_elites": 1,
                  "hidden_dims": [16], "dynamics_hidden_dims": [8], "horizon": 2, "n_rollouts": 2}),
    "ppo": (64, {"n_steps": 32, "batch_size": 16, "n_epochs": 1}),
    "a2c": (20, {"n_steps": 5}),
    "dqn": (40, {"learning_starts": 10, "buffer_size": 200, "batch_size": 8, "train_freq": 4}),
    "maskable_ppo": (64, {"n_steps": 32, "batch_size": 16, "n_epochs": 1}),
    "rsm_ppo": (64, {"n_real": 20, "ppo_kwargs": {"n_steps": 32, "batch_size": 16, "n_epochs": 1},
                     "surrogate_kwargs": {"max_epochs": 5}}),
    "rllib_ppo": (200, {"num_env_runners": 0, "train_batch_size": 200, "minibatch_size": 100, "num_epochs": 1}),
    "oracle": (0, {}),
    "random": (0, {}),
    "fixed": (0, {"split": 7}),
    "threshold": (60, {}),
    "cell_planner": (0, {"max_sweeps": 2}),
    "cell_selfish": (0, {}),
    "cell_fixed": (0, {"split": 7}),
    "cell_random": (0, {}),
}  # fmt: skip
CELL_ID = "LLMSplit-Cell-v0"
CELL_CONFIG = {"cell": {"n_ues": 3}, "max_episode_steps": 10}


def _algo_params():
    return [pytest.param(a, marks=pytest.mark.slow) if a == "rllib_ppo" else a for a in ALGOS
            if SINGLE in REGISTRY[a].envs]  # fmt: skip


def test_every_algo_has_a_tiny_setting():
    assert set(TINY) == set(ALGOS)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_registry_class_implements_the_protocol(algo):
    assert protocol_errors(REGISTRY[algo].agent_class()) == []


def test_protocol_errors_name_what_is_wrong():
    class NoLoad:
        quality_evals = 0

        def learn(self, steps, callback=None): ...

        def predict(self, observation, state=None, episode_start=None, deterministic=True): ...

        def save(self, path, extra): ...

        def load(self, path, env=None): ...  # not a classmethod

    errors = protocol_errors(NoLoad)
    assert "NoLoad.load is not a classmethod" in errors
    assert "NoLoad.learn takes ['steps', 'callback'], expected ['total_timesteps', 'callback'] first" in errors
    assert "NoLoad.save: its extra parameter extra needs a default" in errors
    assert protocol_errors(int) == [f"int has no {m}()" for m in ("learn", "predict", "save", "load")]
    assert not isinstance(object(), Agent)


def _train(algo: str, env: gym.Env, env_id: str = ENV_ID):
    entry = REGISTRY[algo]
    steps, hp = TINY[algo]
    job = TrainJob(algo, env, env_id, None, 3, steps or None, None, None, None, False, hp, None)
    built = entry.build(job)
    evals = entry.fit(job, built)
    return entry, built, evals


@pytest.mark.parametrize("algo", _algo_params())
def test_tiny_agent_round_trips_with_the_same_actions(algo, tmp_path, request):
    if algo == "rllib_ppo":  # RLlib's agent joins a running Ray or starts one: this test owns it and ends it
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            request.addfinalizer(ray.shutdown)
    env = gym.make(ENV_ID)
    entry, built, evals = _train(algo, env)
    agent = built.agent
    assert isinstance(agent, Agent)
    assert agent.quality_evals == evals
    # a profile env: one real evaluation per training step that sends something (k = L sends none; RLlib counts
    # every step); RSM-PPO's are its n_real collection steps; MBRL never steps where nothing is sent
    steps = {"mbrl": 30, "rsm_ppo": 20, "threshold": 60, "rllib_ppo": agent.quality_evals}.get(algo, 0)
    if algo in ("ppo", "a2c", "dqn", "maskable_ppo"):
        steps = int(agent.num_timesteps)
    assert 0 < agent.quality_evals <= steps if steps else agent.quality_evals == 0
    assert (steps > 0) == (algo not in ("oracle", "random", "fixed")) and (algo != "mbrl" or agent.quality_evals == 30)

    path = tmp_path / entry.file_name
    entry.save(agent, path, {"algo": algo, "hyperparams": built.hp, "seed": 3})
    loaded = entry.load_agent(path, env)
    assert type(loaded) is type(agent) and isinstance(loaded, Agent)
    assert loaded.quality_evals == agent.quality_evals

    # one episode acted by the trained agent; the loaded one must choose every same action (the oracle reads the
    # env's true state, the random agent continues the saved generator)
    obs, _ = env.reset(seed=11)
    seen, done = [], False
    while not done:
        a, _ = agent.predict(obs, deterministic=True)
        b, _ = loaded.predict(obs, deterministic=True)
        assert np.ndim(a) == 0 and int(a) == int(b)
        seen.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(a))
        done = terminated or truncated
    if algo != "oracle":  # the oracle acts on one env's state: no batches
        batch = np.stack(seen)
        want, _ = agent.predict(batch, deterministic=True)
        got, _ = loaded.predict(batch, deterministic=True)
        assert want.shape == (len(seen),) and np.array_equal(want, got)


# RLlib PPO on the cell is its own module's (multi-agent, a shared policy): tested there
@pytest.mark.parametrize("algo", [a for a in ALGOS if CELL in REGISTRY[a].envs and a != "rllib_ppo"])
def test_tiny_cell_agent_round_trips_with_the_same_actions(algo, tmp_path):
    env = gym.make(CELL_ID, config=CELL_CONFIG)
    entry, built, evals = _train(algo, env, CELL_ID)
    agent = built.agent
    assert isinstance(agent, Agent) and agent.quality_evals == evals
    path = tmp_path / entry.file_name
    entry.save(agent, path, {"algo": algo, "hyperparams": built.hp, "seed": 3})
    loaded = entry.load_agent(path, env)
    assert type(loaded) is type(agent) and loaded.quality_evals == agent.quality_evals
    obs, _ = env.reset(seed=11)
    done = False
    while not done:  # one action per UE, the same from the trained and the loaded agent
        a, _ = agent.predict(obs, deterministic=True)
        b, _ = loaded.predict(obs, deterministic=True)
        assert np.shape(a) == (3,) and np.array_equal(a, b)
        obs, _, terminated, truncated, _ = env.step(np.asarray(a))
        done = terminated or truncated


# ------------------------------------------------------------------------------------------------ save_util
def test_predict_actions_shapes_masks_and_refusals():
    calls = []

    def act(batch, masks):
        calls.append((batch.shape, None if masks is None else masks.shape))
        return np.arange(len(batch)) + 5

    one = predict_actions(np.zeros(3), act, obs_dim=3)
    assert np.ndim(one) == 0 and one == 5
    many = predict_actions(np.zeros((4, 3)), act, obs_dim=3, action_masks=[True, False], n_actions=2)
    assert many.tolist() == [5, 6, 7, 8]
    assert calls == [((1, 3), None), ((4, 3), (4, 2))]
    with pytest.raises(ValueError, match=r"observation must have shape \[3\] or \[N, 3\], got \(2,\)"):
        predict_actions(np.zeros(2), act, obs_dim=3)


def test_spaces_round_trip_and_are_checked(tmp_path):
    env = gym.make(ENV_ID)
    meta = {"observation_space": describe_space(env.observation_space),
            "action_space": describe_space(env.action_space)}  # fmt: skip
    stand_in = SpacesOnlyEnv(space_from(meta["observation_space"], "f"), space_from(meta["action_space"], "f"))
    check_spaces(stand_in, meta, "f")
    assert stand_in.observation_space == env.observation_space and stand_in.action_space == env.action_space
    with pytest.raises(RuntimeError, match="loaded without an env"):
        stand_in.reset()
    with pytest.raises(ValueError, match="the env's action_space differs from the one f was saved with"):
        check_spaces(SpacesOnlyEnv(env.observation_space, gym.spaces.Discrete(3)), meta, "f")
    with pytest.raises(ValueError, match=r"f: unreadable space description \{'type': 'Tuple'\}"):
        space_from({"type": "Tuple"}, "f")


@pytest.mark.parametrize("as_zip", [True, False])
def test_parts_round_trip_and_faults_name_the_file(tmp_path, as_zip):
    import torch

    path = tmp_path / ("agent.zip" if as_zip else "agent")
    state = {"w": torch.arange(3.0)}
    write_files(path, {"meta.json": b'{"format": "x"}', "w.pt": weights_bytes(state)})
    assert zipfile.is_zipfile(path) if as_zip else path.is_dir()
    read = read_files(path, "thing")
    assert read_json(read, "meta.json", path, "thing") == {"format": "x"}
    assert torch.equal(load_weights(read("w.pt"), f"{path}: w.pt")["w"], state["w"])
    with pytest.raises(ValueError, match=r"holds no other\.json: not a saved thing"):
        read_json(read, "other.json", path, "thing")


def test_faulty_files_are_refused_by_name(tmp_path):
    class Touch:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    with pytest.raises(ValueError, match=r"x\.pt refused or unreadable \(not a torch\.save zip file"):
        load_weights(pickle.dumps(Touch()), "x.pt")
    # the same pickle inside a torch.save zip: refused by torch.load(weights_only=True)
    src = zipfile.ZipFile(io.BytesIO(weights_bytes({})))
    crafted = io.BytesIO()
    with zipfile.ZipFile(crafted, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, pickle.dumps(Touch()) if info.filename.endswith("data.pkl") else src.read(info))
    with pytest.raises(
        ValueError,
        match=r"x\.pt refused: it holds pickled objects, not only tensors \(Unsupported operand 149\); no code",
    ):
        load_weights(crafted.getvalue(), "x.pt")
    assert not (tmp_path / "pwned").exists()
    cut = tmp_path / "cut.zip"
    write_files(cut, {"a": b"1" * 1000})
    cut.write_bytes(cut.read_bytes()[:-30])
    with pytest.raises(ValueError, match=r"cut\.zip is neither a saved thing directory nor a zip archive"):
        read_files(cut, "thing")
    with pytest.raises(ValueError, match=r"cut\.zip is not a saved thing \(BadZipFile"):
        read_files(cut, "thing", directories=False)
    bad = tmp_path / "bad"
    write_files(bad, {"m.json": b"[1, 2]", "t.json": b"{nope"})
    with pytest.raises(ValueError, match=r"bad is not a saved thing \(m\.json holds a list, not an object\)"):
        read_json(read_files(bad, "thing"), "m.json", bad, "thing")
    with pytest.raises(ValueError, match=r"bad is not a readable saved thing \(t\.json: Expecting"):
        read_json(read_files(bad, "thing"), "t.json", bad, "thing")
