"""`CellSimulator`: N UEs sharing one uplink and one edge server, stepped together.

Each UE is one of `LLMSplitVectorEnv`'s sub-envs: its own channel (mobility, path loss, shadowing, CSI error), its own
stream of normals and its own episode bookkeeping, drawn exactly as `LLMSplit-v0` draws them. A cell step composes
the same array primitives the vector env's step is made of (the batch channel dynamics, the batch quality draws,
`SplitProblem.score`, `episode.end_step`) with what couples the UEs:

* **requests**: a UE has a request of ``latency.num_tokens`` tokens with probability ``cell.arrival_prob`` each step
  (drawn from the cell's own generator, after the step, for the next one; at 1 nothing is drawn); an idle UE's action
  does nothing (its split stays, its reward and components are 0);
* **uplink**: the UEs that transmit (a request and k < L) share ``latency.bandwidth_hz`` equally: each one's airtime
  is its lone airtime (`llmsplit_env.link.airtime_s` at its true SNR) times the number transmitting;
* **edge server**: it serves one request at a time at full speed, ``(L − k)·latency.edge_layer_s`` seconds of work
  each (capacity ``num_tokens / edge_layer_s`` layer-tokens per second). Work left from earlier steps (the
  **backlog**, seconds) is served first; this step's requests share the server (processor sharing from the slot's
  start), so request j of n, by increasing work s, finishes ``Σ_{m<j} s_m + (n − j + 1)·s_j`` after the backlog. The
  server works ``cell.slot_s`` seconds per step: the backlog carries ``max(0, backlog + Σ s − slot_s)`` to the next;
* **latency** per request: UE compute ``k·ue_layer_s`` + airtime + the backlog + its edge finish time; a
  **deadline** miss is a latency over ``cell.deadline_s``.

Reward components per UE are the single env's (``latency`` now the request's latency with the airtime capped as in
`LLMSplit-v0`: ``−(k·ue_layer_s + min(airtime, max_airtime_s) + backlog + edge finish) / (L·ue_layer_s)``) plus
``deadline`` (−1 for a miss) and ``energy`` (``−(compute_w·k·ue_layer_s + tx_w·airtime) / (compute_w·L·ue_layer_s)``),
weighted by name. The team reward is their mean (or sum) over the N UEs, idle ones counting 0.

With one UE, requests every step and the cell's weights at 0, a cell step is an `LLMSplit-v0` step draw for draw (no
one shares the uplink; the backlog stays 0 while a step's edge work fits in a slot).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from llmsplit_env import episode
from llmsplit_env.cell.config import CELL_COMPONENTS, resolve_cell_config
from llmsplit_env.dynamics import NOISE_COLUMNS
from llmsplit_env.link import airtime_s
from llmsplit_env.problem import RewardComponent, SplitProblem
from llmsplit_env.quality.backends import realised_loss_batch
from llmsplit_env.vector import LLMSplitVectorEnv

#: the shared features every UE observes (after its own), in order, with their bounds
SHARED_OBSERVATION = (
    ("edge_backlog", 0.0, 10.0),  # backlog / slot_s
    ("active_share", 0.0, 1.0),  # UEs with a request now / N
    ("last_offload_share", 0.0, 1.0),  # UEs that offloaded last step / N
    ("last_edge_load", 0.0, 10.0),  # last step's edge work / slot_s
)


class CellOutcome(NamedTuple):
    """A cell step's transmissions, arrays over UEs: `llmsplit_env.reward.Outcome`'s fields (the single env's
    components read them by position and name) and the cell's."""

    split: Any
    move: Any
    level: Any
    quality: Any
    ppl: Any
    ppl0: Any
    airtime: Any  # seconds on the air at the UE's share, capped at max_airtime_s (0 at k = L)
    latency_s: Any  # the request's latency, airtime uncapped
    capped_latency_s: Any  # the same with the airtime capped (the latency component's)
    energy: Any  # the request's UE energy / the energy of computing every layer on the UE
    deadline_s: float


def _latency(p: SplitProblem, o: CellOutcome):
    return o.capped_latency_s * p.neg_inv_latency_ref


def _deadline(p: SplitProblem, o: CellOutcome):
    return -(o.latency_s > o.deadline_s).astype(np.float64)


def _energy(p: SplitProblem, o: CellOutcome):
    return -o.energy


@dataclasses.dataclass(frozen=True)
class Contention:
    """What sharing did in one step, arrays over UEs (0 for idle UEs)."""

    airtime_s: np.ndarray  # at the UE's share, uncapped
    edge_finish_s: np.ndarray  # after the backlog
    latency_s: np.ndarray
    capped_latency_s: np.ndarray
    energy_j: np.ndarray
    backlog_after_s: float
    edge_work_s: float
    transmitting: np.ndarray  # bool


class CellSimulator:
    """The cell's dynamics and scoring (see the module docstring); the envs in `llmsplit_env.cell` are its faces.

    ``reset(seed)`` then ``step(actions)`` with an ``[N]`` integer array of per-UE actions (each UE's action space is
    `LLMSplit-v0`'s for the config's splits and action mode).
    """

    def __init__(self, config: Mapping | None = None) -> None:
        self.config = cfg = resolve_cell_config(config)
        cell = cfg["cell"]
        self.n_ues = N = cell["n_ues"]
        single = {k: v for k, v in cfg.items() if k != "cell"}
        single["reward"] = {"weights": {k: v for k, v in cfg["reward"]["weights"].items() if k not in CELL_COMPONENTS}}
        # the UEs: one vector env over N sub-envs holds their channels, streams of normals and episodes
        self.ues = ues = LLMSplitVectorEnv(N, config=single)
        base = ues.problem
        lat = cfg["latency"]
        self.ue_layer_s, self.edge_layer_s = float(lat["ue_layer_s"]), float(lat["edge_layer_s"])
        self.slot_s, self.deadline_s = float(cell["slot_s"]), float(cell["deadline_s"])
        self.compute_w, self.tx_w = float(cell["compute_w"]), float(cell["tx_w"])
        self.arrival_prob = float(cell["arrival_prob"])
        self.team_mean = cell["team"]["aggregate"] == "mean"
        self.team_mix = float(cell["team"]["mix"])
        components = (
            *(RewardComponent("latency", _latency) if c.name == "latency" else c for c in base.components),
            RewardComponent("deadline", _deadline),
            RewardComponent("energy", _energy),
        )
        weights = {**base.weights, "deadline": cfg["reward"]["weights"]["deadline"],
                   "energy": cfg["reward"]["weights"]["energy"]}  # fmt: skip
        self.problem = p = dataclasses.replace(base, components=components, weights=weights)
        L = p.num_layers
        self._energy_ref_j = max(self.compute_w * L * self.ue_layer_s, 1e-300)
        self.qb = ues.quality_backend
        self.num_layers = L
        self._ue_time = np.arange(L + 1) * self.ue_layer_s  # UE compute per split
        self._edge_work = (L - np.arange(L + 1)) * self.edge_layer_s  # edge work of a request alone per split
        self._snr_nominal = np.full(N, p.nominal_snr_db)
        self.n_own = len(p.obs_low) + 1  # a UE's own features and whether it has a request
        self.active = np.ones(N, dtype=bool)
        self.backlog_s = 0.0
        self.last_offload_share = 0.0
        self.last_edge_load = 0.0
        self._arrivals: np.random.Generator | None = None
        self._started = False

    # --- episodes -------------------------------------------------------------------------------------------------

    def ue_seeds(self, seed: int) -> list[int]:
        """The UEs' seeds for a cell seed: UE 0 takes ``seed`` itself (a one-UE cell is `LLMSplit-v0` seeded the
        same), UE i > 0 one drawn from ``SeedSequence([seed, i])`` (independent streams, not ``seed + i``)."""
        out = [int(seed)]
        for i in range(1, self.n_ues):
            a, b = np.random.SeedSequence([int(seed), i]).generate_state(2)
            out.append(int(a) << 32 | int(b))
        return out

    def reset(self, seed: int | None = None) -> None:
        """A new episode for every UE (``seed``: see `ue_seeds`; None continues the UEs' streams)."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
            self.ues.reset(seed=self.ue_seeds(int(seed)))
            self._arrivals = np.random.default_rng([int(seed), 0x5EED])
        else:
            if self._arrivals is None:
                self._arrivals = np.random.default_rng()
            self.ues.reset()
        self.backlog_s = 0.0
        self.last_offload_share = self.last_edge_load = 0.0
        self._draw_arrivals()
        self._started = True

    def _draw_arrivals(self) -> None:
        if self.arrival_prob >= 1.0:
            self.active = np.ones(self.n_ues, dtype=bool)
        else:
            self.active = self._arrivals.random(self.n_ues) < self.arrival_prob

    # --- contention ------------------------------------------------------------------------------------------------

    def contention(self, k: np.ndarray, level: np.ndarray, active: np.ndarray, backlog_s: float,
                   shared: bool = True) -> Contention:  # fmt: skip
        """The airtimes, edge finish times, latencies and energies of requests at splits ``k`` (``[N]``) at the true
        levels ``level`` from ``backlog_s`` seconds of earlier edge work; idle UEs (``~active``) get zeros.
        ``shared=False``: each request as if it were the only one (the full band, the edge to itself)."""
        p, L = self.problem, self.num_layers
        tx = active & (k < L)
        n_tx = int(np.count_nonzero(tx))
        snr = level if p.level_is_snr else self._snr_nominal
        alone = airtime_s(p.payload_bits, p.bandwidth_hz, snr)
        air = np.where(tx, alone * (max(n_tx, 1) if shared else 1), 0.0)
        capped = np.minimum(air, p.max_airtime_s)
        work = np.where(tx, self._edge_work[k], 0.0)
        finish = np.zeros(self.n_ues)
        if n_tx and not shared:
            finish = work + np.where(tx, backlog_s, 0.0)
        elif n_tx:  # processor sharing among this step's requests, after the backlog
            idx = np.flatnonzero(tx)
            order = idx[np.argsort(work[idx], kind="stable")]
            s = work[order]
            before = np.concatenate(([0.0], np.cumsum(s)[:-1]))
            finish[order] = before + (n_tx - np.arange(n_tx)) * s
            finish[idx] += backlog_s
        ue = np.where(active, self._ue_time[k], 0.0)
        latency = ue + air + finish
        total_work = float(work.sum())
        return Contention(
            airtime_s=air,
            edge_finish_s=finish,
            latency_s=latency,
            capped_latency_s=ue + capped + finish,
            energy_j=self.compute_w * ue + self.tx_w * air,
            backlog_after_s=max(0.0, backlog_s + total_work - self.slot_s),
            edge_work_s=total_work,
            transmitting=tx,
        )

    # --- step -----------------------------------------------------------------------------------------------------

    def splits_of(self, actions: np.ndarray) -> np.ndarray:
        """The split each UE's action selects now (idle UEs keep theirs), checked: ``ValueError`` naming the UE."""
        N, p = self.n_ues, self.problem
        a = np.asarray(actions)
        if a.shape != (N,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({N},) (one per UE), got {a.dtype} {a.shape}")
        bad = np.flatnonzero((a < 0) | (a >= p.n_actions))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"UE {i}'s action {int(a[i])} is out of range 0..{p.n_actions - 1}")
        prev = self.ues._ep.prev_split
        k = np.where(self.active, p.splits_of(a, prev), prev)
        if not p.relative:
            excluded = np.flatnonzero(~np.asarray(p.allowed)[k])
            if excluded.size:
                i = int(excluded[0])
                raise ValueError(f"UE {i}'s action {int(a[i])} selects split {int(k[i])}, which the config excludes")
        return k

    def step(self, actions) -> dict[str, Any]:
        """One slot for every UE; returns the step's arrays (see `LLMSplitCellEnv` for their meaning)."""
        if not self._started:
            raise episode.NotResetError("step() before reset(): call reset(seed=...) first")
        ues, p, qb = self.ues, self.problem, self.qb
        k = self.splits_of(actions)
        ep, st = ues._ep, ues._state
        active = self.active
        prev = ep.prev_split
        move = k - prev
        ues._dyn.on_action_batch(st, move)
        level = st["level"].copy()
        z = ues._normals(NOISE_COLUMNS)  # every UE draws its step's normals, idle or not: the streams stay aligned
        log_ppl, loss = qb.sample_batch(k, level, z[4])
        loss = realised_loss_batch(loss, z[5], qb.loss_units)
        ppl = np.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        c = self.contention(k, level, active, self.backlog_s)
        o = CellOutcome(k, move, level, quality, ppl, ep.ppl0, np.minimum(c.airtime_s, p.max_airtime_s),
                        c.latency_s, c.capped_latency_s, c.energy_j / self._energy_ref_j, self.deadline_s)  # fmt: skip
        comps, r = p.score(o)
        comps = {n: np.where(active, v, 0.0) for n, v in comps.items()}
        rewards = np.where(active, r, 0.0)
        team = float(rewards.mean() if self.team_mean else rewards.sum())

        est_prev = st["estimate"]
        ues._dyn.advance_batch(st, z)
        # an idle UE sent nothing: its last loss and quality stay those of its last request
        truncated = episode.end_step(p, ep, k, np.where(active, loss, ep.last_loss),
                                     np.where(active, quality, ep.last_quality), est_prev, st["estimate"])  # fmt: skip
        out = {
            "split": k.copy(),  # ep.prev_split is k now, and a reset writes into it
            "active": active,
            "rewards": comps,
            "reward": rewards,
            "team_reward": team,
            "ppl": np.where(active, ppl, 0.0),
            p.level_name: level,
            "packet_loss": np.where(active, loss, 0.0),
            "outside_grid": (level < qb.level_lo) | (level > qb.level_hi),
            "airtime_s": c.airtime_s,
            "latency_s": np.where(active, c.latency_s, 0.0),
            "deadline_miss": active & (c.latency_s > self.deadline_s),
            "offloaded": c.transmitting,
            "edge_backlog_s": self.backlog_s,
            "edge_work_s": c.edge_work_s,
            "truncated": bool(np.all(truncated)),
        }
        self.backlog_s = c.backlog_after_s
        self.last_offload_share = float(np.count_nonzero(c.transmitting)) / self.n_ues
        self.last_edge_load = c.edge_work_s / self.slot_s
        self._draw_arrivals()
        return out

    # --- observation ----------------------------------------------------------------------------------------------

    def own_features(self) -> np.ndarray:
        """``[N, n_own]`` float64: each UE's `LLMSplit-v0` observation and whether it has a request now."""
        ues = self.ues
        own = np.empty((self.n_ues, self.n_own))
        ues._observer.columns(ues._ep, ues._state, own[:, :-1])
        own[:, -1] = self.active
        return own

    def shared_features(self) -> np.ndarray:
        """``[4]``: the edge backlog and last step's edge work (in slots, capped at 10), the share of UEs with a
        request now, the share that offloaded last step (`SHARED_OBSERVATION`)."""
        return np.array([
            min(self.backlog_s / self.slot_s, 10.0),
            float(np.count_nonzero(self.active)) / self.n_ues,
            self.last_offload_share,
            min(self.last_edge_load, 10.0),
        ])  # fmt: skip

    def own_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.problem
        return np.array([*p.obs_low, 0.0]), np.array([*p.obs_high, 1.0])

    @staticmethod
    def shared_bounds() -> tuple[np.ndarray, np.ndarray]:
        return np.array([b[1] for b in SHARED_OBSERVATION]), np.array([b[2] for b in SHARED_OBSERVATION])

    # --- expectations (planners) -------------------------------------------------------------------------------------

    def expected_quality_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(E[quality], E[PPL])``, each ``[N, L + 1]``: every UE's expectations at every split at its true level
        after no move (row k = 0 unused)."""
        L = self.num_layers
        eq, ep_ = np.zeros((self.n_ues, L + 1)), np.zeros((self.n_ues, L + 1))
        dyn, st = self.ues._dyn, self.ues._state
        saved = dyn.get_state()
        try:
            for i in range(self.n_ues):
                dyn.set_state([st[n][i] for n in dyn.state_names])
                level = dyn.level_after(0)
                for k in self.problem.allowed_splits:
                    eq[i, k], ep_[i, k] = self.qb.expectations(k, level)
        finally:
            dyn.set_state(saved)
        return eq, ep_

    def expected_rewards(self, k: np.ndarray, table: tuple[np.ndarray, np.ndarray] | None = None,
                         backlog_s: float | None = None) -> np.ndarray:  # fmt: skip
        """``[N]`` expected reward of each UE if the UEs with a request play splits ``k`` now (idle UEs: 0): the
        quality's expectation at the true level (``table``: `expected_quality_table`, computed if None), the
        contention exact given ``k`` and the edge backlog (``backlog_s``; None: the current one)."""
        eq, eppl = self.expected_quality_table() if table is None else table
        level = self.ues._state["level"]
        backlog = self.backlog_s if backlog_s is None else backlog_s
        c = self.contention(k, level, self.active, backlog)
        return np.where(self.active, self._score(k, level, eq, eppl, c), 0.0)

    def alone_reward_table(self, table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``[N, n_actions]`` (absolute actions): each UE's expected reward at every split as if it were the only UE
        transmitting and the edge were idle (``-inf`` for masked actions): what a selfish UE maximises."""
        p = self.problem
        if p.relative:
            raise ValueError("alone_reward_table is for absolute actions (config action_mode 'absolute')")
        eq, eppl = self.expected_quality_table() if table is None else table
        level = self.ues._state["level"]
        out = np.full((self.n_ues, p.n_actions), -np.inf)
        everyone = np.ones(self.n_ues, dtype=bool)
        for k in p.allowed_splits:
            ks = np.full(self.n_ues, k)
            c = self.contention(ks, level, everyone, 0.0, shared=False)
            out[:, k - p.k_min] = self._score(ks, level, eq, eppl, c)
        return out

    def _score(self, k, level, eq, eppl, c: Contention) -> np.ndarray:
        p, rows = self.problem, np.arange(self.n_ues)
        o = CellOutcome(k, k - self.ues._ep.prev_split, level, eq[rows, k], eppl[rows, k], self.ues._ep.ppl0,
                        np.minimum(c.airtime_s, p.max_airtime_s), c.latency_s, c.capped_latency_s,
                        c.energy_j / self._energy_ref_j, self.deadline_s)  # fmt: skip
        return np.asarray(p.score(o)[1], dtype=np.float64)
