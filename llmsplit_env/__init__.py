"""LLMSplit: adaptive layer splitting of an LLM between a phone and an edge server, as a Gymnasium environment."""

from llmsplit_env.registration import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = [
    "ENV_IDS",
    "LLMSplitEnv",
    "LLMSplitVectorEnv",
    "RewardComponent",
    "SplitProblem",
    "compile_problem",
    "register_envs",
]

register_envs()

_LAZY = {
    "LLMSplitEnv": "llmsplit_env.env",
    "LLMSplitVectorEnv": "llmsplit_env.vector",
    "RewardComponent": "llmsplit_env.problem",
    "SplitProblem": "llmsplit_env.problem",
    "compile_problem": "llmsplit_env.problem",
}


def __getattr__(name: str):
    # The env classes load on first use, so `import llmsplit_env` (which registers the ids) stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmsplit_env' has no attribute {name!r}")
