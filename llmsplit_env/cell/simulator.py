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
from llmsplit_env.config import resolve_config
from llmsplit_env.dynamics import NOISE_COLUMNS
from llmsplit_env.factory import make_backend
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


class Contention(NamedTuple):
    """What sharing did in one step: arrays over UEs (0 for idle UEs) and over cells."""

    airtime_s: np.ndarray  # at the UE's share, uncapped
    edge_finish_s: np.ndarray  # after the backlog
    latency_s: np.ndarray
    capped_latency_s: np.ndarray
    energy_j: np.ndarray
    transmitting: np.ndarray  # bool
    edge_work_s: np.ndarray  # [C]: this step's edge work
    backlog_after_s: np.ndarray  # [C]


class CellSimulator:
    """The cell's dynamics and scoring (see the module docstring); the envs in `llmsplit_env.cell` are its faces.

    ``num_cells`` independent cells are stepped at once (the vector env's cells; each cell's trajectory is the one it
    has alone). UEs are indexed ``c · N + i`` (cell c, UE i): ``reset(seed)`` then ``step(actions)`` with a
    ``[num_cells · N]`` integer array of per-UE actions (each UE's action space is `LLMSplit-v0`'s for the config's
    splits and action mode).
    """

    def __init__(self, config: Mapping | None = None, num_cells: int = 1) -> None:
        if isinstance(num_cells, bool) or not isinstance(num_cells, (int, np.integer)) or num_cells < 1:
            raise ValueError(f"num_cells must be an integer >= 1, got {num_cells!r}")
        self.config = cfg = resolve_cell_config(config)
        cell = cfg["cell"]
        self.n_ues = N = cell["n_ues"]
        self.num_cells = C = int(num_cells)
        single = {k: v for k, v in cfg.items() if k != "cell"}
        single["reward"] = {"weights": {k: v for k, v in cfg["reward"]["weights"].items() if k not in CELL_COMPONENTS}}
        # the UEs: one vector env over C·N sub-envs holds their channels, streams of normals and episodes; the live
        # backend (one model, or one quality server, for the cell) is built here and a slot's requests sent together
        self.live = cfg["backend"] == "llm"
        live = make_backend(resolve_config(single)) if self.live else None
        self.ues = ues = LLMSplitVectorEnv(C * N, config=single, quality_backend=live)
        if self.live and ues.problem.needs_ppl0:
            raise ValueError("the cell's live backend does not measure the paper's PPL0: leave its weights at 0")
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
        self.qb = ues.quality_backend
        self.num_layers = L
        self._energy_ref_j = max(self.compute_w * L * self.ue_layer_s, 1e-300)
        self._ue_time = np.arange(L + 1) * self.ue_layer_s  # UE compute per split
        self._edge_work = (L - np.arange(L + 1)) * self.edge_layer_s  # edge work of a request alone per split
        self._airtime_alone = None if p.level_is_snr else airtime_s(p.payload_bits, p.bandwidth_hz, p.nominal_snr_db)
        self._ps = (N - np.arange(N)).astype(np.float64)  # processor sharing: the jobs still running at each finish
        self._row_starts = np.arange(0, C * N, N)[:, None]  # each cell's first UE's index
        self.n_own = len(p.obs_low) + 1  # a UE's own features and whether it has a request
        self.active = np.ones(C * N, dtype=bool)
        self.backlog_s = np.zeros(C)
        self.last_offload_share = np.zeros(C)
        self.last_edge_load = np.zeros(C)
        self._arrivals: list[np.random.Generator | None] = [None] * C
        self._own = np.empty((C * N, self.n_own))
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

    def reset(self, seed: int | list[int | None] | None = None) -> None:
        """A new episode in every cell. ``seed``: an int (cell c takes ``seed + c``: see `ue_seeds`), a list with one
        seed (or None) per cell, or None (every stream continues)."""
        C = self.num_cells
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None] * C if seed is None else [int(seed) + c for c in range(C)]
        else:
            seeds = list(seed)
            if len(seeds) != C:
                raise ValueError(f"seed list must have one entry per cell ({C}), got {len(seeds)}")
        for s in seeds:
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
                raise ValueError(f"seeds must be non-negative integers or None, got {s!r}")
        ue_seeds = [u for s in seeds for u in ([None] * self.n_ues if s is None else self.ue_seeds(s))]
        self.ues.reset(seed=ue_seeds)
        for c, s in enumerate(seeds):
            if s is not None:
                self._arrivals[c] = np.random.default_rng([int(s), 0x5EED])
            elif self._arrivals[c] is None:
                self._arrivals[c] = np.random.default_rng()
        self.backlog_s = np.zeros(C)
        self.last_offload_share = np.zeros(C)
        self.last_edge_load = np.zeros(C)
        self._draw_arrivals()
        self._started = True

    def _draw_arrivals(self) -> None:
        if self.arrival_prob >= 1.0:
            self.active = np.ones(self.num_cells * self.n_ues, dtype=bool)
        elif self.num_cells == 1:
            self.active = self._arrivals[0].random(self.n_ues) < self.arrival_prob
        else:
            u = np.concatenate([g.random(self.n_ues) for g in self._arrivals])
            self.active = u < self.arrival_prob

    # --- contention ------------------------------------------------------------------------------------------------

    def contention(self, k: np.ndarray, level: np.ndarray, active: np.ndarray, backlog_s,
                   shared: bool = True) -> Contention:  # fmt: skip
        """The airtimes, edge finish times, latencies and energies of requests at splits ``k`` at the true levels
        ``level`` (arrays over UEs) from ``backlog_s`` seconds of earlier edge work (per cell); idle UEs
        (``~active``) get zeros. ``shared=False``: each request as if it were the only one (the full band, the edge
        to itself)."""
        p, C, N = self.problem, self.num_cells, self.n_ues
        tx = active & (k < self.num_layers)
        backlog = backlog_s if isinstance(backlog_s, np.ndarray) and backlog_s.shape == (C,) else np.full(C, backlog_s)
        if self._airtime_alone is None:
            alone = airtime_s(p.payload_bits, p.bandwidth_hz, level)
        else:  # the erasure scheme: its nominal SNR
            alone = np.full(C * N, self._airtime_alone)
        work = self._edge_work[k] * tx
        if shared:
            tx2 = tx.reshape(C, N)
            n_tx = tx2.sum(axis=1)
            air = (alone.reshape(C, N) * n_tx[:, None]).ravel() * tx
            # processor sharing from the slot's start: with the row sorted by work (idle UEs' zeros first), the job at
            # position j finishes after the work of those before it plus (N − j) times its own
            order = np.argsort(work.reshape(C, N), axis=1, kind="stable")
            if C > 1:  # flat indices of each row's order (fancy indexing: faster than take/put_along_axis)
                order += self._row_starts
            order = order.ravel()
            srt = work[order].reshape(C, N)
            done = np.cumsum(srt, axis=1)
            done += (self._ps - 1.0) * srt
            done += backlog[:, None]
            finish = np.empty(C * N)
            finish[order] = done.ravel()
            finish *= tx
        else:
            air = alone * tx
            finish = (work + np.repeat(backlog, N)) * tx
        ue = self._ue_time[k] * active
        latency = ue + air + finish
        edge_work = work.reshape(C, N).sum(axis=1)
        return Contention(
            air,
            finish,
            latency,
            ue + np.minimum(air, p.max_airtime_s) + finish,
            self.compute_w * ue + self.tx_w * air,
            tx,
            edge_work,
            np.maximum(backlog + edge_work - self.slot_s, 0.0),
        )

    # --- step -----------------------------------------------------------------------------------------------------

    def splits_of(self, actions: np.ndarray) -> np.ndarray:
        """The split each UE's action selects now (idle UEs keep theirs), checked: ``ValueError`` naming the UE."""
        M, p = self.num_cells * self.n_ues, self.problem
        a = np.asarray(actions)
        if a.shape != (M,) or a.dtype.kind not in "iu":
            raise ValueError(f"actions must be an integer array of shape ({M},) (one per UE), got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= p.n_actions:
            i = int(np.flatnonzero((a < 0) | (a >= p.n_actions))[0])
            raise ValueError(f"{self._ue_name(i)}'s action {int(a[i])} is out of range 0..{p.n_actions - 1}")
        prev = self.ues.episodes.prev_split
        k = np.where(self.active, p.splits_of(a, prev), prev)
        if not p.relative and not p.masks.all():
            bad = ~np.asarray(p.allowed)[k]
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{self._ue_name(i)}'s action {int(a[i])} selects split {int(k[i])}, which the "
                                 "config excludes")  # fmt: skip
        return k

    def _ue_name(self, i: int) -> str:
        return f"UE {i}" if self.num_cells == 1 else f"cell {i // self.n_ues} UE {i % self.n_ues}"

    def step(self, actions) -> dict[str, Any]:
        """One slot for every UE of every cell; returns the step's arrays (see `LLMSplitCellEnv` for their meaning;
        per-UE arrays over ``num_cells · N``, per-cell ones over ``num_cells``)."""
        if not self._started:
            raise episode.NotResetError("step() before reset(): call reset(seed=...) first")
        ues, p, qb = self.ues, self.problem, self.qb
        k = self.splits_of(actions)
        ep, st = ues.episodes, ues.channel_state
        active = self.active
        prev = ep.prev_split
        move = k - prev
        ues.dynamics.on_action_batch(st, move)
        level = st["level"].copy()
        z = ues.draw_normals(NOISE_COLUMNS)  # every UE draws its step's normals, idle or not: the streams stay aligned
        if self.live:  # one real evaluation per request that crosses the link (k = L needs none), sent together
            log_ppl, loss = np.full(len(k), qb.log_clean), np.zeros(len(k))
            idx = np.flatnonzero(active)
            rngs = ues.generators
            log_ppl[idx], loss[idx] = qb.sample_many(k[idx], level[idx], [rngs[i] for i in idx.tolist()])
        else:
            log_ppl, loss = qb.sample_batch(k, level, z[4])
            loss = realised_loss_batch(loss, z[5], qb.loss_units)
        ppl = np.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        c = self.contention(k, level, active, self.backlog_s)
        o = CellOutcome(k, move, level, quality, ppl, ep.ppl0, np.minimum(c.airtime_s, p.max_airtime_s),
                        c.latency_s, c.capped_latency_s, c.energy_j / self._energy_ref_j, self.deadline_s)  # fmt: skip
        comps, r = p.score(o)
        comps = {n: v * active if isinstance(v, np.ndarray) else np.where(active, v, 0.0) for n, v in comps.items()}
        rewards = r * active
        per_cell = rewards.reshape(self.num_cells, self.n_ues)
        team = per_cell.sum(axis=1)
        if self.team_mean:
            team /= self.n_ues

        est_prev = st["estimate"]
        ues.dynamics.advance_batch(st, z)
        # an idle UE sent nothing: its last loss and quality stay those of its last request
        truncated = episode.end_step(p, ep, k, np.where(active, loss, ep.last_loss),
                                     np.where(active, quality, ep.last_quality), est_prev, st["estimate"])  # fmt: skip
        out = {
            "split": k.copy(),  # ep.prev_split is k now, and a reset writes into it
            "active": active,
            "rewards": comps,
            "reward": rewards,
            "team_reward": team,
            "ppl": ppl * active,
            p.level_name: level,
            "packet_loss": loss * active,
            "outside_grid": (level < qb.level_lo) | (level > qb.level_hi),
            "airtime_s": c.airtime_s,
            "latency_s": c.latency_s,
            "deadline_miss": active & (c.latency_s > self.deadline_s),
            "offloaded": c.transmitting,
            "edge_backlog_s": self.backlog_s,
            "edge_work_s": c.edge_work_s,
            "truncated": bool(truncated[0]),  # every UE's episode started together: they end together
        }
        self.backlog_s = c.backlog_after_s
        self.last_offload_share = c.transmitting.reshape(self.num_cells, self.n_ues).sum(axis=1) / self.n_ues
        self.last_edge_load = c.edge_work_s / self.slot_s
        self._draw_arrivals()
        return out

    # --- observation ----------------------------------------------------------------------------------------------

    def own_features(self) -> np.ndarray:
        """``[num_cells · N, n_own]`` float64 (a buffer the next call overwrites): each UE's `LLMSplit-v0`
        observation and whether it has a request now."""
        ues, own = self.ues, self._own
        ues.observer.columns(ues.episodes, ues.channel_state, own[:, :-1])
        own[:, -1] = self.active
        return own

    def shared_features(self) -> np.ndarray:
        """``[num_cells, 4]``: the edge backlog and last step's edge work (in slots, capped at 10), the share of UEs
        with a request now, the share that offloaded last step (`SHARED_OBSERVATION`)."""
        out = np.empty((self.num_cells, 4))
        np.minimum(self.backlog_s / self.slot_s, 10.0, out=out[:, 0])
        out[:, 1] = self.active.reshape(self.num_cells, self.n_ues).sum(axis=1) / self.n_ues
        out[:, 2] = self.last_offload_share
        np.minimum(self.last_edge_load, 10.0, out=out[:, 3])
        return out

    def own_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.problem
        return np.array([*p.obs_low, 0.0]), np.array([*p.obs_high, 1.0])

    @staticmethod
    def shared_bounds() -> tuple[np.ndarray, np.ndarray]:
        return np.array([b[1] for b in SHARED_OBSERVATION]), np.array([b[2] for b in SHARED_OBSERVATION])

    # --- expectations (planners; one cell) ---------------------------------------------------------------------------

    def _one_cell(self, what: str) -> None:
        if self.num_cells != 1:
            raise ValueError(f"{what} plans one cell: build the simulator with num_cells=1")

    def expected_quality_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(E[quality], E[PPL])``, each ``[N, L + 1]``: every UE's expectations at every split at its true level
        after no move (row k = 0 unused)."""
        self._one_cell("expected_quality_table")
        L = self.num_layers
        eq, eppl = np.zeros((self.n_ues, L + 1)), np.zeros((self.n_ues, L + 1))
        dyn, st = self.ues.dynamics, self.ues.channel_state
        saved = dyn.get_state()
        try:
            for i in range(self.n_ues):
                dyn.set_state([st[n][i] for n in dyn.state_names])
                level = dyn.level_after(0)
                for k in self.problem.allowed_splits:
                    eq[i, k], eppl[i, k] = self.qb.expectations(k, level)
        finally:
            dyn.set_state(saved)
        return eq, eppl

    def expected_rewards(self, k: np.ndarray, table: tuple[np.ndarray, np.ndarray] | None = None,
                         backlog_s: float | None = None) -> np.ndarray:  # fmt: skip
        """``[N]`` expected reward of each UE if the UEs with a request play splits ``k`` now (idle UEs: 0): the
        quality's expectation at the true level (``table``: `expected_quality_table`, computed if None), the
        contention exact given ``k`` and the edge backlog (``backlog_s``; None: the current one)."""
        self._one_cell("expected_rewards")
        eq, eppl = self.expected_quality_table() if table is None else table
        level = self.ues.channel_state["level"]
        backlog = self.backlog_s if backlog_s is None else backlog_s
        c = self.contention(k, level, self.active, backlog)
        return self._score(k, level, eq, eppl, c) * self.active

    def alone_reward_table(self, table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``[N, n_actions]`` (absolute actions): each UE's expected reward at every split as if it were the only UE
        transmitting and the edge were idle (``-inf`` for masked actions): what a selfish UE maximises."""
        self._one_cell("alone_reward_table")
        p = self.problem
        if p.relative:
            raise ValueError("alone_reward_table is for absolute actions (config action_mode 'absolute')")
        eq, eppl = self.expected_quality_table() if table is None else table
        level = self.ues.channel_state["level"]
        out = np.full((self.n_ues, p.n_actions), -np.inf)
        everyone = np.ones(self.n_ues, dtype=bool)
        for k in p.allowed_splits:
            ks = np.full(self.n_ues, k)
            c = self.contention(ks, level, everyone, 0.0, shared=False)
            out[:, k - p.k_min] = self._score(ks, level, eq, eppl, c)
        return out

    def _score(self, k, level, eq, eppl, c: Contention) -> np.ndarray:
        p, rows = self.problem, np.arange(self.n_ues)
        o = CellOutcome(k, k - self.ues.episodes.prev_split, level, eq[rows, k], eppl[rows, k], self.ues.episodes.ppl0,
                        np.minimum(c.airtime_s, p.max_airtime_s), c.latency_s, c.capped_latency_s,
                        c.energy_j / self._energy_ref_j, self.deadline_s)  # fmt: skip
        return np.asarray(p.score(o)[1], dtype=np.float64)
