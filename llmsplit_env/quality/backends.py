"""Quality backends of the environment: what a transmission at split ``k`` and channel level ``x`` does to perplexity.

One interface, three implementations (the live one in `llmsplit_env.quality.live`, the authors' reward surrogate in
`llmsplit_env.quality.surrogate`):

| backend            | per step                                                          | cost             |
|--------------------|-------------------------------------------------------------------|------------------|
| `ProfileQuality`   | interpolate a shipped profile linearly in the level, sample       | about a µs       |
| `LLMQuality`       | run the real split model (`SplitRunner`) with a channel at ``x``  | seconds on a CPU |
| `SurrogateQuality` | the authors' MLP predicts the paper's gain only (no perplexity)   | a few µs         |

Conventions shared by both (so rewards mean the same thing whichever backend runs):

* The level ``x`` is the mean SNR in dB (analog, digital) or the erasure probability ρ (erasure).
* At ``k = L`` nothing is transmitted: the perplexity is the clean one and nothing is lost; no evaluation runs.
* Perplexity is floored at the clean perplexity: the channel only adds noise, and the floor removes the lognormal's
  unphysical lower tail (the erasure profile's spread reaches 3.7 nats). So quality ``PPL_clean / PPL`` lies in (0, 1].

Lost fraction: the live backend reports what its transmission lost. A profile stores only the *mean* lost fraction
``p(k, x)`` of a cell, which is a deterministic function of the true level; reporting it would reveal the level exactly
(bypassing the CSI error). So the profile backend's `ProfileQuality.sample` returns that mean, and the env turns it
into a realised fraction with `realised_loss`: a rounded normal approximation of ``Binomial(n, p) / n`` over the
``n = ProfileQuality.loss_units`` packets (analog, digital: the profile's ``num_tokens`` token packets, 2048 for the
shipped profiles) or elements (erasure: ``num_tokens · hidden_size``) of the measured transmission, driven by one
standard normal of the env's stream (the same normal, hence the same value, in the vector env).

`ProfileQuality` samples ``log PPL ~ N(μ(k, x), σ(k, x))`` from the profile's per-cell mean and spread (or uses ``μ``
when ``sample=False``); `expected_quality` and `expected_ppl` are the exact expectations of that floored lognormal:

    E[min(1, e^(c−X))] = Φ(a) + e^(c−μ+σ²/2) Φ(−a−σ),   E[max(e^c, e^X)] = e^c Φ(a) + e^(μ+σ²/2) Φ(σ−a)

with ``c = log PPL_clean`` and ``a = (c − μ)/σ``.

The profile backend never imports torch; `LLMQuality` imports it (through `SplitRunner`) when constructed.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from bisect import bisect_right

import numpy as np

from llmsplit_env.quality.profile import (
    Profile,
    check_splits,
    load_profile,
)

_SQRT2 = math.sqrt(2.0)


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / _SQRT2)


def floored_lognormal_expectations(mu: float, sigma: float, log_clean: float) -> tuple[float, float]:
    """``(E[min(1, e^(c−X))], E[max(e^c, e^X)])`` for ``X ~ N(mu, sigma²)``, ``c = log_clean`` (see module doc)."""
    if sigma <= 0.0:
        x = max(mu, log_clean)
        return math.exp(log_clean - x), math.exp(x)
    a = (log_clean - mu) / sigma
    q = _phi(a) + math.exp(log_clean - mu + 0.5 * sigma * sigma) * _phi(-a - sigma)
    p = math.exp(log_clean) * _phi(a) + math.exp(mu + 0.5 * sigma * sigma) * _phi(sigma - a)
    return min(q, 1.0), p


def realised_loss(p: float, z: float, n: int) -> float:
    """A realised lost fraction of ``n`` units at mean ``p``: ``clip(round(n p + sqrt(n p (1 − p)) z), 0, n) / n``,
    the rounded normal approximation of ``Binomial(n, p) / n`` for a standard normal ``z`` (exact at p = 0 and 1)."""
    m = n * p
    c = math.floor(m + math.sqrt(m * (1.0 - p)) * z + 0.5)
    return (c if 0 < c < n else (0 if c <= 0 else n)) / n


def realised_loss_batch(p: np.ndarray, z: np.ndarray, n: int) -> np.ndarray:
    """`realised_loss` over arrays (same arithmetic, so the same bits)."""
    m = n * p
    c = np.floor(m + np.sqrt(m * (1.0 - p)) * z + 0.5)
    np.clip(c, 0, n, out=c)
    return c / n


class QualityBackend(ABC):
    """Perplexity of a split transmission at a channel level; leakage per split."""

    #: channel scheme (``analog``, ``digital``, ``erasure``) and its level name (``snr_db`` or ``rho``)
    scheme: str
    level_name: str
    #: decoder layers L of the model
    num_layers: int
    #: hidden size d (for the uplink payload)
    hidden_size: int
    clean_ppl: float
    log_clean: float
    #: ``leakage[k - 1]``: inversion-probe accuracy on ``H_k``; 0 at k = L
    leakage: list[float]
    #: real LLM evaluations run so far (0 for the profile backend)
    evaluations: int = 0
    #: > 0: `sample` returns the *mean* lost fraction and the env realises it over this many units (`realised_loss`);
    #: 0: `sample` already returns the transmission's realised fraction (live backend)
    loss_units: int = 0

    #: the levels the backend scores as they are: a level outside ``[level_lo, level_hi]`` is scored at the nearer
    #: end (a profile's measured grid; the live backend measures any level)
    level_lo: float = -math.inf
    level_hi: float = math.inf

    #: whether `sample` draws from the env's generator (the live backend draws the channel seed); the env passes
    #: ``rng=None`` to a backend that does not
    uses_env_rng: bool = True

    #: whether `sample` gives the perplexity (the reward surrogate predicts only the paper's gain: the envs then leave
    #: ``ppl`` out of their infos rather than report a NaN)
    knows_ppl: bool = True

    @abstractmethod
    def sample(self, split: int, level: float, z: float, rng: np.random.Generator | None) -> tuple[float, float]:
        """One transmission: ``(log PPL floored at log PPL_clean, fraction lost)`` (the cell's mean fraction when
        ``loss_units > 0``; see `realised_loss`).

        ``z`` is a standard normal pre-drawn by the env (profile backend); ``rng`` is the env's generator (live
        backend: the channel seed is drawn from it), or None for a backend whose `uses_env_rng` is False.
        """

    def expectations(self, split: int, level: float) -> tuple[float, float]:
        """``(E[PPL_clean / PPL], E[PPL])`` at ``split`` and ``level``."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form expectations")

    @abstractmethod
    def baseline_ppl(self, split: int, level: float, rng: np.random.Generator) -> float:
        """The paper reward's PPL₀ at the episode's first state (profile: the median ``e^μ``; live: one evaluation)."""

    def describe(self) -> dict:
        return {"class": type(self).__name__, "scheme": self.scheme}


class ProfileQuality(QualityBackend):
    """Quality from a measured profile: linear interpolation in the level (clamped at the grid ends), exact at grid
    points; log-PPL sampled as ``N(mean, std)`` of the profile cell (``sample=False``: the mean)."""

    uses_env_rng = False  # its randomness is the env's pre-drawn normal ``z``

    def __init__(self, profile: Profile | str | os.PathLike = "smollm2-135m-analog", sample: bool = True) -> None:
        self.profile = profile if isinstance(profile, Profile) else load_profile(profile)
        p = self.profile
        check_splits(p.splits.tolist(), f"profile {p.source!r}: 'splits'", p.num_layers)
        self.scheme = p.scheme
        self.level_name = p.level_name
        self.num_layers = p.num_layers
        self.hidden_size = int(p.metadata.get("hidden_size", 0))
        self.clean_ppl = float(p.clean_ppl)
        self.log_clean = math.log(self.clean_ppl)
        self.sample_noise = bool(sample)
        self.k_first = int(p.splits[0])  # splits below it are not in the profile
        tokens = int(p.metadata.get("num_tokens", 2048))
        self.loss_units = tokens * self.hidden_size if self.scheme == "erasure" and self.hidden_size > 0 else tokens
        self.levels = [float(v) for v in p.levels]
        self.level_lo, self.level_hi = self.levels[0], self.levels[-1]
        V, L = len(self.levels), self.num_layers
        # Slope form on a grid padded by one point: value = A[i] + w·D[i], i = bisect_right(levels, x) − 1 and
        # w = (x − levels[i]) / gap[i] ∈ [0, 1), so every grid point, both ends included, is hit with w = 0 (exact).
        self._gap = [b - a for a, b in zip(self.levels, self.levels[1:], strict=False)] + [1.0]
        tables = {}
        for name, values in (("mean", p.mean_log_ppl), ("std", p.std_log_ppl), ("loss", p.loss_fraction)):
            full = np.full((L + 1, V), np.nan)  # row k; rows below the profile's first split stay NaN
            full[self.k_first :] = values
            full[L] = {"mean": self.log_clean, "std": 0.0, "loss": 0.0}[name]  # k = L: nothing is transmitted
            slope = np.zeros_like(full)
            slope[:, :-1] = np.diff(full, axis=1)
            tables[name] = (full, slope)
        # scalar path: per split k, plain Python rows (a step interpolates without numpy allocations)
        self._rows = {n: ([r.tolist() for r in a], [r.tolist() for r in d]) for n, (a, d) in tables.items()}
        self._mean_a, self._mean_d = self._rows["mean"]
        self._std_a, self._std_d = self._rows["std"]
        self._loss_a, self._loss_d = self._rows["loss"]
        # per split: its six rows at once (the step reads one entry instead of six attributes)
        self._split_rows = [
            (self._mean_a[k], self._mean_d[k], self._std_a[k], self._std_d[k], self._loss_a[k], self._loss_d[k])
            for k in range(L + 1)
        ]
        # batch path (vector env): one gather of an [8, (L + 1)·V] table per step gives everything a cell needs
        levels = np.asarray(self.levels)
        self.levels_arr = levels
        per_cell = [tables["mean"][0], tables["mean"][1], tables["std"][0], tables["std"][1]]
        per_cell += [tables["loss"][0], tables["loss"][1]]
        per_cell += [np.broadcast_to(levels, (L + 1, V)), np.broadcast_to(np.asarray(self._gap), (L + 1, V))]
        self._cell_table = np.stack([t.ravel() for t in per_cell])
        self._num_levels = V
        self.leakage = [float(v) for v in np.concatenate([np.full(self.k_first - 1, np.nan), p.leakage])]
        self.leakage[-1] = 0.0  # nothing is sent at k = L

    @property
    def scheme_params(self) -> dict:
        return dict(self.profile.metadata.get("scheme_params", {}))

    def _locate(self, level: float) -> tuple[int, float]:
        """Grid index and weight of ``level`` (clamped to the ends; weight 0 at a grid point)."""
        x = min(max(level, self.level_lo), self.level_hi)
        i = bisect_right(self.levels, x) - 1
        return i, (x - self.levels[i]) / self._gap[i]

    def interpolate(self, split: int, level: float) -> tuple[float, float, float]:
        """``(mean log-PPL, std log-PPL, loss fraction)`` at ``split``, linear in the level."""
        i, w = self._locate(level)
        return (
            self._mean_a[split][i] + w * self._mean_d[split][i],
            self._std_a[split][i] + w * self._std_d[split][i],
            self._loss_a[split][i] + w * self._loss_d[split][i],
        )

    def sample(self, split: int, level: float, z: float, rng: np.random.Generator | None = None) -> tuple[float, float]:
        if split == self.num_layers:
            return self.log_clean, 0.0
        # `interpolate`, inlined: this is the env's hot loop
        x = self.level_lo if self.level_lo > level else level  # min(max(level, lo), hi), as `_locate`
        x = self.level_hi if self.level_hi < x else x
        i = bisect_right(self.levels, x) - 1
        w = (x - self.levels[i]) / self._gap[i]
        mean_a, mean_d, std_a, std_d, loss_a, loss_d = self._split_rows[split]
        mean = mean_a[i] + w * mean_d[i]
        loss = loss_a[i] + w * loss_d[i]
        if not self.sample_noise:
            return (mean if mean > self.log_clean else self.log_clean), loss
        x = mean + (std_a[i] + w * std_d[i]) * z
        return (x if x > self.log_clean else self.log_clean), loss

    def expectations(self, split: int, level: float) -> tuple[float, float]:
        if split == self.num_layers:
            return 1.0, self.clean_ppl
        mean, std, _ = self.interpolate(split, level)
        return floored_lognormal_expectations(mean, std if self.sample_noise else 0.0, self.log_clean)

    def baseline_ppl(self, split: int, level: float, rng: np.random.Generator | None = None) -> float:
        if split == self.num_layers:
            return self.clean_ppl
        return math.exp(max(self.interpolate(split, level)[0], self.log_clean))

    # --- batch path (vector env) --------------------------------------------------------------------------------

    def _gather(self, split: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.minimum(np.maximum(level, self.level_lo), self.level_hi)
        cell = np.searchsorted(self.levels_arr, x, side="right")
        cell += split * self._num_levels - 1  # flat index of (split, grid index)
        g = self._cell_table.take(cell, axis=1)
        x -= g[6]
        x /= g[7]  # now the weight w
        return g, x

    def sample_batch(self, split: np.ndarray, level: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`sample` over ``[N]`` arrays of splits, levels and normals (same arithmetic as the scalar path; the loss is
        the cell's mean, as there)."""
        g, w = self._gather(split, level)
        mean = w * g[1]
        mean += g[0]
        if self.sample_noise:
            std = w * g[3]
            std += g[2]
            std *= z
            mean += std
        np.maximum(mean, self.log_clean, out=mean)
        loss = w * g[5]
        loss += g[4]
        return mean, loss

    def baseline_ppl_batch(self, split: np.ndarray, level: np.ndarray) -> np.ndarray:
        """`baseline_ppl` over ``[N]`` arrays."""
        g, w = self._gather(split, level)
        return np.exp(np.maximum(g[0] + w * g[1], self.log_clean))

    def describe(self) -> dict:
        return {
            "class": type(self).__name__,
            "profile": self.profile.source,
            "model": self.profile.metadata.get("model"),
            "scheme": self.scheme,
            "sample": self.sample_noise,
        }
