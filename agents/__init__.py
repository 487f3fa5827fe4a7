"""Agents for LLMSplit: MBRL, RSM-PPO (the paper), SB3 baselines, heuristics and the oracle.

Laid out like stable-baselines3 (``from agents import MBRLAgent`` as ``from stable_baselines3 import PPO``):

| module                  | what                                                                              |
|-------------------------|-----------------------------------------------------------------------------------|
| `agents.mbrl`           | `MBRLAgent`: ensemble reward/channel models and discrete planning                 |
| `agents.rsm`            | `RSMPPOAgent`: the paper's reward surrogate + PPO                                 |
| `agents.baselines`      | heuristics and `OracleAgent`                                                      |
| `agents.sb3`            | SB3 model-free agents from YAML (`make_sb3_agent`), saved/loaded without pickle    |
| `agents.rllib`          | `RLlibPPOAgent`: RLlib PPO with env runners on a Ray cluster (``llmsplit[rllib]``) |
| `agents.ensemble`       | `GaussianEnsemble`, `encode_inputs` (the one model-input encoding)                |
| `agents.planning`       | one-step scores/actions and dynamic programming over splits                       |
| `agents.evaluation`     | `evaluate_agent`, `normalized_score`, `OracleNormalizer`, `best_fixed_split`      |
| `agents.callbacks`      | reward-component / real-evaluation tracking and evaluation callbacks              |
| `agents.logger`         | `TagTreeLogger`, `configure_logger`: the one TensorBoard tag tree                 |
| `agents.env_util`       | `make_env`, `EnvLayout` / `env_layout`, `collect_transitions`                     |
| `agents.hyperparameters`| `load_hyperparams`, `check_hyperparams` (``agents/hyperparams/<algo>.yml``)       |
| `agents.zoo`            | the registry: train, save and load any agent by name                              |

Names load lazily (module ``__getattr__``), so ``import agents`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MBRLAgent": "agents.mbrl",
    "RSMPPOAgent": "agents.rsm",
    "OracleAgent": "agents.baselines",
    "RandomAgent": "agents.baselines",
    "FixedSplitAgent": "agents.baselines",
    "SNRThresholdAgent": "agents.baselines",
    "BestFixedSplitAgent": "agents.baselines",
    "make_sb3_agent": "agents.sb3",
    "RLlibPPOAgent": "agents.rllib",
    "GaussianEnsemble": "agents.ensemble",
    "encode_inputs": "agents.ensemble",
    "plan_dp": "agents.planning",
    "select_action": "agents.planning",
    "evaluate_agent": "agents.evaluation",
    "normalized_score": "agents.evaluation",
    "OracleNormalizer": "agents.evaluation",
    "best_fixed_split": "agents.evaluation",
    "RewardComponentCallback": "agents.callbacks",
    "OracleNormalisedEvalCallback": "agents.callbacks",
    "configure_logger": "agents.logger",
    "make_env": "agents.env_util",
    "EnvLayout": "agents.env_util",
    "env_layout": "agents.env_util",
    "load_hyperparams": "agents.hyperparameters",
    "train_agent": "agents.zoo",
    "load_agent": "agents.zoo",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
