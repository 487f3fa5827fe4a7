"""Config fuzzing over the whole schema (Hypothesis): any config either raises an error naming a key it set, or builds
an env whose observations stay in bounds and whose rewards, components and expected rewards stay finite.

300 examples in the suite; ``LLMSPLIT_FUZZ_EXAMPLES=4000`` for a longer hunt (4,000 passed, about 730 of them built
envs, on 2026-12-01)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmsplit_env.config import OBS_EXTRAS, default_config
from llmsplit_env.env import LLMSplitEnv

CHOICES = {
    "scheme": ["analog", "digital", "erasure", "morse"],
    "profile": [None, "smollm2-135m-analog", "smollm2-135m-digital", "smollm2-135m-erasure", "no-such-profile"],
    "action_mode": ["absolute", "relative", "sideways"],
    "initial_split": ["random", "first"],
    "channel.model": ["mobility", "static", "paper_drift", "satellite"],
    "llm.dtype": ["auto", "float32", 3],
    "llm.leakage": ["auto", "profile", "probe", "guess"],
    "llm.profile_match": ["strict", "model", "loose"],
}


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_leaves(v, path + "."))
        else:
            out[path] = v
    return out


LEAVES = {p: v for p, v in _leaves(default_config()).items() if p not in ("backend", "preset")}


def _value_for(path: str, default: object) -> st.SearchStrategy:
    """Mostly plausible values near the schema's, sometimes anything of a wrong type or out of range."""
    weird = st.one_of(
        st.none(), st.booleans(), st.text(max_size=4), st.just([1, 2]), st.just(float("nan")), st.just(math.inf)
    )
    if path in CHOICES:
        plausible = st.sampled_from(CHOICES[path])
    elif path == "splits.excluded":
        plausible = st.lists(st.integers(-1, 31), max_size=4)
    elif path == "observation.extras":
        plausible = st.lists(st.sampled_from([*OBS_EXTRAS, "colour"]), max_size=4)
    elif isinstance(default, bool):
        plausible = st.booleans()
    elif isinstance(default, int) or default is None:
        plausible = st.one_of(st.integers(-2, 40), st.none(), st.floats(-50, 50))
    elif isinstance(default, float):
        scale = 2.0 * abs(default) + 1.0
        plausible = st.one_of(
            st.just(default), st.floats(0.0, scale), st.floats(0.0, scale), st.floats(-1e3, 1e3), st.integers(-3, 60)
        )
    else:
        plausible = st.just(default)
    return st.one_of(plausible, plausible, plausible, plausible, plausible, weird)


@st.composite
def configs(draw) -> tuple[dict, list[str]]:
    paths = draw(st.lists(st.sampled_from(sorted(LEAVES)), min_size=1, max_size=4, unique=True))
    config: dict = {}
    for path in paths:
        *parents, key = path.split(".")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = draw(_value_for(path, LEAVES[path]))
    if config.get("initial_split") == "first":
        config["initial_split"] = 1
    preset = draw(st.sampled_from(["default", "paper"]))
    return {"preset": preset, **config}, paths


EXAMPLES = int(os.environ.get("LLMSPLIT_FUZZ_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.integers(0, 2**16))
def test_any_config_is_refused_naming_a_key_or_gives_a_sound_env(drawn, seed):
    config, paths = drawn
    try:
        env = LLMSplitEnv(config)
    except (ValueError, FileNotFoundError) as e:
        event("refused")
        msg = str(e)
        named = {seg for p in paths for seg in (p, *p.split("."))} | {"preset"}
        assert any(n in msg for n in named), f"{msg!r} names none of {sorted(paths)}"
        return
    event("built")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    assert env.observation_space.contains(obs), (obs, env.observation_space)
    for _ in range(25):
        er = env.expected_rewards()
        masks = env.action_masks()
        assert np.all(np.isfinite(er[masks])) and np.all(np.isneginf(er[~masks])), er
        obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(masks))))
        assert env.observation_space.contains(obs), (obs, env.observation_space.low, env.observation_space.high)
        assert math.isfinite(r) and all(math.isfinite(v) for v in info["rewards"].values()), info["rewards"]
        if term or trunc:
            env.reset()


@pytest.mark.parametrize("path", sorted(LEAVES))
def test_every_leaf_of_the_schema_is_validated(path):
    """A value of the wrong kind at any leaf is refused naming that leaf (no key is accepted unchecked)."""
    *parents, key = path.split(".")
    config: dict = {}
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[key] = {"not": "a value"}
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        LLMSplitEnv(config)
    assert key in str(e.value), (path, str(e.value))
