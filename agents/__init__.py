"""Agents for LLMSplit: MBRL, RSM-PPO (the paper), SB3 baselines, heuristics and the oracle.

Laid out like stable-baselines3 (``from agents import MBRLAgent`` as ``from stable_baselines3 import PPO``):

| module                  | what                                                                              |
|-------------------------|-----------------------------------------------------------------------------------|
| `agents.mbrl.agent`           | `MBRLAgent`: ensemble reward/channel models and discrete planning                 |
| `agents.rsm`            | `RSMPPOAgent`: the paper's reward surrogate + PPO                                 |
| `agents.baselines`      | heuristics and `OracleAgent`                                                      |
| `agents.sb3`            | SB3 model-free agents from YAML (`make_sb3_agent`), saved/loaded without pickle    |
| `agents.rllib_ppo`          | `RLlibPPOAgent`: RLlib PPO with env runners on a Ray cluster (``llmsplit[rllib]``) |
| `agents.mbrl.ensemble`       | `GaussianEnsemble`, `encode_inputs` (the one model-input encoding)                |
| `agents.mbrl.planning`       | one-step scores/actions and dynamic programming over splits                       |
| `agents.common.evaluation`     | `evaluate_agent`, `normalized_score`, `OracleNormalizer`, `best_fixed_split`      |
| `agents.common.callbacks`      | reward-component / real-evaluation tracking and evaluation callbacks              |
| `agents.common.logger`         | `TagTreeLogger`, `configure_logger`: the one TensorBoard tag tree                 |
| `agents.common.env_util`       | `make_env`, `EnvLayout` / `env_layout`, `collect_transitions`                     |
| `agents.common.protocol`       | `Agent`: the one agent protocol (learn, predict, save, load, quality_evals)       |
| `agents.common.save_util`      | saving and loading helpers (spaces, zip/dir parts, weights) and `predict_actions` |
| `agents.common.hyperparameters`| `load_hyperparams`, `check_hyperparams` (``agents/hyperparams/<algo>.yml``)       |
| `agents.zoo.registry`            | the registry: train, save and load any agent by name                              |

Names load lazily (module ``__getattr__``), so ``import agents`` stays light.
"""

from __future__ import annotations

from llmsplit_env.util.exports import lazy_exports

_LAZY = {
    "Agent": "agents.common.protocol",
    "MBRLAgent": "agents.mbrl.agent",
    "RSMPPOAgent": "agents.rsm",
    "OracleAgent": "agents.baselines",
    "RandomAgent": "agents.baselines",
    "FixedSplitAgent": "agents.baselines",
    "SNRThresholdAgent": "agents.baselines",
    "BestFixedSplitAgent": "agents.baselines",
    "make_sb3_agent": "agents.sb3",
    "RLlibPPOAgent": "agents.rllib_ppo",
    "GaussianEnsemble": "agents.mbrl.ensemble",
    "encode_inputs": "agents.mbrl.ensemble",
    "plan_dp": "agents.mbrl.planning",
    "select_action": "agents.mbrl.planning",
    "evaluate_agent": "agents.common.evaluation",
    "normalized_score": "agents.common.evaluation",
    "OracleNormalizer": "agents.common.evaluation",
    "best_fixed_split": "agents.common.evaluation",
    "RewardComponentCallback": "agents.common.callbacks",
    "OracleNormalisedEvalCallback": "agents.common.callbacks",
    "configure_logger": "agents.common.logger",
    "make_env": "agents.common.env_util",
    "EnvLayout": "agents.common.env_util",
    "env_layout": "agents.common.env_util",
    "load_hyperparams": "agents.common.hyperparameters",
    "train_agent": "agents.zoo.registry",
    "load_agent": "agents.zoo.registry",
}
__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
