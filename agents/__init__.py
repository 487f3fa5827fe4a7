"""Agents for LLMSplit: MBRL, RSM-PPO (the paper), SB3 baselines, heuristics and the oracle.

Laid out like stable-baselines3 (``from agents import MBRLAgent`` as ``from stable_baselines3 import PPO``):

| module                  | what                                                                              |
|-------------------------|-----------------------------------------------------------------------------------|
| `agents.mbrl`           | `MBRLAgent` (`agent`): ensemble reward/channel models (`ensemble`), `planning`    |
| `agents.rsm`            | `RSMPPOAgent`: the paper's reward surrogate (`surrogate`, `env`) + PPO (`agent`)  |
| `agents.baselines`      | heuristics and `OracleAgent`                                                      |
| `agents.sb3`            | SB3 model-free agents from YAML (`make_sb3_agent`), saved/loaded without pickle   |
| `agents.rllib_ppo`      | `RLlibPPOAgent`: RLlib PPO with env runners on a Ray cluster (``llmsplit[rllib]``) |
| `agents.common`         | the `Agent` protocol, `save_util`, `env_util`, `evaluation`, `callbacks`,         |
|                         | `logger` (the one TensorBoard tag tree), `hyperparameters`                        |
| `agents.zoo`            | the front doors: `registry` (any agent by name), ``llmsplit`` (`cli`), `train`,   |
|                         | `evaluate`, `sweep`                                                               |

Names load lazily (module ``__getattr__``), so ``import agents`` stays light.
"""

from __future__ import annotations

from llmsplit_env.util.exports import lazy_exports

_LAZY = {
    "Agent": "agents.common.protocol",
    "MBRLAgent": "agents.mbrl.agent",
    "RSMPPOAgent": "agents.rsm.agent",
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
