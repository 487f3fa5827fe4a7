"""LLMSplit: adaptive layer splitting of an LLM between a phone and an edge server, as a Gymnasium environment."""

from llmsplit_env.registration import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "register_envs"]

register_envs()
