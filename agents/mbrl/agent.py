"""`MBRLAgent`: model-based RL for split selection — learn the reward and the channel, plan over splits.

The loop (``learn(total_timesteps)`` runs that many env steps; real evaluations are counted by `count_rule`: the live
backend's own count, or on a profile one per step at a split that sends something. With the defaults the agent never
steps where nothing is transmitted, so every learning step is a real evaluation on either backend):

1. **Warm-up**: ``warmup_steps`` steps over the evaluable splits in shuffled rounds.
2. **Models**: a `GaussianEnsemble` learns the per-step reward components that depend on the channel and the split
   from ``[channel features, k/L, one-hot(k)]``; a second ensemble learns the channel's next-step change from the
   channel features alone. Both are refitted when the warm-up ends and then whenever the transitions have grown by
   ``max(refit_every, refit_growth × those of the last fit)`` (warm-started unless ``reset_on_refit``; β-NLL with
   ``nll_beta``, held-out early stopping on ``stop_on``, elites). Reward features leave out the level's trend: it
   says where the channel goes, not what this step's transmission yields. ``switching`` is a known function of the
   action and never learned; with ``known_rewards`` (default) neither are the per-split tables (``ue_compute``,
   ``privacy``), read from the problem, nor the quality where nothing is transmitted (exactly 1, at ``k = L``), and
   the quality is bounded to ``[0, 1]`` (`agents.mbrl.structure`).
3. **Where to evaluate** while learning: ``acquisition="decision"`` (default) evaluates, at the observed channel, the
   split whose reward is most uncertain among those that may be best (`planning.decision_acquisition`), never one
   whose reward is known; ``"planner"`` lets the planner explore: its first step's rewards are
   `planning.one_step_scores` of the elite members' predictions, an optimism bonus ``beta`` × their spread
   (``planner="ucb"``) or one member per decision (``planner="thompson"``).
4. **Planning**, native to discrete splits: predicted rewards of every split at the observed channel; for
   ``horizon > 1``, ``n_rollouts`` channel trajectories sampled from the dynamics ensemble give a ``[N, H, K]`` reward
   table, and dynamic programming over splits (`planning.plan_dp`) maximises it minus the switching cost that
   couples the steps. ``predict(deterministic=True)`` plans on the elite mean less ``caution`` × the elites' spread
   along the mean channel (``caution=0``: the mean, ``"greedy"``).

Channel features: every observation dimension that does not depend on the agent's own past actions (not
``packet_loss``, ``prev_split``, ``last_quality``), found by name in ``observation_names``, as is the previous split.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import llmsplit_env  # noqa: F401  (registers the env ids for MBRLAgent("LLMSplit-v0"))
from agents.common.callbacks import RewardComponentTracker
from agents.common.env_util import count_rule, env_layout, make_env
from agents.common.limits import MAX_PART_BYTES, check_network, read_file_bounded
from agents.common.logger import configure_logger
from agents.common.save_util import load_weights, not_a_saved, predict_actions, require_saved, weights_bytes
from agents.mbrl.ensemble import GaussianEnsemble, encode_inputs
from agents.mbrl.planning import decision_acquisition, one_step_scores, plan_dp
from agents.mbrl.structure import KnownRewards, check_budget, check_options, model_spec
from llmsplit_env.util.files import atomic_write_bytes

__all__ = ["MBRLAgent", "check_budget", "model_spec"]

# the dtypes `MBRLAgent.save` stores its transitions as (float64 rewards: exactly the recorded values)
_DATA_DTYPES = {"obs": np.float32, "split": np.int64, "y": np.float64, "next_obs": np.float32}
#: the saved format's version: 2 added the known tables and the options of `LEGACY_HPARAMS`, whose values give a
#: version-1 file the behaviour it was trained with
SAVE_VERSION = 2
LEGACY_HPARAMS = {"known_rewards": False, "acquisition": "planner", "caution": 0.0, "refit_growth": 0.0,
                  "nll_beta": 0.0, "stop_on": "nll"}  # fmt: skip


class MBRLAgent:
    """Model-based split selection with an ensemble surrogate and discrete planning (SB3-style surface)."""

    def __init__(
        self,
        env: gym.Env | str,
        *,
        warmup_steps: int = 10,
        refit_every: int = 5,
        refit_growth: float = 0.05,
        horizon: int = 1,
        n_rollouts: int = 8,
        planner: str = "ucb",
        beta: float = 2.0,
        known_rewards: bool = True,
        acquisition: str = "decision",
        caution: float = 0.0,
        ensemble_size: int = 5,
        num_elites: int = 4,
        hidden_dims: tuple[int, ...] = (200, 200, 200),
        dynamics_hidden_dims: tuple[int, ...] = (64, 64),
        max_epochs: int = 400,
        patience: int = 30,
        nll_beta: float = 0.5,
        stop_on: str = "mse",
        reset_on_refit: bool = False,
        seed: int = 0,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        env_kwargs: dict | None = None,
    ) -> None:
        env = make_env(env, env_kwargs)
        hparams = {
            "warmup_steps": warmup_steps, "refit_every": refit_every, "refit_growth": refit_growth, "horizon": horizon,
            "n_rollouts": n_rollouts, "planner": planner, "beta": beta, "known_rewards": known_rewards,
            "acquisition": acquisition, "caution": caution, "ensemble_size": ensemble_size, "num_elites": num_elites,
            "hidden_dims": tuple(hidden_dims),
            "dynamics_hidden_dims": tuple(dynamics_hidden_dims), "max_epochs": max_epochs, "patience": patience,
            "nll_beta": nll_beta, "stop_on": stop_on,
            "reset_on_refit": bool(reset_on_refit), "seed": seed,
        }  # fmt: skip
        check_options(hparams)
        self._setup(env, model_spec(env_layout(env)), hparams, tensorboard_log, verbose)

    def _setup(self, env: gym.Env | None, spec: dict, hparams: dict, tensorboard_log: str | None, verbose: int,
               known: KnownRewards | None = None) -> None:  # fmt: skip
        """A fresh agent's state (the constructor's, and `load`'s before it restores the saved state)."""
        self.env = env
        self.spec = spec
        self.hparams = hparams
        if hparams["known_rewards"] and known is None:
            known = KnownRewards.of_env(env, spec["splits"], spec["components"])
        if known is not None and not known.learned(spec["components"]):  # nothing left to learn: learn them all
            known = KnownRewards(known.transmits, {})
        #: the reward structure known without evaluations (``None``: everything but switching is learned)
        self.known = known
        #: the components the reward model learns, and the splits where a learning step can teach it something
        self.learned = spec["components"] if known is None else known.learned(spec["components"])
        self.evaluable = np.ones(len(spec["splits"]), bool) if known is None else known.evaluable(spec["components"])
        self.seed = hparams["seed"]
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.rng = np.random.default_rng(self.seed)
        self.num_timesteps = 0
        self.quality_evals = 0
        self.reward_model: GaussianEnsemble | None = None
        self.dynamics_model: GaussianEnsemble | None = None
        self._data: dict[str, list] = {"obs": [], "split": [], "y": [], "next_obs": []}
        self.fit_stats: dict[str, Any] = {}
        self._fit_n = 0  # transitions at the last refit (a loaded agent: counted from its saved transitions)
        self._last_eval: int | None = None
        self._check_networks()

    def _check_networks(self) -> None:
        """Both ensembles' layer widths, depths and sizes within `agents.common.limits` (before any is built)."""
        h, spec = self.hparams, self.spec
        c, n_out = len(spec["channel_dims"]), len(self.learned)
        in_dim = len(spec["reward_dims"]) + 1 + spec["num_layers"]
        check_network(h["hidden_dims"], "mbrl: hidden_dims", in_dim, 2 * n_out, copies=h["ensemble_size"])
        dyn_hidden = h.get("dynamics_hidden_dims", h["hidden_dims"])
        check_network(dyn_hidden, "mbrl: dynamics_hidden_dims", c, 2 * c, copies=h["ensemble_size"])

    @property
    def data(self) -> dict[str, list]:
        """The transitions so far: channel features ``obs``, ``next_obs``, ``split``, reward components ``y``."""
        return self._data

    # --- features ------------------------------------------------------------------------------------------------

    def _channel(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32)[..., self.spec["channel_dims"]]

    def _reward_inputs(self, channel: np.ndarray, splits) -> np.ndarray:
        """``[reward features of the channel, k/L, one-hot(k)]`` from channel features (``channel_dims`` order)."""
        cols = [self.spec["channel_dims"].index(i) for i in self.spec["reward_dims"]]
        return encode_inputs(channel[..., cols], splits, self.spec["num_layers"], one_hot=True)

    def _new_models(self) -> None:
        h = self.hparams
        c = len(self.spec["channel_dims"])
        common = {"ensemble_size": h["ensemble_size"], "num_elites": h["num_elites"]}
        in_dim = len(self.spec["reward_dims"]) + 1 + self.spec["num_layers"]
        self.reward_model = GaussianEnsemble(
            in_dim, len(self.learned), seed=self.seed, hidden_dims=h["hidden_dims"], **common
        )
        # The channel's next-step change is a smooth low-dimensional map: a small network is enough.
        dyn_hidden = h.get("dynamics_hidden_dims", h["hidden_dims"])
        self.dynamics_model = GaussianEnsemble(c, c, seed=self.seed + 1, hidden_dims=dyn_hidden, **common)

    # --- learning ------------------------------------------------------------------------------------------------

    def _record(self, obs, split, info, next_obs) -> None:
        self._data["obs"].append(self._channel(obs))
        self._data["split"].append(split)
        self._data["y"].append([info["rewards"][c] for c in self.spec["components"]])
        self._data["next_obs"].append(self._channel(next_obs))

    def refit(self) -> dict[str, Any]:
        """Fit both ensembles on every transition so far (warm-started)."""
        if self.reward_model is None:
            self._new_models()
        obs = np.asarray(self._data["obs"], dtype=np.float32)
        x = self._reward_inputs(obs, np.asarray(self._data["split"]))
        cols = [self.spec["components"].index(c) for c in self.learned]
        y = np.asarray(self._data["y"], dtype=np.float32)[:, cols]
        # Warm starts (the default) make later refits cheap and keep the policy stable from one refit to the next;
        # small networks or short patience underfit the quality-vs-SNR curves badly (measured: 5x the error), and so
        # does the plain NLL: the near-noiseless points at a bad link get tiny variances and dominate it (β-NLL).
        h = self.hparams
        fit = {"max_epochs": h["max_epochs"], "patience": h["patience"], "reset": h.get("reset_on_refit", False),
               "nll_beta": h["nll_beta"], "stop_on": h["stop_on"]}  # fmt: skip
        t0 = time.perf_counter()
        rs = self.reward_model.fit(x, y, **fit)
        # Episode boundaries are not transitions of the channel: next_obs there is a fresh reset, learnt as noise.
        delta = np.asarray(self._data["next_obs"], dtype=np.float32) - obs
        ds = self.dynamics_model.fit(obs, delta, **fit)
        self._fit_n = len(y)
        self.fit_stats = {
            "reward_train_loss": rs["train_loss"], "reward_val_loss": rs["val_loss"], "reward_val_mse": rs["val_mse"],
            "reward_epochs": rs["epochs"], "dynamics_val_loss": ds["val_loss"], "dynamics_val_mse": ds["val_mse"],
            "fit_s": time.perf_counter() - t0, "num_samples": len(y),
        }  # fmt: skip
        return self.fit_stats

    def learn(
        self,
        total_timesteps: int,
        callback: Callable[[dict[str, Any]], bool | None] | None = None,
        tb_log_name: str = "MBRL",
        progress_bar: bool = False,
        eval_fn: Callable[[MBRLAgent], dict[str, float]] | None = None,
        eval_freq: int | list[int] = 0,
    ) -> MBRLAgent:
        """Run the MBRL loop for ``total_timesteps`` env steps (real evaluations: module docstring).

        ``callback(locals)`` is called after every step; returning ``False`` stops. ``eval_fn(agent)`` is called every
        ``eval_freq`` steps (or once at each real-evaluation count of a list ``eval_freq``, when the count first reaches
        or passes it) once the models exist, and at the end; its result is logged under ``eval/*``."""
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int) or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        if self.reward_model is None:
            check_budget(total_timesteps, self.hparams["warmup_steps"], len(self._data["y"]))
        logger = configure_logger(self.tensorboard_log, tb_log_name)
        env = self.env
        u = env.unwrapped
        rule = count_rule(env)  # a live backend reports its real evaluations; on a profile a step that sends is one
        tracker = RewardComponentTracker(rule.mode, self.quality_evals, rule.local_split)
        if not isinstance(eval_freq, int):  # each count scored once, when first reached or passed
            eval_freq = sorted(c for c in eval_freq if c > self.quality_evals)
        obs, _ = env.reset(seed=self.seed + self.num_timesteps)
        ep_returns: list[float] = []
        ep_return = 0.0
        bar = tqdm(total=total_timesteps, desc=tb_log_name, disable=not progress_bar, unit="step")
        for _ in range(total_timesteps):
            mask = u.action_masks() if hasattr(u, "action_masks") else None
            if len(self._data["y"]) < self.hparams["warmup_steps"]:
                action = self._warmup_action(mask)
            else:
                action = self._plan(obs, explore=True, mask=mask)
            next_obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            self.num_timesteps += 1
            tracker.update([info], [done])
            self.quality_evals = tracker.quality_evals
            self._record(obs, self.spec["splits"][action], info, next_obs)
            ep_return += float(reward)
            if self._refit_due():
                for k, v in self.refit().items():
                    logger.record(f"model/{k}", v)
            obs = next_obs
            if done:
                ep_returns.append(ep_return)
                ep_return = 0.0
                obs, _ = env.reset()
                self._dump(logger, tracker, ep_returns)
                ep_returns = []
            if eval_fn is not None and self._eval_due(eval_freq):
                self._log_eval(logger, eval_fn)
            bar.update(1)
            if callback is not None and callback(locals()) is False:
                break
        bar.close()
        if eval_fn is not None and self._last_eval != self.quality_evals:
            self._log_eval(logger, eval_fn)
        self._dump(logger, tracker, ep_returns)
        logger.close()
        return self

    def _refit_due(self) -> bool:
        n, h = len(self._data["y"]), self.hparams
        if n < h["warmup_steps"]:
            return False
        if self.reward_model is None or h["refit_growth"] == 0:
            return (n - h["warmup_steps"]) % h["refit_every"] == 0
        last = self._fit_n
        return n - last >= max(h["refit_every"], h["refit_growth"] * last)

    def _warmup_action(self, mask: np.ndarray | None) -> int:
        """Allowed evaluable splits in shuffled rounds: each is tried about equally often before the model decides."""
        mask = np.ones(len(self.spec["splits"]), bool) if mask is None else np.asarray(mask, bool)
        if (mask & self.evaluable).any():
            mask = mask & self.evaluable
        if not getattr(self, "_warmup_queue", None):
            self._warmup_queue = list(self.rng.permutation(len(mask)))
        while self._warmup_queue:
            a = int(self._warmup_queue.pop())
            if mask[a]:
                return a
        return int(self.rng.choice(np.flatnonzero(mask)))

    def _eval_due(self, eval_freq: int | list[int]) -> bool:
        if isinstance(eval_freq, int):
            return eval_freq > 0 and self.num_timesteps % eval_freq == 0
        reached = [c for c in eval_freq if c <= self.quality_evals]  # the count may stall (k = L) or jump (a reset)
        del eval_freq[: len(reached)]
        return bool(reached)

    def _log_eval(self, logger, eval_fn) -> None:
        if self.reward_model is None:  # still warming up: there is no policy to evaluate yet
            return
        self._last_eval = self.quality_evals
        for k, v in eval_fn(self).items():
            logger.record(f"eval/{k}", v)
        logger.record("cost/quality_evals", self.quality_evals)
        logger.dump(self.num_timesteps)

    def _dump(self, logger, tracker, ep_returns: list[float]) -> None:
        if ep_returns:
            logger.record("rollout/ep_rew_mean", float(np.mean(ep_returns)))
        tracker.record(logger)
        tracker.reset_window()
        logger.dump(self.num_timesteps)

    # --- planning ------------------------------------------------------------------------------------------------

    def _weighted(self, comps: np.ndarray) -> np.ndarray:
        w = np.asarray([self.spec["weights"][c] for c in self.learned], dtype=np.float64)
        return comps @ w

    def member_rewards(self, channel: np.ndarray) -> np.ndarray:
        """Every elite member's predicted reward (switching excluded) of every split, ``[E, ..., K]``, at channel
        features ``[..., C]`` (``channel_dims`` order): the learned components, plus the known ones."""
        x = self._reward_inputs(np.asarray(channel, np.float32)[..., None, :], np.asarray(self.spec["splits"]))
        means = self.reward_model.predict_members(x)[0][self.reward_model.elites]  # [E, ..., K, C]
        if self.known is None:
            return self._weighted(means)
        return self.known.rewards(means, self.learned, self.spec["weights"])

    def _plan(self, obs: np.ndarray, explore: bool, mask: np.ndarray | None = None) -> int:
        if self.reward_model is None:
            raise ValueError("the agent has no model yet: call learn() (or load a trained agent) first")
        splits = np.asarray(self.spec["splits"])
        L, H = self.spec["num_layers"], self.hparams["horizon"]
        channel = self._channel(obs)
        prev = float(np.asarray(obs)[self.spec["prev_split_dim"]]) * L
        member_r = self.member_rewards(channel)  # [E, K]
        caution = 0.0 if explore else self.hparams["caution"]
        if explore and self.hparams["acquisition"] == "decision":
            return decision_acquisition(member_r, self.evaluable, self.hparams["beta"], mask)
        if explore:
            first = one_step_scores(member_r, self.hparams["planner"], beta=self.hparams["beta"], rng=self.rng)
        else:
            first = member_r.mean(axis=0) - caution * member_r.std(axis=0)
        if H == 1:
            table = first[None, None, :]
        else:
            n = self.hparams["n_rollouts"] if explore else 1
            states = np.repeat(channel[None, :], n, axis=0)
            rows = [np.repeat(first[None, :], n, axis=0)]
            for _ in range(1, H):
                if explore:
                    states = states + self.dynamics_model.sample(states, generator=self.rng)
                else:
                    states = states + self.dynamics_model.predict(states).mean
                r = self.member_rewards(states)  # [E, n, K]
                rows.append(r.mean(axis=0) - caution * r.std(axis=0))
            table = np.stack(rows, axis=1)  # [n, H, K]
        plan = plan_dp(table, splits, L, self.spec["switch_weight"], prev_split=prev, mask=mask)
        return int(plan.first_action)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, None]:
        """Action(s) for one observation ``[D]`` or a batch ``[B, D]`` (SB3 signature)."""

        def act(batch: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
            rows = [None] * len(batch) if masks is None else masks
            return np.asarray([self._plan(o, not deterministic, m) for o, m in zip(batch, rows, strict=True)])

        n_actions = len(self.spec["splits"])
        return predict_actions(observation, act, action_masks=action_masks, n_actions=n_actions), None

    # --- persistence -------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent (models, spec, hyperparameters, counters) to one file, atomically."""
        import torch

        state = {
            "format": "llmsplit-mbrl",
            "version": SAVE_VERSION,
            "known": None if self.known is None else self.known.to_json(),
            "spec": self.spec,
            "hparams": self.hparams,
            "num_timesteps": self.num_timesteps,
            "quality_evals": self.quality_evals,
            "reward_model": None if self.reward_model is None else self.reward_model.state_dict(),
            "dynamics_model": None if self.dynamics_model is None else self.dynamics_model.state_dict(),
            # tensors (not lists: a pickle is slow and large to read back), so that `load` can use
            # torch.load(weights_only=True): no pickled code runs on load
            "data": {k: torch.as_tensor(np.asarray(v, dtype=_DATA_DTYPES[k])) for k, v in self._data.items()},
        }
        atomic_write_bytes(Path(path), weights_bytes(state))

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None) -> MBRLAgent:
        """Load a saved agent; ``env`` (optional) is only needed to continue learning."""
        path = require_saved(path, "MBRL agent", kind="file")
        # within the limits (size, records, pickle); truncated, not a torch file, or pickled objects: refused
        state = load_weights(read_file_bounded(path, MAX_PART_BYTES), str(path))
        if not isinstance(state, dict) or state.get("format") != "llmsplit-mbrl":
            raise not_a_saved(path, "MBRLAgent")
        version = state.get("version", 1)
        if version not in (1, SAVE_VERSION):
            raise ValueError(f"{path}: unsupported MBRL agent save version {version!r} (this code reads 1 and "
                             f"{SAVE_VERSION}); save it again with the code that wrote it")  # fmt: skip
        if env is not None and model_spec(env_layout(env)) != state["spec"]:
            raise ValueError("env does not match the saved agent's env (splits, observation or reward weights)")
        agent = cls.__new__(cls)
        try:  # the saved network sizes are checked here, before `_restore` builds the models
            hparams = {**LEGACY_HPARAMS, **state["hparams"]}
            known = None if state.get("known") is None else KnownRewards.from_json(state["known"])
            if env is not None and known is not None:
                now = KnownRewards.of_env(env, state["spec"]["splits"], state["spec"]["components"])
                if now.transmits != known.transmits or any(now.tables.get(c) != v for c, v in known.tables.items()):
                    raise ValueError("env does not match the saved agent's known rewards (per-split tables)")
            agent._setup(env, state["spec"], hparams, None, 0, known=known)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        except (KeyError, TypeError) as e:
            raise not_a_saved(path, "MBRLAgent", e) from None
        agent._restore(state)
        return agent

    def _restore(self, state: dict[str, Any]) -> None:
        """Counters, transitions and models from a saved state (on a fresh `_setup`)."""
        self.rng = np.random.default_rng(self.seed + state["num_timesteps"])
        self.num_timesteps = state["num_timesteps"]
        self.quality_evals = state["quality_evals"]
        self._data = {
            "obs": list(np.asarray(state["data"]["obs"], np.float32)),
            "split": [int(k) for k in state["data"]["split"]],
            "y": [[float(v) for v in y] for y in state["data"]["y"]],
            "next_obs": list(np.asarray(state["data"]["next_obs"], np.float32)),
        }
        if state["reward_model"] is not None:
            self._fit_n = len(self._data["y"])
            self._new_models()
            self.reward_model.load_state_dict(state["reward_model"])
            self.dynamics_model.load_state_dict(state["dynamics_model"])
