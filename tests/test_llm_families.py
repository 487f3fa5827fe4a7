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

from llmsplit_env.llm import LayoutError, SplitRunner, split_model, token_recovery_accuracy
from llmsplit_env.llm.channel import make_channel

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
        types = ["sliding_attention", "full_attention", "sliding_attention"]  # per-layer masks and rotary tables
        return tf.Gemma3TextConfig(**SMALL, **kv, head_dim=8, **sliding, **IDS, layer_types=types)
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
    if family == "openai-gpt":  # GPT-1: its blocks return lists
        return tf.OpenAIGPTConfig(vocab_size=V, n_positions=128, n_embd=32, n_layer=3, n_head=4)
    if family == "stablelm":
        return tf.StableLmConfig(**SMALL, **kv, partial_rotary_factor=0.25, **IDS)
    raise ValueError(family)


FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi", "phi3", "gemma", "gemma2", "gemma3_text",
            "opt", "falcon", "falcon_alibi", "stablelm", "openai-gpt"]  # fmt: skip
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
    assert r.describe()["attn_implementation"] == ("eager" if family in ("gemma2", "openai-gpt") else "sdpa")


@pytest.mark.parametrize("family", ["llama", "gemma2", "falcon"])
def test_bfloat16_splits_and_resumes(family_dirs, family):
    r = runner(family_dirs[family], dtype="bfloat16")
    assert r.dtype == torch.bfloat16 and r.prefixes().dtype == torch.bfloat16
    clean = r.clean_perplexity()
    for k in (1, r.num_layers):
        assert r.perplexity(k, None, cached=True) == pytest.approx(clean, rel=1e-6)
    ch = make_channel("analog", 5.0)
    assert r.perplexity(1, ch, seed=2, cached=True) == pytest.approx(
        r.perplexity(1, ch, seed=2, cached=False), rel=1e-5
    )


@pytest.mark.parametrize("family", ["opt", "gemma"])
def test_probe_on_projected_and_scaled_embeddings(family_dirs, family):
    r = runner(family_dirs[family])
    ids = r.extra_ids
    acc = token_recovery_accuracy(r.model, ids[:2048], ids[2048:2560], window=32)
    assert acc.shape == (3,) and np.all((acc > 1 / V) & (acc <= 1))  # better than guessing; a weak tiny model


# --- the mechanism: in-memory models ----------------------------------------------------------------------------


def _lm(family: str = "llama", seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(family_config(family), attn_implementation="sdpa").eval()
    return lm.requires_grad_(False)


def _untouched(model) -> bool:
    return all(
        "forward" not in layer.__dict__ and not layer._forward_hooks and not layer._forward_pre_hooks
        for layer in model.layers
    )


@torch.inference_mode()
def test_layers_before_the_split_do_not_compute():
    model = split_model(_lm("gemma3_text"))
    ids = torch.randint(0, V, (2, 16))
    h = model.hidden_states(ids)
    for k in (1, 2, 3):
        calls = [0] * model.num_layers
        handles = [
            sub.register_forward_hook(lambda *_a, i=i, calls=calls: calls.__setitem__(i, calls[i] + 1))
            for i, layer in enumerate(model.layers)
            for sub in layer.modules()
            if sub is not layer
        ]
        try:
            logits = model.resume(h[k], k, ids)
        finally:
            for handle in handles:
                handle.remove()
        assert calls[:k] == [0] * k and all(c > 0 for c in calls[k:])
        torch.testing.assert_close(logits, model.logits(ids), rtol=0, atol=0)
    assert _untouched(model)


@torch.inference_mode()
def test_model_is_restored_after_errors():
    model = split_model(_lm())
    h = model.hidden_states(torch.zeros((1, 8), dtype=torch.long))[2]
    with pytest.raises(IndexError):
        model.resume(h, 2, torch.full((1, 8), V + 7))  # the stock forward fails in the embedding, after the patches
    assert _untouched(model)

    def boom(_h):
        raise RuntimeError("link down")

    with pytest.raises(RuntimeError, match="link down"):
        model.forward_split(torch.zeros((1, 8), dtype=torch.long), 1, boom)
    assert _untouched(model)
    with pytest.raises(ValueError, match=r"split must lie in \[1, 3\]"):
        model.resume(h, 0)
    with pytest.raises(ValueError, match="do not match"):
        model.resume(h, 1, torch.zeros((2, 8), dtype=torch.long))


# --- refusals -----------------------------------------------------------------------------------------------------


def test_ambiguous_layer_lists_are_refused():
    lm = _lm("qwen3")
    lm.model.extra = nn.ModuleList(nn.Identity() for _ in range(3))
    with pytest.raises(
        LayoutError, match=r"model_type 'qwen3' .*model\.layers, model\.extra\), so which .* is ambiguous"
    ):
        split_model(lm)


def test_missing_layer_list_is_refused():
    lm = _lm("gpt2")
    lm.config.n_layer = 7  # GPT-2 loops over all its blocks regardless: no list of 7 decoder layers
    with pytest.raises(LayoutError, match=r"model_type 'gpt2' .*no nn\.ModuleList of its num_hidden_layers = 7"):
        split_model(lm)


def test_layers_called_out_of_order_are_refused():
    lm = _lm("gpt_neox")
    lm.gpt_neox.layers[2] = lm.gpt_neox.layers[0]  # a shared layer: called twice, once in another's place
    with pytest.raises(LayoutError, match=r"model_type 'gpt_neox' .*once each in order"):
        split_model(lm)


class _ToyLM(nn.Module):
    """A causal LM outside the layout: its layers hand each other a second stream beside the hidden state."""

    def __init__(self, mode: str) -> None:
        from transformers import PretrainedConfig

        super().__init__()
        self.config = PretrainedConfig(num_hidden_layers=3)
        self.config.model_type = "toy"
        self.mode = mode
        self.emb = nn.Embedding(V, 8)
        self.layers = nn.ModuleList(_ToyLayer(mode) for _ in range(3))
        self.head = nn.Linear(8, V)

    def forward(self, input_ids, use_cache=False):
        h = self.emb(input_ids)
        side = h
        for layer in self.layers:
            if self.mode == "stream":
                h, side = layer(h, side)
            elif self.mode == "dict":
                h = layer(h)["h"]
            else:  # "residual": the forward mixes each layer's input into its output
                h = layer(h) + 0.5 * h
        return SimpleNamespace(logits=self.head(h if self.mode != "stream" else h + side))


class _ToyLayer(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.lin = nn.Linear(8, 8)

    def forward(self, h, side=None):
        out = torch.tanh(self.lin(h))
        if self.mode == "stream":
            return out, side * 0.5 + out
        return {"h": out} if self.mode == "dict" else out


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("stream", r"resuming its stock forward from H_1 fails \(TypeError"),
        ("dict", r"decoder layer 0 returns dict, not a \[batch, tokens, 8\] hidden state like its input \(1, 4, 8\)"),
        ("residual", r"resuming its stock forward from H_3 does not reproduce the whole forward"),
    ],
)
def test_models_outside_the_layout_are_refused(mode, needle):
    torch.manual_seed(0)
    with pytest.raises(LayoutError, match=r"model_type 'toy' \(_ToyLM\) cannot be split: " + needle):
        split_model(_ToyLM(mode))
