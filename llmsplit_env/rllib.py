"""RLlib's calling conventions for the LLMSplit ids (nothing here imports Ray until `register_rllib_envs`).

RLlib makes envs in two ways, and both work without glue:

* **by id**: ``PPOConfig().environment("llmsplit_env:LLMSplit-v0", env_config={"reward": {...}})``. The env runners
  call ``gym.make_vec(id, num_envs=..., **env_config)``, so the top-level config keys of ``env_config`` arrive as
  keyword arguments (accepted by both envs). The ``llmsplit_env:`` prefix makes each runner import the package
  (the bare id is unknown in a runner process that never imported it). With
  ``.env_runners(gym_env_vectorize_mode="vector_entry_point")`` a runner steps the numpy vector env.
* **by a registered creator**: after `register_rllib_envs`, ``PPOConfig().environment("LLMSplit-v0", env_config=...)``
  uses `make_rllib_env`, which RLlib calls with ``env_config`` alone for one env, or with ``num_envs`` added when
  it asks for a vector env: then it returns the numpy `LLMSplitVectorEnv` (ids that have one) or Gymnasium's
  sync vector env of single envs (``LLMSplit-LLM-v0``).

``env_config`` may name the id under ``"env_id"`` (default ``"LLMSplit-v0"``); every other key is an env config key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from llmsplit_env.registration import ENV_IDS, register_envs

# The env_config key naming the id (not a config key of the env).
ENV_ID_KEY = "env_id"


def vectorize_mode(env_id: str) -> str:
    """The Gymnasium vectorization mode for ``env_id``: ``"vector_entry_point"`` where the id has the numpy vector
    env, else ``"sync"``."""
    register_envs()
    spec = gym.spec(env_id.split(":", 1)[-1])
    return "vector_entry_point" if spec.vector_entry_point is not None else "sync"


def make_rllib_env(
    env_config: Mapping[str, Any] | None = None, env_id: str | None = None
) -> gym.Env | gym.vector.VectorEnv:
    """An LLMSplit env from RLlib's ``env_config`` (an ``EnvContext`` or a plain dict).

    With ``num_envs`` in ``env_config`` (RLlib adds it when it wants a vector env), a vector env of that many
    sub-envs; otherwise one env. ``env_id`` (or ``env_config["env_id"]``) picks the id; the other keys are the
    env's config keys (``reward``, ``channel``, ``max_episode_steps``, ... or ``config``).
    """
    kwargs = dict(env_config or {})  # an EnvContext is a dict; its worker_index and friends are attributes
    named = kwargs.pop(ENV_ID_KEY, None)
    if env_id is not None and named is not None and named != env_id:
        raise ValueError(f"env_config {ENV_ID_KEY!r} is {named!r} but this creator makes {env_id!r}")
    given = env_id or named or "LLMSplit-v0"
    env_id = given.split(":", 1)[-1] if isinstance(given, str) else None  # "llmsplit_env:<id>" names the same id
    if env_id not in ENV_IDS:
        raise ValueError(f"{ENV_ID_KEY} must be one of {', '.join(ENV_IDS)}, got {given!r}")
    register_envs()
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is None:
        return gym.make(env_id, **kwargs)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorize_mode(env_id), **kwargs)


def register_rllib_envs() -> list[str]:
    """Register every LLMSplit id with RLlib (``ray.tune.register_env``), each made by `make_rllib_env`; returns the
    ids. Safe to call again. Remote env runners find the creator through the cluster's registry."""
    from ray.tune.registry import register_env

    for env_id in ENV_IDS:
        register_env(env_id, functools.partial(make_rllib_env, env_id=env_id))
    return list(ENV_IDS)
