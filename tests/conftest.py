"""Shared fixtures: tiny random-init causal LMs of several families, with a tokenizer trained here.

Nothing is downloaded: the tokenizer is a small byte-level BPE trained on the standard library's docs, and models are
built from configs with random weights (seeded).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache: everything, the converted real model of the slow tests included (about
    15 s once per session), goes to a temporary one."""
    old = os.environ.get("LLMSPLIT_CACHE")
    os.environ["LLMSPLIT_CACHE"] = str(tmp_path_factory.mktemp("llmsplit-cache"))
    yield
    if old is None:
        os.environ.pop("LLMSPLIT_CACHE", None)
    else:
        os.environ["LLMSPLIT_CACHE"] = old


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<eos>"], show_progress=False)
    tok.train_from_iterator([topics[k] for k in sorted(topics)], trainer)
    out = tmp_path_factory.mktemp("tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(out)
    return out


def _config(family: str, vocab: int):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = {"vocab_size": vocab, "max_position_embeddings": 256}
    if family == "llama":
        return LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            tie_word_embeddings=True, **common,
        )  # fmt: skip
    if family == "qwen2":
        return Qwen2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            **common,
        )  # fmt: skip
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=256, n_embd=32, n_layer=4, n_head=4)
    if family == "gpt_neox":
        return GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, **common)
    raise ValueError(family)


def make_tiny_model(root: Path, family: str, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random ``family`` causal LM with the test tokenizer into ``root/family``; return the directory."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = root / family
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, 512))
    model.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    """Directories of tiny random models: ``llama``, ``qwen2``, ``gpt2`` and ``gpt_neox``."""
    root = tmp_path_factory.mktemp("models")
    return {f: make_tiny_model(root, f, tokenizer_dir) for f in ("llama", "qwen2", "gpt2", "gpt_neox")}


@pytest.fixture(scope="session")
def real_runner():
    """The real SmolLM2 on 512 tokens of Python docs, fp32 (slow tests only)."""
    from llmsplit_env.llm import SplitRunner

    return SplitRunner.from_pretrained("smollm2-135m", "pydoc", num_tokens=512, window=256, dtype="float32")


@pytest.fixture(scope="session")
def tiny_llm_section(tiny_models) -> dict:
    """The env config's ``llm`` section for the live backend on the tiny random Llama (64 tokens of Python docs)."""
    return {
        "model": str(tiny_models["llama"]),
        "text": "pydoc",
        "num_tokens": 64,
        "window": 32,
        "dtype": "float32",
        "device": "cpu",
        "probe_fit_tokens": 512,
        "probe_test_tokens": 128,
    }


@pytest.fixture
def interrupt_evaluation(monkeypatch):
    """``calls = interrupt_evaluation(n)``: from now on `SplitRunner.evaluate` counts its calls in ``calls["n"]`` and
    raises ``KeyboardInterrupt`` (Ctrl-C in the middle of a profile cell) on the n-th;
    ``interrupt_evaluation.restore()`` puts the real method back."""
    from llmsplit_env.llm import SplitRunner

    real = SplitRunner.evaluate

    def start(n: int) -> dict:
        calls = {"n": 0}

        def flaky(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)

        monkeypatch.setattr(SplitRunner, "evaluate", flaky)
        return calls

    start.restore = lambda: monkeypatch.setattr(SplitRunner, "evaluate", real)
    return start


@pytest.fixture(scope="module", autouse=True)
def _ray_ends_with_its_module():
    """Each test module starts without a Ray instance: one left running by a module (an agent that starts Ray when
    none runs) would otherwise be joined by the next module's fixtures with the wrong resources."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
