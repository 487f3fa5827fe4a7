"""`SplitProblem`: the split problem compiled once from a config and the quality backend's facts.

One immutable object holds everything a step needs besides the channel and the quality draw: the allowed splits and
their masks, the relative-move targets, per-split tables (UE compute, privacy, compute time, whether anything is sent,
the paper's load term), the named reward weights and components, the observation names and bounds, and the latency
constants. `LLMSplitEnv.step`, `LLMSplitEnv.expected_rewards` (with the expected quality) and `LLMSplitVectorEnv` all
call it, for a float or an array of sub-envs alike (Gymnasium's functional envs and HighwayEnv's ``_rewards`` are the
models), so a step means the same thing everywhere.

Reward components are `RewardComponent` s, matched to weights by name. Adding one is one call::

    problem = compile_problem(config).with_component(
        RewardComponent("energy", lambda p, o: -p.per_split(p.compute_s, o.split)), weight=0.5
    )
    env = LLMSplitEnv(problem=problem)  # or LLMSplitVectorEnv(num_envs, problem=problem)

A component sees the problem ``p`` and the step's `Outcome` ``o`` (split, move, level, quality, perplexity, PPL₀,
airtime), whose fields are floats in the single env and arrays over sub-envs in the vector env; write it with
operators and `SplitProblem.per_split` and it serves both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsplit_env.config import resolve_config
from llmsplit_env.frozen import FrozenDict, SplitTable, frozen, readonly
from llmsplit_env.link import airtime_s, payload_bits
from llmsplit_env.observation import BASE_OBSERVATION, observation_bounds
from llmsplit_env.reward import BUILTIN_COMPONENTS, Outcome, RewardComponent, outcome, predicted_gain_component

__all__ = [
    "BASE_OBSERVATION",
    "BUILTIN_COMPONENTS",
    "Outcome",
    "RewardComponent",
    "SplitProblem",
    "compile_problem",
    "outcome",
]


@dataclass(frozen=True, eq=False)
class SplitProblem:
    """The compiled split problem (see the module docstring). Build it with `compile_problem`."""

    config: Mapping[str, Any]  # the resolved config it was compiled from (read-only view)
    num_layers: int
    level_name: str
    # splits and actions
    k_min: int
    k_max: int
    splits: tuple[int, ...]
    allowed_splits: tuple[int, ...]
    initial_splits: tuple[int, ...]
    action_mode: str
    max_move: int
    n_actions: int
    allowed: tuple[bool, ...]  # allowed[k] for k = 0..L+1
    masks: np.ndarray  # [n_actions] bool, read-only
    targets: tuple[tuple[int, ...] | None, ...] | None  # relative: targets[k_prev][a] (None for k_prev not allowed)
    # per-split tables, index k = 0..L
    ue_compute: SplitTable
    privacy: SplitTable
    compute_s: SplitTable
    transmits: SplitTable
    paper_load: SplitTable
    # reward
    weights: Mapping[str, float]
    components: tuple[RewardComponent, ...]
    # observation
    observation_names: tuple[str, ...]
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    trend_smoothing: float
    # latency
    payload_bits: int
    bandwidth_hz: float
    nominal_snr_db: float
    max_airtime_s: float
    latency_ref_s: float  # L · ue_layer_s: the latency component's unit
    # episode
    max_episode_steps: int

    def __post_init__(self) -> None:
        # immutable whichever way it was built (compile_problem, dataclasses.replace, unpickling)
        object.__setattr__(self, "weights", FrozenDict({k: float(v) for k, v in self.weights.items()}))
        object.__setattr__(self, "masks", readonly(np.array(self.masks, dtype=bool)))
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"reward component names must be distinct, got {names}")
        missing = sorted(set(self.weights) - set(names))
        if missing:
            raise ValueError(f"weights name components that do not exist: {missing}; components: {names}")
        weighted = [c for c in self.components if self.weights.get(c.name, 0.0) != 0.0]
        groups = {c.group for c in weighted if c.group}
        reported = tuple(c for c in self.components if c.always_reported or c in weighted or c.group in groups)
        # derived, kept on the frozen instance for the hot path
        object.__setattr__(self, "inv_layers", 1.0 / self.num_layers)
        object.__setattr__(self, "relative", self.action_mode == "relative")
        object.__setattr__(self, "level_is_snr", self.level_name == "snr_db")
        object.__setattr__(self, "reported_components", tuple(c.name for c in reported))
        for c in self.components:
            if c.table is not None and not isinstance(getattr(self, c.table, None), SplitTable):
                raise ValueError(f"reward component {c.name!r}: {c.table!r} is not a per-split table of the problem")
        # (name, table or None, fn or None, weight) per reported component: the step's hot loop reads tables directly
        w = self.weights
        plan = tuple(
            (c.name, None if c.table is None else getattr(self, c.table), c.fn, w.get(c.name, 0.0)) for c in reported
        )
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(self, "_weighted", tuple((c.name, w[c.name]) for c in weighted))
        object.__setattr__(self, "neg_inv_latency_ref", -1.0 / self.latency_ref_s)
        if self.targets is not None:  # relative: the targets as an array [k_prev, a] (`splits_of`)
            arr = np.zeros((self.num_layers + 1, self.n_actions), dtype=np.int64)
            for k in self.allowed_splits:
                arr[k] = self.targets[k]
            object.__setattr__(self, "_targets_arr", readonly(arr))
        uses_ppl0 = any(c.needs_ppl0 for c in reported) or "log_ppl0" in self.observation_names
        object.__setattr__(self, "needs_ppl0", uses_ppl0)

    # --- actions ------------------------------------------------------------------------------------------------

    def split_of(self, action: int, prev_split: int) -> int:
        """The split a (range-checked) action selects from ``prev_split``; it may be an excluded one (absolute)."""
        return self.targets[prev_split][action] if self.relative else self.k_min + action

    def splits_of(self, actions: np.ndarray, prev_splits: np.ndarray) -> np.ndarray:
        """`split_of` over arrays."""
        if self.relative:
            return self._targets_arr[prev_splits, actions]
        return actions + self.k_min

    def is_allowed(self, k) -> bool:
        return self.k_min <= k <= self.k_max and self.allowed[int(k)]

    # --- per-split lookups and link ------------------------------------------------------------------------------

    @staticmethod
    def per_split(table: SplitTable, k):
        """``table[k]`` for an integer split, or the array of entries for an array of splits."""
        return table[k] if isinstance(k, int) else table.array.take(k)

    def airtime(self, k, level):
        """Seconds on the air at split ``k`` and true level ``level``, capped at ``max_airtime_s``; 0 at ``k = L``
        (nothing is sent). SNR schemes use the level; the erasure scheme its nominal SNR. Floats or arrays."""
        if type(k) is int:
            if k >= self.num_layers:
                return 0.0
            snr = level if self.level_is_snr else self.nominal_snr_db
            air = airtime_s(self.payload_bits, self.bandwidth_hz, snr)
            return air if air <= self.max_airtime_s else self.max_airtime_s
        snr = level if self.level_is_snr else np.full(len(k), self.nominal_snr_db)
        air = np.minimum(airtime_s(self.payload_bits, self.bandwidth_hz, snr), self.max_airtime_s)
        air *= self.transmits.array.take(k)
        return air

    # --- reward ---------------------------------------------------------------------------------------------------

    def reward_components(self, outcome: Outcome) -> dict[str, Any]:
        """The reported components (unweighted) of an outcome, by name, in component order."""
        return self.score(outcome)[0]

    def reward(self, components: Mapping[str, Any]):
        """``Σ_c w_c · r_c`` over the weighted components, by name, in component order."""
        r = 0.0
        for name, w in self._weighted:
            r = r + w * components[name]
        return r

    def score(self, outcome: Outcome) -> tuple[dict[str, Any], Any]:
        """``(reward_components(outcome), reward(...))``: what a step reports and earns, in one pass (the weighted
        components are among the reported ones, in the same order)."""
        k = outcome[0]
        components = {}
        r = 0.0
        if type(k) is int:  # one env: the hot loop
            for name, tab, fn, w in self._plan:
                v = components[name] = fn(self, outcome) if tab is None else tab[k]
                if w != 0.0:
                    r = r + w * v
            return components, r
        for name, tab, fn, w in self._plan:
            v = components[name] = fn(self, outcome) if tab is None else tab.array.take(k)
            if w != 0.0:
                r = r + w * v
        return components, r

    def expected_rewards(
        self,
        prev_split: int,
        level_after: Callable[[int], float],
        expectations: Callable[[int, float], tuple[float, float]],
        ppl0: float = math.nan,
    ) -> np.ndarray:
        """Expected reward of every action from ``prev_split`` (``-inf`` for masked actions).

        :param level_after: the true level the transmission will see after a move (`ChannelDynamics.level_after`)
        :param expectations: ``(E[quality], E[PPL])`` at a split and level (`QualityBackend.expectations`)
        """
        out = np.full(self.n_actions, -np.inf)
        for a in range(self.n_actions):
            k = self.split_of(a, prev_split)
            if not self.allowed[k]:
                continue
            move = k - prev_split
            out[a] = self.expected_reward(k, move, level_after(move), expectations, ppl0)
        return out

    def expected_reward(
        self,
        k: int,
        move: int,
        level: float,
        expectations: Callable[[int, float], tuple[float, float]],
        ppl0: float = math.nan,
    ) -> float:
        """Expected reward of transmitting at split ``k`` (reached by ``move``) at the true ``level``."""
        e_quality, e_ppl = expectations(k, level)
        return self.score(outcome(k, move, level, e_quality, e_ppl, ppl0, self.airtime(k, level)))[1]

    # --- copies: the problem is immutable, so a copy is the problem itself (envs are deep-copied to peek ahead) ---

    def __copy__(self) -> SplitProblem:
        return self

    def __deepcopy__(self, memo: dict) -> SplitProblem:
        return self

    def __reduce__(self):
        # rebuilt from its fields, so `__post_init__` derives (and freezes) everything again in the new process
        return _rebuild_problem, ({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},)

    # --- extension ------------------------------------------------------------------------------------------------

    def with_component(self, component: RewardComponent, weight: float = 0.0) -> SplitProblem:
        """A new problem with ``component`` appended (summed last) at ``weight``.

        The weight lives in the problem's ``weights``; ``config`` still describes the config it was compiled from
        (which has no key for a new component), so rebuild envs from the problem (``problem=``), not from ``config``.
        """
        if not isinstance(component, RewardComponent):
            raise ValueError(f"expected a RewardComponent, got {type(component).__name__}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not math.isfinite(weight):
            raise ValueError(f"weight of {component.name!r} must be a finite number, got {weight!r}")
        weights = FrozenDict({**self.weights, component.name: float(weight)})
        return dataclasses.replace(self, components=(*self.components, component), weights=weights)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (what an agent saves about the env it was trained on)."""
        return {
            "num_layers": self.num_layers,
            "level_name": self.level_name,
            "splits": list(self.splits),
            "allowed_splits": list(self.allowed_splits),
            "action_mode": self.action_mode,
            "max_move": self.max_move,
            "n_actions": self.n_actions,
            "observation_names": list(self.observation_names),
            "weights": dict(self.weights),
            "components": [c.name for c in self.components],
        }


def _rebuild_problem(fields: dict) -> SplitProblem:
    return SplitProblem(**fields)


def compile_problem(config: Mapping | None = None, backend=None, preset: str | None = None) -> SplitProblem:
    """Compile a config (resolved and validated here) into a `SplitProblem`.

    :param backend: the `QualityBackend` whose facts (layers, hidden size, leakage, level, first profiled split) the
        problem needs; ``None`` builds the config's own (cheap for the profile backend; pass it for the live one)
    """
    cfg = resolve_config(config, preset)
    if backend is None:
        from llmsplit_env.factory import make_backend

        backend = make_backend(cfg)
    qb = backend
    from llmsplit_env.factory import check_levels_in_grid

    check_levels_in_grid(cfg, qb)  # before anything else: a level the profile never measured is a config error
    L = qb.num_layers

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
    k_first = getattr(qb, "k_first", 1)
    if k_min < k_first:
        raise ValueError(f"config 'splits.min' = {k_min} is below the profile's first split {k_first}")
    k_last = getattr(qb, "k_last", L)
    if k_max > k_last:
        raise ValueError(
            f"config 'splits.max' = {k_max} is above the last split the quality backend covers, {k_last} "
            f"({type(qb).__name__})"
        )
    splits = tuple(range(k_min, k_max + 1))
    excluded = set(sp["excluded"])
    allowed_splits = tuple(k for k in splits if k not in excluded)
    if not allowed_splits:
        raise ValueError(f"config splits: every split in [{k_min}, {k_max}] is excluded")
    allowed = [False] * (L + 2)
    for k in allowed_splits:
        allowed[k] = True
    init = cfg["initial_split"]
    if init == "random":
        initial = allowed_splits
    else:
        initial = (init,) if isinstance(init, int) else tuple(init)
        bad = [k for k in initial if not (k_min <= k <= k_max and allowed[k])]
        if bad:
            raise ValueError(f"config 'initial_split' names splits that are not allowed: {bad}")

    # Actions.
    relative = cfg["action_mode"] == "relative"
    targets = None
    if relative:
        mm = cfg["max_move"]
        n = 2 * mm + 1
        moves = [0] + [m for i in range(1, mm + 1) for m in (-i, i)]
        rows: list[tuple[int, ...] | None] = [None] * (L + 1)
        for kp in allowed_splits:  # each move cut back to the largest legal one in its direction (none: stay)
            legal = [[k for k in range(kp + m, kp, -1 if m > 0 else 1) if k in allowed_splits] for m in moves]
            rows[kp] = tuple(ks[0] if ks else kp for ks in legal)
        targets = tuple(rows)
        masks = np.ones(n, dtype=bool)
    else:
        n = k_max - k_min + 1
        masks = np.array([allowed[k] for k in splits], dtype=bool)

    reach = (
        max((abs(t - kp) for kp in allowed_splits for t in targets[kp]), default=0)
        if relative
        else (allowed_splits[-1] - allowed_splits[0])
    )
    factors = cfg["channel"]["paper_drift"]["factors"]
    if cfg["channel"]["model"] == "paper_drift" and factors is not None and reach > len(factors) // 2:
        m = len(factors) // 2
        raise ValueError(
            f"config 'channel.paper_drift.factors' has factors for the moves -{m}..+{m}, but the actions move the "
            f"split by up to {reach} layers (action_mode {cfg['action_mode']!r}, max_move {cfg['max_move']}, splits "
            f"{k_min}..{k_max}); give 2·{reach} + 1 factors, or use relative actions with max_move <= {m}"
        )

    # Reward components: a backend that predicts the paper's gain (the authors' reward surrogate) computes
    # ``ppl_gain`` with its model; components it cannot compute (NaN) are reported only when weighted (refused by
    # the config).
    gain_model = getattr(qb, "gain_model", None)
    unknown = getattr(qb, "unknown_components", ())
    components = tuple(
        predicted_gain_component(gain_model)
        if gain_model is not None and c.name == "ppl_gain"
        else (dataclasses.replace(c, always_reported=False) if c.name in unknown else c)
        for c in BUILTIN_COMPONENTS
    )

    # Observation names and bounds (`llmsplit_env.observation`'s feature table).
    names = (*BASE_OBSERVATION, *cfg["observation"]["extras"])
    low, high = observation_bounds(names, qb.level_name, cfg)

    # Per-split tables and latency constants.
    lat = cfg["latency"]
    hidden = qb.hidden_size
    if hidden <= 0:
        raise ValueError("the quality backend does not know the model's hidden size (profile metadata 'hidden_size')")
    lat_ref = L * lat["ue_layer_s"]
    return SplitProblem(
        config=frozen(cfg),
        num_layers=L,
        level_name=qb.level_name,
        k_min=k_min,
        k_max=k_max,
        splits=splits,
        allowed_splits=allowed_splits,
        initial_splits=initial,
        action_mode=cfg["action_mode"],
        max_move=cfg["max_move"],
        n_actions=n,
        allowed=tuple(allowed),
        masks=readonly(masks),
        targets=targets,
        ue_compute=SplitTable(1.0 - k / L for k in range(L + 1)),
        privacy=SplitTable([math.nan] + [1.0 - qb.leakage[k - 1] for k in range(1, L + 1)]),
        compute_s=SplitTable(k * lat["ue_layer_s"] + (L - k) * lat["edge_layer_s"] for k in range(L + 1)),
        transmits=SplitTable([1.0] * L + [0.0]),
        paper_load=SplitTable((k_max - k) / k_max for k in range(L + 1)),
        weights=FrozenDict(cfg["reward"]["weights"]),
        components=components,
        observation_names=names,
        obs_low=low,
        obs_high=high,
        trend_smoothing=cfg["observation"]["trend_smoothing"],
        payload_bits=payload_bits(lat["num_tokens"], hidden, lat["bits"]),
        bandwidth_hz=lat["bandwidth_hz"],
        nominal_snr_db=lat["nominal_snr_db"],
        max_airtime_s=4.0 * lat_ref if lat["max_airtime_s"] is None else lat["max_airtime_s"],
        latency_ref_s=lat_ref,
        max_episode_steps=cfg["max_episode_steps"],
    )
