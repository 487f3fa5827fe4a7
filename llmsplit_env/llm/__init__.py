"""Real split inference: load a causal LM, cut it after k decoder layers, corrupt ``H_k``, measure perplexity.

The names below load on first use, so that torch-free parts (`llmsplit_env.llm.text`'s `read_text`) can be imported
without torch: the profile builder checks its command line before it pays for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmsplit_env.util.exports import lazy_exports

_LAZY = {
    "LayoutError": "llmsplit_env.llm.model",
    "MODEL_ALIASES": "llmsplit_env.llm.model",
    "SplitModel": "llmsplit_env.llm.model",
    "load_causal_lm": "llmsplit_env.llm.model",
    "split_model": "llmsplit_env.llm.model",
    "token_recovery_accuracy": "llmsplit_env.llm.probe",
    "Evaluation": "llmsplit_env.llm.runner",
    "SplitRunner": "llmsplit_env.llm.runner",
    "TEXT_SOURCES": "llmsplit_env.llm.text",
    "read_text": "llmsplit_env.llm.text",
}
__all__ = [
    "MODEL_ALIASES",
    "TEXT_SOURCES",
    "Evaluation",
    "LayoutError",
    "SplitModel",
    "SplitRunner",
    "load_causal_lm",
    "read_text",
    "split_model",
    "token_recovery_accuracy",
]
assert sorted(__all__) == sorted(_LAZY)

if TYPE_CHECKING:
    from llmsplit_env.llm.model import MODEL_ALIASES, LayoutError, SplitModel, load_causal_lm, split_model
    from llmsplit_env.llm.probe import token_recovery_accuracy
    from llmsplit_env.llm.runner import Evaluation, SplitRunner
    from llmsplit_env.llm.text import TEXT_SOURCES, read_text


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
