"""The generic split view on tiny random models of every common decoder family, and its refusals.

Every family resumes from a cached ``H_k`` through its own stock forward: noiseless splits reproduce the unsplit
model, and the cached (edge side only) and uncached (whole forward) paths agree draw by draw under every scheme.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from llmsplit_env.channel import make_channel
from llmsplit_env.llm import SplitRunner, split_model, token_recovery_accuracy
from llmsplit_env.llm.model import LayoutError

V = 512  # the test tokenizer's vocabulary
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4}
IDS = {"vocab_size": V, "max_position_embeddings": 128, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}


def family_config(family: str):
    import transformers as tf

    kv = {"num_key_value_heads": 2}
    sliding = {"sliding_window": 16}  # shorter than the 32-token window: the sliding masks matter
    if family == "llama":
        return tf.LlamaConfig(**SMALL, **kv, **IDS)
    if family == "mistral":
        return tf.MistralConfig(**SMALL, **kv, **sliding, **IDS)
    if family == "qwen2":
        return tf.Qwen2Config(**SMALL, **kv, **IDS)
    if family == "qwen3":
        return tf.Qwen3Config(**SMALL, **kv, head_dim=8, **IDS)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=V, n_positions=128, n_embd=32, n_layer=3, n_head=4, bos_token_id=0,
                             eos_token_id=0)  # fmt: skip
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**SMALL, **IDS)
    if family == "phi":
        return tf.PhiConfig(**SMALL, partial_rotary_factor=0.5, **IDS)
    if family == "phi3":
        return tf.Phi3Config(**SMALL, **kv, **IDS)
    if family == "gemma":
        return tf.GemmaConfig(**SMALL, num_key_value_heads=1, head_dim=8, **IDS)
    if family == "gemma2":
        return tf.Gemma2Config(**SMALL, **kv, head_dim=8, **sliding, **IDS)
    if family == "gemma3_text":
        return tf.Gemma3TextConfig(**SMALL, **kv, head_dim=8, **sliding, **IDS,
                                   layer_types=["sliding_attention", "full_attention", "sliding_attention"])  # fmt: skip
    if family == "opt":  # OPT-350m's layout: post-norm layers, embeddings projected in and out of the residual width
        return tf.OPTConfig(vocab_size=V, hidden_size=32, ffn_dim=64, num_hidden_layers=3, num_attention_heads=4,
                            word_embed_proj_dim=16, do_layer_norm_before=False, max_position_embeddings=128,
                            bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    if family == "falcon":
        return tf.FalconConfig(vocab_size=V, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                               bos_token_id=0, eos_token_id=0)  # fmt: skip
    if family == "falcon_alibi":  # ALiBi instead of rotary: the mask is materialised with the bias in it
        return tf.FalconConfig(vocab_size=V, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, alibi=True,
                               multi_query=False, parallel_attn=False, bos_token_id=0, eos_token_id=0)  # fmt: skip
    if family == "stablelm":
        return tf.StableLmConfig(**SMALL, **kv, partial_rotary_factor=0.25, **IDS)
    raise ValueError(family)


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi", "phi3", "gemma", "gemma2", "gemma3_text",
            "opt", "falcon", "falcon_alibi", "stablelm"]  # fmt: skip
SCHEMES = {"analog": 0.0, "digital": 3.0, "erasure": 0.3}


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("families")
    out = {}
    for i, family in enumerate(FAMILIES):
        torch.manual_seed(i)
        d = root / family
        AutoModelForCausalLM.from_config(family_config(family)).save_pretrained(d)
        for f in tokenizer_dir.iterdir():
            shutil.copy(f, d / f.name)
        out[family] = d
    return out


def runner(model_dir, **kw) -> SplitRunner:
    kw = {"text": "pydoc", "num_tokens": 128, "window": 32, "dtype": "float32", "device": "cpu", **kw}
    return SplitRunner.from_pretrained(str(model_dir), **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_splits_and_resumes(family_dirs, family):
    r = runner(family_dirs[family], draws_per_forward=2)
    assert r.model.model_type == family.removesuffix("_alibi")
    L = r.num_layers
    assert L == 3
    clean = r.clean_perplexity()
    for k in range(1, L + 1):  # noiseless: the split model is the unsplit one
        assert r.perplexity(k, None, cached=True) == pytest.approx(clean, rel=1e-6)
        assert r.perplexity(k, None, cached=False) == pytest.approx(clean, rel=1e-6)
    for scheme, level in SCHEMES.items():
        ch = make_channel(scheme, level)
        for k in (1, L - 1):
            cached = r.evaluate(k, ch, seeds=[0, 3], cached=True)  # two draws batched in one forward
            uncached = r.evaluate(k, ch, seeds=[0, 3], cached=False)
            np.testing.assert_allclose(cached.log_ppl, uncached.log_ppl, rtol=1e-5)
            np.testing.assert_allclose(cached.loss_fraction, uncached.loss_fraction, rtol=1e-6)
            assert not np.allclose(cached.log_ppl, np.log(clean), rtol=1e-6)  # the noise reached the edge side
    assert r.describe()["attn_implementation"] == ("eager" if family == "gemma2" else "sdpa")
