"""LLMSplit: adaptive layer splitting of an LLM between a phone and an edge server, as a Gymnasium environment."""

from llmsplit_env.registration import ENV_IDS, register_envs
from llmsplit_env.util.exports import lazy_exports

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

# The env classes load on first use, so `import llmsplit_env` (which registers the ids) stays light.
register_envs()

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LLMSplitEnv": "llmsplit_env.env",
        "LLMSplitVectorEnv": "llmsplit_env.vector",
        "RewardComponent": "llmsplit_env.reward",
        "SplitProblem": "llmsplit_env.problem",
        "compile_problem": "llmsplit_env.problem",
    },
)
