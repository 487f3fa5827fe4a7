"""The authors' reward surrogate as a quality backend (`llmsplit_env.quality.surrogate`): ``gym.make(
"LLMSplit-Paper-v0", surrogate=PATH)`` is their surrogate env. Each test writes its own small MLP of their exact shape
(their ``reward_predictor.pth`` is not shipped) and checks the env against torch and the authors' rules, computed
here independently."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401  (registers the ids)

torch = pytest.importorskip("torch")
from surrogate_nets import authors_net, v_mlp  # noqa: E402

ENV_ID = "LLMSplit-Paper-v0"
# their drift, move -> factor on rho (the +3 quirk: 0.9995, not 0.9985)
FACTORS = {0: 1.0, -1: 1.0005, 1: 0.9995, -2: 1.001, 2: 0.999, -3: 1.0015, 3: 0.9995, -4: 1.002, 4: 0.998}
MOVES = [0, -1, 1, -2, 2, -3, 3, -4, 4]  # action -> move before the cut-back


def _random_mlp(path, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = authors_net()
    torch.save(m.state_dict(), path)
    return m


def _f(m: torch.nn.Module, rho: float, p: float) -> float:
    with torch.no_grad():
        return m.fc(torch.tensor([[rho, p]], dtype=torch.float32)).item()


def _target(p: int, action: int) -> int:
    """Their cut-back rule on splits 1..10: a move past an end is cut back to the largest legal one."""
    return min(max(p + MOVES[action], 1), 10)


@pytest.fixture
def random_mlp(tmp_path):
    path = tmp_path / "reward_predictor.pth"
    return path, _random_mlp(path, seed=3)


def test_reward_is_ten_f_plus_load_of_the_new_state(random_mlp):
    path, m = random_mlp
    env = gym.make(ENV_ID, surrogate=str(path))
    u = env.unwrapped
    assert env.action_space == gym.spaces.Discrete(9)
    assert u.observation_names == ["level", "trend", "packet_loss", "prev_split"]
    rng = np.random.default_rng(0)
    for episode in range(6):
        _, info = env.reset(seed=episode)
        rho, p = info["rho"], info["split"]
        for t in range(5):
            a = int(rng.integers(9))
            _, r, term, trunc, info = env.step(a)
            p_new = _target(p, a)
            rho_new = float(np.float32(min(max(rho * FACTORS[p_new - p], 0.0), 0.3)))  # stored as float32
            assert info["split"] == p_new and info["rho"] == rho_new
            expected = 10.0 * _f(m, rho_new, p_new) + (10 - p_new) / 10
            assert r == pytest.approx(expected, rel=1e-6, abs=1e-6)
            assert info["rewards"]["ppl_gain"] == pytest.approx(_f(m, rho_new, p_new), rel=1e-6, abs=1e-7)
            assert "ppl" not in info and not {"quality", "privacy"} & set(info["rewards"])
            assert info["packet_loss"] == rho_new  # the erasure channel's expected lost fraction
            assert not term and trunc == (t == 4)
            rho, p = rho_new, p_new


def test_drift_factors_include_the_plus_three_quirk_and_cut_back_moves(random_mlp):
    path, _ = random_mlp
    env = gym.make(ENV_ID, surrogate=path)
    u = env.unwrapped
    cases = [  # (start split, action, split after, move the factor is taken for)
        (5, 6, 8, 3),  # +3: their 0.9995
        (5, 5, 2, -3),
        (5, 8, 9, 4),
        (5, 7, 1, -4),
        (9, 8, 10, 1),  # +4 cut back to +1
        (2, 7, 1, -1),  # -4 cut back to -1
        (10, 2, 10, 0),  # +1 at the end: stay
        (1, 1, 1, 0),
        (8, 4, 10, 2),
        (3, 5, 1, -2),  # -3 cut back to -2
    ]
    for start, action, after, move in cases:
        _, info = env.reset(seed=1, options={"initial_split": start})
        rho = info["rho"]
        _, _, _, _, info = env.step(action)
        assert info["split"] == after
        assert info["rho"] == float(np.float32(rho * FACTORS[move])), (start, action)
    assert FACTORS[3] == 0.9995  # the quirk, not the pattern's 0.9985
    env.reset(seed=0, options={"initial_split": 5})
    u.dynamics.level = 0.2999
    env.step(7)  # -4: x1.002, clipped at 0.3
    assert u.level == float(np.float32(0.3))
    # the plain paper preset keeps the corrected pattern (golden trajectories unchanged)
    plain = gym.make(ENV_ID).unwrapped.dynamics
    assert plain.factors is None and not plain.float32
    plain.level = 0.2
    assert plain.level_after(3) == 0.2 * (1.0 - 0.0005 * 3)


def test_resets_draw_the_authors_ranges(random_mlp):
    path, _ = random_mlp
    env = gym.make(ENV_ID, surrogate=path)
    rhos, splits = [], []
    env.reset(seed=0)
    for _ in range(400):
        obs, info = env.reset()
        rhos.append(info["rho"])
        splits.append(info["split"])
        assert obs[0] == np.float32(info["rho"]) and info["rho"] == float(np.float32(info["rho"]))
    rhos = np.asarray(rhos)
    assert rhos.min() >= np.float32(0.01) and rhos.max() <= np.float32(0.3)
    assert rhos.min() < 0.03 and rhos.max() > 0.28 and abs(rhos.mean() - 0.155) < 0.02
    assert set(splits) == set(range(1, 10))


def test_config_applies_the_authors_settings_beneath_the_users(random_mlp):
    path, _ = random_mlp
    u = gym.make(ENV_ID, surrogate=path).unwrapped
    cfg = u.config
    assert cfg["backend"] == "surrogate" and cfg["action_mode"] == "relative" and cfg["max_move"] == 4
    assert cfg["observation"]["extras"] == [] and cfg["max_episode_steps"] == 5
    assert cfg["channel"]["paper_drift"]["factors"] == [FACTORS[m] for m in range(-4, 5)]
    assert u.reward_weights == {
        "quality": 0.0, "ue_compute": 0.0, "privacy": 0.0, "switching": 0.0, "latency": 0.0,
        "ppl_gain": 10.0, "paper_load": 1.0,
    }  # fmt: skip
    # the user's own keys win
    v = gym.make(ENV_ID, config={"max_episode_steps": 7}, surrogate=path, reward={"weights": {"switching": 0.5}})
    v = v.unwrapped
    assert v.max_episode_steps == 7 and v.reward_weights["switching"] == 0.5
    _, info = v.reset(seed=0)
    _, r, _, _, info = v.step(4)
    assert r == pytest.approx(10 * info["rewards"]["ppl_gain"] + info["rewards"]["paper_load"] - 0.5 * 2 / 32)
    # a compiled problem rebuilds the same env, and both pickle
    w = gym.make(ENV_ID, problem=u.problem).unwrapped
    assert w.problem.config == u.problem.config and w.config["surrogate"] == str(path)
    clone = pickle.loads(pickle.dumps(u))
    u.reset(seed=4)
    clone.reset(seed=4)
    assert u.step(3)[1] == clone.step(3)[1]


def test_vector_env_equals_single_envs(random_mlp):
    path, _ = random_mlp
    n = 4
    venv = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", surrogate=path)
    singles = [gym.make(ENV_ID, surrogate=path) for _ in range(n)]
    obs, info = venv.reset(seed=10)
    assert np.array_equal(obs, np.stack([s.reset(seed=10 + i)[0] for i, s in enumerate(singles)]))
    rng = np.random.default_rng(1)
    done = np.zeros(n, dtype=bool)
    for _ in range(17):  # three episodes and autoresets
        a = rng.integers(0, 9, n)
        obs, r, _, trunc, info = venv.step(a)
        assert "ppl" not in info
        for i, s in enumerate(singles):
            if done[i]:
                o_i, _ = s.reset()
                assert np.array_equal(o_i, obs[i]) and r[i] == 0.0
                continue
            o_i, r_i, _, tr_i, info_i = s.step(int(a[i]))
            assert np.array_equal(o_i, obs[i]) and r_i == r[i] and tr_i == trunc[i]
            assert info_i["rewards"]["ppl_gain"] == info["rewards"]["ppl_gain"][i]
        done = trunc
    er = venv.expected_rewards()
    assert er.shape == (n, 9) and np.isfinite(er).all()


def test_check_env_passes(random_mlp):
    from gymnasium.utils.env_checker import check_env

    path, _ = random_mlp
    check_env(gym.make(ENV_ID, surrogate=path).unwrapped, skip_render_check=True)


def test_expected_rewards_are_exact_and_the_oracle_picks_the_best_split(tmp_path):
    from agents import OracleAgent

    path = tmp_path / "v.pth"
    m = v_mlp(path)
    env = gym.make(ENV_ID, surrogate=path)
    u = env.unwrapped
    obs, _ = env.reset(seed=0)
    for a in range(9):  # the surrogate is deterministic: the expectation is the reward
        sim = copy.deepcopy(u)
        assert sim.expected_rewards()[a] == sim.step(a)[1]
    oracle = OracleAgent(env)
    for rho, best in ((0.03, 1), (0.1, 3), (0.2, 6), (0.27, 8), (0.299, 9)):
        rewards = [10 * _f(m, rho, p) + (10 - p) / 10 for p in range(1, 11)]
        assert int(np.argmax(rewards)) + 1 == best  # the hand-set MLP's best split (away from ties)
        for start in (1, 5, 10):
            obs, _ = env.reset(seed=1, options={"initial_split": start})
            u.dynamics.level = u.dynamics.estimate = rho
            for _ in range(5):
                a = int(oracle.predict(obs)[0])
                assert a == int(np.argmax(u.expected_rewards()))
                obs, _, _, _, info = env.step(a)
            assert info["split"] == best, (rho, start)


def _refusal(path) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        gym.make(ENV_ID, surrogate=str(path))
    assert str(path) in str(e.value)
    return str(e.value)


def test_files_that_are_not_the_mlp_state_dict_are_refused_naming_them(tmp_path):
    good = authors_net().state_dict()
    p = tmp_path / "shape.pth"
    torch.save({**good, "fc.0.weight": torch.zeros(128, 3)}, p)
    msg = _refusal(p)
    assert "fc.0.weight" in msg and "(128, 3)" in msg and "(128, 2)" in msg
    p = tmp_path / "extra.pth"
    torch.save({**good, "fc.6.weight": torch.zeros(1)}, p)
    assert "extra keys ['fc.6.weight']" in _refusal(p)
    p = tmp_path / "missing.pth"
    torch.save({k: v for k, v in good.items() if k != "fc.4.bias"}, p)
    assert "missing keys ['fc.4.bias']" in _refusal(p)
    p = tmp_path / "list.pth"
    torch.save([good["fc.0.weight"]], p)
    assert "holds a list, not a state dict" in _refusal(p)
    p = tmp_path / "double.pth"
    torch.save({k: v.double() for k, v in good.items()}, p)
    assert "torch.float64" in _refusal(p)
    p = tmp_path / "module.pth"
    torch.save(authors_net(), p)  # a pickled module: weights_only refuses to run it
    msg = _refusal(p)
    assert "weights_only" in msg and "torch.nn.modules.module.Module" in msg and "state_dict()" in msg
    p = tmp_path / "text.pth"
    p.write_text("not a checkpoint")
    assert "not a plain PyTorch state dict" in _refusal(p)
    assert "does not exist" in _refusal(tmp_path / "nowhere.pth")
    assert "is a directory, not a file" in _refusal(tmp_path)


def test_settings_the_surrogate_cannot_serve_are_refused_naming_the_key(random_mlp):
    path, _ = random_mlp
    bad = [
        ({"reward": {"weights": {"quality": 1.0}}}, "'reward.weights.quality'"),
        ({"reward": {"weights": {"privacy": 0.1}}}, "'reward.weights.privacy'"),
        ({"observation": {"extras": ["log_ppl0"]}}, "'observation.extras'"),
        ({"splits": {"max": 12}}, "'splits.max' = 12"),
        ({"action_mode": "absolute"}, "'channel.paper_drift.factors'"),
        ({"backend": "profile"}, "'backend' is 'profile'"),
        ({"profile": "smollm2-135m-erasure"}, "'profile'"),
    ]
    for config, needle in bad:
        with pytest.raises(ValueError) as e:
            gym.make(ENV_ID, surrogate=path, **config)
        assert needle in str(e.value), (config, str(e.value))
    with pytest.raises(ValueError, match="use preset 'paper'"):
        gym.make("LLMSplit-v0", surrogate=path)
    with pytest.raises(ValueError, match="'backend' 'surrogate' needs config 'surrogate'"):
        gym.make(ENV_ID, backend="surrogate")
    with pytest.raises(ValueError, match="config 'surrogate' must be None or the path"):
        gym.make(ENV_ID, surrogate="")
