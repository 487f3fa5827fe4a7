"""`RSMPPOAgent`: the paper's RSM-PPO (see `agents.rsm`): collect, fit the surrogate, train PPO inside it, save."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from agents.common.callbacks import RewardComponentCallback
from agents.common.env_util import collect_transitions, env_layout, make_env
from agents.common.limits import check_net_arch, check_network
from agents.common.save_util import (
    check_format,
    load_weights,
    read_files,
    read_json,
    require_saved,
    weights_bytes,
    write_files,
)
from agents.rsm.env import SurrogateRewardWrapper, SurrogateStatsCallback, make_surrogate_env
from agents.rsm.surrogate import SURROGATES, EnsembleSurrogate, MLPSurrogate, SurrogateFeatures, surrogate_from_state
from agents.sb3 import load_sb3_bytes, make_sb3_agent, sb3_bytes

TARGETS = ("quality_terms", "reward")
QUALITY_TERMS = ("quality", "ppl_gain")  # components that depend on the quality backend
SAVE_FORMAT = "llmsplit-rsm-ppo"
SAVE_VERSION = 1
PAPER_PPO_KWARGS = {"n_steps": 400, "batch_size": 100}  # the authors' surrogate-env PPO (SB3 defaults otherwise)


def _check_sizes(surrogate_kwargs: Mapping[str, Any], ppo_kwargs: Mapping[str, Any], in_dim: int = 0) -> None:
    """The surrogate's and PPO's networks within `agents.common.limits` (widths, depth, weights)."""
    if "hidden_dims" in surrogate_kwargs:
        copies = surrogate_kwargs.get("ensemble_size", 1)
        check_network(surrogate_kwargs["hidden_dims"], "rsm_ppo: surrogate hidden_dims", in_dim, copies=copies)
    policy_kwargs = ppo_kwargs.get("policy_kwargs")
    if isinstance(policy_kwargs, Mapping):
        check_net_arch(policy_kwargs.get("net_arch"), "rsm_ppo: ppo_kwargs policy_kwargs['net_arch']")


class RSMPPOAgent:
    """The paper's RSM-PPO (see the module doc).

    :param env: the real env (gym env or id); collection steps it, so pass a dedicated instance
    :param n_real: real transitions for the surrogate (default 360: the authors' sweep, 8 ρ × 9 splits × 5 runs)
    :param surrogate: ``"mlp"`` (the authors' 2→128→128→1 ReLU MLP on raw features) or ``"ensemble"``
    :param ppo_kwargs: PPO keyword arguments (default: the authors' ``n_steps=400, batch_size=100``)
    :param target: ``"quality_terms"`` or ``"reward"`` (module doc)
    :param obs_dims: observation dims fed to the surrogate, by name (``observation_names``) or index (default: the
        observed ``level``)
    :param raw_split: split feature ``k`` (True) or ``k / L`` (False); default: raw for the paper preset
    :param split_one_hot: also feed a one-hot of ``k`` (not in the paper; see `SurrogateFeatures`)
    :param surrogate_kwargs: extra arguments of `MLPSurrogate` / `GaussianEnsemble`
    """

    def __init__(
        self,
        env: gym.Env | str,
        n_real: int = 360,
        surrogate: str = "mlp",
        ppo_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
        tensorboard_log: str | None = None,
        target: str = "quality_terms",
        obs_dims: Sequence[int | str] = ("level",),
        raw_split: bool | None = None,
        split_one_hot: bool = False,
        surrogate_kwargs: Mapping[str, Any] | None = None,
        verbose: int = 0,
    ) -> None:
        self.env = make_env(env)
        u = self.env.unwrapped
        layout = env_layout(self.env)
        if isinstance(n_real, bool) or int(n_real) != n_real or n_real < 2:
            raise ValueError(f"n_real must be an integer >= 2, got {n_real!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        obs_dims = [layout.index(d) if isinstance(d, str) else d for d in obs_dims]
        obs_dim = layout.obs_dim
        if not obs_dims or any(not 0 <= int(d) < obs_dim for d in obs_dims):
            raise ValueError(f"obs_dims must name observation dims in [0, {obs_dim}), got {list(obs_dims)}")
        self.n_real = int(n_real)
        self.surrogate_kind = surrogate
        self.target = target
        self.seed = int(seed)
        self.tensorboard_log = tensorboard_log
        self.verbose = verbose
        self.ppo_kwargs = dict(PAPER_PPO_KWARGS if ppo_kwargs is None else ppo_kwargs)
        self.surrogate_kwargs = dict(surrogate_kwargs or {})
        _check_sizes(self.surrogate_kwargs, self.ppo_kwargs)
        self.config = dict(u.config)
        self.weights = {c: float(w) for c, w in u.reward_weights.items()}
        added = sorted(set(self.weights) - set(self.config["reward"]["weights"]))
        if added:  # the surrogate phase rebuilds its env from the config, which cannot carry them
            raise ValueError(
                f"RSM-PPO rebuilds its surrogate env from env.config, which has no reward component {added}; "
                "train it on an env without added components"
            )
        if raw_split is None:
            raw_split = self.config.get("preset") == "paper"
        self.features = SurrogateFeatures(obs_dims, u.num_layers, raw_split, split_one_hot)
        if target == "quality_terms":
            self.learned = tuple(c for c in QUALITY_TERMS if self.weights.get(c, 0.0) != 0.0)
        else:
            self.learned = tuple(c for c, w in self.weights.items() if w != 0.0 and c != "switching")
        self.surrogate: MLPSurrogate | EnsembleSurrogate | None = None
        self.fit_stats: dict[str, float] = {}
        self.quality_evals = 0
        self.data: dict[str, np.ndarray] | None = None
        self.ppo: PPO | None = None

    # --- surrogate --------------------------------------------------------------------------------------------
    def target_of(self, reward: float, components: Mapping[str, float]) -> float:
        """The surrogate's regression target for one real step (``reward`` and ``info["rewards"]``)."""
        return float(sum(self.weights.get(c, 0.0) * components[c] for c in self.learned if c in components))

    def collect(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """``n`` real transitions with uniformly random allowed actions: ``features``, ``target``, ``split``,
        ``reward``; returns them and the real evaluations spent under ``"quality_evals"``."""
        data = collect_transitions(self.env, int(n), seed)
        return {
            "features": self.features(data.obs, data.splits),
            "target": np.asarray([self.target_of(r, c) for r, c in zip(data.rewards, data.components, strict=True)]),
            "split": data.splits,
            "reward": data.rewards,
            "quality_evals": np.asarray(data.quality_evals),
        }

    def _new_surrogate(self) -> MLPSurrogate | EnsembleSurrogate:
        if self.surrogate_kind == "mlp":
            return MLPSurrogate(self.features.dim, seed=self.seed, **self.surrogate_kwargs)
        return EnsembleSurrogate(self.features.dim, seed=self.seed, **self.surrogate_kwargs)

    def fit_surrogate(self) -> dict[str, float]:
        """Collect ``n_real`` real transitions and fit the surrogate (once; ``learn`` calls it if needed)."""
        data = self.collect(self.n_real, self.seed)
        self.quality_evals += int(data["quality_evals"])
        self.data = data
        self.surrogate = self._new_surrogate()
        stats = self.surrogate.fit(data["features"], data["target"])
        # The same summary for both surrogates, in target units: error on all collected data vs the target's spread.
        fit_mse = float(np.mean((self.surrogate.predict(data["features"]) - data["target"]) ** 2))
        var = float(np.var(data["target"]))
        self.fit_stats = {**stats, "fit_mse": fit_mse, "target_var": var, "n_real": float(self.n_real)}
        return self.fit_stats

    def predict_target(self, obs: np.ndarray, split: np.ndarray | int) -> np.ndarray:
        """Surrogate prediction of the target for observation(s) and split(s) (broadcast)."""
        if self.surrogate is None:
            raise ValueError("the surrogate is not fitted: call learn() or fit_surrogate() first")
        return self.surrogate.predict(self.features(obs, split))

    # --- PPO ----------------------------------------------------------------------------------------------------
    def make_surrogate_env(self) -> SurrogateRewardWrapper:
        """The PPO phase's env: a profile-backend copy of the real env's config with the surrogate reward."""
        if self.surrogate is None:
            raise ValueError("the surrogate is not fitted")
        return SurrogateRewardWrapper(
            make_surrogate_env(self.config), self.surrogate, self.features, self.learned, self.weights
        )

    def _ppo_hyperparams(self) -> dict[str, Any]:
        kw = dict(self.ppo_kwargs)
        kw.pop("n_timesteps", None)
        return kw

    def _build_ppo(self) -> PPO:
        return make_sb3_agent("ppo", self.make_surrogate_env(), self._ppo_hyperparams(), seed=self.seed,
                              tensorboard_log=self.tensorboard_log, verbose=self.verbose)  # fmt: skip

    def learn(
        self,
        total_timesteps: int,
        callback: BaseCallback | list[BaseCallback] | None = None,
        tb_log_name: str = "RSM-PPO",
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> RSMPPOAgent:
        """Fit the surrogate (first call only) and train PPO for ``total_timesteps`` surrogate steps.

        Callbacks run on the PPO model (their ``training_env`` is the surrogate env; evaluate on the real env, e.g.
        `OracleNormalisedEvalCallback`). A `RewardComponentCallback` is added (or, if given, set to
        count the ``n_real`` evaluations only).
        """
        if isinstance(total_timesteps, bool) or int(total_timesteps) != total_timesteps or total_timesteps < 1:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        if self.surrogate is None:
            self.fit_surrogate()
        if self.ppo is None:
            self.ppo = self._build_ppo()
        cbs: list[BaseCallback] = []
        if isinstance(callback, CallbackList):
            cbs = list(callback.callbacks)
        elif isinstance(callback, BaseCallback):
            cbs = [callback]
        elif callback is not None:
            cbs = list(callback)
        counters = [c for c in cbs if isinstance(c, RewardComponentCallback)]
        for c in counters:
            c.count, c.initial_evals, c.tracker = "none", self.quality_evals, None
        if not counters:
            cbs.insert(0, RewardComponentCallback(count="none", initial_evals=self.quality_evals))
        cbs.insert(0, SurrogateStatsCallback(self.fit_stats))
        self.ppo.learn(
            int(total_timesteps),
            callback=CallbackList(cbs),
            tb_log_name=tb_log_name,
            progress_bar=progress_bar,
            reset_num_timesteps=reset_num_timesteps,
        )
        return self

    @property
    def num_timesteps(self) -> int:
        """PPO's surrogate steps so far."""
        return 0 if self.ppo is None else int(self.ppo.num_timesteps)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """PPO's action(s) for observation(s) (SB3 semantics)."""
        if self.ppo is None:
            raise ValueError("RSMPPOAgent is not trained: call learn() first")
        return self.ppo.predict(observation, state, episode_start, deterministic)

    # --- persistence --------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "n_real": self.n_real,
            "surrogate": self.surrogate_kind,
            "target": self.target,
            "seed": self.seed,
            "ppo_kwargs": self.ppo_kwargs,
            "surrogate_kwargs": self.surrogate_kwargs,
            "features": self.features.to_json(),
            "learned": list(self.learned),
            "weights": self.weights,
            "config": json.loads(json.dumps(self.config, default=str)),
            "fit_stats": self.fit_stats,
            "quality_evals": self.quality_evals,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save PPO (``ppo.zip``), the surrogate (``surrogate.pt``) and metadata (``rsm.json``) into the directory
        ``path``, or into one zip archive if ``path`` ends with ``.zip``."""
        if self.surrogate is None or self.ppo is None:
            raise ValueError("nothing to save: train the agent first (learn)")
        files = {
            "ppo.zip": sb3_bytes(self.ppo, "ppo", self._ppo_hyperparams(), self.seed),
            "surrogate.pt": weights_bytes(self.surrogate.state_dict()),
            "rsm.json": json.dumps(self._meta(), indent=1).encode(),
        }
        write_files(path, files)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | str | None = None) -> RSMPPOAgent:
        """Rebuild an agent saved with ``save`` (directory or zip). ``env``: the real env for further collection
        (default: a profile-backend env of the saved config)."""
        path = require_saved(path, "RSM-PPO agent")
        try:
            return cls._load(path, env)
        except ValueError:
            raise
        except Exception as e:  # truncated or corrupt parts, wrong types: name the file rather than a traceback
            raise ValueError(f"{path} is not a readable saved RSM-PPO agent ({type(e).__name__}: {e})") from None

    @classmethod
    def _load(cls, path: Path, env: gym.Env | str | None) -> RSMPPOAgent:
        read = read_files(path, "RSM-PPO")
        meta = read_json(read, "rsm.json", path, "RSM-PPO agent")
        check_format(meta, SAVE_FORMAT, (SAVE_VERSION,), path, "RSM-PPO agent")
        real_env = env if env is not None else make_surrogate_env(meta["config"])
        f = meta["features"]
        agent = cls(
            real_env,
            n_real=meta["n_real"],
            surrogate=meta["surrogate"],
            ppo_kwargs=meta["ppo_kwargs"],
            seed=meta["seed"],
            target=meta["target"],
            obs_dims=f["obs_dims"],
            raw_split=f["raw_split"],
            split_one_hot=f.get("one_hot", False),
            surrogate_kwargs=meta["surrogate_kwargs"],
        )
        if agent.features.to_json() != f or list(agent.learned) != meta["learned"]:
            raise ValueError(f"the env differs from the one {path} was saved with (features or reward terms)")
        state = load_weights(read("surrogate.pt"), f"{path}: surrogate.pt")
        if isinstance(state, dict):  # the saved surrogate's size, before it is built
            hp = state.get("hparams") if state.get("kind") == "mlp" else (state.get("ensemble") or {}).get("hparams")
            if isinstance(hp, dict):
                try:
                    _check_sizes(hp, {}, hp.get("in_dim", 0))
                except ValueError as e:
                    raise ValueError(f"{path}: surrogate.pt: {e}") from None
        agent.surrogate = surrogate_from_state(state)
        agent.fit_stats = dict(meta["fit_stats"])
        agent.quality_evals = int(meta["quality_evals"])
        agent.ppo = load_sb3_bytes(read("ppo.zip"), f"{path}/ppo.zip", agent.make_surrogate_env(), algo="ppo")
        return agent

    def __repr__(self) -> str:
        return (
            f"RSMPPOAgent(n_real={self.n_real}, surrogate={self.surrogate_kind!r}, target={self.target!r}, "
            f"learned={self.learned}, quality_evals={self.quality_evals}, ppo_steps={self.num_timesteps})"
        )
