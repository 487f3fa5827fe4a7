"""Agents for LLMSplit: MBRL, RSM-PPO (the paper), SB3 baselines, heuristics and the oracle."""
