"""RSM-PPO: the paper's method as published (reward surrogate model + PPO trained entirely inside it).

1. Collect ``n_real`` real transitions with uniformly random allowed actions (the only real quality evaluations).
2. Fit the reward surrogate on (observed level, split) → the reward's quality-dependent part: the authors' MLP
   2→128→128→1 with ReLU on raw features (``surrogate="mlp"``), or our `GaussianEnsemble` (``"ensemble"``, its mean).
   Features (`agents.mbrl.ensemble.encode_inputs`): ``(level, k)`` for the paper preset (their raw ``(ρ, p)``),
   ``(observation dims named by obs_dims, k / L)`` otherwise.
3. Train SB3 PPO for ``total_timesteps`` inside `SurrogateRewardWrapper`: a *profile-backend* copy of the env's
   config (it samples the channel; a profile step costs no real evaluation, and a live-LLM env is never called) whose
   reward is replaced by ``surrogate(features) + the known terms``.
4. Evaluate on the real reward (`evaluate_agent` / `OracleNormalisedEvalCallback` on the real env).

**Target** (``target``): ``"quality_terms"`` (default, as the authors: their surrogate predicts the perplexity term and
the load term ``(10 − p)/10`` is computed in closed form): the surrogate learns ``Σ w_c r_c`` over the weighted
components that depend on the quality backend (``quality``, ``ppl_gain``); the others (``ue_compute``, ``privacy``,
``switching``, ``latency``, ``paper_load``) come exactly from ``info["rewards"]``. ``"reward"``: the surrogate learns
the whole reward except the switching term (which depends on the previous split, not in its input); switching is
added exactly.

Cost: ``quality_evals = n_real`` (for the live backend, the evaluations the env reports during collection, which
differ from ``n_real`` when steps at ``k = L`` or paper-term resets occur).

TensorBoard (the shared tag tree): PPO's ``rollout/*`` and ``model/*`` (mirrored ``train/*``), ``model/surrogate_*``
(fit losses), ``reward/<component>`` (the profile copy's components during the surrogate phase: free, unseen by the
agent), ``cost/quality_evals`` (constant ``n_real``), and ``eval/*`` from an eval callback on the real env.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from torch import nn

import llmsplit_env  # registers the env ids; its LLMSplitEnv is the surrogate phase's env
from agents.common.callbacks import RewardComponentCallback
from agents.common.env_util import collect_transitions, counts_info, env_layout, make_env
from agents.common.save_util import (
    check_format,
    load_weights,
    read_files,
    read_json,
    require_saved,
    weights_bytes,
    write_files,
)
from agents.mbrl.ensemble import GaussianEnsemble, encode_inputs
from agents.sb3 import load_sb3_bytes, make_sb3_agent, sb3_bytes

SURROGATES = ("mlp", "ensemble")
TARGETS = ("quality_terms", "reward")
QUALITY_TERMS = ("quality", "ppl_gain")  # components that depend on the quality backend
SAVE_FORMAT = "llmsplit-rsm-ppo"
SAVE_VERSION = 1
PAPER_PPO_KWARGS = {"n_steps": 400, "batch_size": 100}  # the authors' surrogate-env PPO (SB3 defaults otherwise)


# ---------------------------------------------------------------------------------------------- surrogates
class MLPSurrogate:
    """The authors' reward surrogate: MLP ``in_dim → 128 → 128 → 1`` with ReLU on raw (unnormalised) features,
    trained with Adam on the MSE; a random ``val_ratio`` of the data is held out for early stopping (best weights).
    Prediction runs in numpy (a PPO step queries one sample; torch overhead would dominate)."""

    def __init__(
        self,
        in_dim: int = 2,
        hidden_dims: Sequence[int] = (128, 128),
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        max_epochs: int = 1000,
        patience: int = 100,
        val_ratio: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.hparams = {
            "in_dim": int(in_dim),
            "hidden_dims": [int(h) for h in hidden_dims],
            "learning_rate": float(learning_rate),
            "batch_size": int(batch_size),
            "max_epochs": int(max_epochs),
            "patience": int(patience),
            "val_ratio": float(val_ratio),
            "seed": int(seed),
        }
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"val_ratio must lie in [0, 1), got {val_ratio!r}")
        self._gen = torch.Generator().manual_seed(int(seed))
        dims = [int(in_dim), *self.hparams["hidden_dims"], 1]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        with torch.no_grad():  # seeded init, independent of the global torch RNG
            for m in self.net:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / np.sqrt(m.in_features)
                    m.weight.uniform_(-bound, bound, generator=self._gen)
                    m.bias.uniform_(-bound, bound, generator=self._gen)
        self._np_layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.sync_numpy()

    def sync_numpy(self) -> None:
        """Refresh the numpy copy of the weights that `predict` runs on (after changing ``net``'s weights)."""
        self._np_layers = [
            (m.weight.detach().double().numpy().T.copy(), m.bias.detach().double().numpy().copy())
            for m in self.net
            if isinstance(m, nn.Linear)
        ]

    def fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Fit on ``X [N, in_dim]`` → ``y [N]``; returns ``train_mse``, ``val_mse`` (NaN without held-out data),
        ``epochs``."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1, 1)
        n = len(X)
        if X.ndim != 2 or X.shape[1] != self.hparams["in_dim"] or n != len(y) or n < 2:
            raise ValueError(f"need X [N >= 2, {self.hparams['in_dim']}] and y [N], got {tuple(X.shape)}, {len(y)}")
        perm = torch.randperm(n, generator=self._gen)
        n_val = round(self.hparams["val_ratio"] * n)
        n_val = min(n_val, n - 1)
        val, tr = perm[:n_val], perm[n_val:]
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams["learning_rate"])
        bs = self.hparams["batch_size"]
        best, best_state, best_epoch, since = float("inf"), None, 0, 0
        epoch = 0
        for epoch in range(1, self.hparams["max_epochs"] + 1):
            order = tr[torch.randperm(len(tr), generator=self._gen)]
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                loss = ((self.net(X[idx]) - y[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                score = float(((self.net(X[val if n_val else tr]) - y[val if n_val else tr]) ** 2).mean())
            if score < best - 1e-7:
                best, best_epoch, since = score, epoch, 0
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            else:
                since += 1
                if since >= self.hparams["patience"]:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.sync_numpy()
        with torch.no_grad():
            train_mse = float(((self.net(X[tr]) - y[tr]) ** 2).mean())
        return {
            "train_mse": train_mse,
            "val_mse": best if n_val else float("nan"),
            "epochs": float(epoch),
            "best_epoch": float(best_epoch),
        }

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions ``[...]`` for inputs ``[..., in_dim]``."""
        h = np.asarray(X, dtype=np.float64)
        for i, (w, b) in enumerate(self._np_layers):
            h = h @ w + b
            if i < len(self._np_layers) - 1:
                np.maximum(h, 0.0, out=h)
        return h[..., 0]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "mlp", "hparams": self.hparams, "net": self.net.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> MLPSurrogate:
        model = cls(**state["hparams"])
        model.net.load_state_dict(state["net"])
        model.sync_numpy()
        return model


class EnsembleSurrogate:
    """Our `GaussianEnsemble` as the reward surrogate (standardised inputs, bootstraps, early stopping); predicts
    the elite mean."""

    def __init__(self, in_dim: int = 2, seed: int = 0, **ensemble_kwargs: Any) -> None:
        self.ensemble = GaussianEnsemble(in_dim, 1, seed=seed, **ensemble_kwargs)

    def fit(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Fit; returns ``train_nll``, ``val_nll`` and ``val_mse_standardized`` (held-out MSE in standardised target
        units, elite mean) and ``epochs``."""
        stats = self.ensemble.fit(np.asarray(X, np.float32), np.asarray(y, np.float32).reshape(-1, 1))
        return {
            "train_nll": float(stats["train_loss"]),
            "val_nll": float(stats["val_loss"]),
            "val_mse_standardized": float(stats["val_mse"]),
            "epochs": float(stats["epochs"]),
        }

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.ensemble.predict(np.asarray(X, np.float32)).mean[..., 0]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "ensemble", "ensemble": self.ensemble.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EnsembleSurrogate:
        hp = dict(state["ensemble"]["hparams"])
        in_dim, seed = hp.pop("in_dim"), hp.pop("seed")
        hp.pop("out_dim")
        model = cls(in_dim, seed=seed, **hp)
        model.ensemble.load_state_dict(state["ensemble"])
        return model


def _surrogate_from_state(state: dict[str, Any]) -> MLPSurrogate | EnsembleSurrogate:
    if state.get("kind") == "mlp":
        return MLPSurrogate.from_state_dict(state)
    if state.get("kind") == "ensemble":
        return EnsembleSurrogate.from_state_dict(state)
    raise ValueError(f"unknown surrogate kind {state.get('kind')!r}")


# -------------------------------------------------------------------------------------------- features, env
class SurrogateFeatures:
    """Surrogate input ``[obs[obs_dims]..., split feature]`` (`encode_inputs` in float64): the split
    raw (``k``, the authors' ``p``) or as a fraction ``k / L``; with ``one_hot``, followed by a one-hot of ``k`` over
    ``1..L`` (not in the paper: lets the model represent jumps between neighbouring splits, such as the lossless
    ``k = L``)."""

    def __init__(self, obs_dims: Sequence[int], num_layers: int, raw_split: bool, one_hot: bool = False) -> None:
        self.obs_dims = [int(d) for d in obs_dims]
        self.num_layers = int(num_layers)
        self.raw_split = bool(raw_split)
        self.one_hot = bool(one_hot)

    @property
    def dim(self) -> int:
        return len(self.obs_dims) + 1 + (self.num_layers if self.one_hot else 0)

    def __call__(self, obs: np.ndarray, split: np.ndarray | int) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)[..., self.obs_dims]
        return encode_inputs(obs, split, self.num_layers, self.one_hot, raw_split=self.raw_split, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "obs_dims": self.obs_dims,
            "num_layers": self.num_layers,
            "raw_split": self.raw_split,
            "one_hot": self.one_hot,
        }


def surrogate_env_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config of the surrogate phase's env: ``config`` with the profile backend (the live model is never run)."""
    cfg = json.loads(json.dumps(dict(config)))  # deep copy, JSON-clean
    cfg["backend"] = "profile"
    return cfg


def make_surrogate_env(config: Mapping[str, Any]) -> gym.Env:
    """A fresh profile-backend `LLMSplitEnv` for ``surrogate_env_config(config)`` (the bare class: no gym wrappers)."""
    return make_env(llmsplit_env.LLMSplitEnv, {"config": surrogate_env_config(config)})


class SurrogateRewardWrapper(gym.Wrapper):
    """Replaces the env's reward by ``surrogate(features(obs_t, k_t)) + Σ_{c not learned} w_c · info["rewards"][c]``.

    The wrapped env still samples the channel and its own quality (a profile: free); ``info["env_reward"]`` keeps
    the env's reward and ``info["surrogate_reward"]`` the replacement. ``is_surrogate_env`` tells
    `RewardComponentCallback` that steps here cost no real evaluations. Wrap a profile-backend env
    (`make_surrogate_env`): wrapping a live-LLM env would still run the model each step (refused).
    """

    is_surrogate_env = True

    def __init__(
        self,
        env: gym.Env,
        surrogate: MLPSurrogate | EnsembleSurrogate,
        features: SurrogateFeatures,
        learned_components: Sequence[str],
        weights: Mapping[str, float],
    ) -> None:
        super().__init__(env)
        if counts_info(env):
            raise ValueError("SurrogateRewardWrapper needs a profile-backend env (see make_surrogate_env)")
        self.surrogate = surrogate
        self.features = features
        self.learned = tuple(learned_components)
        self.weights = dict(weights)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        pred = float(self.surrogate.predict(self.features(self._obs, info["split"])[None])[0])
        known = sum(self.weights.get(c, 0.0) * v for c, v in info["rewards"].items() if c not in self.learned)
        reward = pred + known
        info["env_reward"] = env_reward
        info["surrogate_reward"] = reward
        self._obs = obs
        return obs, reward, terminated, truncated, info


class _SurrogateStatsCallback(BaseCallback):
    """Records the surrogate's fit statistics under ``model/surrogate_*`` at every rollout end (a flat line in TB)."""

    def __init__(self, stats: Mapping[str, float]) -> None:
        super().__init__()
        self.stats = dict(stats)

    def _record(self) -> None:
        for k, v in self.stats.items():
            self.logger.record(f"model/surrogate_{k}", v)

    def _on_training_start(self) -> None:
        self._record()

    def _on_rollout_end(self) -> None:
        self._record()

    def _on_step(self) -> bool:
        return True


# ------------------------------------------------------------------------------------------------ the agent
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
        cbs.insert(0, _SurrogateStatsCallback(self.fit_stats))
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
        agent.surrogate = _surrogate_from_state(state)
        agent.fit_stats = dict(meta["fit_stats"])
        agent.quality_evals = int(meta["quality_evals"])
        agent.ppo = load_sb3_bytes(read("ppo.zip"), f"{path}/ppo.zip", agent.make_surrogate_env(), algo="ppo")
        return agent

    def __repr__(self) -> str:
        return (
            f"RSMPPOAgent(n_real={self.n_real}, surrogate={self.surrogate_kind!r}, target={self.target!r}, "
            f"learned={self.learned}, quality_evals={self.quality_evals}, ppo_steps={self.num_timesteps})"
        )
