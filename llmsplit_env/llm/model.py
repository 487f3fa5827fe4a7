"""Loading a causal LM and cutting it into UE-side and edge-side parts.

`load_causal_lm` resolves the model (the ``smollm2-135m`` alias, a local directory, a GGUF file or a directory
holding one, or a Hugging Face id; a GGUF is dequantised once into the user cache) and
`split_model` wraps it in a `SplitModel`, one generic view for every decoder-only causal LM that follows the common
layout (a single ``nn.ModuleList`` of ``num_hidden_layers`` decoder layers that the stock forward calls in order). All
of its paths run the model's own stock forward, with its own embeddings, positions, masks, final norm and head:

- ``hidden_states(ids)``: the clean ``H_0..H_L`` from one forward, captured by forward hooks on the layers;
- ``forward_split(ids, k, transmit)``: the whole forward with ``transmit`` applied to layer k's output (a hook);
- ``resume(H_k, k)``: the edge side only. Layers ``1..k`` are made pass-through for the call (their ``forward`` is
  swapped for one that returns the given ``H_k`` without computing), so layers ``k+1..L`` run in place with the
  arguments the stock forward gives them (per-layer attention types, rotary tables and masks included).

A model that does not follow the layout is refused when it is wrapped, with its ``model_type`` and the reason.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from llmsplit_env.llm.cache_entry import CacheError, dir_entry_settings, load_dir_entry, verify_dir_entry
from llmsplit_env.llm.model_info import MODEL_ALIASES, alias_gguf, check_local_model, local_gguf
from llmsplit_env.util.cache import cache_dir

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


def _convert_gguf_into(gguf: Path) -> Callable[[Path], None]:
    """The conversion of ``gguf`` into a safetensors model directory (``convert(tmp)``), for `load_dir_entry`."""

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

    return convert


def convert_alias(alias: str) -> Path:
    """Dequantise the alias's GGUF once into a safetensors directory in the user cache (0.3 s reloads after).

    The directory is a verified cache entry (`llmsplit_env.llm.cache_entry`): built beside its final place, its manifest
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
    return load_dir_entry(out, "model", settings, _convert_gguf_into(gguf))


def convert_gguf_file(gguf: str | os.PathLike) -> Path:
    """Dequantise a user's GGUF file once into a safetensors directory in the user cache, as `convert_alias` does.

    The directory is named after the file's absolute path (``models/gguf/<stem>-<hash>``) and records the file's
    name, size and modification time: the same file reuses it (a verified entry, re-hashed on each use), and a file
    replaced at the same path (another size or time) is converted again into the same place, with a warning."""
    gguf = Path(gguf).resolve()
    st = gguf.stat()
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in gguf.stem)[:48] or "model"
    key = hashlib.sha256(str(gguf).encode()).hexdigest()[:16]
    out = cache_dir("models", "gguf") / f"{stem}-{key}"
    settings = {"gguf_path": str(gguf), "gguf": gguf.name, "gguf_size": st.st_size, "gguf_mtime_ns": st.st_mtime_ns,
                "dtype": "float32"}  # fmt: skip
    try:
        return load_dir_entry(out, "model", settings, _convert_gguf_into(gguf))
    except CacheError:
        raise
    except Exception as e:  # transformers' GGUF reader: unsupported architecture, damaged tensors, ...
        raise ValueError(f"cannot convert GGUF file {str(gguf)!r}: {e.__class__.__name__}: {e}") from e


def resolve_model_path(model: str | os.PathLike) -> str:
    """The alias's converted cache directory, a local GGUF's converted cache directory, an existing local model
    directory, or the string as a hub id."""
    model = str(model)
    if model in MODEL_ALIASES:
        return str(convert_alias(model))
    gguf = local_gguf(model)  # a path that is neither a model directory nor a GGUF raises here
    if gguf is not None:
        return str(convert_gguf_file(gguf))
    check_local_model(model)  # a missing local path raises here; a hub id passes
    return model


def attention_implementation(config) -> str:
    """``sdpa`` (causal SDPA kernels) where the model class supports it, ``eager`` otherwise (Gemma-2: softcapping)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return "sdpa"
    return "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"


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
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attention_implementation(config))
    lm.to(device).eval()
    lm.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return lm, tokenizer


# --- the split view -----------------------------------------------------------------------------------------------


class LayoutError(ValueError):
    """The model does not follow the layout `SplitModel` needs (see the module docstring)."""


class _Stop(Exception):
    """Ends a stock forward after the last decoder layer: the final norm and the head are not needed."""


def _hidden_in(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The hidden state a decoder layer was called with: positionally first, or as ``hidden_states=``."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    h = kwargs.get("hidden_states")
    return h if isinstance(h, torch.Tensor) else None


def _hidden_out(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_hidden(output, h: torch.Tensor):
    """``output`` (a layer's: a tensor, or a tuple or list with the hidden state first) with ``h`` in its place."""
    return type(output)((h, *output[1:])) if isinstance(output, (tuple, list)) else h


def find_decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The one ``nn.ModuleList`` of ``num_hidden_layers`` modules that is not inside another such list."""
    mtype = lm.config.model_type
    n = int(lm.config.get_text_config().num_hidden_layers)
    found = {name: m for name, m in lm.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n}
    # A list inside a candidate (per-layer experts, say) belongs to that candidate's layers.
    outer = [name for name in found if not any(name.startswith(o + ".") for o in found if o != name)]
    if not outer:
        raise LayoutError(
            f"model_type {mtype!r} ({type(lm).__name__}) cannot be split: it has no nn.ModuleList of its "
            f"num_hidden_layers = {n} decoder layers"
        )
    if len(outer) > 1:
        raise LayoutError(
            f"model_type {mtype!r} ({type(lm).__name__}) cannot be split: {len(outer)} nn.ModuleLists have "
            f"num_hidden_layers = {n} modules ({', '.join(outer)}), so which are its decoder layers is ambiguous"
        )
    return found[outer[0]]


class SplitModel:
    """A decoder-only causal LM cut after ``k`` of its ``L`` decoder layers, through its own stock forward.

    ``H_k`` is the output of decoder layer ``k`` (1-based); ``H_0`` is the input of the first one. The view patches
    the model only for the duration of a call (hooks and pass-through forwards, removed in ``finally``), so it is not
    safe to call from several threads at once on one model.
    """

    def __init__(self, lm: nn.Module) -> None:
        self.lm = lm
        self.model_type = str(lm.config.model_type)
        self.layers = find_decoder_layers(lm)
        self.num_layers = len(self.layers)
        self._check_layout()

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm.parameters()).dtype

    def input_embeddings(self) -> torch.Tensor:
        return self.lm.get_input_embeddings().weight

    def _refuse(self, why: str) -> LayoutError:
        return LayoutError(f"model_type {self.model_type!r} ({type(self.lm).__name__}) cannot be split: {why}")

    # --- the layout check ------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _check_layout(self) -> None:
        """Tiny stock forwards (4 tokens): every layer called once, in order, hidden state in and out of the same
        shape; then resuming from a perturbed ``H_k`` must give what the whole forward gives with the same
        perturbation, at ``k = 1`` and ``k = L``."""
        L = self.num_layers
        ids = torch.zeros((1, 4), dtype=torch.long, device=self.device)
        calls: list[int] = []
        shapes_in: list[tuple | None] = []
        outs: list = []
        handles = []
        for i, layer in enumerate(self.layers):

            def pre(_m, args, kwargs, i=i):
                calls.append(i)
                h = _hidden_in(args, kwargs)
                shapes_in.append(None if h is None else tuple(h.shape))

            def post(_m, _args, output):
                outs.append(output)

            handles += [layer.register_forward_pre_hook(pre, with_kwargs=True), layer.register_forward_hook(post)]
        try:
            self.lm(input_ids=ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        if calls != list(range(L)):
            raise self._refuse(
                f"its stock forward does not call the {L} decoder layers once each in order (calls: {calls[:12]})"
            )
        if shapes_in[0] is None:
            raise self._refuse("its first decoder layer is not given the hidden state first or as hidden_states=")
        if len(shapes_in[0]) != 3 or shapes_in[0][:2] != tuple(ids.shape):
            raise self._refuse(
                f"its first decoder layer is given a hidden state of shape {shapes_in[0]} for {tuple(ids.shape)} "
                "tokens, not one [batch, tokens, d] residual stream"
            )
        d = shapes_in[0][-1]
        # What a pass-through layer returns: the layer's own output format, with None beside the hidden state (with
        # use_cache=False and no attention outputs that is what the stock forwards put there).
        self._formats: list[Callable[[torch.Tensor], object]] = []
        for i, out in enumerate(outs):
            h = _hidden_out(out)
            if not isinstance(h, torch.Tensor) or tuple(h.shape) != (1, ids.shape[1], d):
                got = f"{type(out).__name__}" + (f" of shape {tuple(h.shape)}" if isinstance(h, torch.Tensor) else "")
                raise self._refuse(
                    f"decoder layer {i} returns {got}, not a [batch, tokens, {d}] hidden state like its input "
                    f"{shapes_in[i]} (alone or first in a tuple or list)"
                )
            blank = type(out)([None] * len(out)) if isinstance(out, (tuple, list)) else None
            self._formats.append(lambda h, blank=blank: h if blank is None else _with_hidden(blank, h))
        self.hidden_size = int(d)
        self.hidden_dtype = _hidden_out(outs[-1]).dtype

        # Resuming from a perturbed H_k must give what the whole forward gives with the same perturbation: at k = 1
        # (the layers after the split get what they need from the stock forward) and at k = L (the pass-through
        # layers give the stock forward all it uses of them).
        clean = self.hidden_states(ids)
        for k in sorted({1, L}):
            wave = torch.sin(torch.arange(clean[k].numel(), device=self.device, dtype=torch.float32) + k)
            delta = (clean[k].float().std().clamp_min(1e-3) * wave.view_as(clean[k])).to(clean[k].dtype)
            try:
                resumed = self.resume(clean[k] + delta, k, ids).float()
                whole = self._transmitted(ids, k, lambda h, delta=delta: h + delta).float()
            except Exception as e:
                raise self._refuse(
                    f"resuming its stock forward from H_{k} fails ({type(e).__name__}: {e}); its layers may hand "
                    "the next ones more than the hidden state"
                ) from e
            tol = 1e-2 * (1.0 + float(whole.abs().max()))
            if resumed.shape != whole.shape or not torch.allclose(resumed, whole, rtol=0.0, atol=tol):
                diff = float((resumed - whole).abs().max()) if resumed.shape == whole.shape else float("nan")
                raise self._refuse(
                    f"resuming its stock forward from H_{k} does not reproduce the whole forward (largest logit "
                    f"difference {diff:.3g}); its forward may use more of a layer than its output hidden state"
                )

    # --- the three paths -------------------------------------------------------------------------------------------

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The unsplit model: its stock forward."""
        return self.lm(input_ids=input_ids, use_cache=False).logits

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Clean ``H_0..H_L`` for ``input_ids`` ``[batch, tokens]``: one tensor ``[L + 1, batch, tokens, d]``.

        One stock forward with a hook on every layer, stopped after the last one (no final norm, no head)."""
        L = self.num_layers
        out = torch.empty((L + 1, *input_ids.shape, self.hidden_size), dtype=self.hidden_dtype, device=self.device)

        def first(_m, args, kwargs):
            out[0].copy_(_hidden_in(args, kwargs))

        def capture(_m, _args, output, i):
            out[i + 1].copy_(_hidden_out(output))  # copied now: a later layer may work in place on its input
            if i == L - 1:
                raise _Stop

        handles = [self.layers[0].register_forward_pre_hook(first, with_kwargs=True)]
        handles += [
            layer.register_forward_hook(lambda m, a, o, i=i: capture(m, a, o, i)) for i, layer in enumerate(self.layers)
        ]
        try:
            self.lm(input_ids=input_ids, use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return out

    def forward_split(
        self, input_ids: torch.Tensor, split: int, transmit: Callable[[torch.Tensor], torch.Tensor] | None
    ) -> torch.Tensor:
        """The whole stock forward with ``transmit`` applied to ``H_split`` (layer ``split``'s output); logits."""
        self._check_split(split)
        if transmit is None or split == self.num_layers:  # at k = L nothing crosses the link
            return self.logits(input_ids)
        return self._transmitted(input_ids, split, transmit)

    def _transmitted(self, input_ids, split, transmit) -> torch.Tensor:
        def hook(_module, _inputs, output):
            return _with_hidden(output, transmit(_hidden_out(output)))

        handle = self.layers[split - 1].register_forward_hook(hook)
        try:
            return self.logits(input_ids)
        finally:
            handle.remove()

    def resume(self, h: torch.Tensor, split: int, input_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the edge side: layers ``split+1..L``, final norm and head, on ``h`` = ``H_split``.

        ``input_ids`` (same ``[batch, tokens]`` as ``h``) feed only the embedding, whose output the pass-through
        layers discard; zeros by default."""
        self._check_split(split)
        if h.ndim != 3 or h.shape[-1] != self.hidden_size:
            raise ValueError(f"h must be [batch, tokens, {self.hidden_size}], got {tuple(h.shape)}")
        if input_ids is None:
            input_ids = torch.zeros(h.shape[:2], dtype=torch.long, device=self.device)
        elif tuple(input_ids.shape) != tuple(h.shape[:2]):
            raise ValueError(f"input_ids {tuple(input_ids.shape)} do not match h {tuple(h.shape)}")
        # A copy: the cached prefix must survive a layer that works in place on its input.
        h = h.to(device=self.device, dtype=self.hidden_dtype, copy=True)
        with self._pass_through(split, h):
            return self.logits(input_ids)

    def _check_split(self, split: int) -> None:
        if not 1 <= split <= self.num_layers:
            raise ValueError(f"split must lie in [1, {self.num_layers}], got {split!r}")

    @contextmanager
    def _pass_through(self, split: int, h: torch.Tensor) -> Iterator[None]:
        """Layers ``1..split`` return ``h`` (in their own output format) without computing, for the ``with`` body."""
        saved = []
        try:
            for i in range(split):
                layer = self.layers[i]
                own = layer.__dict__.get("forward")  # accelerate may have set one already
                out = self._formats[i](h)
                layer.forward = lambda *_a, _out=out, **_k: _out
                saved.append((layer, own))
            yield
        finally:
            for layer, own in reversed(saved):
                if own is None:
                    del layer.forward
                else:
                    layer.forward = own


def split_model(lm: nn.Module) -> SplitModel:
    """Wrap a decoder-only causal LM in its `SplitModel` (`LayoutError` if it does not follow the layout)."""
    return SplitModel(lm)
