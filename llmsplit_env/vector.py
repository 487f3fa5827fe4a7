"""`LLMSplitVectorEnv`: N profile-backed `LLMSplitEnv` s stepped at once in numpy.

``gym.make_vec("LLMSplit-v0", num_envs=N, vectorization_mode="vector_entry_point")`` (or ``"LLMSplit-Paper-v0"``)
builds it; keyword arguments (``config``, ``preset``, ``problem``) are those of `LLMSplitEnv`. Only the profile backend
is vectorised (the live backend runs a model per step; use ``vectorization_mode="sync"``).

Semantics are those of N single envs: each sub-env has its own generator and its own stream of normals, consumed
by the same rule as `LLMSplitEnv`'s (`llmsplit_env.episode.next_position`), and the same bookkeeping
(`llmsplit_env.episode`, `llmsplit_env.observation`) and reward (`llmsplit_env.problem`) serve both, so trajectories,
rewards and infos equal those of ``SyncVectorEnv`` over single envs with the same seeds (up to the last bit of `math`
vs numpy transcendental functions). Only the generator calls (one per sub-env every few episodes) are a Python
loop; the rest is numpy over sub-envs. ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (Gymnasium's
convention); ``seed=[...]`` gives one seed per sub-env; ``options={"reset_mask": mask}`` resets a subset.

Autoreset: ``AutoresetMode.NEXT_STEP``, like Gymnasium's default. The step after a sub-env truncates resets it: its
action is ignored, its observation is the reset observation, its reward 0 and its flags ``False``; its infos are the
reset infos (``split``, the level, ``quality_evals``, ``ppl0``), and the step-only keys (``rewards``, ``ppl``,
``packet_loss``, ``outside_grid``) are masked out (``info["_ppl"][i]`` is ``False``). Info arrays never share memory
with the env's state, so infos kept across steps and autoresets do not change.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.spaces import Box, Discrete, MultiDiscrete
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from llmsplit_env import episode
from llmsplit_env.dynamics import NOISE_COLUMNS
from llmsplit_env.factory import make_backend, make_dynamics
from llmsplit_env.observation import ChannelArrays, Observer
from llmsplit_env.problem import SplitProblem, outcome
from llmsplit_env.quality.backends import ProfileQuality, QualityBackend, realised_loss_batch
from llmsplit_env.registration import with_episode_length


class LLMSplitVectorEnv(VectorEnv):
    """N LLMSplit envs on the profile backend, stepped together (see the module docstring)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    _spec: EnvSpec | None = None

    @property
    def spec(self) -> EnvSpec | None:
        """The spec `gym.make_vec` gave this env, with ``max_episode_steps`` its sub-envs' true episode length."""
        return with_episode_length(self._spec, self.problem.max_episode_steps)

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        self._spec = value

    def __init__(
        self,
        num_envs: int = 1,
        config: dict | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
        *,
        problem: SplitProblem | None = None,
        quality_backend: QualityBackend | None = None,
        **config_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError("LLMSplitVectorEnv does not render; use vectorization_mode='sync' with a render_mode")
        self.config = config = episode.env_config(config, preset, problem, config_kwargs, max_episode_steps)
        # ``quality_backend``: built by a caller that draws the quality itself (the cell's live backend); `step` here
        # draws from profiles only
        if config["backend"] == "llm" and quality_backend is None:
            raise ValueError(
                "LLMSplitVectorEnv vectorises the profile backend only (and the reward surrogate); config backend is "
                "'llm'"
            )
        qb = make_backend(config) if quality_backend is None else quality_backend
        self.problem = p = episode.env_problem(config, qb, problem)
        self.quality_backend: ProfileQuality = qb
        # The scalar dynamics object draws nothing here: its batch methods act on this env's state arrays.
        self.dynamics = make_dynamics(config, qb)
        self.num_envs = N = int(num_envs)
        self.single_observation_space = Box(
            np.array(p.obs_low, np.float32), np.array(p.obs_high, np.float32), dtype=np.float32
        )
        self.single_action_space = Discrete(p.n_actions)
        self.observation_space = Box(
            np.tile(self.single_observation_space.low, (N, 1)),
            np.tile(self.single_observation_space.high, (N, 1)),
            dtype=np.float32,
        )
        self.action_space = MultiDiscrete(np.full(N, p.n_actions))
        self.render_mode = None
        self.level_name = p.level_name

        self._dyn = self.dynamics
        self._qb = qb
        self._n = p.n_actions
        self._allowed = np.array(p.allowed, dtype=bool)
        self._observer = Observer(p, self.dynamics)

        self._rngs: list[np.random.Generator | None] = [None] * N
        self._state = ChannelArrays({name: np.zeros(N) for name in self._dyn.state_names})
        self._ep = episode.Episode.batch(N)
        self._zbuf = np.zeros((episode.NORMAL_CHUNK, N))  # per sub-env stream of normals (column i)
        self._zscratch = np.zeros((N, episode.NORMAL_CHUNK))  # refills: one contiguous row per generator
        self._zp = np.full(N, episode.NORMAL_CHUNK, dtype=np.int64)
        self._autoreset = np.zeros(N, dtype=bool)
        self._arange = np.arange(N)
        self._no_idx = np.zeros(0, dtype=np.int64)
        self._n_autoreset = 0
        self._zsync: int | None = episode.NORMAL_CHUNK  # the common stream position while all sub-envs share one
        self._has_excluded = not p.masks.all()
        self._obs = np.zeros((N, len(p.obs_low)))

    # --- the sub-envs' state, for simulators built on them (`llmsplit_env.cell`) -----------------------------------

    @property
    def channel_state(self) -> ChannelArrays:
        """The sub-envs' channel state: one array per state name (live: the next step changes it)."""
        return self._state

    @property
    def episodes(self) -> episode.Episode:
        """The sub-envs' episode bookkeeping, arrays over sub-envs (live)."""
        return self._ep

    @property
    def observer(self) -> Observer:
        return self._observer

    @property
    def generators(self) -> list[np.random.Generator | None]:
        """Each sub-env's generator (the live backend draws its channel seeds from it, as `LLMSplitEnv` does)."""
        return self._rngs

    def draw_normals(self, n: int) -> np.ndarray:
        """``[n, num_envs]``: the next ``n`` normals of every sub-env's stream (the rule of `LLMSplitEnv`)."""
        return self._normals(n)

    # --- reset ----------------------------------------------------------------------------------------------------

    def _normals(self, n: int, idx: np.ndarray | None = None) -> np.ndarray:
        """``[n, len(idx)]``: the next ``n`` normals of each sub-env's stream (`llmsplit_env.episode.next_position`).

        The streams are the columns of ``_zbuf[NORMAL_CHUNK, num_envs]``, so while every sub-env is at the same
        position (``_zsync``) a request is a contiguous slab. A refill of all streams lets each generator write a
        contiguous row of a scratch array and transposes it in blocks of rows (several times faster than a plain
        transposed copy).
        """
        N = self.num_envs
        if idx is None and self._zsync is not None:
            p, refill = episode.next_position(self._zsync, n)
            if refill:
                scratch, rngs, buf = self._zscratch, self._rngs, self._zbuf
                for i in range(N):
                    rngs[i].standard_normal(out=scratch[i])
                for i in range(0, N, 32):
                    buf[:, i : i + 32] = scratch[i : i + 32].T
            self._zsync = p + n
            return self._zbuf[p : p + n]
        if self._zsync is not None:
            self._zp[:] = self._zsync
            self._zsync = None
        ids = self._arange if idx is None else idx
        p, refill = episode.next_position(self._zp[ids], n)
        if refill.any():
            for i in ids[refill].tolist():
                self._zbuf[:, i] = self._rngs[i].standard_normal(episode.NORMAL_CHUNK)
        self._zp[ids] = p + n
        return self._zbuf[p[None, :] + np.arange(n)[:, None], ids[None, :]]

    def _reset_envs(self, idx: np.ndarray, seeds: list[int | None] | None = None) -> None:
        """Reset sub-envs ``idx`` with the draws `LLMSplitEnv.reset` makes, vectorised over sub-envs."""
        dyn = self._dyn
        rngs = self._rngs
        everyone = len(idx) == self.num_envs
        reseeded = []
        for i in idx.tolist():
            if rngs[i] is None or (seeds is not None and seeds[i] is not None):
                rngs[i], _ = seeding.np_random(None if seeds is None else seeds[i])
                reseeded.append(i)
        if reseeded:  # a new generator: forget the normals drawn from the old one
            if everyone and len(reseeded) == self.num_envs:
                self._zsync = episode.NORMAL_CHUNK
            else:
                if self._zsync is not None:
                    self._zp[:] = self._zsync
                    self._zsync = None
                self._zp[reseeded] = episode.NORMAL_CHUNK
        nd = dyn.reset_normals
        head = self._normals(nd + 2, None if everyone else idx)
        dyn.reset_batch(self._state, idx, head[:nd])
        k0 = episode.initial_split(self.problem, head[nd], head[nd + 1])
        start = episode.Episode(k0)
        if self.problem.needs_ppl0:
            start.ppl0 = self._qb.baseline_ppl_batch(k0, self._state["level"][idx])
        self._ep.put(idx, start)

    def _reset_infos(self, idx: np.ndarray) -> dict[str, Any]:
        N = self.num_envs
        mask = np.zeros(N, dtype=bool)
        mask[idx] = True
        info: dict[str, Any] = {}
        for key, values, dtype in (
            (self.level_name, self._state["level"], np.float64),
            ("split", self._ep.prev_split, np.int64),
            ("quality_evals", np.zeros(N, np.int64), np.int64),
            *((("ppl0", self._ep.ppl0, np.float64),) if self.problem.needs_ppl0 else ()),
        ):
            arr = np.zeros(N, dtype=dtype)
            arr[idx] = values[idx]
            info[key], info["_" + key] = arr, mask.copy()
        return info

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        N = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * N
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(N)]
        else:
            seeds = list(seed)
            if len(seeds) != N:
                raise ValueError(f"seed list must have num_envs = {N} entries, got {len(seeds)}")
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; allowed: reset_mask")
        if mask is None:
            mask = np.ones(N, dtype=bool)
        elif not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (N,) or not mask.any():
            raise ValueError(f"options['reset_mask'] must be a bool array of shape ({N},) with a True entry")
        idx = np.flatnonzero(mask)
        self._reset_envs(idx, seeds)
        self._autoreset[idx] = False
        self._n_autoreset = int(np.count_nonzero(self._autoreset))
        return self._observations(), self._reset_infos(idx)

    # --- step -----------------------------------------------------------------------------------------------------

    def step(self, actions):
        N = self.num_envs
        if self._rngs[0] is None:
            raise episode.NotResetError("step() before reset(): call envs.reset(seed=...) first")
        a = np.asarray(actions)
        if a.shape != (N,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({N},), got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= self._n:
            bad = a[(a < 0) | (a >= self._n)]
            raise ValueError(f"actions {bad.tolist()} are out of range: each must lie in 0..{self._n - 1}")
        p = self.problem
        if self._has_excluded and not p.relative:  # refused before anything moves (autoresets included)
            ok = self._allowed[a + p.k_min] | self._autoreset  # a sub-env being reset ignores its action
            if not ok.all():
                bad = sorted(set((a[~ok] + p.k_min).tolist()))
                raise ValueError(f"actions select excluded splits {bad}; check action_masks()")
        if self._n_autoreset:
            reset_idx = np.flatnonzero(self._autoreset)
            self._reset_envs(reset_idx)
            if reset_idx.size == N:  # every sub-env was reset: nothing steps
                self._autoreset[:] = False
                self._n_autoreset = 0
                no = np.zeros(N, dtype=bool)
                return self._observations(), np.zeros(N), no, no.copy(), self._reset_infos(reset_idx)
        else:
            reset_idx = self._no_idx
        # `act` selects the sub-envs that step: a slice (views, no copies) in the usual case where all do
        all_active = reset_idx.size == 0
        act = slice(None) if all_active else np.flatnonzero(~self._autoreset)

        ep = self._ep.take(act)
        prev = ep.prev_split
        k = p.splits_of(a if all_active else a[act], prev)
        move = k - prev
        st = self._state if all_active else {n: v[act] for n, v in self._state.items()}
        self._dyn.on_action_batch(st, move)
        level = st["level"]

        z = self._normals(NOISE_COLUMNS, None if all_active else act)

        # quality backend -> reward components -> reward
        qb = self._qb
        log_ppl, loss = qb.sample_batch(k, level, z[4])
        if qb.loss_units:  # the mean lost fraction -> the transmission's
            loss = realised_loss_batch(loss, z[5], qb.loss_units)
        ppl = np.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        o = outcome(k, move, level, quality, ppl, ep.ppl0, p.airtime(k, level))
        comps, r = p.score(o)
        # a component may return a plain number (the same for every sub-env); no weighted component leaves r = 0.0
        comps = {c: v if isinstance(v, np.ndarray) else np.full(len(k), v, dtype=np.float64) for c, v in comps.items()}
        if not isinstance(r, np.ndarray):
            r = np.full(len(k), r, dtype=np.float64)

        # the channel moves on; the episodes' bookkeeping (copied back: infos never share the state's memory)
        est_prev = st["estimate"]
        self._dyn.advance_batch(st, z)
        if not all_active:
            for n, v in st.items():
                self._state[n][act] = v
        trunc = episode.end_step(p, ep, k, loss, quality, est_prev, st["estimate"])
        self._ep.put(act, ep)

        if all_active:
            rewards = r
            truncated = trunc
        else:
            rewards = np.zeros(N)
            rewards[act] = r
            truncated = np.zeros(N, dtype=bool)
            truncated[act] = trunc
        self._autoreset = truncated.copy()
        self._n_autoreset = int(np.count_nonzero(truncated))
        info = self._step_infos(act, all_active, reset_idx, comps, ppl, loss, level)
        return self._observations(), rewards, np.zeros(N, dtype=bool), truncated, info

    def _step_infos(self, act, all_active, reset_idx, comps, ppl, loss, level) -> dict[str, Any]:
        N = self.num_envs
        if all_active:
            step_mask = np.ones(N, dtype=bool)

            def scatter(values, dtype=np.float64):
                return values
        else:
            step_mask = np.ones(N, dtype=bool)
            step_mask[reset_idx] = False

            def scatter(values, dtype=np.float64):
                out = np.zeros(N, dtype=dtype)
                out[act] = values
                return out

        rewards: dict[str, Any] = {}
        for c, v in comps.items():
            rewards[c], rewards["_" + c] = scatter(v), step_mask
        info: dict[str, Any] = {"rewards": rewards, "_rewards": step_mask}
        if self._qb.knows_ppl:  # (the reward surrogate knows no perplexity)
            info["ppl"], info["_ppl"] = scatter(ppl), step_mask
        info["packet_loss"], info["_packet_loss"] = scatter(loss), step_mask
        outside = (level < self._qb.level_lo) | (level > self._qb.level_hi)
        info["outside_grid"], info["_outside_grid"] = scatter(outside, bool), step_mask
        # keys a reset also reports: sub-envs reset this step show their reset values
        everyone = np.ones(N, dtype=bool)
        info["split"], info["_split"] = self._ep.prev_split.copy(), everyone
        info[self.level_name] = level.copy() if all_active else scatter(level)  # never the live state array
        info["_" + self.level_name] = everyone
        if not all_active:
            info[self.level_name][reset_idx] = self._state["level"][reset_idx]
        info["quality_evals"], info["_quality_evals"] = np.zeros(N, dtype=np.int64), everyone
        if self.problem.needs_ppl0:
            info["ppl0"], info["_ppl0"] = self._ep.ppl0.copy(), everyone
        return info

    def _observations(self) -> np.ndarray:
        return self._observer.columns(self._ep, self._state, self._obs).astype(np.float32)

    # --- oracle and masks -----------------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Bool ``[num_envs, n]`` (the same mask for every sub-env)."""
        return np.tile(self.problem.masks, (self.num_envs, 1))

    def expected_rewards(self) -> np.ndarray:
        """``[num_envs, n]``: `LLMSplitEnv.expected_rewards` of each sub-env's current true state."""
        if self._rngs[0] is None:
            raise episode.NotResetError("expected_rewards() before reset(): call envs.reset(seed=...) first")
        dyn, p = self._dyn, self.problem
        out = np.empty((self.num_envs, self._n))
        saved = dyn.get_state()  # the scalar dynamics object stands in for each sub-env in turn
        try:
            for i in range(self.num_envs):
                dyn.set_state([self._state[n][i] for n in dyn.state_names])
                out[i] = p.expected_rewards(
                    int(self._ep.prev_split[i]), dyn.level_after, self._qb.expectations, float(self._ep.ppl0[i])
                )
        finally:
            dyn.set_state(saved)
        return out
