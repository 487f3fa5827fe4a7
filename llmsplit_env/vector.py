"""`LLMSplitVectorEnv`: N profile-backed `LLMSplitEnv` s stepped at once in numpy.

``gym.make_vec("LLMSplit-v0", num_envs=N, vectorization_mode="vector_entry_point")`` (or ``"LLMSplit-Paper-v0"``)
builds it; keyword arguments (``config``, ``preset``) are those of `LLMSplitEnv`. Only the profile backend is
vectorised (the live backend runs a model per step; use ``vectorization_mode="sync"``).

Semantics are those of N single envs: each sub-env has its own generator and its own stream of normals, consumed
by the same rule as `LLMSplitEnv` (see `LLMSplitEnv._normals`), so trajectories, rewards and infos equal those of
``SyncVectorEnv`` over single envs with the same seeds (up to the last bit of `math` vs numpy transcendental
functions). Only the generator calls (one per sub-env every few episodes) are a Python loop; the rest is numpy over
sub-envs. ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (Gymnasium's convention); ``seed=[...]`` gives one
seed per sub-env; ``options={"reset_mask": mask}`` resets a subset.

Autoreset: ``AutoresetMode.NEXT_STEP``, like Gymnasium's default. The step after a sub-env truncates resets it: its
action is ignored, its observation is the reset observation, its reward 0 and its flags ``False``; its infos are the
reset infos (``split``, the level, ``quality_evals``, ``ppl0``), and the step-only keys (``rewards``, ``ppl``,
``packet_loss``) are masked out (``info["_ppl"][i]`` is ``False``). Info arrays never share memory with the env's
state, so infos kept across steps and autoresets do not change.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium.spaces import Box, MultiDiscrete
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv

from llmsplit_env.dynamics import NOISE_COLUMNS, uniform_from_normals
from llmsplit_env.env import NORMAL_CHUNK, LLMSplitEnv
from llmsplit_env.quality.backends import ProfileQuality, realised_loss_batch


class LLMSplitVectorEnv(VectorEnv):
    """N LLMSplit envs on the profile backend, stepped together (see the module docstring)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        config: dict | None = None,
        preset: str | None = None,
        render_mode: str | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError("LLMSplitVectorEnv does not render; use vectorization_mode='sync' with a render_mode")
        config = dict(config or {})
        if max_episode_steps is not None:
            config["max_episode_steps"] = max_episode_steps
        # A template env holds the validated config, the backend, the dynamics (its scalar path draws resets) and
        # every per-split constant; the batch path reads them from it.
        config = LLMSplitEnv.resolve_config(config, preset)
        if config["backend"] != "profile":
            raise ValueError("LLMSplitVectorEnv vectorises the profile backend only; config backend is 'llm'")
        self.env = env = LLMSplitEnv(config)
        self.config = env.config
        self.num_envs = N = int(num_envs)
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.observation_space = Box(
            np.tile(env.observation_space.low, (N, 1)), np.tile(env.observation_space.high, (N, 1)), dtype=np.float32
        )
        self.action_space = MultiDiscrete(np.full(N, env.action_space.n))
        self.render_mode = None
        self.level_name = env.level_name

        L = env.num_layers
        self._dyn = env.dynamics
        self._qb: ProfileQuality = env.quality_backend
        self._n = env.action_space.n
        self._allowed = np.array(env._allowed, dtype=bool)
        self._k_min = env.k_min
        self._relative = env._relative
        if self._relative:
            targets = np.zeros((L + 1, self._n), dtype=np.int64)
            for k in env.allowed_splits:
                targets[k] = env._targets[k]
            self._targets = targets
        transmits = [1.0] * L + [0.0]  # k < L sends H_k
        self._split_table = np.array([env._ue_compute, env._privacy, env._compute_s, transmits, env._paper_load])
        self._obs_low = np.array(env._obs_low)
        self._obs_high = np.array(env._obs_high)
        self._w = env._w

        self._rngs: list[np.random.Generator | None] = [None] * N
        self._state = {name: np.zeros(N) for name in self._dyn.state_names}
        self._prev = np.zeros(N, dtype=np.int64)
        self._t = np.zeros(N, dtype=np.int64)
        self._trend = np.zeros(N)
        self._last_loss = np.zeros(N)
        self._last_quality = np.ones(N)
        self._ppl0 = np.full(N, np.nan)
        self._zbuf = np.zeros((NORMAL_CHUNK, N))  # per sub-env stream of normals (column i)
        self._zscratch = np.zeros((N, NORMAL_CHUNK))  # refills: one contiguous row per generator
        self._zp = np.full(N, NORMAL_CHUNK, dtype=np.int64)
        self._autoreset = np.zeros(N, dtype=bool)
        self._arange = np.arange(N)
        self._no_idx = np.zeros(0, dtype=np.int64)
        self._n_autoreset = 0
        self._zsync: int | None = NORMAL_CHUNK  # the common stream position while all sub-envs share one
        self._has_excluded = not self.env.action_masks().all()
        self._initial = np.asarray(env._initial_splits, dtype=np.int64)
        self._obs = np.zeros((N, len(env._obs_low)))

    # --- reset ----------------------------------------------------------------------------------------------------

    def _normals(self, n: int, idx: np.ndarray | None = None) -> np.ndarray:
        """``[n, len(idx)]``: the next ``n`` normals of each sub-env's stream (`LLMSplitEnv._normals`' rule).

        The streams are the columns of ``_zbuf[NORMAL_CHUNK, num_envs]``, so while every sub-env is at the same
        position (``_zsync``) a request is a contiguous slab. A refill of all streams lets each generator write a
        contiguous row of a scratch array and transposes it in blocks of rows (several times faster than a plain
        transposed copy).
        """
        N = self.num_envs
        if idx is None and self._zsync is not None:
            p = self._zsync
            if p + n > NORMAL_CHUNK:
                scratch, rngs, buf = self._zscratch, self._rngs, self._zbuf
                for i in range(N):
                    rngs[i].standard_normal(out=scratch[i])
                for i in range(0, N, 32):
                    buf[:, i : i + 32] = scratch[i : i + 32].T
                p = 0
            self._zsync = p + n
            return self._zbuf[p : p + n]
        if self._zsync is not None:
            self._zp[:] = self._zsync
            self._zsync = None
        ids = self._arange if idx is None else idx
        p = self._zp[ids]
        over = p + n > NORMAL_CHUNK
        if over.any():
            for i in ids[over].tolist():
                self._zbuf[:, i] = self._rngs[i].standard_normal(NORMAL_CHUNK)
            p[over] = 0
        self._zp[ids] = p + n
        return self._zbuf[p[None, :] + np.arange(n)[:, None], ids[None, :]]

    def _reset_envs(self, idx: np.ndarray, seeds: list[int | None] | None = None) -> None:
        """Reset sub-envs ``idx`` with the draws `LLMSplitEnv.reset` makes, vectorised over sub-envs."""
        env, dyn = self.env, self._dyn
        rngs = self._rngs
        everyone = len(idx) == self.num_envs
        reseeded = []
        for i in idx.tolist():
            if rngs[i] is None or (seeds is not None and seeds[i] is not None):
                rngs[i], _ = seeding.np_random(None if seeds is None else seeds[i])
                reseeded.append(i)
        if reseeded:  # a new generator: forget the normals drawn from the old one
            if everyone and len(reseeded) == self.num_envs:
                self._zsync = NORMAL_CHUNK
            else:
                if self._zsync is not None:
                    self._zp[:] = self._zsync
                    self._zsync = None
                self._zp[reseeded] = NORMAL_CHUNK
        nd = dyn.reset_normals
        head = self._normals(nd + 2, None if everyone else idx)
        dyn.reset_batch(self._state, idx, head[:nd])
        n_init = len(self._initial)
        pick = np.minimum((uniform_from_normals(head[nd], head[nd + 1]) * n_init).astype(np.int64), n_init - 1)
        k0 = self._initial[pick]
        self._prev[idx] = k0
        self._t[idx] = 0
        self._trend[idx] = 0.0
        self._last_loss[idx] = 0.0
        self._last_quality[idx] = 1.0
        if env._need_ppl0:
            self._ppl0[idx] = self._qb.baseline_ppl_batch(k0, self._state["level"][idx])

    def _reset_infos(self, idx: np.ndarray) -> dict[str, Any]:
        N = self.num_envs
        mask = np.zeros(N, dtype=bool)
        mask[idx] = True
        info: dict[str, Any] = {}
        for key, values, dtype in (
            (self.level_name, self._state["level"], np.float64),
            ("split", self._prev, np.int64),
            ("quality_evals", np.zeros(N, np.int64), np.int64),
            *((("ppl0", self._ppl0, np.float64),) if self.env._need_ppl0 else ()),
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
        a = np.asarray(actions)
        if a.shape != (N,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array of shape ({N},), got {a.dtype} {a.shape}")
        if a.min() < 0 or a.max() >= self._n:
            bad = a[(a < 0) | (a >= self._n)]
            raise ValueError(f"actions {bad.tolist()} are out of range: each must lie in 0..{self._n - 1}")
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

        prev = self._prev[act]
        aa = a if all_active else a[act]
        if self._relative:
            k = self._targets[prev, aa]
        else:
            k = aa + self._k_min
            if self._has_excluded:
                ok = self._allowed[k]
                if not ok.all():
                    bad = sorted(set(k[~ok].tolist()))
                    raise ValueError(f"actions select excluded splits {bad}; check action_masks()")
        move = k - prev
        st = self._state if all_active else {n: v[act] for n, v in self._state.items()}
        self._dyn.on_action_batch(st, move)
        level = st["level"]

        z = self._normals(NOISE_COLUMNS, None if all_active else act)

        # quality backend -> reward components -> reward
        env, qb = self.env, self._qb
        log_ppl, loss = qb.sample_batch(k, level, z[4])
        loss = realised_loss_batch(loss, z[5], qb.loss_units)  # the mean lost fraction -> the transmission's
        ppl = np.exp(log_ppl)
        quality = qb.clean_ppl / ppl
        g = self._split_table.take(k, axis=1)  # per split: ue_compute, privacy, compute s, transmits, paper_load
        snr = level if env._level_is_snr else np.full(len(k), env._nominal_snr_db)
        air = snr / 10.0
        np.power(10.0, air, out=air)
        air += 1.0
        np.log2(air, out=air)
        air *= env._bandwidth
        np.divide(env.payload_bits, air, out=air)
        np.minimum(air, env.max_airtime_s, out=air)
        air *= g[3]
        latency = air + g[2]
        latency *= -1.0 / env._lat_ref
        switching = np.abs(move) * -env._inv_L
        comps = {"quality": quality, "ue_compute": g[0], "privacy": g[1], "switching": switching, "latency": latency}
        if env._paper_terms:
            ppl0 = self._ppl0[act]
            comps["ppl_gain"] = (ppl0 - ppl) / ppl0
            comps["paper_load"] = g[4]
        r = np.zeros(len(k))
        for v, wc in zip(comps.values(), self._w, strict=False):
            if wc != 0.0:  # a zero weight adds exactly 0.0 in the scalar path too
                r += wc * v

        # the channel moves on
        est_prev = st["estimate"]
        self._dyn.advance_batch(st, z)
        if not all_active:
            for n, v in st.items():
                self._state[n][act] = v
        beta = env._beta
        self._trend[act] = beta * self._trend[act] + (1.0 - beta) * (st["estimate"] - est_prev)
        self._prev[act] = k
        self._last_loss[act] = loss
        self._last_quality[act] = quality
        self._t[act] += 1

        if all_active:
            rewards = r
            truncated = self._t >= env.max_episode_steps
        else:
            rewards = np.zeros(N)
            rewards[act] = r
            truncated = np.zeros(N, dtype=bool)
            truncated[act] = self._t[act] >= env.max_episode_steps
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
        info["ppl"], info["_ppl"] = scatter(ppl), step_mask
        info["packet_loss"], info["_packet_loss"] = scatter(loss), step_mask
        # keys a reset also reports: sub-envs reset this step show their reset values
        everyone = np.ones(N, dtype=bool)
        info["split"], info["_split"] = self._prev.copy(), everyone
        info[self.level_name] = level.copy() if all_active else scatter(level)  # never the live state array
        info["_" + self.level_name] = everyone
        if not all_active:
            info[self.level_name][reset_idx] = self._state["level"][reset_idx]
        info["quality_evals"], info["_quality_evals"] = np.zeros(N, dtype=np.int64), everyone
        if self.env._need_ppl0:
            info["ppl0"], info["_ppl0"] = self._ppl0.copy(), everyone
        return info

    def _observations(self) -> np.ndarray:
        env, obs = self.env, self._obs
        lo, hi = self._obs_low, self._obs_high
        np.minimum(np.maximum(self._state["estimate"], lo[0]), hi[0], out=obs[:, 0])
        np.minimum(np.maximum(self._trend, lo[1]), hi[1], out=obs[:, 1])
        obs[:, 2] = self._last_loss  # in [0, 1] by construction
        np.multiply(self._prev, env._inv_L, out=obs[:, 3])  # in [1/L, 1]
        for j, e in enumerate(env._extras, start=4):
            if e == "distance":
                col = np.hypot(self._state["x"], self._state["y"]) / self._dyn.mobility.cell_radius
            elif e == "speed":
                col = self._state["speed"]
            elif e == "time":
                col = self._t / env.max_episode_steps
            elif e == "log_ppl0":
                col = np.log(self._ppl0)
            else:
                col = self._last_quality
            np.minimum(np.maximum(col, lo[j]), hi[j], out=obs[:, j])
        return obs.astype(np.float32)

    # --- oracle and masks -----------------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Bool ``[num_envs, n]`` (the same mask for every sub-env)."""
        return np.tile(self.env.action_masks(), (self.num_envs, 1))

    def expected_rewards(self) -> np.ndarray:
        """``[num_envs, n]``: `LLMSplitEnv.expected_rewards` of each sub-env's current true state."""
        env, dyn = self.env, self._dyn
        saved = dyn.get_state()
        saved_prev, saved_ppl0 = env.prev_split, env._ppl0
        out = np.empty((self.num_envs, self._n))
        try:
            for i in range(self.num_envs):
                dyn.set_state([self._state[n][i] for n in dyn.state_names])
                env.prev_split = int(self._prev[i])
                env._ppl0 = float(self._ppl0[i])
                out[i] = env.expected_rewards()
        finally:
            dyn.set_state(saved)
            env.prev_split, env._ppl0 = saved_prev, saved_ppl0
        return out

    def close_extras(self, **kwargs: Any) -> None:
        self.env.close()
