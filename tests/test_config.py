"""The env's configuration (`llmsplit_env.config`): defaults, presets, deep merging, and errors that name the key."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from llmsplit_env.config import PRESETS, default_config, resolve_config
from llmsplit_env.env import LLMSplitEnv

# --- config errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"colour": 1}, ["unknown config key 'colour'", "allowed:", "channel"]),
        ({"channel": {"mobility": {"speedd": 2}}}, ["'channel.mobility.speedd'", "mean_speed"]),
        ({"reward": {"weights": {"beauty": 1.0}}}, ["'reward.weights.beauty'", "quality", "privacy"]),
        ({"scheme": "morse"}, ["'scheme'", "'analog'", "'erasure'", "morse"]),
        ({"max_episode_steps": 0}, ["'max_episode_steps'", "integer in [1,"]),
        ({"max_episode_steps": 2.5}, ["'max_episode_steps'", "integer"]),
        ({"reward": {"weights": {"quality": float("nan")}}}, ["'reward.weights.quality'", "number"]),
        ({"action_mode": "sideways"}, ["'action_mode'", "'relative'"]),
        ({"channel": "mobility"}, ["section 'channel' must be a dict"]),
        ({"observation": {"extras": ["colour"]}}, ["'observation.extras'", "distance", "log_ppl0"]),
        ({"splits": {"excluded": [0]}}, ["'splits.excluded'", "[1, 30]"]),
        ({"splits": {"min": 12, "max": 4}}, ["min <= max"]),
        ({"splits": {"excluded": list(range(1, 31))}}, ["every split", "excluded"]),
        ({"initial_split": 31}, ["'initial_split'", "not allowed", "31"]),
        ({"preset": "fancy"}, ["unknown preset 'fancy'", "paper"]),
        ({"scheme": "erasure"}, ["'mobility' produces SNR", "paper_drift"]),
        ({"channel": {"nakagami_m": 1.0}}, ["nakagami_m", "profile's m = 2.0", "llm"]),
        ({"channel": {"csi_error": 11}}, ["'channel.csi_error'", "[0.0, 10.0]"]),
        ({"profile": "no-such-profile"}, ["no-such-profile", "shipped"]),
        ({"channel": {"model": "static", "static": {"low": -28.0}}}, ["'channel.static.low'", "[-5.0, 35.0]"]),
        ({"channel": {"model": "static", "static": {"high": 40.0}}}, ["'channel.static.high'", "[-5.0, 35.0]"]),
        (
            {"scheme": "erasure", "channel": {"model": "static", "csi_error": 0.0, "static": {"high": 0.5}}},
            ["'channel.static.high'", "[0.0, 0.3]", "rho"],
        ),
        ({"latency": {"max_airtime_s": -1.0}}, ["'latency.max_airtime_s'", "or None"]),
        ({"llm": {"profile_match": "loose"}}, ["'llm.profile_match'", "'strict'", "'model'"]),
        ({"sample_quality": 1}, ["'sample_quality'", "True, False", "got 1"]),  # a flag takes the bools only
        ({"channel": {"model": "paper_drift"}}, ["'paper_drift' drifts the erasure", "'analog' has SNR"]),
        (
            {"channel": {"model": "static"}, "observation": {"extras": ["speed"]}},
            ["'observation.extras'", "'distance' and 'speed'", "'mobility'", "'static'"],
        ),
    ],
)
def test_bad_configs_raise_naming_the_problem(config, words):
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        LLMSplitEnv(config)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_default_config_is_a_fresh_deep_copy():
    a = LLMSplitEnv.default_config()
    a["channel"]["mobility"]["mean_speed"] = 99.0
    assert LLMSplitEnv.default_config()["channel"]["mobility"]["mean_speed"] == 3.0
    user = {"channel": {"mobility": {"mean_speed": 2.0}}}
    env = LLMSplitEnv(user)
    assert env.config["channel"]["mobility"] == {**a["channel"]["mobility"], "mean_speed": 2.0}
    assert user == {"channel": {"mobility": {"mean_speed": 2.0}}}  # the user's dict is not modified


def test_presets_resolve_and_preset_in_config_is_accepted():
    for name in PRESETS:
        cfg = resolve_config(preset=name)
        assert cfg["preset"] == name and cfg == resolve_config({"preset": name})
    assert resolve_config(preset="paper")["splits"]["max"] == 10
    assert default_config("llm")["backend"] == "llm"
    with pytest.raises(ValueError, match="unknown preset 'x'; allowed: default, llm, paper"):
        default_config("x")


def test_config_keys_as_keyword_arguments_merge_and_name_conflicts():
    import gymnasium as gym

    from llmsplit_env.config import merge_config_kwargs

    merged = merge_config_kwargs({"reward": {"weights": {"latency": 0.1}}}, {"reward": {"weights": {"switching": 0.3}}})
    assert merged == {"reward": {"weights": {"latency": 0.1, "switching": 0.3}}}
    assert merge_config_kwargs(None, {"scheme": "digital"}) == {"scheme": "digital"}
    assert merge_config_kwargs({"scheme": "digital"}, {"scheme": "digital"}) == {"scheme": "digital"}  # agreeing
    with pytest.raises(ValueError, match=r"config key 'reward\.weights\.switching' given twice"):
        merge_config_kwargs({"reward": {"weights": {"switching": 0.1}}}, {"reward": {"weights": {"switching": 0.3}}})
    with pytest.raises(ValueError, match="config must be a dict"):
        merge_config_kwargs([1], {"scheme": "digital"})
    # through gym.make and gym.make_vec (RLlib's by-id path), for the single and the vector env
    env = gym.make("LLMSplit-v0", reward={"weights": {"switching": 0.3}}, config={"scheme": "digital"})
    assert env.unwrapped.reward_weights["switching"] == 0.3 and env.unwrapped.config["scheme"] == "digital"
    direct = gym.make("LLMSplit-v0", config={"reward": {"weights": {"switching": 0.3}}, "scheme": "digital"})
    for a, b in zip(_rollout(env), _rollout(direct), strict=True):
        np.testing.assert_array_equal(a, b)
    vec = gym.make_vec(
        "LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point", reward={"weights": {"switching": 0.3}}
    )
    assert vec.unwrapped.problem.weights["switching"] == 0.3
    with pytest.raises(ValueError, match="unknown config key 'rewardz'"):
        gym.make("LLMSplit-v0", rewardz=1)
    with pytest.raises(ValueError, match="given twice"):
        gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=7,
                     config={"max_episode_steps": 9})  # fmt: skip
    assert gym.make("LLMSplit-v0", max_episode_steps=-1, config=None).unwrapped.max_episode_steps == 50


def _rollout(env, steps: int = 60):
    obs, _ = env.reset(seed=3)
    out = [obs]
    for t in range(steps):
        obs, r, *_ = env.step(t % env.action_space.n)
        out += [obs, np.array([r])]
    return out


def test_a_profile_brings_its_scheme_unless_the_config_sets_a_conflicting_one():
    from llmsplit_env.quality.profile import load_profile

    digital = load_profile("smollm2-135m-digital").source
    env = gym.make("LLMSplit-v0", profile=digital)
    assert env.unwrapped.config["scheme"] == "digital"
    assert env.unwrapped.quality_backend.scheme == "digital"
    assert gym.make("LLMSplit-v0", profile=digital, scheme="digital").unwrapped.config["scheme"] == "digital"
    with pytest.raises(ValueError, match=r"measured with scheme 'digital', but config 'scheme' is 'analog'; drop"):
        gym.make("LLMSplit-v0", profile=digital, scheme="analog")
    # an erasure profile on the default (SNR) channel: the config error names the channel, not the scheme
    with pytest.raises(ValueError, match="scheme 'erasure' needs 'paper_drift' or 'static'"):
        gym.make("LLMSplit-v0", profile="smollm2-135m-erasure")
    ok = gym.make("LLMSplit-v0", profile="smollm2-135m-erasure", channel={"model": "paper_drift", "csi_error": 0.0})
    assert ok.unwrapped.level_name == "rho"
    # a preset's scheme counts as set: the paper preset (erasure) with an analog profile conflicts
    with pytest.raises(ValueError, match="measured with scheme 'analog', but config 'scheme' is 'erasure'"):
        gym.make("LLMSplit-Paper-v0", profile="smollm2-135m-analog")
