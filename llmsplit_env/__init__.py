"""LLMSplit: adaptive layer splitting of an LLM between a phone and an edge server, as a Gymnasium environment."""

__version__ = "0.1.0"
