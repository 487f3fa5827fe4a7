"""The authors' reward surrogate as a quality backend: their MLP ``f(ρ, p)`` predicts the paper reward's gain term.

The paper's authors (Chen et al., arXiv 2406.02616; GitHub ``Kanra13-ch/adaptive_layersplit``) trained an MLP
``2 → 128 → 128 → 1`` with ReLU on the raw float32 state (ρ, p), p the split 1..10 of Llama-2-7B's 32 layers, and
released its weights as ``reward_predictor.pth``: a PyTorch state dict of ``nn.Sequential`` stored under ``fc``
(`SURROGATE_SHAPES`). It is not shipped here (the file carries no license); pass its path as the config key
``surrogate`` (``gym.make("LLMSplit-Paper-v0", surrogate=PATH)``), which makes the env their surrogate env, with the
reward ``10·f(ρ', p') + (10 − p')/10`` from the step's new state.

`SurrogateMLP` loads the file with ``torch.load(path, map_location="cpu", weights_only=True)`` (no code from the file
runs) and refuses anything but such a state dict (float32 tensors of exactly those keys and shapes) with a
``ValueError`` naming the file and what it found. It evaluates ``f`` with numpy: float32 inputs, weights and layer
outputs, as their float32 model; each layer's sums are accumulated in float64 and rounded to float32 once, so one state
and a batch of states give the same bits (a float32 BLAS sums in an order that depends on the batch size), within an
ulp or so of torch's float32 forward.

`SurrogateQuality` is the backend: it predicts the gain (``gain_model``: `llmsplit_env.problem.compile_problem` then
computes the ``ppl_gain`` component with it) and nothing else. Perplexity and quality are NaN in ``info``; the
leakage is unknown (NaN), so `llmsplit_env.config` refuses nonzero ``quality`` and ``privacy`` weights and the
``log_ppl0`` and ``last_quality`` extras with this backend, and the envs do not report those two components. The
surrogate simulates no transmission: ``packet_loss`` is the erasure channel's expected lost fraction, ρ itself.
The observation is the env's own (ρ, its trend, that packet loss, the previous split / 32): the authors' raw (ρ, p)
scaled and more, not their input vector.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from llmsplit_env.config import SURROGATE_UNKNOWN_COMPONENTS
from llmsplit_env.quality.backends import QualityBackend

__all__ = ["SURROGATE_SHAPES", "SurrogateMLP", "SurrogateQuality"]

#: the state dict of the authors' ``fc = nn.Sequential(Linear(2, 128), ReLU, Linear(128, 128), ReLU, Linear(128, 1))``
SURROGATE_SHAPES: dict[str, tuple[int, ...]] = {
    "fc.0.weight": (128, 2),
    "fc.0.bias": (128,),
    "fc.2.weight": (128, 128),
    "fc.2.bias": (128,),
    "fc.4.weight": (1, 128),
    "fc.4.bias": (1,),
}


class SurrogateMLP:
    """``f(ρ, p)``: the authors' reward surrogate (see the module docstring). ``f(level, split)`` takes floats (returns
    a float) or arrays over sub-envs (returns a float64 array of float32 values)."""

    def __init__(self, weights: Mapping[str, np.ndarray], source: str = "") -> None:
        self.source = source
        self.weights = {k: np.array(weights[k], dtype=np.float32) for k in SURROGATE_SHAPES}
        for k, shape in SURROGATE_SHAPES.items():
            if self.weights[k].shape != shape:
                raise ValueError(f"reward surrogate {source!r}: {k} has shape {self.weights[k].shape}, need {shape}")
        # float64 copies of the float32 weights (exact): the layers accumulate in float64, round to float32 once
        w = {k: v.astype(np.float64) for k, v in self.weights.items()}
        self._layers = tuple((w[f"fc.{i}.weight"].T.copy(), w[f"fc.{i}.bias"]) for i in (0, 2, 4))

    @classmethod
    def load(cls, path: str | os.PathLike) -> SurrogateMLP:
        """Read ``reward_predictor.pth`` (`SURROGATE_SHAPES`); ``FileNotFoundError`` or ``ValueError`` naming the file
        and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "does not exist"
            raise FileNotFoundError(
                f"reward surrogate file {str(path)!r} {what} (config 'surrogate': the path of the authors' "
                "reward_predictor.pth, not shipped with this package)"
            )
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a pickle of objects (refused by weights_only), a corrupt or foreign file
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            what = (
                f"it pickles a {found.group(1)} object, which is not loaded (no code from the file runs); save the "
                "model's state_dict()"
                if found
                else f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            )
            raise ValueError(
                f"reward surrogate {str(path)!r} is not a plain PyTorch state dict that torch.load(weights_only=True) "
                f"reads: {what}"
            ) from None
        if not isinstance(obj, Mapping):
            raise ValueError(
                f"reward surrogate {str(path)!r} holds a {type(obj).__name__}, not a state dict (a dict of tensors "
                f"{', '.join(SURROGATE_SHAPES)})"
            )
        missing = [k for k in SURROGATE_SHAPES if k not in obj]
        extra = sorted(str(k) for k in obj if k not in SURROGATE_SHAPES)
        if missing or extra:
            found = "; ".join(f"{name} keys {keys}" for name, keys in (("missing", missing), ("extra", extra)) if keys)
            raise ValueError(
                f"reward surrogate {str(path)!r} is not the 2-128-128-1 MLP state dict: {found} (need exactly "
                f"{', '.join(SURROGATE_SHAPES)})"
            )
        weights = {}
        for k, shape in SURROGATE_SHAPES.items():
            t = obj[k]
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"reward surrogate {str(path)!r}: {k} is a {type(t).__name__}, not a tensor")
            if tuple(t.shape) != shape or t.dtype != torch.float32:
                raise ValueError(
                    f"reward surrogate {str(path)!r}: {k} is a {t.dtype} tensor of shape {tuple(t.shape)}; the "
                    f"2-128-128-1 MLP needs float32 of shape {shape}"
                )
            a = t.detach().cpu().numpy().copy()
            if not np.isfinite(a).all():
                raise ValueError(f"reward surrogate {str(path)!r}: {k} has non-finite values")
            weights[k] = a
        return cls(weights, source=str(path))

    def __call__(self, level, split):
        scalar = not isinstance(level, np.ndarray)
        x = np.empty((1 if scalar else len(level), 2), dtype=np.float32)  # the raw float32 state (ρ, p)
        x[:, 0] = level
        x[:, 1] = split
        h = x.astype(np.float64)
        (w0, b0), (w1, b1), (w2, b2) = self._layers
        for w, b in ((w0, b0), (w1, b1)):
            h = h @ w
            h += b
            h = np.maximum(h.astype(np.float32), np.float32(0.0)).astype(np.float64)  # Linear in float32, then ReLU
        out = (h @ w2 + b2).astype(np.float32)[:, 0].astype(np.float64)
        return float(out[0]) if scalar else out

    def __reduce__(self):
        return type(self), (self.weights, self.source)


class SurrogateQuality(QualityBackend):
    """The authors' reward surrogate as the env's quality backend (module docstring): it predicts the paper's gain
    ``f(ρ, p)`` (`gain_model`) and knows no perplexity, quality or leakage (NaN).

    Model facts are the authors' Llama-2-7B's (32 layers, hidden size 4096: the UE-compute and latency components use
    them); the surrogate covers splits 1..10 (`k_last`)."""

    scheme = "erasure"
    level_name = "rho"
    num_layers = 32
    hidden_size = 4096
    clean_ppl = math.nan
    log_clean = math.nan
    k_first = 1
    #: the last split the surrogate covers: the config's splits must lie in 1..10
    k_last = 10
    uses_env_rng = False
    knows_ppl = False
    loss_units = 0  # `sample` returns the lost fraction as it is (the expected one, ρ: nothing is transmitted)
    #: reward components the backend cannot compute (not reported; nonzero weights are refused by the config)
    unknown_components = SURROGATE_UNKNOWN_COMPONENTS

    def __init__(self, path: str | os.PathLike) -> None:
        self.gain_model = SurrogateMLP.load(path)
        self.path = str(path)
        self.leakage = [math.nan] * (self.num_layers - 1) + [0.0]  # unknown; nothing is sent at k = L

    def sample(self, split: int, level: float, z: float, rng: np.random.Generator | None = None) -> tuple[float, float]:
        return math.nan, level  # log PPL unknown; the erasure channel's expected lost fraction

    def sample_batch(self, split: np.ndarray, level: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(split), math.nan), level.copy()

    def expectations(self, split: int, level: float) -> tuple[float, float]:
        return math.nan, math.nan  # the gain component reads the surrogate, not these

    def baseline_ppl(self, split: int, level: float, rng: np.random.Generator | None = None) -> float:
        raise ValueError(
            "the surrogate backend predicts the paper's gain from (rho, p) and knows no PPL0: a component that reads "
            "it (needs_ppl0) cannot run on it"
        )

    def baseline_ppl_batch(self, split: np.ndarray, level: np.ndarray) -> np.ndarray:
        return np.full(len(split), self.baseline_ppl(0, 0.0))

    def describe(self) -> dict:
        return {"class": type(self).__name__, "scheme": self.scheme, "surrogate": self.path}
