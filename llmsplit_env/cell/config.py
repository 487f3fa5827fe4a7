"""The edge cell's configuration: the single-UE config every UE shares, plus a ``cell`` section.

`default_cell_config()` is the whole default (a fresh copy); `resolve_cell_config(config)` deep-merges a user's dict
into it and validates every value (``ValueError`` naming the key and what is allowed), the single-UE part by
`llmsplit_env.config.resolve_config`. The cell adds two reward components to the single env's, ``deadline`` and
``energy`` (weights in ``reward.weights`` as the others').

Default physical figures (SmolLM2-135M; each is a config key):

* request: 128 tokens of 576 dims × 8 bits, plus a 32-bit scale per token: 594 kbit at any k < L
  (``latency.num_tokens``, ``latency.bits``);
* UE compute: 0.906 ms per layer per request, 27 ms for all 30 (``latency.ue_layer_s``): 3.54 M parameters per layer
  make 7.08 MFLOP per layer-token, at 1 TFLOP/s (a phone NPU, effective);
* edge compute: 18.1 µs per layer per request alone, 0.54 ms for all 30 (``latency.edge_layer_s``): the same FLOPs at
  50 TFLOP/s (an edge GPU of the L4 class, effective), 7.1 M layer-tokens per second;
* uplink: 10 MHz shared by the UEs that transmit in the step, in equal shares (``latency.bandwidth_hz``);
* deadline: 50 ms per request (``cell.deadline_s``): a lone UE meets it offloading at k = 1 above about 4 dB, or
  computing everything locally (27 ms);
* slot: 1 s, the channel's ``mobility.dt``; a request arrives with probability 0.75 per UE per slot
  (``cell.arrival_prob``);
* power: 3 W computing, 0.2 W (23 dBm) transmitting (``cell.compute_w``, ``cell.tx_w``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from llmsplit_env.config import resolve_config
from llmsplit_env.util.mapping import deep_merge

#: the reward components the cell adds to the single env's
CELL_COMPONENTS = ("deadline", "energy")

_FLOP_PER_LAYER_TOKEN = 2 * 3_538_944  # SmolLM2-135M: 2 × (attention 884,736 + MLP 2,654,208) parameters per layer
_TOKENS = 128

#: the single-UE keys the cell sets differently from `LLMSplit-v0`
_SINGLE_OVERRIDES: dict[str, Any] = {
    "latency": {
        "num_tokens": _TOKENS,
        "bits": 8,
        "ue_layer_s": _TOKENS * _FLOP_PER_LAYER_TOKEN / 1e12,
        "edge_layer_s": _TOKENS * _FLOP_PER_LAYER_TOKEN / 50e12,
        "bandwidth_hz": 10e6,
    },
}

_CELL_DEFAULTS: dict[str, Any] = {
    "n_ues": 8,
    "arrival_prob": 0.75,
    "deadline_s": 0.05,
    "slot_s": None,  # None: the channel's mobility.dt (1 s), or 1 s for the static and paper_drift channels
    "compute_w": 3.0,
    "tx_w": 0.2,
    "team": {"aggregate": "mean", "mix": 1.0},
}

_CELL_WEIGHTS: dict[str, float] = {"deadline": 1.0, "energy": 0.0}


def default_cell_config() -> dict:
    """The cell's whole default configuration (the single-UE keys of `LLMSplit-v0` with the cell's latency figures,
    the ``cell`` section, and the weights of the cell's components); a fresh copy."""
    base = resolve_config(_SINGLE_OVERRIDES)
    base.pop("preset")
    base["reward"]["weights"].update(_CELL_WEIGHTS)
    base["cell"] = copy.deepcopy(_CELL_DEFAULTS)
    return base


def resolve_cell_config(config: Mapping | None = None) -> dict:
    """`default_cell_config` deep-merged with ``config``, validated. Returns the full config: the single-UE keys as
    `resolve_config` resolves them, ``cell`` and the cell's weights in ``reward.weights``."""
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    user = copy.deepcopy(dict(config or {}))
    if user.get("preset", "default") != "default":
        raise ValueError(f"the cell is built on the default preset; config 'preset' = {user['preset']!r}")
    user.pop("preset", None)
    cell_user = user.pop("cell", {})
    if not isinstance(cell_user, Mapping):
        raise ValueError(f"config 'cell' must be a dict, got {cell_user!r}")
    weights = dict(_CELL_WEIGHTS)
    reward = user.get("reward")
    if isinstance(reward, Mapping) and isinstance(reward.get("weights"), Mapping):
        w = dict(reward["weights"])
        for name in CELL_COMPONENTS:
            if name in w:
                weights[name] = w.pop(name)
        user["reward"] = {**reward, "weights": w}
    cfg = resolve_config(deep_merge(copy.deepcopy(_SINGLE_OVERRIDES), user))
    cfg.pop("preset")
    cell = deep_merge(copy.deepcopy(_CELL_DEFAULTS), cell_user, known_only=True, path="cell")
    _validate_cell(cell, cfg)
    for name, v in weights.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1e6:
            raise ValueError(f"config 'reward.weights.{name}' must be a finite number in [-1e6, 1e6], got {v!r}")
        cfg["reward"]["weights"][name] = float(v)
    cfg["cell"] = cell
    return cfg


def _validate_cell(cell: dict, cfg: dict) -> None:
    def number(key: str, lo: float, hi: float, integer: bool = False) -> None:
        v = cell[key]
        ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
        if not ok or not (math.isfinite(v) and lo <= v <= hi):
            kind = "an integer" if integer else "a number"
            raise ValueError(f"config 'cell.{key}' must be {kind} in [{lo:g}, {hi:g}], got {v!r}")

    number("n_ues", 1, 4096, integer=True)
    number("arrival_prob", 0.0, 1.0)
    number("deadline_s", 1e-6, 1e4)
    number("compute_w", 0.0, 1e3)
    number("tx_w", 0.0, 1e3)
    if cell["slot_s"] is None:
        ch = cfg["channel"]
        cell["slot_s"] = float(ch["mobility"]["dt"]) if ch["model"] == "mobility" else 1.0
    else:
        number("slot_s", 1e-6, 1e4)
        dt = cfg["channel"]["mobility"]["dt"]
        if cfg["channel"]["model"] == "mobility" and cell["slot_s"] != dt:
            raise ValueError(
                f"config 'cell.slot_s' = {cell['slot_s']} differs from 'channel.mobility.dt' = {dt}: a cell step is "
                "one slot of the channel; set one of them (slot_s None follows the channel)"
            )
    team = cell["team"]
    if team["aggregate"] not in ("mean", "sum"):
        raise ValueError(f"config 'cell.team.aggregate' must be 'mean' or 'sum', got {team['aggregate']!r}")
    mix = team["mix"]
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix <= 1.0:
        raise ValueError(f"config 'cell.team.mix' must be a number in [0, 1] (1: the team reward only), got {mix!r}")
