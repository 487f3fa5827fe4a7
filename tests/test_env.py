"""The LLMSplit environment: API checkers, determinism, registration, actions and masks, rewards, the paper preset,
observations and rendering (profile backend: no torch, fast). Config, backends and dynamics have their own files."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env
from llmsplit_env.env import COMPONENTS, LLMSplitEnv
from llmsplit_env.quality import load_profile

PROFILE_IDS = ["LLMSplit-v0", "LLMSplit-Paper-v0"]


def rollout(env, seed: int, actions: list[int]):
    obs, info = env.reset(seed=seed)
    out = [(obs.copy(), info)]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs.copy(), r, term, trunc, info))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs.copy(), info))
    return out


# --- API checkers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", PROFILE_IDS)
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_gymnasium_check_env(env_id, render_mode):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id, render_mode=render_mode).unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", PROFILE_IDS)
def test_sb3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make(env_id).unwrapped, warn=True)
    assert [str(w.message) for w in caught] == []


def test_spaces_and_defaults():
    env = gym.make("LLMSplit-v0")
    assert env.action_space == gym.spaces.Discrete(30)
    assert env.observation_space.shape == (4,) and env.observation_space.dtype == np.float32
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))
    u = env.unwrapped
    assert u.observation_names == ["level", "trend", "packet_loss", "prev_split"]
    assert u.reward_weights["latency"] == 0.0 and u.reward_weights["quality"] == 1.0
    paper = gym.make("LLMSplit-Paper-v0")
    assert paper.action_space == gym.spaces.Discrete(10)
    assert paper.unwrapped.observation_names == ["level", "trend", "packet_loss", "prev_split", "log_ppl0"]
    assert paper.observation_space.high[0] == 1.0  # rho, not dB


# --- determinism ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", PROFILE_IDS)
def test_same_seed_same_trajectory_and_different_seeds_differ(env_id):
    actions = np.random.default_rng(0).integers(0, gym.make(env_id).action_space.n, 120).tolist()
    a = rollout(gym.make(env_id), 7, actions)
    b = rollout(gym.make(env_id), 7, actions)
    c = rollout(gym.make(env_id), 8, actions)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]  # rewards, flags and infos, exactly
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=False))
    rewards_a = [s[1] for s in a if len(s) == 5]
    rewards_c = [s[1] for s in c if len(s) == 5]
    assert rewards_a != rewards_c


def test_reset_without_seed_continues_the_stream():
    env = gym.make("LLMSplit-v0")
    o1, _ = env.reset(seed=3)
    o2, _ = env.reset()
    o3, _ = env.reset(seed=3)
    np.testing.assert_array_equal(o1, o3)
    assert not np.array_equal(o1, o2)


def test_episode_truncates_after_max_episode_steps():
    for env_id, steps in (("LLMSplit-v0", 50), ("LLMSplit-Paper-v0", 5)):
        env = gym.make(env_id)
        env.reset(seed=0)
        flags = [env.step(0)[2:4] for _ in range(steps)]
        assert flags[-1] == (False, True)
        assert all(f == (False, False) for f in flags[:-1])
    env = gym.make("LLMSplit-v0", config={"max_episode_steps": 3})
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]


# --- registration and import ----------------------------------------------------------------------------------------


def test_register_envs_is_idempotent():
    before = {k: gym.registry[k] for k in llmsplit_env.ENV_IDS}
    llmsplit_env.register_envs()
    llmsplit_env.register_envs()
    assert {k: gym.registry[k] for k in llmsplit_env.ENV_IDS} == before
    assert gym.registry["LLMSplit-v0"].entry_point == "llmsplit_env.env:LLMSplitEnv"
    assert gym.registry["LLMSplit-v0"].vector_entry_point == "llmsplit_env.vector:LLMSplitVectorEnv"
    assert gym.registry["LLMSplit-LLM-v0"].vector_entry_point is None


def test_make_in_a_fresh_subprocess_is_light_and_matches():
    code = (
        "import json, sys, gymnasium as gym\n"
        "env = gym.make('llmsplit_env:LLMSplit-v0')\n"
        "obs, info = env.reset(seed=11)\n"
        "obs2, r, te, tr, info2 = env.step(4)\n"
        "print(json.dumps({'obs': obs.tolist(), 'r': r, 'torch': 'torch' in sys.modules, 'split': info2['split']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    env = gym.make("LLMSplit-v0")
    obs, _ = env.reset(seed=11)
    _, r, _, _, info = env.step(4)
    assert got["obs"] == obs.tolist() and got["r"] == r and got["split"] == info["split"] == 5
    assert got["torch"] is False  # the profile backend never imports torch


def test_config_dict_as_only_positional_argument():
    env = LLMSplitEnv({"preset": "paper", "max_episode_steps": 7})
    assert env.config["preset"] == "paper" and env.max_episode_steps == 7
    assert env.action_space.n == 10
    made = gym.make("LLMSplit-Paper-v0", config={"max_episode_steps": 7}).unwrapped
    assert made.config == env.config


def test_bad_render_mode_and_preset_clash():
    with pytest.raises(ValueError, match="render_mode must be one of"):
        LLMSplitEnv(render_mode="human")
    with pytest.raises(ValueError, match="preset given twice"):
        LLMSplitEnv({"preset": "paper"}, preset="default")


# --- actions and masks ----------------------------------------------------------------------------------------------


def test_masks_exclude_splits_and_masked_actions_raise():
    env = LLMSplitEnv({"splits": {"excluded": [3, 5], "ue_max_layers": 20}})
    assert env.action_space.n == 20
    masks = env.action_masks()
    assert masks.dtype == bool and masks.shape == (20,)
    assert np.flatnonzero(~masks).tolist() == [2, 4]
    env.reset(seed=0)
    assert env.step(3)[4]["split"] == 4
    with pytest.raises(ValueError) as e:
        env.step(4)
    assert "split 5" in str(e.value) and "excluded" in str(e.value) and "action_masks" in str(e.value)
    for _ in range(30):  # random resets never start on an excluded split
        env.reset()
        assert env.prev_split not in (3, 5) and env.prev_split <= 20


@pytest.mark.parametrize("bad", [30, -1, 2.5, "3", None, [1]])
def test_invalid_actions_raise_clear_errors(bad):
    env = gym.make("LLMSplit-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError) as e:
        env.unwrapped.step(bad)
    msg = str(e.value)
    assert "invalid" in msg and "0..29" in msg and "Discrete(30)" in msg


def test_numpy_integer_actions_are_accepted_bools_and_floats_are_not():
    env = gym.make("LLMSplit-v0").unwrapped
    env.reset(seed=0)
    assert env.step(np.int64(4))[4]["split"] == 5
    assert env.step(np.array(6))[4]["split"] == 7
    assert env.step(np.uint8(2))[4]["split"] == 3
    for bad in (True, np.bool_(True), 2.0, np.float64(2.0), float("inf"), float("nan"), np.array([3]), np.array(2.5)):
        with pytest.raises(ValueError, match=r"invalid: this env takes integers 0\.\.29"):
            env.step(bad)


def test_stepping_before_reset_is_refused():
    from llmsplit_env.vector import LLMSplitVectorEnv

    env = LLMSplitEnv()
    with pytest.raises(ValueError, match=r"step\(\) before reset\(\)"):
        env.step(0)
    with pytest.raises(gym.error.ResetNeeded, match=r"render\(\) before reset\(\)"):
        LLMSplitEnv(render_mode="ansi").render()
    # no OrderEnforcing layer: the env's own refusals reach the user, still Gymnasium's ResetNeeded
    made = gym.make("LLMSplit-v0", render_mode="ansi")
    assert "OrderEnforcing" not in str(made)
    for call in (lambda: made.step(0), made.render, made.unwrapped.expected_rewards):
        with pytest.raises(gym.error.ResetNeeded, match=r"before reset\(\)"):
            call()
    with pytest.raises(ValueError, match=r"expected_rewards\(\) before reset\(\)"):
        env.expected_rewards()
    assert env.elapsed_steps == 0
    vec = LLMSplitVectorEnv(2)
    with pytest.raises(ValueError, match=r"step\(\) before reset\(\)"):
        vec.step(np.array([0, 0]))
    with pytest.raises(ValueError, match=r"expected_rewards\(\) before reset\(\)"):
        vec.expected_rewards()
    env.reset(seed=0)
    vec.reset(seed=0)
    assert env.step(0)[4]["split"] == 1 and vec.step(np.array([0, 0]))[4]["split"].tolist() == [1, 1]


def test_relative_moves_follow_the_paper_layout_and_cut_back():
    env = LLMSplitEnv({"preset": "paper", "action_mode": "relative", "initial_split": 3})
    assert env.action_space.n == 9
    env.reset(seed=0)
    # 0 stay; 1/2 = -1/+1; 3/4 = -2/+2; 5/6 = -3/+3; 7/8 = -4/+4
    splits = [env.step(a)[4]["split"] for a in (0, 2, 4, 8, 1)]
    assert splits == [3, 4, 6, 10, 9]
    env.reset(seed=0, options={"initial_split": 2})
    assert env.step(7)[4]["split"] == 1  # -4 from 2: cut back to -1
    env.reset(seed=0, options={"initial_split": 9})
    assert env.step(6)[4]["split"] == 10  # +3 from 9: cut back to +1
    assert env.step(4)[4]["split"] == 10  # +2 at the end: stays
    assert env.action_masks().all()


def test_relative_moves_skip_excluded_splits():
    env = LLMSplitEnv({"action_mode": "relative", "splits": {"excluded": [5, 6]}, "initial_split": 4})
    env.reset(seed=1)
    assert env.step(2)[4]["split"] == 4  # +1 onto 5 (excluded): no legal move of size <= 1 in that direction
    assert env.step(6)[4]["split"] == 7  # +3 lands on 7, legal
    assert env.step(5)[4]["split"] == 4  # -3 from 7 lands on 4 (6, 5 excluded are skipped over by the jump)
    assert env.step(3)[4]["split"] == 2  # -2


def test_action_to_split():
    env = LLMSplitEnv({"splits": {"min": 3}})
    env.reset(seed=0)
    assert env.action_space.n == 28 and env.action_to_split(0) == 3 and env.action_to_split(27) == 30
    with pytest.raises(ValueError, match="split = action \\+ 3"):
        env.action_to_split(28)


# --- rewards --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        {},
        {"latency": 0.7, "switching": 1.3, "privacy": 0.25},
        {"ppl_gain": 2.0, "paper_load": 0.5, "quality": 0.0},
        {"quality": -0.5, "ue_compute": 2.0, "latency": 0.1, "ppl_gain": 1.0},
    ],
)
def test_components_add_up_to_the_reward(weights):
    env = LLMSplitEnv({"reward": {"weights": weights}})
    w = env.reward_weights
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(60):
        _, r, _, trunc, info = env.step(int(rng.integers(30)))
        comps = info["rewards"]
        assert set(comps) == ({*COMPONENTS} if (w["ppl_gain"] or w["paper_load"]) else set(COMPONENTS[:5]))
        assert r == pytest.approx(sum(w[c] * v for c, v in comps.items()), rel=1e-12, abs=1e-12)
        k = info["split"]
        assert comps["ue_compute"] == pytest.approx(1 - k / 30)
        assert comps["quality"] == pytest.approx(env.quality_backend.clean_ppl / info["ppl"])
        assert 0 < comps["quality"] <= 1 and comps["switching"] <= 0 and comps["latency"] < 0
        if trunc:
            env.reset()


def test_full_split_sends_nothing():
    env = LLMSplitEnv()
    env.reset(seed=0)
    for _ in range(5):
        _, _, _, _, info = env.step(29)
        c = info["rewards"]
        assert info["split"] == 30 and info["packet_loss"] == 0.0
        assert c["quality"] == 1.0 and c["privacy"] == 1.0 and c["ue_compute"] == 0.0
        assert info["ppl"] == pytest.approx(env.quality_backend.clean_ppl, rel=1e-12)
        assert c["latency"] == pytest.approx(-1.0)  # all 30 layers on the UE, no airtime
    assert info["quality_evals"] == 0


def test_switching_and_privacy_components():
    env = LLMSplitEnv()
    leak = load_profile("smollm2-135m-analog").leakage
    env.reset(seed=0, options={"initial_split": 10})
    info = env.step(3)[4]  # to k = 4
    assert info["rewards"]["switching"] == pytest.approx(-6 / 30)
    assert info["rewards"]["privacy"] == pytest.approx(1 - leak[3])
    assert env.step(3)[4]["rewards"]["switching"] == 0.0


def test_latency_matches_the_channel_formulas():
    from llmsplit_env.llm.channel import payload_bits, shannon_airtime  # imports torch: test-only

    env = LLMSplitEnv({"reward": {"weights": {"latency": 1.0}}})
    lat = env.config["latency"]
    assert env.payload_bits == payload_bits(lat["num_tokens"], 576, lat["bits"])
    env.reset(seed=2)
    level = env.level
    info = env.step(9)[4]  # k = 10
    t = (
        10 * lat["ue_layer_s"]
        + 20 * lat["edge_layer_s"]
        + shannon_airtime(env.payload_bits, lat["bandwidth_hz"], level)
    )
    assert info["rewards"]["latency"] == pytest.approx(-t / (30 * lat["ue_layer_s"]), rel=1e-12)


def test_static_bounds_on_the_grid_ends_are_accepted():
    env = LLMSplitEnv({"channel": {"model": "static", "static": {"low": -5.0, "high": 35.0}}})
    assert (env.dynamics.low, env.dynamics.high) == (-5.0, 35.0)


def test_latency_is_bounded_at_the_cell_edge():
    """Far out of the cell the Shannon airtime explodes (about -200 at -28 dB); it is capped at max_airtime_s."""
    from llmsplit_env.llm.channel import shannon_airtime  # imports torch: test-only

    w = {c: 0.0 for c in COMPONENTS} | {"latency": 1.0}
    for cap, want_cap in ((None, 4 * 30 * 0.004), (0.3, 0.3)):
        env = LLMSplitEnv({"reward": {"weights": w}, "latency": {"max_airtime_s": cap}})
        assert env.max_airtime_s == pytest.approx(want_cap)
        env.reset(seed=0)
        env.dynamics.level = -28.0  # the cell edge
        assert shannon_airtime(env.payload_bits, 10e6, -28.0) > 20.0  # what it was without the cap
        exp = env.expected_rewards()
        info = env.step(0)[4]  # k = 1
        lat = info["rewards"]["latency"]
        assert lat == pytest.approx(-(0.004 + 29 * 0.0004 + want_cap) / 0.12, rel=1e-12)
        assert exp[0] == pytest.approx(lat, rel=1e-12)  # the oracle applies the same cap
    # the documented range: [-(max compute + cap)/(L ue_layer_s), 0) over a long random run, near the cap at the edge
    env = LLMSplitEnv({"reward": {"weights": {"latency": 1.0}}, "channel": {"mobility": {"cell_radius": 2000.0}}})
    env.reset(seed=1)
    lats = [env.step(int(a))[4]["rewards"]["latency"] for a in np.random.default_rng(0).integers(0, 30, 2000)]
    assert min(lats) >= -(29 * 0.004 + 0.0004 + env.max_airtime_s) / 0.12 - 1e-12 and max(lats) < 0
    assert min(lats) < -4.5  # the run does reach the cap


def test_expected_rewards_are_exact_for_the_profile_backend():
    env = LLMSplitEnv({"reward": {"weights": {"latency": 0.3, "ppl_gain": 0.2}}})
    env.reset(seed=4)
    exp = env.expected_rewards()
    assert exp.shape == (30,)
    # Monte Carlo over many copies of the same state (the channel noise does not enter this step's reward)
    rng = np.random.default_rng(0)
    for a in (0, 9, 22, 29):
        k = a + 1
        mean, std, _ = env.quality_backend.interpolate(k, env.level)
        z = rng.standard_normal(200_000)
        logp = np.maximum(mean + std * z, env.quality_backend.log_clean) if k < 30 else np.full_like(z, mean)
        q_mc = np.mean(env.quality_backend.clean_ppl / np.exp(logp))
        q_cf, ppl_cf = env.quality_backend.expectations(k, env.level)
        assert q_cf == pytest.approx(q_mc, abs=4 * np.std(env.quality_backend.clean_ppl / np.exp(logp)) / 447 + 1e-12)
        assert ppl_cf == pytest.approx(np.mean(np.exp(logp)), rel=0.02)
    # and the env's own sampled rewards average to it (same state, fresh noise each time)
    state = env.dynamics.get_state()
    for a in (0, 14, 29):
        total = 0.0
        for s in range(400):
            env.reset(seed=4)
            env._zbuf = np.random.default_rng(1000 + s).standard_normal(1024).tolist()
            env._zp = 0
            env.dynamics.set_state(state)
            total += env.step(a)[1]
        assert total / 400 == pytest.approx(exp[a], abs=0.02)


def test_expected_rewards_mask_and_relative_mode():
    env = LLMSplitEnv({"splits": {"excluded": [2]}})
    env.reset(seed=0)
    exp = env.expected_rewards()
    assert exp[1] == -np.inf and np.all(np.isfinite(np.delete(exp, 1)))
    rel = LLMSplitEnv({"action_mode": "relative", "initial_split": 15})
    rel.reset(seed=0)
    absolute = LLMSplitEnv({"initial_split": 15})
    absolute.reset(seed=0)
    er, ea = rel.expected_rewards(), absolute.expected_rewards()
    for a, move in enumerate([0, -1, 1, -2, 2, -3, 3, -4, 4]):
        assert er[a] == pytest.approx(ea[15 + move - 1], rel=1e-12)


def _paper_hand_ppl(prof, k: int, rho: float) -> float:
    mean = np.interp(rho, prof.levels, prof.mean_log_ppl[k - 1])
    return math.exp(max(mean, math.log(prof.clean_ppl)))


def test_paper_preset_matches_hand_computed_rewards():
    prof = load_profile("smollm2-135m-erasure")
    env = gym.make("LLMSplit-Paper-v0")
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        rho, p = info["rho"], info["split"]
        assert 0.01 <= rho <= 0.3 and 1 <= p <= 9
        ppl0 = _paper_hand_ppl(prof, p, rho)
        assert info["ppl0"] == pytest.approx(ppl0, rel=1e-12)
        assert obs[4] == pytest.approx(math.log(ppl0), rel=1e-6)
        for a in np.random.default_rng(seed).integers(0, 10, 5).tolist():
            k = a + 1
            rho = min(max(rho * (1 - 0.0005 * (k - p)), 0.0), 0.3)  # the action-coupled drift, before the reward
            ppl = _paper_hand_ppl(prof, k, rho)
            expected = 10 * (ppl0 - ppl) / ppl0 + (10 - k) / 10
            obs, r, term, trunc, info = env.step(a)
            assert info["rho"] == pytest.approx(rho, rel=1e-12)
            assert info["ppl"] == pytest.approx(ppl, rel=1e-9)
            assert r == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert obs[0] == pytest.approx(rho, rel=1e-6)  # the agent sees rho exactly
            p = k
        assert trunc and not term


def test_paper_preset_first_step_staying_scores_only_the_load_term():
    env = gym.make("LLMSplit-Paper-v0")
    _, info = env.reset(seed=3)
    p = info["split"]
    _, r, _, _, info = env.step(p - 1)
    assert info["rewards"]["ppl_gain"] == 0.0
    assert r == pytest.approx((10 - p) / 10)


# --- profile interpolation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "units"),
    [
        ({"scheme": "digital"}, 2048),
        ({"scheme": "erasure", "channel": {"model": "static", "csi_error": 0.02}}, 2048 * 576),
        ({"preset": "paper"}, 2048 * 576),
    ],
)
def test_packet_loss_observation_is_a_realised_fraction_not_the_true_levels_mean(config, units):
    """The profile's mean lost fraction is a function of the true level; observing it would bypass the CSI error. The
    observation is the transmission's realised fraction: it scatters around the mean as Binomial(n, p)/n does."""
    env = LLMSplitEnv(config)
    qb = env.quality_backend
    assert qb.loss_units == units
    env.reset(seed=3)
    k = 1
    dev = []
    for _ in range(400):
        level = env.level
        p = qb.interpolate(k, level)[2]
        obs, _, _, trunc, info = env.step(k - env.k_min)
        assert obs[2] == np.float32(info["packet_loss"])
        assert info["packet_loss"] * units == pytest.approx(round(info["packet_loss"] * units), abs=1e-6)
        if 0.0 < p < 1.0:
            dev.append((info["packet_loss"] - p) / math.sqrt(p * (1 - p) / units))
        if trunc:
            env.reset()
    dev = np.array(dev)
    assert len(dev) > 300
    assert np.mean(dev == 0.0) < 0.2  # not the mean (the old observation: every deviation 0)
    assert abs(dev.mean()) < 0.2 and 0.8 < dev.std() < 1.2  # the binomial's spread


def test_observation_layout_and_extras():
    env = LLMSplitEnv({"observation": {"extras": ["distance", "speed", "time", "last_quality"]}})
    obs, _ = env.reset(seed=1)
    assert obs.shape == (8,) and env.observation_space.contains(obs)
    assert obs[0] == pytest.approx(np.clip(env.dynamics.estimate, -20, 50), rel=1e-6)
    assert obs[1] == 0.0 and obs[2] == 0.0 and obs[3] == pytest.approx(env.prev_split / 30)
    assert obs[4] == pytest.approx(env.dynamics.distance / 200, rel=1e-6) and obs[5] == pytest.approx(3.0)
    assert obs[6] == 0.0 and obs[7] == 1.0
    prev_est = env.dynamics.estimate
    obs, _, _, _, info = env.step(0)
    assert obs[1] == pytest.approx(0.5 * (env.dynamics.estimate - prev_est), rel=1e-5, abs=1e-6)
    assert obs[3] == pytest.approx(1 / 30) and obs[6] == pytest.approx(1 / 50)
    assert obs[7] == pytest.approx(info["rewards"]["quality"], rel=1e-6)


def test_render_ansi_and_rgb_array():
    env = gym.make("LLMSplit-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(4)
    text = env.render()
    assert "split= 5/30" in text and "SNR=" in text and "ppl=" in text
    env = gym.make("LLMSplit-v0", render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(10):
        env.step(29)
    img = env.render()
    assert img.shape == (160, 240, 3) and img.dtype == np.uint8
    assert (img != 255).any(axis=2).sum() > 40  # traces were drawn
    plain = gym.make("LLMSplit-v0")
    plain.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert plain.render() is None


def test_runs_on_the_gymnasium_it_was_asked_to():
    """`make test` reruns the env tests on the lowest supported gymnasium; make sure that one was imported."""
    import os

    expected = os.environ.get("LLMSPLIT_EXPECT_GYMNASIUM")
    if expected is None:
        pytest.skip("LLMSPLIT_EXPECT_GYMNASIUM not set (the venv's own gymnasium is in use)")
    assert gym.__version__ == expected


def test_spec_carries_the_true_episode_length():
    from sb3_contrib.common.wrappers import TimeFeatureWrapper

    env = gym.make("LLMSplit-v0")
    assert env.spec.max_episode_steps == 50 and TimeFeatureWrapper(env)._max_steps == 50
    assert gym.make("LLMSplit-v0", config={"max_episode_steps": 7}).spec.max_episode_steps == 7
    assert gym.make("LLMSplit-Paper-v0").spec.max_episode_steps == 5
    vec = gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=9)
    assert vec.spec.max_episode_steps == 9
    # gym.make's own max_episode_steps adds a TimeLimit: shorter episodes, and the spec says so
    short = gym.make("LLMSplit-v0", max_episode_steps=10)
    assert short.spec.max_episode_steps == 10
    short.reset(seed=0)
    lengths, t = [], 0
    for _ in range(35):
        *_, term, trunc, _ = short.step(0)
        t += 1
        if term or trunc:
            lengths.append(t)
            t = 0
            short.reset()
    assert lengths == [10, 10, 10]


def test_both_envs_pickle_mid_episode_and_go_on_identically():
    """A pickled env (multiprocessing, Ray, a checkpoint) continues exactly as the original."""
    import pickle

    from llmsplit_env.vector import LLMSplitVectorEnv

    env = LLMSplitEnv({"observation": {"extras": ["distance", "time"]}})
    env.reset(seed=3)
    env.step(4)
    copy = pickle.loads(pickle.dumps(env))
    for a in (0, 7, 29, 12):
        (o1, r1, *_), (o2, r2, *_) = env.step(a), copy.step(a)
        assert o1.tobytes() == o2.tobytes() and r1 == r2
    vec = LLMSplitVectorEnv(4)
    vec.reset(seed=1)
    vcopy = pickle.loads(pickle.dumps(vec))
    acts = np.array([1, 2, 3, 4])
    (o1, r1, *_), (o2, r2, *_) = vec.step(acts), vcopy.step(acts)
    assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes()
