"""Loading a causal LM and cutting it into UE-side and edge-side parts.

`load_causal_lm` resolves the model (the ``smollm2-135m`` alias, a local directory or a Hugging Face id) and
`split_model` wraps it in a `SplitModel`: ``embed`` → ``run_layers(h, start, stop)`` → ``head``. Llama-family
(Llama, Mistral, Qwen2, Qwen3) and GPT-2-family models get a fast path that calls decoder layers directly, so a
cached UE-side prefix can be resumed at any layer. Other causal LMs get `HookedModel`, which runs the stock forward
and replaces the output of decoder layer k through a forward hook.
"""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmsplit_env._cache import cache_dir
from llmsplit_env.cache_entry import dir_entry_settings, load_dir_entry, verify_dir_entry
from llmsplit_env.model_info import MODEL_ALIASES, alias_gguf, check_local_model

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3")
GPT2_LIKE = ("gpt2",)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA devices")
    return dev


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()) or bool(
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 where the device computes it natively, float32 otherwise."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype {dtype} not supported; allowed: float32, bfloat16, auto")
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _convert_alias(alias: str) -> Path:
    """Dequantise the alias's GGUF once into a safetensors directory in the user cache (0.3 s reloads after).

    The directory is a verified cache entry (`llmsplit_env.cache_entry`): built beside its final place, its manifest
    (size and SHA-256 of every file, and the GGUF it came from) written last, and renamed into place whole. Each use
    re-hashes its files; a missing manifest (an interrupted or older conversion), a changed GGUF, or a corrupt or
    truncated file means the conversion runs again, with a warning naming the directory.
    """
    out = cache_dir("models") / alias
    try:
        gguf = alias_gguf(alias)
    except FileNotFoundError:
        # The wheel is gone: a verified earlier conversion still serves.
        recorded = dir_entry_settings(out)
        if recorded and recorded.get("alias") == alias and not verify_dir_entry(out, "model", recorded):
            return out
        raise
    settings = {"alias": alias, "gguf": gguf.name, "gguf_size": gguf.stat().st_size, "dtype": "float32"}

    def convert(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model: rebuild from its config without the quantisation entry.
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict())
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return load_dir_entry(out, "model", settings, convert)


def resolve_model_path(model: str | os.PathLike) -> str:
    """The alias's converted cache directory, an existing local directory, or the string as a hub id."""
    model = str(model)
    if model in MODEL_ALIASES:
        return str(_convert_alias(model))
    check_local_model(model)  # a missing local path raises here; a hub id passes
    return model


def load_causal_lm(model: str | os.PathLike, dtype: torch.dtype, device: torch.device):
    """Load ``(model, tokenizer)``; rejects encoder-only and encoder-decoder models with a clear error."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ValueError(
            f"model must be an alias ({', '.join(MODEL_ALIASES)}), a local path or a hub id; got {model!r}"
        )
    path = resolve_model_path(model)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise ValueError(
            f"cannot load model {model!r}: not an alias ({', '.join(MODEL_ALIASES)}), not a local directory, "
            f"and not reachable as a hub id ({e.__class__.__name__})"
        ) from None
    mtype = config.model_type
    if (
        getattr(config, "is_encoder_decoder", False)
        or mtype not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        or (mtype in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False))
    ):
        raise ValueError(f"model {model!r} (model_type {mtype!r}) is not a decoder-only causal LM")
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    lm.to(device).eval()
    lm.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return lm, tokenizer


# --- split views --------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """Per-batch tensors every layer needs (positions, rotary embeddings)."""

    kwargs: dict


class SplitModel(ABC):
    """A causal LM seen as ``embed`` → L decoder layers → ``head``."""

    #: False for models that can only run whole (no resuming from a cached prefix)
    resumable: bool = True

    def __init__(self, lm: nn.Module) -> None:
        self.lm = lm
        self.num_layers = int(lm.config.num_hidden_layers)
        self.hidden_size = int(getattr(lm.config, "hidden_size", 0) or lm.config.n_embd)

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm.parameters()).dtype

    def input_embeddings(self) -> torch.Tensor:
        return self.lm.get_input_embeddings().weight

    @abstractmethod
    def embed(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, Context]: ...

    @abstractmethod
    def run_layers(self, h: torch.Tensor, start: int, stop: int, ctx: Context) -> torch.Tensor: ...

    @abstractmethod
    def head(self, h: torch.Tensor) -> torch.Tensor: ...

    def context(self, batch: int, tokens: int) -> Context:
        """The context for hidden states of shape ``[batch, tokens, d]`` without re-embedding."""
        ids = torch.zeros((batch, tokens), dtype=torch.long, device=self.device)
        return self.embed(ids)[1]

    def forward_split(
        self, input_ids: torch.Tensor, split: int, transmit: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> torch.Tensor:
        """Full forward with ``transmit`` applied to the hidden states after ``split`` layers; returns logits."""
        h, ctx = self.embed(input_ids)
        h = self.run_layers(h, 0, split, ctx)
        if transmit is not None and split < self.num_layers:
            h = transmit(h)
        return self.head(self.run_layers(h, split, self.num_layers, ctx))


class LlamaLikeModel(SplitModel):
    """Llama, Mistral, Qwen2/3: ``model.embed_tokens`` → ``model.layers`` (rotary) → ``model.norm`` → ``lm_head``."""

    def embed(self, input_ids):
        inner = self.lm.model
        h = inner.embed_tokens(input_ids)
        pos = torch.arange(input_ids.shape[1], device=h.device).unsqueeze(0)
        return h, Context({"position_ids": pos, "position_embeddings": inner.rotary_emb(h, pos)})

    def run_layers(self, h, start, stop, ctx):
        # With no mask, SDPA attention is causal (enforced at load by attn_implementation="sdpa").
        for layer in self.lm.model.layers[start:stop]:
            out = layer(h, attention_mask=None, **ctx.kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def head(self, h):
        return self.lm.lm_head(self.lm.model.norm(h))


class GPT2LikeModel(SplitModel):
    """GPT-2: ``wte + wpe`` → ``transformer.h`` → ``ln_f`` → ``lm_head``."""

    def embed(self, input_ids):
        tr = self.lm.transformer
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        return tr.drop(tr.wte(input_ids) + tr.wpe(pos)), Context({})

    def run_layers(self, h, start, stop, ctx):
        for block in self.lm.transformer.h[start:stop]:
            out = block(h, attention_mask=None)
            h = out[0] if isinstance(out, tuple) else out
        return h

    def head(self, h):
        return self.lm.lm_head(self.lm.transformer.ln_f(h))


class HookedModel(SplitModel):
    """Any other causal LM: the stock forward with a hook replacing decoder layer ``k``'s output.

    Only whole forwards are possible (``resumable = False``): `embed`/`run_layers` are not available.
    """

    resumable = False

    def __init__(self, lm: nn.Module) -> None:
        super().__init__(lm)
        lists = [m for m in lm.modules() if isinstance(m, nn.ModuleList) and len(m) == self.num_layers]
        if not lists:
            raise ValueError(
                f"cannot find the {self.num_layers} decoder layers of {type(lm).__name__} "
                "(no nn.ModuleList of num_hidden_layers modules)"
            )
        self.layers = lists[0]

    def _unsupported(self, *_a, **_k):
        raise NotImplementedError(
            f"{type(self.lm).__name__} runs through the hook-based path, which cannot resume from a cached prefix; "
            "use cached=False"
        )

    embed = run_layers = head = _unsupported

    def forward_split(self, input_ids, split, transmit):
        if transmit is None or split >= self.num_layers:
            return self.lm(input_ids=input_ids, use_cache=False).logits

        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                return (transmit(output[0]), *output[1:])
            return transmit(output)

        handle = self.layers[split - 1].register_forward_hook(hook)
        try:
            return self.lm(input_ids=input_ids, use_cache=False).logits
        finally:
            handle.remove()


def split_model(lm: nn.Module, path: str = "auto") -> SplitModel:
    """Wrap ``lm`` in the fastest correct `SplitModel` (``path``: ``auto``, ``fast`` or ``hook``)."""
    if path not in ("auto", "fast", "hook"):
        raise ValueError(f"unknown split path {path!r}; allowed: auto, fast, hook")
    mtype = lm.config.model_type
    if path != "hook":
        if mtype in LLAMA_LIKE:
            return LlamaLikeModel(lm)
        if mtype in GPT2_LIKE:
            return GPT2LikeModel(lm)
        if path == "fast":
            raise ValueError(
                f"no fast split path for model_type {mtype!r}; fast paths: {', '.join(LLAMA_LIKE + GPT2_LIKE)}"
            )
    return HookedModel(lm)
