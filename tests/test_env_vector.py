"""The batched vector entry point: equal to N single envs (Gymnasium's SyncVectorEnv) stepped with the same seeds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import llmsplit_env  # noqa: F401
from llmsplit_env.env import LLMSplitEnv
from llmsplit_env.vector import LLMSplitVectorEnv


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def assert_same_step(got, want, where):
    for x, y, name in zip(got[:4], want[:4], ("obs", "reward", "terminated", "truncated"), strict=True):
        assert x.shape == y.shape, (where, name)
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, err_msg=f"{where}: {name}")
    fg, fw = flat(got[-1]), flat(want[-1])
    assert set(fg) == set(fw), (where, set(fg) ^ set(fw))
    for key in fw:
        assert fg[key].dtype == fw[key].dtype, (where, key)
        np.testing.assert_allclose(fg[key], fw[key], rtol=1e-9, atol=1e-12, err_msg=f"{where}: info {key}")


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("LLMSplit-v0", {}),
        ("LLMSplit-Paper-v0", {}),
        ("LLMSplit-v0", {"config": {"action_mode": "relative", "max_episode_steps": 70, "sample_quality": False}}),
        ("LLMSplit-v0", {"config": {"observation": {"extras": ["distance", "speed", "time", "last_quality"]}}}),
    ],
)
def test_vector_env_equals_sync_vector_env(env_id, kwargs):
    n = 5
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **kwargs)
    assert isinstance(vec.unwrapped, LLMSplitVectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.single_observation_space == sync.single_observation_space
    assert vec.action_space == sync.action_space
    got, want = vec.reset(seed=21), sync.reset(seed=21)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9)
    fg, fw = flat(got[1]), flat(want[1])
    assert set(fg) == set(fw) and all(np.allclose(fg[k], fw[k]) for k in fw)
    rng = np.random.default_rng(1)
    steps = 160  # crosses several autoresets (and, for the 70-step config, a normal-stream refill)
    saw_autoreset = False
    for t in range(steps):
        a = rng.integers(0, vec.single_action_space.n, n)
        g, w = vec.step(a), sync.step(a)
        assert_same_step(g, w, f"step {t}")
        saw_autoreset |= bool(w[3].any())
    assert saw_autoreset


@pytest.mark.parametrize(
    "config",
    [
        {"preset": "paper"},
        {"channel": {"model": "static"}, "max_episode_steps": 3},
        {"max_episode_steps": 3},
        {"preset": "paper", "max_episode_steps": 2, "observation": {"extras": ["time", "last_quality"]}},
    ],
)
def test_vector_infos_do_not_share_memory_with_the_state(config):
    """Infos kept across steps and autoresets must not change afterwards (the level array was the live state, which
    the paper-drift and static channels' resets overwrite in place)."""
    import copy

    vec = LLMSplitVectorEnv(4, config=config)
    obs, info = vec.reset(seed=0)
    kept = [((obs, info), info, copy.deepcopy((obs, info)))]
    rng = np.random.default_rng(0)
    for _ in range(13):  # several truncations and the autoresets after them
        out = vec.step(rng.integers(0, vec.single_action_space.n, 4))
        kept.append((out, out[-1], copy.deepcopy(out)))
    for t, (now, info, then) in enumerate(kept):
        for a, b in zip(now[:-1], then[:-1], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
        fn, ft = flat(info), flat(then[-1])
        assert set(fn) == set(ft)
        for key in ft:
            np.testing.assert_array_equal(fn[key], ft[key], err_msg=f"info {key!r} of step {t}")


def test_vector_env_equals_single_envs_with_partial_resets():
    n = 4
    vec = LLMSplitVectorEnv(n)
    singles = [LLMSplitEnv() for _ in range(n)]
    obs, _ = vec.reset(seed=[3, 9, 27, 81])
    for i, e in enumerate(singles):
        o, _ = e.reset(seed=[3, 9, 27, 81][i])
        np.testing.assert_allclose(obs[i], o, rtol=1e-9)
    rng = np.random.default_rng(2)
    for t in range(40):
        a = rng.integers(0, 30, n)
        obs, r, _, _, info = vec.step(a)
        for i, e in enumerate(singles):
            o, ri, _, _, inf = e.step(int(a[i]))
            np.testing.assert_allclose(obs[i], o, rtol=1e-9, atol=1e-12)
            assert r[i] == pytest.approx(ri, rel=1e-9, abs=1e-12)
            assert info["split"][i] == inf["split"]
            assert info["rewards"]["quality"][i] == pytest.approx(inf["rewards"]["quality"], rel=1e-9)
        if t in (10, 25):  # reset a subset: sub-envs 1 and 3, unseeded (their streams continue)
            mask = np.array([False, True, False, True])
            obs, _ = vec.reset(options={"reset_mask": mask})
            for i in (1, 3):
                o, _ = singles[i].reset()
                np.testing.assert_allclose(obs[i], o, rtol=1e-9)
    np.testing.assert_allclose(
        vec.expected_rewards(), np.stack([e.expected_rewards() for e in singles]), rtol=1e-9, atol=1e-12
    )


def test_vector_env_errors_and_masks():
    vec = LLMSplitVectorEnv(3, config={"splits": {"excluded": [4]}})
    vec.reset(seed=0)
    assert vec.action_masks().shape == (3, 30) and not vec.action_masks()[:, 3].any()
    with pytest.raises(ValueError, match="excluded splits \\[4\\]"):
        vec.step(np.array([0, 3, 5]))
    with pytest.raises(ValueError, match="out of range"):
        vec.step(np.array([0, 30, 5]))
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        vec.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="reset_mask"):
        vec.reset(options={"reset_mask": np.zeros(3, dtype=bool)})
    with pytest.raises(ValueError, match="profile backend only"):
        LLMSplitVectorEnv(2, config={"backend": "llm", "llm": {"model": "/nonexistent"}})


def test_max_episode_steps_kwarg_of_make_vec():
    vec = gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point", max_episode_steps=3)
    vec.reset(seed=0)
    assert [bool(vec.step(np.zeros(2, dtype=np.int64))[3].all()) for _ in range(3)] == [False, False, True]


def test_vector_env_reads_no_private_attribute_of_another_object():
    """It takes the compiled `SplitProblem` and its own backend and dynamics: no template env, no ``other._x``."""
    import ast
    import inspect

    import llmsplit_env.vector as vector

    tree = ast.parse(inspect.getsource(vector))
    bad = [
        f"line {n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
        and not (isinstance(n.value, ast.Name) and n.value.id == "self")
    ]
    assert bad == []
    vec = gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode="vector_entry_point").unwrapped
    assert not hasattr(vec, "env") and vec.problem.n_actions == 30


def test_a_refused_masked_action_changes_nothing_not_even_pending_autoresets():
    vec = gym.make_vec(
        "LLMSplit-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        config={"splits": {"excluded": [5]}, "max_episode_steps": 2},
    ).unwrapped
    vec.reset(seed=0)
    vec.step(np.array([0, 0]))
    vec.reset(options={"reset_mask": np.array([False, True])})
    vec.step(np.array([0, 0]))  # sub-env 0 truncates (its autoreset is pending), sub-env 1 is at step 1
    before = {k: v.copy() for k, v in vec._state.items()}
    with pytest.raises(ValueError, match=r"excluded splits \[5\]"):
        vec.step(np.array([0, 4]))  # split 5 for sub-env 1
    for k, v in before.items():
        np.testing.assert_array_equal(vec._state[k], v, err_msg=k)
    # sub-env 0's pending autoreset ignores its action, even an excluded one; sub-env 1 steps
    _, _, _, truncated, info = vec.step(np.array([4, 0]))
    assert info["_ppl"].tolist() == [False, True] and truncated.tolist() == [False, True]


def test_a_constructor_error_leaves_nothing_raised_at_collection():
    """A vector env whose constructor raised is collected without an error from ``close``/``__del__`` (once reported
    as an ``AttributeError`` from ``close_extras`` under gymnasium 1.2.2)."""
    import gc
    import sys

    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        for mode in ("vector_entry_point", "sync"):
            with pytest.raises(ValueError, match=r"reward\.bogus"):
                gym.make_vec("LLMSplit-v0", num_envs=2, vectorization_mode=mode, reward={"bogus": 1})
        with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
            LLMSplitVectorEnv(num_envs=0)
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert [str(u.exc_value) for u in seen] == []


def test_the_bookkeeping_is_written_once_for_a_float_and_an_array():
    """`llmsplit_env.observation` and `llmsplit_env.episode` serve both envs: a float's result is an array's element
    (to the last bit but for `math` vs numpy transcendentals: hypot, log)."""
    from llmsplit_env.config import OBS_EXTRAS
    from llmsplit_env.episode import NORMAL_CHUNK, Episode, end_step, initial_split, next_position
    from llmsplit_env.observation import BASE_OBSERVATION, FEATURES, ChannelArrays, Observer

    assert tuple(FEATURES) == (*BASE_OBSERVATION, *OBS_EXTRAS)
    env = LLMSplitEnv({"observation": {"extras": list(OBS_EXTRAS)}, "reward": {"weights": {"ppl_gain": 1.0}}})
    env.reset(seed=5)
    for a in (3, 17, 29):
        env.step(a)
    problem, dyn = env.problem, env.dynamics
    observer = Observer(problem, dyn)
    ep = Episode(7, t=12, trend=-0.37, last_loss=0.25, last_quality=0.62, ppl0=env.ppl0)
    n = 3
    batch = Episode(*(np.full(n, getattr(ep, f)) for f in Episode.FIELDS))
    channel = ChannelArrays({name: np.full(n, getattr(dyn, name)) for name in dyn.state_names})
    scalar, array = observer.observe(ep, dyn), observer.columns(batch, channel, np.zeros((n, 9))).T
    for name, x, xs in zip(problem.observation_names, scalar, array, strict=True):
        assert xs.shape == (n,), name
        np.testing.assert_array_equal(xs.astype(np.float32), x, err_msg=name)
    # the step's bookkeeping
    trunc = end_step(problem, ep, 9, 0.5, 0.8, 3.25, 4.5)
    trunc_b = end_step(problem, batch, np.full(n, 9), np.full(n, 0.5), np.full(n, 0.8), np.full(n, 3.25), 4.5)
    assert trunc is False and not trunc_b.any()
    for f in Episode.FIELDS:
        np.testing.assert_array_equal(getattr(batch, f), getattr(ep, f), err_msg=f)
    # the episode's initial split and the stream rule
    z = np.random.default_rng(0).standard_normal((2, 50))
    picks = initial_split(problem, z[0], z[1])
    assert picks.tolist() == [initial_split(problem, float(a), float(b)) for a, b in z.T]
    positions = np.array([0, 100, NORMAL_CHUNK - 6, NORMAL_CHUNK - 5, NORMAL_CHUNK])
    start, refill = next_position(positions, 6)
    assert start.tolist() == [0, 100, NORMAL_CHUNK - 6, 0, 0] and refill.tolist() == [False, False, False, True, True]
    assert [next_position(int(p), 6) for p in positions] == list(zip(start.tolist(), refill.tolist(), strict=True))
