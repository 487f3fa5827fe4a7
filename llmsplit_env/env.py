"""`LLMSplitEnv`: choose where to split an LLM between a phone (UE) and an edge server, step by step, over a link
whose quality drifts.

## Description

An L-layer decoder LLM runs its embedding and layers ``1..k`` on the UE and sends the hidden states ``H_k`` over a
noisy uplink; the edge runs layers ``k+1..L``. Each step the agent sees an estimate of the link's mean quality and
picks the split ``k``; the step's transmission (within-step fading, noise, losses) is scored by a quality backend
(a measured profile of SmolLM2-135M, or the live model), and the reward trades answer quality against the UE's load,
privacy (how well an eavesdropper inverts ``H_k``) and the cost of moving layers. Between steps the channel moves on
(`llmsplit_env.dynamics`). Data flow of a step: channel → observation → action → quality backend → reward
components → reward.

## Action Space

``Discrete(n)``.

* ``action_mode="absolute"`` (default): action ``a`` selects split ``k = k_min + a``, ``n = k_max − k_min + 1``
  (default ``k = a + 1``, ``n = L``). Splits excluded by config (``splits.excluded``, ``splits.ue_max_layers``) are
  ``False`` in `action_masks()`; taking one raises ``ValueError``.
* ``action_mode="relative"``: the paper's layout of ``2·max_move + 1`` moves: 0 stay; ``2i−1`` = −i; ``2i`` = +i
  (``i = 1..max_move``; default 9 actions). A move past an end, or onto an excluded split, is cut back to the largest
  legal move in its direction (the authors' rule), so every relative action is valid (masks all ``True``).

## Observation Space

``Box(float32)`` with finite bounds; values are clipped to them. Base dimensions:

| idx | name          | SNR schemes (analog, digital)        | erasure scheme                      |
|-----|---------------|--------------------------------------|-------------------------------------|
| 0   | `level`       | estimated mean SNR, dB, [−20, 50]    | estimated ρ, [0, 1]                  |
| 1   | `trend`       | EWMA of its change per step, [−10, 10] dB | same, [−0.1, 0.1]              |
| 2   | `packet_loss` | realised lost fraction of the last transmission, [0, 1] (0 after reset and at k = L) |
| 3   | `prev_split`  | previous split / L, [0, 1] (the split a zero move keeps)                   |

Extras (``observation.extras``, appended in the order given):

| name           | meaning                                                               | bounds       |
|----------------|-----------------------------------------------------------------------|--------------|
| `distance`     | UE–site distance / cell radius (mobility channel only)                | [0, 1]       |
| `speed`        | UE speed, m/s (mobility channel only)                                 | [0, 3·v̄]     |
| `time`         | steps taken / max_episode_steps                                        | [0, 1]       |
| `log_ppl0`     | log of the paper reward's PPL₀ (makes the paper reward Markov)         | [0, 25]      |
| `last_quality` | last step's quality component                                          | [0, 1]       |

The estimate carries the CSI error (``channel.csi_error``, dB; 1 dB by default); the trend is
``τ ← β τ + (1−β)(ŝ_t − ŝ_{t−1})`` with ``β = observation.trend_smoothing``. ``packet_loss`` is what the last
transmission actually lost (packets = token vectors for analog/digital, elements for erasure), not its mean: the live
backend reports its transmission's count; the profile backend, which knows only the mean fraction ``p`` at the true
level, draws ``Binomial(n, p)/n`` (rounded normal approximation, `llmsplit_env.quality.backends.realised_loss`) over
the measured transmission's ``n`` units (the profile's ``num_tokens`` packets, 2048; erasure: ``num_tokens · d``
elements) from the env's stream. It is informative about the level (as a real receiver's loss count is), but it is
not the level itself. (``info["packet_loss"]`` is the same realised value.)

## Rewards

``reward = Σ_c w_c · r_c`` over the components in ``info["rewards"]`` (unweighted values; weights in
``config["reward"]["weights"]`` and `reward_weights`):

| component    | value                                                             | default weight |
|--------------|-------------------------------------------------------------------|----------------|
| `quality`    | PPL_clean / PPL ∈ (0, 1] of this step's transmission              | 1.0            |
| `ue_compute` | 1 − k/L (the layers the UE does not run)                          | 0.6            |
| `privacy`    | 1 − leakage(k) (leakage: inversion-probe accuracy on H_k)         | 0.1            |
| `switching`  | −|k − k_prev| / L (weight reloading, state migration)             | 0.1            |
| `latency`    | −(UE compute + min(airtime, max_airtime_s) + edge) / (L·ue_layer_s) | 0.0          |
| `ppl_gain`   | (PPL₀ − PPL) / PPL₀ (paper; reported when a paper weight ≠ 0)     | 0.0            |
| `paper_load` | (k_max − k) / k_max (paper's load term; reported likewise)        | 0.0            |

At ``k = L`` nothing is transmitted: quality 1, leakage 0, no airtime. Latency: UE ``k·ue_layer_s``, edge
``(L−k)·edge_layer_s``, airtime ``payload_bits(num_tokens, d, bits) / (B·log2(1 + γ̄))`` at the true mean SNR
(erasure: at ``latency.nominal_snr_db``), capped at ``latency.max_airtime_s`` (default ``None``: 4 × the UE's full
compute time ``L·ue_layer_s``, reached below about −10 dB with the defaults; without the cap the component reaches
about −200 at the cell edge). Every scheme is charged the payload of ``H_k`` quantised to ``latency.bits`` bits per
element plus a 32-bit scale per token (``payload_bits``); for the analog scheme, which sends unquantised symbols, this
is the digital-equivalent payload of the same information. So the component lies in
``[−(max_k compute(k) + max_airtime_s)/(L·ue_layer_s), 0)``: within ``[−5, −0.13]`` with the default latency
section.

Why these weights (``benchmarks/calibrate_rewards.py``, figures in ``benchmarks/RESULTS.md``): quality is the
service; running all L layers on the phone costs 0.6 of a perfect answer, so offloading pays while the link keeps the
quality above about 0.45 (roughly 8 dB for k = 1); privacy gets 0.1 because the measured inversion probe recovers
44–99 % of the tokens at every k < L, so partial splits buy little and only k = L protects (at 0.2, keeping
everything local already earns 91 % of the oracle's return; at ue_compute 0.4, privacy 0.3 it earns 100 %); moving
all layers at once costs 0.1. On the default channel the oracle then alternates between k = 1 and k = L and the best
fixed split earns about 88 % of its return. The measured profile does not allow more: on SmolLM2-135M, k = 1 is both
the cheapest split and (within a few %) the most robust to noise, so with these linear components the per-step
optimum is k = 1 or k = L; intermediate splits appear only through large switching costs or a privacy weight close
to the compute weight, and then a fixed split earns at least 95 % of the oracle's return (the scan in RESULTS.md).

## Starting State

The channel's reset (`llmsplit_env.dynamics`; default: a UE uniform in a 200 m cell); the previous split is drawn
uniformly from ``initial_split`` (default ``"random"``: all allowed splits). ``reset(options={"initial_split": k})``
fixes it for one episode.

## Episode End

No termination. Truncation after ``max_episode_steps`` steps (50 by default; the env truncates itself, the
registrations add no `TimeLimit`).

## Info

``rewards`` (components), ``ppl``, ``split``, ``snr_db`` (or ``rho`` for the erasure scheme: the true level the
step's transmission saw), ``packet_loss``, ``quality_evals`` (real LLM evaluations this env has run since it was
last seeded, i.e. over the whole run when seeded once; counting from the last ``reset(seed=...)`` keeps infos
identical for identical seeds, which Gymnasium's checker requires; the lifetime total is `total_quality_evals`;
always 0 for the profile backend); ``ppl0`` when the paper terms are in use. `reset` returns the true level, the
initial split and ``quality_evals``.

## Arguments

``LLMSplitEnv(config=None, render_mode=None, preset=None)``; ``config`` is deep-merged into
``default_config(preset)``; it may also name ``"preset"`` itself (RLlib passes only the dict). Unknown keys, at any
depth, and bad values raise ``ValueError`` naming the key and what is allowed. Top-level keys (see
`default_config()` for every nested default):

| key                 | default                 | meaning                                                      |
|---------------------|-------------------------|--------------------------------------------------------------|
| `backend`           | `"profile"`             | `"profile"` (shipped measurements) or `"llm"` (live model)   |
| `scheme`            | `"analog"`              | `"analog"`, `"digital"` or `"erasure"`                       |
| `profile`           | `None`                  | name or path; `None`: `smollm2-135m-<scheme>`                |
| `sample_quality`    | `True`                  | profile: sample log-PPL ~ N(mean, std); `False`: the mean    |
| `llm`               | SmolLM2, wiki, 2048 tok | live model: `model`, `text`, `num_tokens`, `window`, ...      |
|                     |                         | and `profile_match` (see Presets)                            |
| `splits`            | 1..L, none excluded     | `min`, `max`, `excluded`, `ue_max_layers`                    |
| `initial_split`     | `"random"`              | `"random"`, a split, or a list to draw from                  |
| `action_mode`       | `"absolute"`            | or `"relative"` (with `max_move`, default 4)                 |
| `max_episode_steps` | 50                      | truncation                                                   |
| `channel`           | mobility, 3GPP UMi      | `model`, `csi_error`, `nakagami_m`, a section per model       |
| `observation`       | no extras               | `extras`, `trend_smoothing` (0.5)                            |
| `reward`            | see Rewards             | `weights` of the components                                  |
| `latency`           | 4 / 0.4 ms per layer    | UE and edge time per layer, bandwidth, tokens, bits, `max_airtime_s` |

## Presets

* ``default`` (`LLMSplit-v0`): profile backend on SmolLM2-135M's analog profile, mobility channel, 50 steps.
* ``llm`` (`LLMSplit-LLM-v0`): the same with the live model (``llm.*`` picks it). ``expected_rewards`` and the
  leakage come from a profile of the same measurement: with ``llm.profile_match="strict"`` (default) its model,
  num_layers, scheme, scheme_params (m, bits, threshold_db), text, num_tokens and window must equal the live
  backend's; ``"model"`` checks only model, num_layers, scheme and scheme_params, and uses a profile measured on other
  text as a prior. A configured ``profile`` that does not match raises ``ValueError`` naming each field; the automatic
  default ``smollm2-135m-<scheme>`` is then just not used, and ``expected_rewards`` raises naming the fields.
* ``paper`` (`LLMSplit-Paper-v0`): the authors' surrogate env on SmolLM2's erasure profile: ρ ~ U(0.01, 0.3) at
  reset with their action-coupled drift (`PaperErasureDrift`), splits 1..10, initial split ~ U{1..9}, 5-step
  episodes, reward ``10·(PPL₀ − PPL)/PPL₀ + (10 − p)/10`` (weights 10 and 1 on ``ppl_gain`` and ``paper_load``),
  deterministic quality (their surrogate predicts a point value; ``sample_quality`` False), absolute actions
  (``action_mode="relative"`` gives their 9 moves). PPL₀ is the median perplexity at the episode's first state,
  so the reward depends on where the episode started: it is not Markov in (ρ, p). The preset observes ``log PPL₀``
  (extra ``log_ppl0``) to restore the Markov property and reports ``ppl0`` in ``info``; set
  ``observation.extras=[]`` for the authors' bare (ρ, p) state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from llmsplit_env.dynamics import (
    NOISE_COLUMNS,
    ChannelDynamics,
    GaussMarkovMobility,
    GudmundsonShadowing,
    LogDistancePathLoss,
    MobilityChannel,
    PaperErasureDrift,
    StaticChannel,
    uniform_from_normals,
)
from llmsplit_env.quality.backends import LLMQuality, ProfileQuality, QualityBackend, realised_loss

COMPONENTS = ("quality", "ue_compute", "privacy", "switching", "latency", "ppl_gain", "paper_load")
BASE_COMPONENTS = COMPONENTS[:5]  # always reported; the paper's two only when weighted
OBS_EXTRAS = ("distance", "speed", "time", "log_ppl0", "last_quality")
PRESETS = ("default", "llm", "paper")
NORMAL_CHUNK = 1024  # standard normals drawn per generator call (see `LLMSplitEnv._normals`); the vector env's too

_DEFAULT_CONFIG: dict[str, Any] = {
    "backend": "profile",
    "scheme": "analog",
    "profile": None,
    "sample_quality": True,
    "llm": {
        "model": "smollm2-135m",
        "text": "wiki",
        "num_tokens": 2048,
        "window": 512,
        "dtype": "auto",
        "device": "auto",
        "cached": True,
        "leakage": "auto",
        "probe_fit_tokens": 4096,
        "probe_test_tokens": 1024,
        "profile_match": "strict",
    },
    "splits": {"min": 1, "max": None, "excluded": [], "ue_max_layers": None},
    "initial_split": "random",
    "action_mode": "absolute",
    "max_move": 4,
    "max_episode_steps": 50,
    "channel": {
        "model": "mobility",
        "csi_error": 1.0,
        "nakagami_m": 2.0,
        "mobility": {
            "cell_radius": 200.0,
            "mean_speed": 3.0,
            "speed_std": 1.0,
            "heading_std": 0.5,
            "memory": 0.9,
            "dt": 1.0,
        },
        "path_loss": {"snr_ref_db": 50.0, "ref_distance": 10.0, "exponent": 3.53},
        "shadowing": {"sigma_db": 7.82, "decorrelation_m": 13.0},
        "static": {"low": None, "high": None},
        "paper_drift": {"rho_low": 0.01, "rho_high": 0.3, "rate": 0.0005},
    },
    "observation": {"extras": [], "trend_smoothing": 0.5},
    "reward": {
        "weights": {
            "quality": 1.0,
            "ue_compute": 0.6,
            "privacy": 0.1,
            "switching": 0.1,
            "latency": 0.0,
            "ppl_gain": 0.0,
            "paper_load": 0.0,
        }
    },
    "latency": {
        "ue_layer_s": 0.004,
        "edge_layer_s": 0.0004,
        "bandwidth_hz": 10e6,
        "num_tokens": 128,
        "bits": 8,
        "nominal_snr_db": 10.0,
        "max_airtime_s": None,
    },
}

_PRESET_OVERRIDES: dict[str, dict] = {
    "default": {},
    "llm": {"backend": "llm"},
    # The authors' surrogate env (see reference/paper.md): erasure ρ ~ U(0.01, 0.3) with the action-coupled drift,
    # splits 1..10, 5-step episodes, reward 10·(PPL₀ − PPL)/PPL₀ + (10 − p)/10, reset p ~ U{1..9}. Their surrogate is
    # deterministic, so is this preset (sample_quality False). log PPL₀ is observed so the reward is Markov.
    "paper": {
        "scheme": "erasure",
        "sample_quality": False,
        "splits": {"max": 10},
        "initial_split": list(range(1, 10)),
        "max_episode_steps": 5,
        "channel": {"model": "paper_drift", "csi_error": 0.0},
        "observation": {"extras": ["log_ppl0"]},
        "reward": {
            "weights": {
                "quality": 0.0,
                "ue_compute": 0.0,
                "privacy": 0.0,
                "switching": 0.0,
                "latency": 0.0,
                "ppl_gain": 10.0,
                "paper_load": 1.0,
            }
        },
    },
}


def _deep_merge(base: dict, user: Mapping, path: str = "") -> dict:
    """``base`` updated with ``user`` recursively; unknown keys (at any depth) raise naming the allowed ones."""
    if not isinstance(user, Mapping):
        raise ValueError(f"config{' section ' + repr(path) if path else ''} must be a dict, got {type(user).__name__}")
    out = dict(base)
    for key, value in user.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in base:
            raise ValueError(f"unknown config key {full!r}; allowed: {', '.join(sorted(map(str, base)))}")
        if isinstance(base[key], dict):
            out[key] = _deep_merge(base[key], value, full)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _num(cfg: dict, path: str, lo: float, hi: float, *, allow_none: bool = False, integer: bool = False):
    """Fetch ``path`` (dotted) from ``cfg`` and check it is a finite number in [lo, hi]."""
    value = cfg
    for part in path.split("."):
        value = value[part]
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not lo <= value <= hi:
        none = " or None" if allow_none else ""
        raise ValueError(f"config {path!r} must be {kind} in [{lo}, {hi}]{none}, got {value!r}")
    return int(value) if integer else float(value)


def _choice(cfg: dict, path: str, allowed: tuple) -> Any:
    value = cfg
    for part in path.split("."):
        value = value[part]
    if value not in allowed:
        raise ValueError(f"config {path!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


class LLMSplitEnv(gym.Env):
    __doc__ = __doc__

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    # --- configuration --------------------------------------------------------------------------------------------

    @classmethod
    def default_config(cls, preset: str = "default") -> dict:
        """The full default configuration of ``preset`` (a fresh copy; edit freely)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        return _deep_merge(copy.deepcopy(_DEFAULT_CONFIG), _PRESET_OVERRIDES[preset])

    @classmethod
    def resolve_config(cls, config: Mapping | None = None, preset: str | None = None) -> dict:
        """``default_config(preset)`` deep-merged with ``config``, validated (``ValueError`` names what is wrong)."""
        user = dict(config or {})
        cfg_preset = user.pop("preset", None)
        if preset is not None and cfg_preset is not None and preset != cfg_preset:
            raise ValueError(f"preset given twice and different: argument {preset!r}, config {cfg_preset!r}")
        name = preset or cfg_preset or "default"
        cfg = _deep_merge(cls.default_config(name), user)
        cfg["preset"] = name
        _validate(cfg)
        return cfg

    def __init__(self, config: Mapping | None = None, render_mode: str | None = None, preset: str | None = None):
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = cfg = self.resolve_config(config, preset)
        self.quality_backend: QualityBackend = make_backend(cfg)
        qb = self.quality_backend
        self.num_layers = L = qb.num_layers
        self.dynamics: ChannelDynamics = make_dynamics(cfg, qb)
        self._level_is_snr = qb.level_name == "snr_db"

        # Splits: the allowed range and its holes.
        sp = cfg["splits"]
        k_min = sp["min"]
        k_max = L if sp["max"] is None else sp["max"]
        if sp["ue_max_layers"] is not None:
            k_max = min(k_max, sp["ue_max_layers"])
        if not 1 <= k_min <= k_max <= L:
            raise ValueError(
                f"config splits: need 1 <= min <= max <= L = {L} (after ue_max_layers), got min={k_min}, max={k_max}"
            )
        bad = [k for k in sp["excluded"] if not 1 <= k <= L]
        if bad:
            raise ValueError(f"config 'splits.excluded' must name splits in [1, {L}], got {bad}")
        if isinstance(qb, ProfileQuality) and k_min < qb.k_first:
            raise ValueError(f"config 'splits.min' = {k_min} is below the profile's first split {qb.k_first}")
        self.k_min, self.k_max = k_min, k_max
        self.splits = list(range(k_min, k_max + 1))
        self.allowed_splits = [k for k in self.splits if k not in set(sp["excluded"])]
        if not self.allowed_splits:
            raise ValueError(f"config splits: every split in [{k_min}, {k_max}] is excluded")
        self._allowed = [False] * (L + 2)
        for k in self.allowed_splits:
            self._allowed[k] = True
        init = cfg["initial_split"]
        if init == "random":
            self._initial_splits = list(self.allowed_splits)
        else:
            init = [init] if isinstance(init, int) else list(init)
            bad = [k for k in init if not (k_min <= k <= k_max and self._allowed[k])]
            if bad:
                raise ValueError(f"config 'initial_split' names splits that are not allowed: {bad}")
            self._initial_splits = init

        # Actions.
        self._relative = cfg["action_mode"] == "relative"
        if self._relative:
            mm = cfg["max_move"]
            self._n = 2 * mm + 1
            self._moves = [0] + [m for i in range(1, mm + 1) for m in (-i, i)]
            # target[k_prev][a]: the move cut back to the largest legal one in its direction
            self._targets: list[list[int] | None] = [None] * (L + 1)
            for kp in self.allowed_splits:
                row = []
                for m in self._moves:
                    step = 1 if m > 0 else -1
                    t = kp
                    for j in range(abs(m), 0, -1):
                        k = kp + step * j
                        if k_min <= k <= k_max and self._allowed[k]:
                            t = k
                            break
                    row.append(t)
                self._targets[kp] = row
            self._masks = np.ones(self._n, dtype=bool)
        else:
            self._n = k_max - k_min + 1
            self._masks = np.array([self._allowed[k] for k in self.splits], dtype=bool)
        self.action_space = spaces.Discrete(self._n)

        # Observation layout and bounds.
        self._extras = list(cfg["observation"]["extras"])
        if any(e in ("distance", "speed") for e in self._extras) and not isinstance(self.dynamics, MobilityChannel):
            raise ValueError("observation extras 'distance' and 'speed' need channel.model 'mobility'")
        if self._level_is_snr:
            low, high = [-20.0, -10.0, 0.0, 0.0], [50.0, 10.0, 1.0, 1.0]
        else:
            low, high = [0.0, -0.1, 0.0, 0.0], [1.0, 0.1, 1.0, 1.0]
        ext_bounds = {
            "distance": (0.0, 1.0),
            "speed": (0.0, 3.0 * cfg["channel"]["mobility"]["mean_speed"]),
            "time": (0.0, 1.0),
            "log_ppl0": (0.0, 25.0),
            "last_quality": (0.0, 1.0),
        }
        for e in self._extras:
            low.append(ext_bounds[e][0])
            high.append(ext_bounds[e][1])
        self._obs_low, self._obs_high = low, high
        self.observation_space = spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)
        self.observation_names = ["level", "trend", "packet_loss", "prev_split", *self._extras]

        # Reward: weights, and per-split constants (a step only indexes lists).
        self.reward_weights = dict(cfg["reward"]["weights"])
        w = self.reward_weights
        self._paper_terms = w["ppl_gain"] != 0.0 or w["paper_load"] != 0.0
        self._need_ppl0 = self._paper_terms or "log_ppl0" in self._extras
        self._reported = BASE_COMPONENTS + (("ppl_gain", "paper_load") if self._paper_terms else ())
        self._w = [w[c] for c in COMPONENTS]
        self._ue_compute = [1.0 - k / L for k in range(L + 1)]
        self._privacy = [float("nan")] + [1.0 - qb.leakage[k - 1] for k in range(1, L + 1)]
        self._paper_load = [(k_max - k) / k_max for k in range(L + 1)]
        lat = cfg["latency"]
        self._lat_ref = L * lat["ue_layer_s"]
        self._compute_s = [k * lat["ue_layer_s"] + (L - k) * lat["edge_layer_s"] for k in range(L + 1)]
        hidden = qb.hidden_size
        if hidden <= 0:
            raise ValueError(
                "the quality backend does not know the model's hidden size (profile metadata 'hidden_size')"
            )
        self.payload_bits = payload_bits(lat["num_tokens"], hidden, lat["bits"])
        self._bandwidth = lat["bandwidth_hz"]
        self._nominal_snr_db = lat["nominal_snr_db"]
        self.max_airtime_s = 4.0 * self._lat_ref if lat["max_airtime_s"] is None else lat["max_airtime_s"]
        self._inv_L = 1.0 / L
        self._beta = cfg["observation"]["trend_smoothing"]
        self.max_episode_steps = cfg["max_episode_steps"]

        # Episode state (set by reset).
        self._t = 0
        self.prev_split = self._initial_splits[0]
        self._trend = 0.0
        self._last_loss = 0.0
        self._last_quality = 1.0
        self._ppl0 = float("nan")
        self._log_ppl0 = 0.0
        self._zbuf: list[float] = []
        self._zp = NORMAL_CHUNK
        self._evals_at_seed = 0
        self._history: list[tuple[float, float, int, float]] = []
        self._last_info: dict = {}

    # --- properties -----------------------------------------------------------------------------------------------

    @property
    def level(self) -> float:
        """The link's true mean level now (SNR dB, or ρ)."""
        return self.dynamics.level

    @property
    def level_name(self) -> str:
        return self.quality_backend.level_name

    @property
    def quality_evals(self) -> int:
        """Real LLM evaluations since the env was last seeded (what ``info["quality_evals"]`` reports)."""
        return self.quality_backend.evaluations - self._evals_at_seed

    @property
    def total_quality_evals(self) -> int:
        """Real LLM evaluations over the env's lifetime."""
        return self.quality_backend.evaluations

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode."""
        return self._t

    @property
    def ppl0(self) -> float:
        """The paper reward's PPL₀ of this episode (NaN unless the paper terms or ``log_ppl0`` are in use)."""
        return self._ppl0

    def action_to_split(self, action: int) -> int:
        """The split ``action`` selects now (relative mode: from the current previous split)."""
        a = int(action)
        if not 0 <= a < self._n:
            raise ValueError(self._range_error(action))
        return self._targets[self.prev_split][a] if self._relative else self.k_min + a

    def action_masks(self) -> np.ndarray:
        """Bool ``[n]``: ``True`` for actions that select an allowed split (sb3-contrib's MaskablePPO reads this)."""
        return self._masks.copy()

    # --- gym API --------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        forced = options.pop("initial_split", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; allowed: initial_split")
        rng = self.np_random
        if seed is not None:  # a new generator: forget the normals drawn from the old one
            self._zbuf, self._zp = [], NORMAL_CHUNK
            self._evals_at_seed = self.quality_backend.evaluations
        # normals for the channel's reset, then a pair for the initial split (see `_normals`)
        nd = self.dynamics.reset_normals
        head = self._normals(nd + 2)
        self.dynamics.reset(head[:nd])
        n_init = len(self._initial_splits)
        k0 = self._initial_splits[min(int(uniform_from_normals(head[nd], head[nd + 1]) * n_init), n_init - 1)]
        if forced is not None:
            if isinstance(forced, bool) or not isinstance(forced, (int, np.integer)) or not self._is_allowed(forced):
                raise ValueError(f"reset option initial_split must be an allowed split, got {forced!r}")
            k0 = int(forced)
        self.prev_split = k0
        self._t = 0
        self._trend = 0.0
        self._last_loss = 0.0
        self._last_quality = 1.0
        if self._need_ppl0:
            self._ppl0 = self.quality_backend.baseline_ppl(k0, self.dynamics.level, rng)
            self._log_ppl0 = math.log(self._ppl0)
        if self.render_mode is not None:
            self._history = [(self.dynamics.level, self.dynamics.estimate, k0, 0.0)]
        info = {self.level_name: self.dynamics.level, "split": k0, "quality_evals": self.quality_evals}
        if self._need_ppl0:
            info["ppl0"] = self._ppl0
        self._last_info = info
        return self._observation(), info

    def step(self, action):
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(self._range_error(action)) from None
        if not 0 <= a < self._n or a != action:
            raise ValueError(self._range_error(action))
        kp = self.prev_split
        if self._relative:
            k = self._targets[kp][a]
        else:
            k = self.k_min + a
            if not self._allowed[k]:
                raise ValueError(
                    f"action {a} selects split {k}, which the config excludes (splits.excluded="
                    f"{self.config['splits']['excluded']}, ue_max_layers={self.config['splits']['ue_max_layers']}); "
                    "check action_masks()"
                )
        move = k - kp
        dyn = self.dynamics
        dyn.on_action(move)
        level = dyn.level
        p = self._zp  # `_normals(NOISE_COLUMNS)`, inlined: this is the hot loop
        if p + NOISE_COLUMNS > NORMAL_CHUNK:
            self._zbuf = self.np_random.standard_normal(NORMAL_CHUNK).tolist()
            p = 0
        self._zp = p + NOISE_COLUMNS
        z = self._zbuf[p : p + NOISE_COLUMNS]

        # quality backend -> reward components -> reward
        qb = self.quality_backend
        log_ppl, loss = qb.sample(k, level, z[4], self.np_random)
        if qb.loss_units:  # the profile's mean lost fraction -> this transmission's
            loss = realised_loss(loss, z[5], qb.loss_units)
        ppl = math.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        L = self.num_layers
        if k < L:
            snr = level if self._level_is_snr else self._nominal_snr_db
            airtime = self.payload_bits / (self._bandwidth * math.log2(1.0 + 10.0 ** (snr / 10.0)))
            if airtime > self.max_airtime_s:
                airtime = self.max_airtime_s
        else:
            airtime = 0.0
        latency = -(self._compute_s[k] + airtime) / self._lat_ref
        switching = -abs(move) * self._inv_L
        w = self._w
        rewards = {
            "quality": quality,
            "ue_compute": self._ue_compute[k],
            "privacy": self._privacy[k],
            "switching": switching,
            "latency": latency,
        }
        reward = (
            w[0] * quality + w[1] * self._ue_compute[k] + w[2] * self._privacy[k] + w[3] * switching + w[4] * latency
        )
        if self._paper_terms:
            gain = (self._ppl0 - ppl) / self._ppl0
            rewards["ppl_gain"] = gain
            rewards["paper_load"] = self._paper_load[k]
            reward += w[5] * gain + w[6] * self._paper_load[k]
        info = {
            "rewards": rewards,
            "ppl": ppl,
            "split": k,
            self.level_name: level,
            "packet_loss": loss,
            "quality_evals": qb.evaluations - self._evals_at_seed,
        }
        if self._need_ppl0:
            info["ppl0"] = self._ppl0

        # the channel moves on; the next observation
        est_prev = dyn.estimate
        dyn.advance(z)
        self._trend = self._beta * self._trend + (1.0 - self._beta) * (dyn.estimate - est_prev)
        self.prev_split = k
        self._last_loss = loss
        self._last_quality = quality
        self._t += 1
        if self.render_mode is not None:
            self._history.append((dyn.level, dyn.estimate, k, reward))
        self._last_info = info
        return self._observation(), reward, False, self._t >= self.max_episode_steps, info

    def _normals(self, n: int) -> list[float]:
        """The next ``n`` standard normals of this env's stream.

        All randomness of the profile backend is one stream of normals from ``self.np_random``, drawn
        `NORMAL_CHUNK` at a time; a request that does not fit in what is left of a chunk discards the rest and draws
        the next chunk. A reset takes ``reset_normals + 2``, a step `NOISE_COLUMNS`. The vector env keeps one such
        stream per sub-env with the same rule, which is what makes its trajectories equal to single envs' and lets it
        call each sub-env's generator only once per chunk (several episodes).
        """
        p = self._zp
        if p + n > NORMAL_CHUNK:
            self._zbuf = self.np_random.standard_normal(NORMAL_CHUNK).tolist()
            p = 0
        self._zp = p + n
        return self._zbuf[p : p + n]

    def _observation(self) -> np.ndarray:
        lo, hi = self._obs_low, self._obs_high
        dyn = self.dynamics
        vals = [dyn.estimate, self._trend, self._last_loss, self.prev_split * self._inv_L]
        for e in self._extras:
            if e == "distance":
                vals.append(dyn.distance / dyn.mobility.cell_radius)
            elif e == "speed":
                vals.append(dyn.speed)
            elif e == "time":
                vals.append(self._t / self.max_episode_steps)
            elif e == "log_ppl0":
                vals.append(self._log_ppl0)
            else:
                vals.append(self._last_quality)
        return np.array([min(max(v, lo[i]), hi[i]) for i, v in enumerate(vals)], dtype=np.float32)

    # --- expectations (oracle) ------------------------------------------------------------------------------------

    def expected_rewards(self) -> np.ndarray:
        """Expected reward of every action at the current true state (``-inf`` for masked actions).

        Exact for the profile backend (same interpolation and floored lognormal as the sampling; see
        `llmsplit_env.quality.backends`). The live backend takes the expectation from its profile, which must match
        it (``llm.profile_match``: ``"strict"``, the same measurement; ``"model"``, the same model and scheme, the
        profile then being a prior measured on other text), else raises ``ValueError`` naming the differing fields.
        """
        qb = self.quality_backend
        w = self.reward_weights
        L = self.num_layers
        out = np.full(self._n, -np.inf)
        kp = self.prev_split
        for a in range(self._n):
            k = self._targets[kp][a] if self._relative else self.k_min + a
            if not self._allowed[k]:
                continue
            move = k - kp
            level = self.dynamics.level_after(move)
            e_quality, e_ppl = qb.expectations(k, level)
            if k < L:
                snr = level if self._level_is_snr else self._nominal_snr_db
                airtime = self.payload_bits / (self._bandwidth * math.log2(1.0 + 10.0 ** (snr / 10.0)))
                airtime = min(airtime, self.max_airtime_s)
            else:
                airtime = 0.0
            r = (
                w["quality"] * e_quality
                + w["ue_compute"] * self._ue_compute[k]
                + w["privacy"] * self._privacy[k]
                - w["switching"] * abs(move) * self._inv_L
                - w["latency"] * (self._compute_s[k] + airtime) / self._lat_ref
            )
            if self._paper_terms:
                gain = (self._ppl0 - e_ppl) / self._ppl0
                r += w["ppl_gain"] * gain + w["paper_load"] * self._paper_load[k]
            out[a] = r
        return out

    # --- rendering ------------------------------------------------------------------------------------------------

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        if self.render_mode == "ansi":
            return self._render_ansi()
        return self._render_rgb()

    def _render_ansi(self) -> str:
        info = self._last_info
        unit = "dB" if self._level_is_snr else ""
        name = "SNR" if self._level_is_snr else "rho"
        line = (
            f"t={self._t:3d}/{self.max_episode_steps} {name}={self.dynamics.level:7.3f}{unit} "
            f"(est {self.dynamics.estimate:7.3f}) split={self.prev_split:2d}/{self.num_layers}"
        )
        if "ppl" in info:
            line += f" ppl={info['ppl']:9.2f} reward={self._history[-1][3]:7.3f}" + "".join(
                f" {c}={v:.3f}" for c, v in info["rewards"].items()
            )
        return line + "\n"

    def _render_rgb(self, height: int = 160, width: int = 240) -> np.ndarray:
        """Two panels over the episode: the true level (blue) and its estimate (grey) on top, the split below."""
        img = np.full((height, width, 3), 255, dtype=np.uint8)
        half = height // 2
        img[half - 1 : half + 1] = 200  # separator
        h = self._history
        T = max(self.max_episode_steps, 1)
        lo, hi = (self._obs_low[0], self._obs_high[0])
        xs = [min(int(i * (width - 1) / T), width - 1) for i in range(len(h))]

        def row(v: float, top: int, bottom: int, vlo: float, vhi: float) -> int:
            f = (min(max(v, vlo), vhi) - vlo) / (vhi - vlo)
            return round(bottom - f * (bottom - top))

        for i, (lvl, est, k, _r) in enumerate(h):
            x = xs[i]
            img[row(est, 2, half - 3, lo, hi), x] = (150, 150, 150)
            y = row(lvl, 2, half - 3, lo, hi)
            img[max(y - 1, 0) : y + 2, x] = (30, 90, 200)
            y = row(k, half + 2, height - 3, 1, self.num_layers)
            img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = (200, 60, 30)
        return img

    # --- helpers --------------------------------------------------------------------------------------------------

    def _is_allowed(self, k) -> bool:
        return self.k_min <= k <= self.k_max and self._allowed[int(k)]

    def _range_error(self, action) -> str:
        if self._relative:
            what = f"relative moves (0 stay; 2i-1 = -i; 2i = +i, i = 1..{self.config['max_move']})"
        else:
            what = f"splits {self.k_min}..{self.k_max} (split = action + {self.k_min})"
        return f"action {action!r} is invalid: this env takes integers 0..{self._n - 1} (Discrete({self._n})), {what}"


# --- factories ------------------------------------------------------------------------------------------------------


def payload_bits(num_tokens: int, hidden_size: int, bits: int = 8, scale_bits: int = 32) -> int:
    """Same formula as `llmsplit_env.channel.payload_bits` (which imports torch; the env must not)."""
    return num_tokens * (hidden_size * bits + scale_bits)


def make_backend(cfg: dict) -> QualityBackend:
    """The quality backend a (validated) config asks for."""
    scheme = cfg["scheme"]
    explicit = cfg["profile"] is not None
    profile = cfg["profile"] if explicit else f"smollm2-135m-{scheme}"
    if cfg["backend"] == "profile":
        qb = ProfileQuality(profile, sample=cfg["sample_quality"])
        if qb.scheme != scheme:
            raise ValueError(f"config 'profile' {profile!r} was measured with scheme {qb.scheme!r}, not {scheme!r}")
        m = qb.scheme_params.get("m")
        if m is not None and float(m) != cfg["channel"]["nakagami_m"]:
            raise ValueError(
                f"config 'channel.nakagami_m' = {cfg['channel']['nakagami_m']} differs from the profile's m = {m}; "
                "the profile backend can only replay the fading it was measured with (build a profile with --m, "
                "or use backend 'llm')"
            )
        return qb
    llm = cfg["llm"]
    params = {} if scheme == "erasure" else {"m": cfg["channel"]["nakagami_m"]}
    return LLMQuality(
        model=llm["model"],
        text=llm["text"],
        num_tokens=llm["num_tokens"],
        window=llm["window"],
        dtype=llm["dtype"],
        device=llm["device"],
        scheme=scheme,
        channel_params=params,
        profile=profile,
        profile_explicit=explicit,
        profile_match=llm["profile_match"],
        leakage=llm["leakage"],
        probe_fit_tokens=llm["probe_fit_tokens"],
        probe_test_tokens=llm["probe_test_tokens"],
        cached=llm["cached"],
    )


def make_dynamics(cfg: dict, qb: QualityBackend) -> ChannelDynamics:
    """The channel dynamics a (validated) config asks for, checked against the backend's level."""
    ch = cfg["channel"]
    model = ch["model"]
    if model == "mobility":
        if qb.level_name != "snr_db":
            raise ValueError(
                "config 'channel.model' 'mobility' produces SNR; scheme 'erasure' needs 'paper_drift' or 'static'"
            )
        return MobilityChannel(
            GaussMarkovMobility(**ch["mobility"]),
            LogDistancePathLoss(**ch["path_loss"]),
            GudmundsonShadowing(**ch["shadowing"]),
            csi_error=ch["csi_error"],
            nakagami_m=ch["nakagami_m"],
        )
    if model == "paper_drift":
        if qb.level_name != "rho":
            raise ValueError("config 'channel.model' 'paper_drift' drifts the erasure ρ; it needs scheme 'erasure'")
        return PaperErasureDrift(**ch["paper_drift"], csi_error=ch["csi_error"])
    st = ch["static"]
    if isinstance(qb, ProfileQuality):
        grid = (qb.level_lo, qb.level_hi)
    else:
        grid = (0.0, 0.3) if qb.level_name == "rho" else (-5.0, 35.0)
    for key in ("low", "high"):
        v = st[key]
        if v is not None and isinstance(qb, ProfileQuality) and not grid[0] <= v <= grid[1]:
            raise ValueError(
                f"config 'channel.static.{key}' = {v} lies outside the profile's grid of {qb.level_name} "
                f"[{grid[0]}, {grid[1]}] ({qb.profile.source}); the profile backend cannot score levels it did "
                "not measure"
            )
    low = grid[0] if st["low"] is None else st["low"]
    high = grid[1] if st["high"] is None else st["high"]
    if low > high:
        raise ValueError(f"config 'channel.static': low ({low}) must not exceed high ({high})")
    return StaticChannel(qb.level_name, low, high, csi_error=ch["csi_error"], nakagami_m=ch["nakagami_m"])


def _validate(cfg: dict) -> None:
    """Check every value of a merged config (errors name the key and what is allowed)."""
    _choice(cfg, "preset", PRESETS)
    _choice(cfg, "backend", ("profile", "llm"))
    _choice(cfg, "scheme", ("analog", "digital", "erasure"))
    if cfg["profile"] is not None and not isinstance(cfg["profile"], str):
        raise ValueError(f"config 'profile' must be a profile name or path (str) or None, got {cfg['profile']!r}")
    _choice(cfg, "sample_quality", (True, False))
    llm = cfg["llm"]
    for key in ("model", "text", "dtype", "device"):
        if not isinstance(llm[key], str) and not hasattr(llm[key], "__fspath__"):
            raise ValueError(f"config 'llm.{key}' must be a string, got {llm[key]!r}")
    _num(cfg, "llm.num_tokens", 2, 10**7, integer=True)
    _num(cfg, "llm.window", 2, 10**6, integer=True)
    _choice(cfg, "llm.cached", (True, False))
    _choice(cfg, "llm.leakage", ("auto", "profile", "probe"))
    _choice(cfg, "llm.profile_match", ("strict", "model"))
    _num(cfg, "llm.probe_fit_tokens", 1, 10**8, integer=True)
    _num(cfg, "llm.probe_test_tokens", 1, 10**8, integer=True)
    _num(cfg, "splits.min", 1, 10**4, integer=True)
    _num(cfg, "splits.max", 1, 10**4, integer=True, allow_none=True)
    _num(cfg, "splits.ue_max_layers", 1, 10**4, integer=True, allow_none=True)
    ex = cfg["splits"]["excluded"]
    if not isinstance(ex, (list, tuple)) or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) for k in ex
    ):
        raise ValueError(f"config 'splits.excluded' must be a list of integer splits, got {ex!r}")
    init = cfg["initial_split"]
    if not (
        init == "random"
        or (isinstance(init, (int, np.integer)) and not isinstance(init, bool))
        or (
            isinstance(init, (list, tuple))
            and init
            and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in init)
        )
    ):
        raise ValueError(f"config 'initial_split' must be 'random', an integer split or a list of them, got {init!r}")
    _choice(cfg, "action_mode", ("absolute", "relative"))
    _num(cfg, "max_move", 1, 64, integer=True)
    _num(cfg, "max_episode_steps", 1, 10**9, integer=True)
    ch = cfg["channel"]
    _choice(cfg, "channel.model", ("mobility", "static", "paper_drift"))
    rho_level = cfg["scheme"] == "erasure"
    if rho_level and ch["model"] == "mobility":
        raise ValueError(
            "config 'channel.model' 'mobility' produces SNR; scheme 'erasure' needs 'paper_drift' or 'static'"
        )
    if not rho_level and ch["model"] == "paper_drift":
        raise ValueError(f"config 'channel.model' 'paper_drift' drifts the erasure ρ; scheme {cfg['scheme']!r} has SNR")
    _num(cfg, "channel.csi_error", 0.0, 0.1 if rho_level else 10.0)
    _num(cfg, "channel.nakagami_m", 0.5, 1e4)
    _num(cfg, "channel.mobility.cell_radius", 1.0, 1e5)
    _num(cfg, "channel.mobility.mean_speed", 0.0, 100.0)
    _num(cfg, "channel.mobility.speed_std", 0.0, 100.0)
    _num(cfg, "channel.mobility.heading_std", 0.0, 10.0)
    _num(cfg, "channel.mobility.memory", 0.0, 1.0)
    _num(cfg, "channel.mobility.dt", 1e-6, 1e4)
    _num(cfg, "channel.path_loss.snr_ref_db", -100.0, 200.0)
    _num(cfg, "channel.path_loss.ref_distance", 1e-3, 1e5)
    _num(cfg, "channel.path_loss.exponent", 1.0, 8.0)
    _num(cfg, "channel.shadowing.sigma_db", 0.0, 30.0)
    _num(cfg, "channel.shadowing.decorrelation_m", 1e-3, 1e6)
    lvl = (0.0, 1.0) if rho_level else (-50.0, 100.0)
    _num(cfg, "channel.static.low", *lvl, allow_none=True)
    _num(cfg, "channel.static.high", *lvl, allow_none=True)
    _num(cfg, "channel.paper_drift.rho_low", 0.0, 1.0)
    _num(cfg, "channel.paper_drift.rho_high", 0.0, 1.0)
    _num(cfg, "channel.paper_drift.rate", 0.0, 0.2)
    pd = ch["paper_drift"]
    if pd["rho_low"] > pd["rho_high"]:
        raise ValueError(f"config 'channel.paper_drift': rho_low ({pd['rho_low']}) exceeds rho_high ({pd['rho_high']})")
    extras = cfg["observation"]["extras"]
    if (
        not isinstance(extras, (list, tuple))
        or any(e not in OBS_EXTRAS for e in extras)
        or len(set(extras)) != len(extras)
    ):
        raise ValueError(
            f"config 'observation.extras' must be a list of distinct names from {', '.join(OBS_EXTRAS)}, got {extras!r}"
        )
    _num(cfg, "observation.trend_smoothing", 0.0, 0.999)
    for c in COMPONENTS:
        _num(cfg, f"reward.weights.{c}", -1e6, 1e6)
    _num(cfg, "latency.ue_layer_s", 1e-9, 1e4)
    _num(cfg, "latency.edge_layer_s", 0.0, 1e4)
    _num(cfg, "latency.bandwidth_hz", 1.0, 1e13)
    _num(cfg, "latency.num_tokens", 1, 10**7, integer=True)
    _num(cfg, "latency.bits", 1, 64, integer=True)
    _num(cfg, "latency.nominal_snr_db", -50.0, 100.0)
    _num(cfg, "latency.max_airtime_s", 0.0, 1e6, allow_none=True)
