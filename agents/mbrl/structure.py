"""What the MBRL agent knows about its env: its view of the layout (`model_spec`), its options' checks, and the
reward it knows without spending a quality evaluation (`KnownRewards`, ``known_rewards=True``).

The compiled problem (`llmsplit_env.problem.SplitProblem`) publishes two facts that need no LLM run:

- **per-split tables**: reward components that are a table of the split alone (``ue_compute = 1 − k/L``,
  ``privacy = 1 − leakage(k)`` from the inversion probe, the paper's ``paper_load``): their value at every split is
  read from the problem, not learned from steps;
- **splits that transmit nothing** (``problem.transmits[k]`` is false: ``k = L``): the edge receives nothing, so the
  step's quality is exactly the clean one (``quality = 1``), and the live backend runs no evaluation there.

With both, the reward model only learns the components that depend on the channel (``quality``, and ``latency`` or
``ppl_gain`` when they are weighted), and the agent never spends a learning step where nothing can be learnt: at a
split that transmits nothing every learned component is known when the only learned component is ``quality``
(`KnownRewards.evaluable`). ``switching`` is known too; the planner adds it (`agents.mbrl.planning.plan_dp`).

`KnownRewards` is saved with the agent, so ``predict`` needs no env; `KnownRewards.of_env` reads it from an env and the
agent compares the two on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.env_util import EnvLayout

ACTION_DEPENDENT = ("packet_loss", "prev_split", "last_quality")
# Inputs of the dynamics model only: they say where the channel goes, not what this step's transmission yields.
DYNAMICS_ONLY = ("trend", "time")


def model_spec(layout: EnvLayout) -> dict[str, Any]:
    """The agent's view of an env layout: which observation dims feed which model, which components it learns.

    Saved with the agent (so ``predict`` needs no env) and compared with the env's on load.
    """
    if layout.action_mode != "absolute":
        raise ValueError("MBRLAgent plans over absolute splits: use config action_mode='absolute'")
    names = list(layout.observation_names)
    layout.index("prev_split")  # the switching cost needs it: a clear error if the env does not publish it
    weights = {c: w for c, w in layout.weights.items() if w != 0.0}
    return {
        "splits": list(layout.splits),
        "num_layers": layout.num_layers,
        "obs_names": names,
        "channel_dims": [i for i, n in enumerate(names) if n not in ACTION_DEPENDENT],
        "reward_dims": [i for i, n in enumerate(names) if n not in ACTION_DEPENDENT + DYNAMICS_ONLY],
        "prev_split_dim": names.index("prev_split"),
        "components": [c for c in weights if c != "switching"],
        "weights": weights,
        "switch_weight": weights.get("switching", 0.0),
    }


def check_budget(total_timesteps: int, warmup_steps: int, have: int = 0) -> None:
    """``ValueError`` before any step when the budget ends inside the warm-up (the model would never be fitted)."""
    if have + total_timesteps < warmup_steps:
        raise ValueError(
            f"a budget of {total_timesteps} steps ends inside MBRL's warm-up (warmup_steps={warmup_steps}"
            + (f", {have} done" if have else "")
            + "): the model would never be fitted; give -n/--n-timesteps >= the warm-up or lower mbrl.warmup_steps"
        )


PLANNERS = ("ucb", "thompson", "greedy")
ACQUISITIONS = ("decision", "planner")


def check_options(hp: dict[str, Any]) -> None:
    """``ValueError`` naming the first bad constructor option of `MBRLAgent` and what is allowed; normalises the
    numbers and flags in place."""
    if hp["planner"] not in PLANNERS:
        raise ValueError(f"unknown planner {hp['planner']!r}; allowed: {', '.join(PLANNERS)}")
    if hp["acquisition"] not in ACQUISITIONS:
        raise ValueError(f"unknown acquisition {hp['acquisition']!r}; allowed: {', '.join(ACQUISITIONS)}")
    for name in ("warmup_steps", "refit_every", "horizon", "n_rollouts"):
        v = hp[name]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name in ("beta", "caution", "refit_growth"):
        v = hp[name]
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) or not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        hp[name] = float(v)
    if not (isinstance(hp["nll_beta"], int | float) and 0.0 <= hp["nll_beta"] <= 1.0):
        raise ValueError(f"nll_beta must be a number in [0, 1], got {hp['nll_beta']!r}")
    if hp["stop_on"] not in ("nll", "mse"):
        raise ValueError(f"unknown stop_on {hp['stop_on']!r}; allowed: nll, mse")
    if not isinstance(hp["known_rewards"], bool | np.bool_):
        raise ValueError(f"known_rewards must be True or False, got {hp['known_rewards']!r}")
    hp["known_rewards"] = bool(hp["known_rewards"])


#: the learned component whose value at a split that transmits nothing is known exactly (the clean perplexity)
CLEAN_COMPONENT = "quality"


@dataclass(frozen=True)
class KnownRewards:
    """The reward structure known without evaluations, over the env's splits (in action order).

    :param transmits: ``[K]`` whether split ``splits[a]`` sends anything over the link
    :param tables: component name -> ``[K]`` values, for the weighted components that are per-split tables
    """

    transmits: tuple[bool, ...]
    tables: dict[str, tuple[float, ...]]

    @classmethod
    def of_env(cls, env: gym.Env, splits: Sequence[int], components: Sequence[str]) -> KnownRewards:
        """Read from the env's compiled problem: its per-split tables among ``components`` and its ``transmits``."""
        problem = getattr(env.unwrapped, "problem", None)
        if problem is None:
            raise ValueError("known_rewards needs an LLMSplitEnv (its compiled problem publishes the per-split tables)")
        ks = [int(k) for k in splits]
        tables = {}
        for c in problem.components:
            if c.table is not None and c.name in components:
                table = getattr(problem, c.table)
                tables[c.name] = tuple(float(table[k]) for k in ks)
        return cls(tuple(bool(problem.transmits[k]) for k in ks), tables)

    def to_json(self) -> dict[str, Any]:
        return {"transmits": list(self.transmits), "tables": {c: list(v) for c, v in self.tables.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KnownRewards:
        return cls(
            tuple(bool(t) for t in data["transmits"]),
            {str(c): tuple(float(x) for x in v) for c, v in data["tables"].items()},
        )

    def learned(self, components: Sequence[str]) -> list[str]:
        """The components a model must learn: those without a table."""
        return [c for c in components if c not in self.tables]

    def evaluable(self, components: Sequence[str]) -> np.ndarray:
        """``[K]`` splits where a step can teach the model something: every split, unless the only learned component
        is the quality, which is known (1) wherever nothing is transmitted."""
        if set(self.learned(components)) <= {CLEAN_COMPONENT}:
            return np.asarray(self.transmits, dtype=bool)
        return np.ones(len(self.transmits), dtype=bool)

    def rewards(self, predicted: np.ndarray, learned: Sequence[str], weights: dict[str, float]) -> np.ndarray:
        """Weighted rewards ``[..., K]`` (switching excluded) from the model's predictions ``[..., K, C]`` of the
        ``learned`` components: the quality bounded to ``[0, 1]`` (it is ``PPL_clean / PPL``) and exactly 1 where
        nothing is transmitted, plus the known tables."""
        transmits = np.asarray(self.transmits, dtype=bool)
        out = np.zeros(predicted.shape[:-1])
        for j, c in enumerate(learned):
            v = predicted[..., j]
            if c == CLEAN_COMPONENT:
                v = np.where(transmits, np.clip(v, 0.0, 1.0), 1.0)
            out += weights[c] * v
        for c, values in self.tables.items():
            out += weights[c] * np.asarray(values)
        return out
