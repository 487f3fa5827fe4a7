"""`LLMSplit-LLM-v0`: the live split model as the quality backend (tiny random Llama on CPU; the real SmolLM2 in the
slow test)."""

from __future__ import annotations

import json
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

import llmsplit_env  # noqa: F401


@pytest.fixture(scope="module")
def tiny_config(tiny_llm_section):
    return {"llm": dict(tiny_llm_section), "max_episode_steps": 6}


def test_live_env_passes_both_checkers(tiny_config):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped)
        sb3_check_env(gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped, warn=True)
    assert checker_warnings(caught) == []


def checker_warnings(caught) -> list[str]:
    """The warnings that count as the checkers' complaints: every ``UserWarning`` (what Gymnasium's and SB3's checkers
    raise, wherever from), but not library deprecation notices (``DeprecationWarning``, ``FutureWarning``)."""
    return [
        f"{w.category.__name__}: {w.message} ({w.filename})"
        for w in caught
        if issubclass(w.category, UserWarning) and not issubclass(w.category, (DeprecationWarning, FutureWarning))
    ]


def test_checker_warning_filter_keeps_sb3_warnings():
    """The filter must not drop a warning because of the file it was raised from (SB3's checker lives in
    stable_baselines3/common/env_checker.py)."""
    import stable_baselines3.common.env_checker as sb3_checker

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn_explicit("obs is not float32", UserWarning, sb3_checker.__file__, 1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    got = checker_warnings(caught)
    assert len(got) == 1 and "obs is not float32" in got[0]


def test_live_env_runs_the_model_and_counts_evaluations(tiny_config):
    from llmsplit_env.llm.channel import make_channel

    env = gym.make("LLMSplit-LLM-v0", config=tiny_config)
    u = env.unwrapped
    qb = u.quality_backend
    assert u.num_layers == 4 and env.action_space.n == 4
    assert len(qb.leakage) == 4 and qb.leakage[-1] == 0.0 and all(0 <= v <= 1 for v in qb.leakage)
    assert qb.leakage_source == "probe"
    _, info = env.reset(seed=0)
    assert info["quality_evals"] == 0
    for n, a in enumerate([0, 1, 2], start=1):
        level = u.level
        _, r, _, _, info = env.step(a)
        assert info["quality_evals"] == n and info["split"] == a + 1
        # the step's perplexity is the runner's, at the step's SNR, for the seed the env drew
        ev = qb.runner.evaluate(a + 1, make_channel("analog", level, m=2.0), seeds=[qb.last_seed])
        assert info["ppl"] == pytest.approx(max(float(ev.ppl[0]), qb.clean_ppl), rel=1e-9)
        assert info["rewards"]["quality"] == pytest.approx(qb.clean_ppl / info["ppl"], rel=1e-12)
        w = u.reward_weights
        assert r == pytest.approx(sum(w[c] * v for c, v in info["rewards"].items()), rel=1e-12)
    _, _, _, _, info = env.step(3)  # k = L: nothing sent, nothing evaluated
    assert info["quality_evals"] == 3 and info["rewards"]["quality"] == 1.0 and info["packet_loss"] == 0.0
    assert math.isclose(info["ppl"], qb.clean_ppl)


def test_live_env_is_deterministic_per_seed(tiny_config):
    def run(seed):
        env = gym.make("LLMSplit-LLM-v0", config=tiny_config)
        env.reset(seed=seed)
        return [env.step(a)[1:] for a in (0, 2, 1, 0)]

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert [s[0] for s in a] != [s[0] for s in c]


def test_live_expected_rewards_need_a_profile_of_the_same_model(tiny_config):
    env = gym.make("LLMSplit-LLM-v0", config=tiny_config).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError) as e:
        env.expected_rewards()
    msg = str(e.value)
    assert "profile of the same model" in msg and "llmsplit profile --model" in msg
    # the automatic default (smollm2-135m-analog) was not used, and the error says why
    assert "smollm2-135m-analog" in msg and "model: profile 'smollm2-135m'" in msg and "num_layers" in msg
    assert env.quality_backend.leakage_source == "probe"


@pytest.fixture(scope="module")
def tiny_profile(tiny_config, tmp_path_factory):
    """Write a profile for the tiny model (the shipped analog profile's last 4 splits, relabelled), with metadata
    overridden by keyword; returns the file's path."""
    from llmsplit_env.quality import load_profile

    base = load_profile("smollm2-135m-analog").to_json()
    llm = tiny_config["llm"]
    root = tmp_path_factory.mktemp("profiles")

    def write(name: str, **meta) -> str:
        data = json.loads(json.dumps(base))
        for key in ("log_ppl", "mean_log_ppl", "std_log_ppl", "loss_fraction", "leakage", "probe_accuracy"):
            data[key] = data[key][-4:]
        data["splits"] = [1, 2, 3, 4]
        data["metadata"].update(
            {"model": llm["model"], "num_layers": 4, "text": llm["text"], "num_tokens": llm["num_tokens"]}
            | {"window": llm["window"], "splits": [1, 2, 3, 4]}
            | meta
        )
        path = root / f"{name}.json"
        path.write_text(json.dumps(data))
        return str(path)

    return write


def test_live_backend_attaches_a_matching_profile(tiny_config, tiny_profile):
    env = gym.make("LLMSplit-LLM-v0", config={**tiny_config, "profile": tiny_profile("same")}).unwrapped
    qb = env.quality_backend
    assert qb.profile_quality is not None and qb.leakage_source.startswith("profile")
    env.reset(seed=0)
    assert np.all(np.isfinite(env.expected_rewards()))


def test_live_backend_rejects_a_configured_profile_that_does_not_match(tiny_config, tiny_profile):
    other = tiny_profile("other", text="wiki", num_tokens=2048, scheme_params={"m": 3.0})
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", config={**tiny_config, "profile": other})
    msg = str(e.value)
    for field in (
        "text: profile 'wiki', env 'pydoc'",
        "num_tokens: profile 2048, env 64",
        "scheme_params:",
        "'m': 3.0",
    ):
        assert field in msg, (field, msg)
    assert "window" not in msg and "model:" not in msg and "profile_match='model'" in msg
    # 'model' matching takes a profile measured on other text as a prior, but never another model or channel
    cfg = {**tiny_config, "profile": other, "llm": {**tiny_config["llm"], "profile_match": "model"}}
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", config=cfg)
    assert "scheme_params:" in str(e.value) and "text:" not in str(e.value)
    prior = tiny_profile("prior", text="wiki", num_tokens=2048)
    env = gym.make("LLMSplit-LLM-v0", config={**cfg, "profile": prior}).unwrapped
    assert env.quality_backend.profile_quality is not None
    # another model's profile (the shipped SmolLM2 one), and a profile of another scheme, name every field
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", config={**tiny_config, "profile": "smollm2-135m-analog"})
    for field in ("model:", "num_layers: profile 30, env 4", "text:", "num_tokens:", "window:"):
        assert field in str(e.value), field
    with pytest.raises(ValueError) as e:
        gym.make("LLMSplit-LLM-v0", config={**tiny_config, "scheme": "analog", "profile": "smollm2-135m-digital"})
    assert "scheme: profile 'digital', env 'analog'" in str(e.value)
    assert "scheme_params:" in str(e.value) and "bits" in str(e.value)


def test_live_leakage_from_profile_requires_matching_model(tiny_config):
    cfg = {**tiny_config, "llm": {**tiny_config["llm"], "leakage": "profile"}}
    with pytest.raises(ValueError, match="leakage='profile' needs"):
        gym.make("LLMSplit-LLM-v0", config=cfg)


@pytest.mark.slow
def test_live_smollm2_env_uses_the_shipped_profile_for_expectations():
    """The shipped profile was measured on 2048 wiki tokens (window 512): for a pydoc/512-token runner it is only a
    prior. Strict matching (default) does not attach it and says why; llm.profile_match='model' uses it."""
    llm = {"text": "pydoc", "num_tokens": 512, "window": 256, "dtype": "float32"}
    llm_probe = {**llm, "probe_fit_tokens": 512, "probe_test_tokens": 256}  # no profile: the probe gives leakage
    strict = gym.make("LLMSplit-LLM-v0", config={"llm": llm_probe}).unwrapped
    assert strict.quality_backend.leakage_source == "probe"
    strict.reset(seed=0)
    with pytest.raises(ValueError) as e:
        strict.expected_rewards()
    for field in ("text: profile 'wiki', env 'pydoc'", "num_tokens: profile 2048, env 512", "window:"):
        assert field in str(e.value), field
    assert "model:" not in str(e.value) and "profile_match='model'" in str(e.value)
    env = gym.make("LLMSplit-LLM-v0", config={"llm": {**llm, "profile_match": "model"}}).unwrapped
    assert env.quality_backend.leakage_source.startswith("profile")
    env.reset(seed=0)
    exp = env.expected_rewards()
    assert exp.shape == (30,) and np.all(np.isfinite(exp))
    _, _, _, _, info = env.step(int(np.argmax(exp)))
    assert info["quality_evals"] == (1 if info["split"] < 30 else 0)
