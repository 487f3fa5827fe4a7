"""The env's configuration: defaults, presets, deep merging and validation.

`default_config(preset)` is the whole default configuration of a preset (a fresh copy); `resolve_config(config,
preset)` deep-merges a user's dict into it (HighwayEnv style) and validates every value. Unknown keys, at any depth,
and bad values raise ``ValueError`` naming the key and what is allowed. The meaning of each key is documented in
`llmsplit_env.env.LLMSplitEnv`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from llmsplit_env.dynamics import AUTHORS_DRIFT_FACTORS
from llmsplit_env.util.mapping import deep_merge

COMPONENTS = ("quality", "ue_compute", "privacy", "switching", "latency", "ppl_gain", "paper_load")
OBS_EXTRAS = ("distance", "speed", "time", "log_ppl0", "last_quality")
PRESETS = ("default", "llm", "paper")
#: what the reward surrogate does not know (it predicts the paper's gain term from (ρ, p) only): the components that
#: need the perplexity or the leakage, and the observation extras that need the perplexity
SURROGATE_UNKNOWN_COMPONENTS = ("quality", "privacy")
SURROGATE_UNKNOWN_EXTRAS = ("log_ppl0", "last_quality")

_DEFAULT_CONFIG: dict[str, Any] = {
    "backend": "profile",
    "surrogate": None,
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
        "server": None,
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
        "paper_drift": {"rho_low": 0.01, "rho_high": 0.3, "rate": 0.0005, "factors": None, "float32": False},
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


# What ``surrogate=PATH`` sets beneath the user's own keys, on top of the ``paper`` preset: the authors' surrogate env
# exactly (backend "surrogate": reward 10·f(ρ', p') + (10 − p')/10 with f their MLP; their 9 relative moves; their
# drift factors, the +3 quirk included, on a float32 ρ; the bare state, no log PPL₀: the reward is Markov).
_SURROGATE_OVERRIDES: dict[str, Any] = {
    "backend": "surrogate",
    "action_mode": "relative",
    "max_move": 4,
    "channel": {"paper_drift": {"factors": list(AUTHORS_DRIFT_FACTORS), "float32": True}},
    "observation": {"extras": []},
}


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
    # `1 in (True, False)` holds in Python: a flag takes only the bools themselves
    if value not in allowed or (isinstance(value, bool) != any(isinstance(a, bool) for a in allowed)):
        raise ValueError(f"config {path!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def default_config(preset: str = "default") -> dict:
    """The full default configuration of ``preset`` (a fresh copy; edit freely)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return deep_merge(copy.deepcopy(_DEFAULT_CONFIG), _PRESET_OVERRIDES[preset], known_only=True)


def resolve_config(config: Mapping | None = None, preset: str | None = None) -> dict:
    """``default_config(preset)`` deep-merged with ``config``, validated (``ValueError`` names what is wrong).

    ``config`` may name ``"preset"`` itself (RLlib passes only the dict); naming a different one than ``preset`` is an
    error.
    """
    if config is not None and not isinstance(config, Mapping):  # a list of pairs, a string: not a config
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    user = dict(config or {})
    cfg_preset = user.pop("preset", None)
    if preset is not None and cfg_preset is not None and preset != cfg_preset:
        raise ValueError(f"preset given twice and different: argument {preset!r}, config {cfg_preset!r}")
    name = preset or cfg_preset or "default"
    base = default_config(name)
    if user.get("surrogate") is not None:  # the authors' surrogate env, beneath the user's own keys
        if name != "paper":
            raise ValueError(
                f"config 'surrogate' (the authors' reward surrogate) makes the paper's surrogate env: use preset "
                f"'paper' (LLMSplit-Paper-v0), got preset {name!r}"
            )
        base = deep_merge(base, _SURROGATE_OVERRIDES, known_only=True)
    cfg = deep_merge(base, user, known_only=True)
    cfg["preset"] = name
    if hasattr(cfg["surrogate"], "__fspath__"):
        cfg["surrogate"] = os.fspath(cfg["surrogate"])
    if "scheme" not in user and "scheme" not in _PRESET_OVERRIDES[name] and isinstance(cfg["profile"], str):
        # a profile knows its scheme: a config that names the profile and not the scheme means the profile's
        from llmsplit_env.quality.profile import load_profile

        cfg["scheme"] = load_profile(cfg["profile"]).scheme
    _validate(cfg)
    return cfg


def merge_config_kwargs(config: Mapping | None, kwargs: Mapping) -> dict:
    """``config`` with top-level config keys given as keyword arguments merged in, recursively (Gymnasium and RLlib
    pass an env's settings that way: ``gym.make(id, reward={...})``). A value set differently in both raises
    ``ValueError`` naming it; unknown keys are left for `resolve_config` to name."""
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    return deep_merge(dict(config or {}), kwargs, no_conflicts=True)


def _validate(cfg: dict) -> None:
    """Check every value of a merged config (errors name the key and what is allowed)."""
    _choice(cfg, "preset", PRESETS)
    _choice(cfg, "backend", ("profile", "llm", "surrogate"))
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
    server = llm["server"]
    if server is not None and (not isinstance(server, str) or not server.strip()):
        raise ValueError(
            f"config 'llm.server' must be None (load the model in this process) or the name of a running quality "
            f"server (a non-empty string; llmsplit_env.quality.client.start_quality_server), got {server!r}"
        )
    if server is not None and llm["cached"] is not True:
        raise ValueError(
            f"config 'llm.server' = {server!r} evaluates from cached prefixes; llm.cached False needs the model in "
            "this process (llm.server None)"
        )
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
    f = pd["factors"]
    if f is not None and not (
        isinstance(f, (list, tuple))
        and len(f) % 2 == 1
        and all(not isinstance(v, bool) and isinstance(v, (int, float, np.number)) for v in f)
        and all(math.isfinite(v) and 0.5 <= v <= 2.0 for v in f)
    ):
        raise ValueError(
            "config 'channel.paper_drift.factors' must be None (ρ × (1 − rate·move)) or a list of 2m + 1 factors in "
            f"[0.5, 2] for the moves -m..+m (e.g. the authors' {list(AUTHORS_DRIFT_FACTORS)}), got {f!r}"
        )
    _choice(cfg, "channel.paper_drift.float32", (True, False))
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
    if any(e in ("distance", "speed") for e in extras) and ch["model"] != "mobility":
        raise ValueError(
            f"config 'observation.extras' 'distance' and 'speed' need channel.model 'mobility', got {ch['model']!r}"
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
    _validate_surrogate(cfg)


def _validate_surrogate(cfg: dict) -> None:
    """``surrogate`` (the path of the authors' ``reward_predictor.pth``) and ``backend`` "surrogate" go together; the
    surrogate predicts the paper's gain at an erasure ρ and knows no perplexity, quality or leakage."""
    path, backend = cfg["surrogate"], cfg["backend"]
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise ValueError(
            f"config 'surrogate' must be None or the path (str or os.PathLike) of the authors' reward_predictor.pth, "
            f"got {path!r}"
        )
    if backend == "surrogate" and path is None:
        raise ValueError(
            "config 'backend' 'surrogate' needs config 'surrogate': the path of the authors' reward_predictor.pth "
            "(setting it alone selects the backend)"
        )
    if path is None:
        return
    if backend != "surrogate":
        raise ValueError(
            f"config 'surrogate' = {path!r} selects backend 'surrogate'; config 'backend' is {backend!r}: drop it"
        )
    if cfg["scheme"] != "erasure":
        raise ValueError(f"config 'scheme' must be 'erasure' with the surrogate backend (ρ), got {cfg['scheme']!r}")
    if cfg["profile"] is not None:
        raise ValueError(f"config 'profile' = {cfg['profile']!r} is not used by the surrogate backend: drop it")
    weights = cfg["reward"]["weights"]
    for c in SURROGATE_UNKNOWN_COMPONENTS:
        w = weights[c]
        if w != 0:
            raise ValueError(
                f"config 'reward.weights.{c}' = {w!r}: the surrogate backend predicts only the paper's gain from "
                f"(rho, p) and knows no {'perplexity' if c == 'quality' else 'leakage'}; set it to 0 (allowed nonzero "
                "weights: ue_compute, switching, latency, ppl_gain, paper_load)"
            )
    extras = cfg["observation"]["extras"]
    bad = [e for e in SURROGATE_UNKNOWN_EXTRAS if e in extras]
    if bad:
        raise ValueError(
            f"config 'observation.extras' {bad} need the perplexity, which the surrogate backend does not know; "
            f"allowed with it: {[e for e in OBS_EXTRAS if e not in SURROGATE_UNKNOWN_EXTRAS]}"
        )
