"""Quality backends of the environment: what a transmission at split ``k`` and channel level ``x`` does to perplexity.

One interface, two implementations:

| backend          | per step                                                          | cost             |
|------------------|-------------------------------------------------------------------|------------------|
| `ProfileQuality` | interpolate a shipped profile linearly in the level, sample       | about a µs       |
| `LLMQuality`     | run the real split model (`SplitRunner`) with a channel at ``x``  | seconds on a CPU |

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
    MODEL_FIELDS,
    PROFILE_FIELDS,
    Profile,
    check_splits,
    load_profile,
    profile_mismatches,
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

    @abstractmethod
    def sample(self, split: int, level: float, z: float, rng: np.random.Generator) -> tuple[float, float]:
        """One transmission: ``(log PPL floored at log PPL_clean, fraction lost)`` (the cell's mean fraction when
        ``loss_units > 0``; see `realised_loss`).

        ``z`` is a standard normal pre-drawn by the env (profile backend); ``rng`` is the env's generator (live
        backend: the channel seed is drawn from it).
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
        mean = self._mean_a[split][i] + w * self._mean_d[split][i]
        loss = self._loss_a[split][i] + w * self._loss_d[split][i]
        if not self.sample_noise:
            return (mean if mean > self.log_clean else self.log_clean), loss
        x = mean + (self._std_a[split][i] + w * self._std_d[split][i]) * z
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


class LLMQuality(QualityBackend):
    """The real split model, live: each step builds the scheme's channel at the step's level, draws the channel seed
    from the env's generator and runs `SplitRunner.evaluate` (cached UE-side prefixes), counting evaluations.

    Profile: it gives the leakage (``leakage="auto"`` or ``"profile"``; otherwise the inversion probe is fitted here
    on the text after the evaluation tokens, ``"auto"`` or ``"probe"``) and the expectations of
    `LLMSplitEnv.expected_rewards`. It is attached only when it matches this backend: ``profile_match="strict"``
    compares every field of `PROFILE_FIELDS` (model, num_layers, scheme, scheme_params such as m / bits /
    threshold_db, text, num_tokens, window), so the expectations are those of the same measurement;
    ``profile_match="model"`` compares model, num_layers, scheme and scheme_params only, and then the profile,
    measured on other text, serves as a *prior* for the expectations and the leakage. A mismatching profile that the
    user configured (``profile_explicit``) raises ``ValueError`` naming each differing field; a mismatching automatic
    default is not attached, and `expectations` raises naming the differing fields.

    ``server="NAME"``: no model here; the evaluations (and the layer count, clean perplexity, probe leakage, channel
    parameters, ``describe``) come from the shared quality server ``NAME`` (`llmsplit_env.quality.server`), whose
    settings must equal this backend's. The seed is drawn and the evaluation counted here, as with the own model, and
    the numbers are the same bit for bit.
    """

    def __init__(
        self,
        model: str | os.PathLike = "smollm2-135m",
        text: str | os.PathLike = "wiki",
        num_tokens: int = 2048,
        window: int = 512,
        dtype: str = "auto",
        device: str = "auto",
        scheme: str = "analog",
        channel_params: dict | None = None,
        profile: Profile | str | os.PathLike | None = None,
        leakage: str = "auto",
        probe_fit_tokens: int = 4096,
        probe_test_tokens: int = 1024,
        cached: bool = True,
        profile_match: str = "strict",
        profile_explicit: bool = True,
        server: str | None = None,
    ) -> None:
        from llmsplit_env.link import check_channel_args  # torch-free

        self.scheme = scheme
        self.level_name = "rho" if scheme == "erasure" else "snr_db"
        self.channel_params = dict(channel_params or {})
        check_channel_args(scheme, 0.1 if scheme == "erasure" else 10.0, **self.channel_params)  # validate early
        self.model_name = str(model)
        self.cached = bool(cached)
        self.server_name = server
        self.server = None
        self.runner = None
        if server is None:
            from llmsplit_env.llm import SplitRunner
            from llmsplit_env.llm.channel import make_channel  # torch enters here, not at env import

            self._make_channel = make_channel
            self.runner = SplitRunner.from_pretrained(model, text, num_tokens=num_tokens, window=window, dtype=dtype,
                                                      device=device)  # fmt: skip
            self.num_layers = self.runner.num_layers
            self.hidden_size = self.runner.hidden_size
            self.clean_ppl = float(self.runner.clean_perplexity())
            scheme_params = make_channel(scheme, 0.1 if scheme == "erasure" else 10.0, **self.channel_params).params()
        else:
            # everything but the forward comes from the server: this process loads no model (and no torch)
            self._connect(server, model, text, num_tokens, window, dtype, device, cached)
            from llmsplit_env.quality.server import call

            scheme_params = call(self.server, server, "scheme_params", scheme, self.channel_params)
        self.log_clean = math.log(self.clean_ppl)
        self.evaluations = 0
        self.last_seed: int | None = None
        self.profile_quality: ProfileQuality | None = None
        self.profile_mismatch: list[str] = []  # why the (automatic) profile was not attached
        self.profile_source: str | None = None
        self.profile_match = profile_match
        if profile_match not in ("strict", "model"):
            raise ValueError(f"profile_match must be 'strict' or 'model', got {profile_match!r}")
        if profile is not None:
            pq = ProfileQuality(profile, sample=True)
            wanted = {
                "model": self.model_name,
                "num_layers": self.num_layers,
                "scheme": scheme,
                "scheme_params": dict(scheme_params),
                "text": str(text),
                "num_tokens": int(num_tokens),
                "window": int(window),
            }  # fmt: skip
            bad = profile_mismatches(pq.profile, wanted, PROFILE_FIELDS if profile_match == "strict" else MODEL_FIELDS)
            if bad and profile_explicit:
                raise ValueError(
                    f"config 'profile' {pq.profile.source!r} does not match the live backend "
                    f"(llm.profile_match={profile_match!r}): " + "; ".join(bad)
                    + ("" if profile_match == "model" else
                       "; set llm.profile_match='model' to use a profile of the same model and scheme measured on "
                       "other text as a prior")
                )  # fmt: skip
            if bad:
                self.profile_mismatch = bad
                self.profile_source = pq.profile.source
            else:
                self.profile_quality = pq
        if leakage not in ("auto", "profile", "probe"):
            raise ValueError(f"leakage must be 'auto', 'profile' or 'probe', got {leakage!r}")
        if leakage == "profile" and self.profile_quality is None:
            raise ValueError(
                f"leakage='profile' needs a {scheme} profile of model {self.model_name!r} (config key 'profile')"
                + (f" (the default one differs: {'; '.join(self.profile_mismatch)})" if self.profile_mismatch else "")
                + "; use leakage='probe' to fit the inversion probe on this model"
            )
        if self.profile_quality is not None and leakage != "probe":
            self.leakage = list(self.profile_quality.leakage)
            self.leakage_source = f"profile {self.profile_quality.profile.source}"
        else:
            self.leakage = self._probe_leakage(probe_fit_tokens, probe_test_tokens)
            self.leakage_source = "probe"

    def _connect(self, server: str, model, text, num_tokens: int, window: int, dtype: str, device: str,
                 cached: bool) -> None:  # fmt: skip
        """Attach to the quality server ``server``; the env's ``llm`` settings must be the ones it measures with."""
        from llmsplit_env.quality.server import connect

        if not cached:
            raise ValueError(
                f"config 'llm.server' = {server!r} evaluates from cached prefixes; llm.cached False needs the model "
                "in this process (set llm.server None)"
            )
        self.server, info = connect(server)
        got = info["describe"]
        spec = info["spec"]
        alias = {"fp32": "float32", "bf16": "bfloat16"}
        differ = [
            f"llm.{key} {mine!r} (server: {theirs!r})"
            for key, mine, theirs in (
                ("model", str(model), spec["model"]),
                ("text", str(text), spec["text"]),
                ("num_tokens", int(num_tokens), spec["num_tokens"]),
                ("window", int(window), spec["window"]),
            )
            if mine != theirs
        ]
        if dtype != "auto" and alias.get(dtype, dtype) != got["dtype"]:
            differ.append(f"llm.dtype {dtype!r} (server: {got['dtype']!r})")
        if device != "auto" and str(device).split(":")[0] != got["device"].split(":")[0]:
            differ.append(f"llm.device {device!r} (server: {got['device']!r})")
        if differ:
            raise ValueError(
                f"config 'llm.server' = {server!r} measures something else than this env's llm settings: "
                + "; ".join(differ)
                + "; set those keys to the server's, or start a server with this env's settings"
            )
        self.server_info = info
        self.num_layers = int(info["num_layers"])
        self.hidden_size = int(info["hidden_size"])
        self.clean_ppl = float(info["clean_ppl"])

    def _probe_leakage(self, fit_tokens: int, test_tokens: int) -> list[float]:
        if self.server is not None:
            from llmsplit_env.quality.server import call

            return list(call(self.server, self.server_name, "probe_leakage", fit_tokens, test_tokens))
        from llmsplit_env.llm.probe import probe_leakage

        return probe_leakage(self.runner, fit_tokens, test_tokens)

    def sample(self, split: int, level: float, z: float, rng: np.random.Generator) -> tuple[float, float]:
        if split == self.num_layers:
            return self.log_clean, 0.0
        seed = int(rng.integers(2**31 - 1))
        self.last_seed = seed  # the channel realisation of the last evaluation (for reproduction outside the env)
        if self.level_name == "rho":
            level = min(max(level, 0.0), 1.0)
        else:
            level = min(max(level, -50.0), 100.0)  # the channel's accepted range
        if self.server is not None:
            from llmsplit_env.quality.server import call

            x, lost = call(self.server, self.server_name, "evaluate", split, self.scheme, level, self.channel_params,
                           seed)  # fmt: skip
        else:
            channel = self._make_channel(self.scheme, level, **self.channel_params)
            ev = self.runner.evaluate(split, channel, seeds=[seed], cached=self.cached)
            x, lost = float(ev.log_ppl[0]), float(ev.loss_fraction[0])
        self.evaluations += 1
        return (x if x > self.log_clean else self.log_clean), lost

    def _need_profile(self) -> ProfileQuality:
        if self.profile_quality is None:
            why = (
                f"the default profile {self.profile_source!r} differs ({'; '.join(self.profile_mismatch)})"
                if self.profile_mismatch
                else "none is configured"
            )
            raise ValueError(
                f"expected rewards of the live backend come from a {self.scheme} profile of the same model "
                f"({self.model_name!r}) and measurement (llm.profile_match={self.profile_match!r}); {why}. Build one "
                f"with `python -m llmsplit_env.profiling.builder --model {self.model_name} --scheme {self.scheme} "
                "--out FILE` "
                "and pass config profile=FILE"
                + ("" if self.profile_match == "model" else ", or set llm.profile_match='model' to use a profile of "
                   "the same model and scheme measured on other text as a prior")
            )  # fmt: skip
        return self.profile_quality

    def expectations(self, split: int, level: float) -> tuple[float, float]:
        return self._need_profile().expectations(split, level)

    def baseline_ppl(self, split: int, level: float, rng: np.random.Generator) -> float:
        return math.exp(self.sample(split, level, 0.0, rng)[0])  # one real evaluation (counted)

    def describe(self) -> dict:
        return {
            "class": type(self).__name__,
            **(self.runner.describe() if self.server is None else self.server_info["describe"]),
            "server": self.server_name,
            "scheme": self.scheme,
            "channel_params": self.channel_params,
            "leakage": self.leakage_source,
            "profile": None if self.profile_quality is None else self.profile_quality.profile.source,
            "profile_match": self.profile_match,
        }
