"""`SplitRunner`: perplexity of a real LLM split between UE and edge, with a channel on the link."""

from __future__ import annotations

import ctypes
import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from llmsplit_env.llm.cache_entry import InvalidEntry, load_file_entry
from llmsplit_env.llm.channel import Channel
from llmsplit_env.llm.model import SplitModel, load_causal_lm, resolve_device, resolve_dtype, split_model
from llmsplit_env.llm.text import bos_ids, make_windows, tokenize_text, tokenizer_key
from llmsplit_env.util.cache import cache_dir


@dataclass(frozen=True)
class Evaluation:
    """One or more channel draws at one split: log-perplexity and the fraction lost, per draw."""

    log_ppl: np.ndarray
    loss_fraction: np.ndarray

    @property
    def ppl(self) -> np.ndarray:
        return np.exp(self.log_ppl)


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < lo
        or (hi is not None and value > hi)
    ):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


#: glibc's ``mallopt`` parameters (malloc.h) and the values `pin_malloc_thresholds` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # the ceiling of glibc's dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc's dynamic rule sets beside it
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_malloc_state: str | None = None


def pin_malloc_thresholds() -> str:
    """Pin glibc's malloc thresholds where its dynamic rule converges (mmap 32 MiB, trim 64 MiB); once a process.

    A forward on the CPU allocates and frees tensors of 1-12 MiB per layer from the heap. glibc adapts its mmap and
    trim thresholds to the sizes freed so far, and where they stop depends on the order of a process's first
    allocations; when they stop low, freeing a layer's temporaries trims the heap's top (``brk``) and the next layer
    grows it again, and every page it takes back faults in zero-filled: up to 190,000 extra page faults (0.7 GB) per
    SmolLM2 evaluation of 2,048 tokens. In about half of the processes tried it struck the cached path (whose
    allocations before the forward differ) and not the uncached one, which made the cached path slower than the full
    forward at ``k = 1``, where it saves one layer of 30 (`benchmarks/llm_eval.py`). Pinned, an evaluation faults in
    only its three logits-sized buffers, whichever path. Numbers are unchanged: this decides where memory comes from.

    Left alone where the environment sets glibc's malloc (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``), with
    ``LLMSPLIT_MALLOC=default``, and off glibc. Returns what was done (the first call's answer, every time).
    """
    global _malloc_state
    if _malloc_state is None:
        env = [v for v in _MALLOC_ENV if v in os.environ]
        env += ["GLIBC_TUNABLES"] if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") else []
        if os.environ.get("LLMSPLIT_MALLOC") == "default":
            _malloc_state = "glibc defaults (LLMSPLIT_MALLOC=default)"
        elif env:
            _malloc_state = f"as the environment sets it ({', '.join(env)})"
        elif not sys.platform.startswith("linux"):
            _malloc_state = f"the platform's ({sys.platform})"
        else:
            try:
                libc = ctypes.CDLL(None)
                libc.gnu_get_libc_version  # noqa: B018 -- AttributeError where the C library is not glibc
                ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
            except (OSError, AttributeError):
                _malloc_state = "the C library's (not glibc)"
            else:
                _malloc_state = "pinned (mmap 32 MiB, trim 64 MiB)" if ok else "glibc defaults (mallopt refused)"
    return _malloc_state


class SplitRunner:
    """Evaluates the perplexity of a causal LM cut after ``split`` decoder layers.

    The UE runs the embedding and layers ``1..k``; the channel corrupts ``H_k``; the edge runs layers ``k+1..L``,
    the final norm and the LM head. Perplexity is ``exp`` of the mean next-token NLL over ``num_tokens // window``
    non-overlapping windows of ``window`` tokens (each window predicts its ``window - 1`` next tokens).

    A model whose tokenizer adds a BOS gets it at the start of every window (``bos_ids``): a window is still ``window``
    positions, the BOS and ``window - 1`` text tokens, every one of them scored (`llmsplit_env.llm.text.make_windows`).

    With ``cached=True`` the clean ``H_k`` of every boundary is computed once (and kept in the user cache), and an
    evaluation runs only the edge-side layers; ``cached=False`` runs the whole forward with the channel in between.
    Both draw the channel realisation of seed ``s`` from ``torch.Generator().manual_seed(s)`` over the same
    ``[windows, window, d]`` tensor, so they agree for the same seed.
    """

    #: the ids at the start of every window (the tokenizer's BOS; `from_pretrained` sets them), not text
    bos_ids: tuple[int, ...] = ()

    def __init__(
        self,
        model: SplitModel,
        input_ids: torch.Tensor,
        *,
        name: str = "model",
        text_name: str = "text",
        extra_ids: np.ndarray | None = None,
        draws_per_forward: int | None = None,
        prefix_cache: bool = True,
    ) -> None:
        if input_ids.ndim != 2 or input_ids.shape[1] < 2:
            raise ValueError(f"input_ids must be [windows, window >= 2], got {tuple(input_ids.shape)}")
        self.model = model
        self.input_ids = input_ids.to(model.device)
        self.name = name
        self.text_name = text_name
        self.extra_ids = extra_ids  # text beyond the evaluation tokens (for the leakage probe)
        if draws_per_forward is None:
            draws_per_forward = 8 if model.device.type == "cuda" else 1
        self.draws_per_forward = _check_int("draws_per_forward", draws_per_forward, 1)
        self.prefix_cache = prefix_cache
        if model.device.type == "cpu":
            pin_malloc_thresholds()  # heap churn would make the cached path slower than the full forward
        self.num_evaluations = 0
        self._prefixes: torch.Tensor | None = None
        self._clean_ppl: float | None = None

    # --- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = "smollm2-135m",
        text: str | os.PathLike = "wiki",
        num_tokens: int = 2048,
        window: int = 512,
        dtype: str | torch.dtype = "auto",
        device: str = "auto",
        offset: int = 0,
        **kwargs,
    ) -> SplitRunner:
        """Load ``model`` (alias, local path or hub id) and the first ``num_tokens`` tokens of ``text``."""
        window = _check_int("window", window, 2)
        num_tokens = _check_int("num_tokens", num_tokens, window)
        offset = _check_int("offset", offset, 0)
        if num_tokens % window:
            raise ValueError(f"num_tokens ({num_tokens}) must be a multiple of window ({window})")
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        lm, tokenizer = load_causal_lm(model, torch_dtype, dev)
        max_pos = getattr(lm.config, "max_position_embeddings", None) or getattr(lm.config, "n_positions", None)
        if max_pos is not None and window > max_pos:
            raise ValueError(f"window ({window}) exceeds the model's maximum positions ({max_pos})")
        text_name, ids = tokenize_text(text, tokenizer, tokenizer_key(tokenizer))
        bos = bos_ids(tokenizer)  # each window starts as the model saw text in training (its BOS, if any)
        windows, extra = make_windows(ids, num_tokens, window, offset, bos, text_name)
        if max(ids.max(initial=0), *bos, 0) >= lm.get_input_embeddings().weight.shape[0]:
            raise ValueError(f"tokenizer of {model!r} produces ids beyond the model's vocabulary")
        runner = cls(
            split_model(lm),
            torch.from_numpy(windows),
            name=str(model),
            text_name=text_name,
            extra_ids=extra,
            **kwargs,
        )
        runner.tokenizer = tokenizer
        runner.bos_ids = bos
        return runner

    #: the settings a worker process's runner is built from (`from_spec`)
    SPEC_KEYS = ("model", "text", "num_tokens", "window", "dtype", "device")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **kwargs) -> SplitRunner:
        """A runner in a worker process (a Ray actor) from a settings dict: the `SPEC_KEYS`, and ``threads``, the
        torch threads this process may use (set before the model loads)."""
        torch.set_num_threads(int(spec["threads"]))
        return cls.from_pretrained(**{key: spec[key] for key in cls.SPEC_KEYS}, **kwargs)

    # --- properties --------------------------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def hidden_size(self) -> int:
        return self.model.hidden_size

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    @property
    def window(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    def describe(self) -> dict:
        return {
            "model": self.name,
            "model_class": type(self.model.lm).__name__,
            "split_path": "stock forward, hooked at the split",
            "attn_implementation": str(getattr(self.model.lm.config, "_attn_implementation", "")),
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "text": self.text_name,
            "num_tokens": self.num_tokens,
            "window": self.window,
            "bos_ids": list(self.bos_ids),  # put before the text of every window (the tokenizer's BOS), if any
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
        }

    # --- evaluation --------------------------------------------------------------------------------------------

    def _nll(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Summed next-token NLL per sequence, in float32."""
        nll = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
        )
        return nll.view(ids.shape[0], -1).sum(dim=1)

    def _log_ppl(self, nll_per_seq: torch.Tensor) -> float:
        return float(nll_per_seq.double().sum() / (self.input_ids.shape[0] * (self.window - 1)))

    @torch.inference_mode()
    def clean_perplexity(self) -> float:
        """Perplexity of the unsplit model (its stock forward, no channel)."""
        if self._clean_ppl is None:
            logits = self.model.logits(self.input_ids)
            self._clean_ppl = math.exp(self._log_ppl(self._nll(logits, self.input_ids)))
        return self._clean_ppl

    def _prefix_ident(self) -> list[str]:
        lm = self.model.lm
        return [
            self.name,
            str(getattr(lm.config, "_name_or_path", "")),
            type(lm).__name__,
            str(self.dtype),
            self.device.type,
            hashlib.sha256(self.input_ids.cpu().numpy().tobytes()).hexdigest(),
            str(sum(float(p.float().sum()) for p in list(lm.parameters())[:4])),  # guards against same-name models
        ]

    def _prefix_path(self, ident: list[str] | None = None):
        ident = self._prefix_ident() if ident is None else ident
        key = hashlib.sha256("\0".join(ident).encode()).hexdigest()[:24]
        return cache_dir("prefixes") / f"{key}.pt"

    def _compute_prefixes(self) -> torch.Tensor:
        return self.model.hidden_states(self.input_ids)

    @torch.inference_mode()
    def prefixes(self) -> torch.Tensor:
        """Clean hidden states at every boundary: ``[L + 1, windows, window, d]`` (index k = after k layers).

        Kept in the user cache with a manifest (`llmsplit_env.llm.cache_entry`): a corrupt or truncated file is
        rebuilt, and only tensors are ever unpickled (``weights_only=True``)."""
        if self._prefixes is not None:
            return self._prefixes
        if not self.prefix_cache:
            self._prefixes = self._compute_prefixes()
            return self._prefixes
        shape = (self.num_layers + 1, *self.input_ids.shape, self.hidden_size)
        computed: list[torch.Tensor] = []

        def build() -> bytes:
            computed.append(self._compute_prefixes())
            buf = io.BytesIO()
            torch.save(computed[0].cpu(), buf)
            return buf.getvalue()

        def decode(data: bytes) -> torch.Tensor:
            if computed:  # just built here: no need to read back the bytes
                return computed[0]
            t = torch.load(io.BytesIO(data), map_location=self.device, weights_only=True)
            dtype = self.model.hidden_dtype  # the model's own (the parameters' for every family tested)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
                got = (type(t).__name__, getattr(t, "dtype", None), tuple(getattr(t, "shape", ())))
                raise InvalidEntry(f"expected a {dtype} tensor of shape {shape}, got {got}")
            return t

        ident = self._prefix_ident()
        settings = {"ident": ident, "shape": list(shape), "dtype": str(self.dtype)}
        self._prefixes = load_file_entry(self._prefix_path(ident), "prefixes", settings, build, decode)
        return self._prefixes

    def check_split(self, split) -> int:
        """``split`` as an int in ``1..L``; ``ValueError`` naming it otherwise."""
        return _check_int("split", split, 1, self.num_layers)

    @torch.inference_mode()
    def evaluate(
        self, split: int, channel: Channel | None = None, seeds: Sequence[int] = (0,), cached: bool = True
    ) -> Evaluation:
        """Log-perplexity per seed (one channel draw each) with ``channel`` on the hidden states after ``split``."""
        split = self.check_split(split)
        if channel is not None and not isinstance(channel, Channel):
            raise ValueError(
                f"channel must be a llmsplit_env.llm.channel.Channel or None, got {type(channel).__name__!r}"
            )
        seeds = [_check_int("seed", s, 0) for s in seeds]
        if not seeds:
            raise ValueError("seeds must name at least one seed")
        if split == self.num_layers or channel is None:
            # Nothing crosses a noisy link: the result is deterministic and the same for every seed.
            log_ppl = self._noiseless_log_ppl(split, cached)
            return Evaluation(np.full(len(seeds), log_ppl), np.zeros(len(seeds)))
        self.num_evaluations += len(seeds)
        return self._eval_cached(split, channel, seeds) if cached else self._eval_uncached(split, channel, seeds)

    def _noiseless_log_ppl(self, split: int, cached: bool) -> float:
        if cached:
            logits = self.model.resume(self.prefixes()[split], split, self.input_ids)
        else:
            logits = self.model.forward_split(self.input_ids, split, None)
        return self._log_ppl(self._nll(logits, self.input_ids))

    def _eval_cached(self, split: int, channel: Channel, seeds: list[int]) -> Evaluation:
        parts = [
            self.forward_draws(split, [(channel, s) for s in seeds[start : start + self.draws_per_forward]])
            for start in range(0, len(seeds), self.draws_per_forward)
        ]
        return Evaluation(np.concatenate([p.log_ppl for p in parts]), np.concatenate([p.loss_fraction for p in parts]))

    @torch.inference_mode()
    def forward_draws(self, split: int, draws: Sequence[tuple[Channel, int]]) -> Evaluation:
        """One batched edge-side forward for several channel draws at ``split``: ``(channel, seed)`` each, the
        channels may differ (levels of several envs). Every evaluation of the cached path runs through here, so a
        draw gets the same arithmetic whether it is alone or batched; unchecked and uncounted (callers do both)."""
        h = self.prefixes()[split]
        n_win = h.shape[0]
        received, lost = [], []
        for channel, s in draws:
            tx = channel.transmit(h, torch.Generator().manual_seed(s))
            received.append(tx.hidden)
            lost.append(tx.loss_fraction)
        ids = self.input_ids.repeat(len(draws), 1)
        logits = self.model.resume(torch.cat(received), split, ids)
        nll = self._nll(logits, ids)
        log_ppl = [self._log_ppl(nll[i * n_win : (i + 1) * n_win]) for i in range(len(draws))]
        return Evaluation(np.asarray(log_ppl), np.asarray(lost))

    def _eval_uncached(self, split: int, channel: Channel, seeds: list[int]) -> Evaluation:
        log_ppl, lost = [], []
        for s in seeds:
            gen = torch.Generator().manual_seed(s)

            def transmit(h: torch.Tensor, gen=gen) -> torch.Tensor:
                tx = channel.transmit(h, gen)
                lost.append(tx.loss_fraction)
                return tx.hidden

            logits = self.model.forward_split(self.input_ids, split, transmit)
            log_ppl.append(self._log_ppl(self._nll(logits, self.input_ids)))
        return Evaluation(np.asarray(log_ppl), np.asarray(lost))

    def perplexity(
        self, split: int, channel: Channel | None = None, seed: int = 0, cached: bool = True, num_draws: int = 1
    ) -> float:
        """Perplexity at ``split`` of the channel draw of ``seed``; with ``num_draws > 1``, the geometric mean over the
        draws of seeds ``seed .. seed + num_draws − 1`` (batched ``draws_per_forward`` at a time)."""
        num_draws = _check_int("num_draws", num_draws, 1)
        seed = _check_int("seed", seed, 0)
        return float(np.exp(self.evaluate(split, channel, range(seed, seed + num_draws), cached).log_ppl.mean()))

    def perplexities(
        self, split: int, channel: Channel | None = None, seeds: Sequence[int] = (0,), cached: bool = True
    ) -> np.ndarray:
        """Perplexity per seed; equal to calling `perplexity` once per seed."""
        return self.evaluate(split, channel, seeds, cached).ppl

    def time_evaluation(self, split: int, channel: Channel, cached: bool, repeats: int = 1) -> float:
        """Mean wall-clock seconds of one single-draw evaluation (for benchmarks)."""
        t0 = time.perf_counter()
        for r in range(repeats):
            self.evaluate(split, channel, [r], cached)
        return (time.perf_counter() - t0) / repeats
