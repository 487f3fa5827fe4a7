"""Real split inference: load a causal LM, cut it after k decoder layers, corrupt ``H_k``, measure perplexity."""

from llmsplit_env.llm.model import MODEL_ALIASES, SplitModel, load_causal_lm, split_model
from llmsplit_env.llm.probe import token_recovery_accuracy
from llmsplit_env.llm.runner import Evaluation, SplitRunner
from llmsplit_env.llm.text import TEXT_SOURCES, read_text

__all__ = [
    "MODEL_ALIASES",
    "TEXT_SOURCES",
    "Evaluation",
    "SplitModel",
    "SplitRunner",
    "load_causal_lm",
    "read_text",
    "split_model",
    "token_recovery_accuracy",
]
