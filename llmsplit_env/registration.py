"""Gymnasium registration of the LLMSplit ids (string entry points: nothing heavy is imported until `gym.make`)."""

from __future__ import annotations

ENV_IDS = ("LLMSplit-v0", "LLMSplit-LLM-v0", "LLMSplit-Paper-v0", "LLMSplit-Cell-v0")


def with_episode_length(spec, steps: int):
    """``spec`` (an `EnvSpec` or None) with ``max_episode_steps = steps`` where it has none."""
    if spec is None or spec.max_episode_steps is not None:
        return spec
    import dataclasses

    return dataclasses.replace(spec, max_episode_steps=int(steps))


def register_envs() -> None:
    """Register every LLMSplit id with Gymnasium; calling it again is a no-op.

    | id                  | preset    | quality backend             | vector entry point |
    |---------------------|-----------|-----------------------------|--------------------|
    | `LLMSplit-v0`       | `default` | SmolLM2 analog profile      | yes                |
    | `LLMSplit-LLM-v0`   | `llm`     | live SmolLM2 (config `llm`) | no                 |
    | `LLMSplit-Paper-v0` | `paper`   | SmolLM2 erasure profile     | yes                |
    | `LLMSplit-Cell-v0`  | (cell)    | SmolLM2 analog profile      | yes (cells; N UEs each: `llmsplit_env.cell`) |

    No `OrderEnforcing` wrapper: the env refuses ``step()``, ``render()`` and ``expected_rewards()`` before
    ``reset()`` itself. Episodes are truncated by the env itself (config ``max_episode_steps``), so no `TimeLimit` is
    registered; a made env's ``spec.max_episode_steps`` reports its true length (`with_episode_length`). ``gym.make(id,
    max_episode_steps=N)`` adds Gymnasium's `TimeLimit`, which can only shorten episodes: set longer ones with the
    config key (``gym.make(id, config={"max_episode_steps": N})``).
    """
    from gymnasium.envs.registration import register, registry

    specs = {
        "LLMSplit-v0": ("default", True),
        "LLMSplit-LLM-v0": ("llm", False),
        "LLMSplit-Paper-v0": ("paper", True),
    }
    for env_id, (preset, vector) in specs.items():
        if env_id in registry:
            continue
        register(
            id=env_id,
            entry_point="llmsplit_env.env:LLMSplitEnv",
            vector_entry_point="llmsplit_env.vector:LLMSplitVectorEnv" if vector else None,
            kwargs={"preset": preset},
            # The env refuses step(), render() and expected_rewards() before reset() itself (naming the call), so
            # Gymnasium's OrderEnforcing would only add a layer to every step.
            order_enforce=False,
        )
    if "LLMSplit-Cell-v0" not in registry:
        register(
            id="LLMSplit-Cell-v0",
            entry_point="llmsplit_env.cell.env:LLMSplitCellEnv",
            vector_entry_point="llmsplit_env.cell.vector:LLMSplitCellVectorEnv",
            order_enforce=False,
        )
