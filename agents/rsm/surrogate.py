"""RSM-PPO's reward surrogates: the authors' MLP 2→128→128→1 (`MLPSurrogate`), our `GaussianEnsemble` alternative
(`EnsembleSurrogate`), and their input features (`SurrogateFeatures`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.mbrl.ensemble import GaussianEnsemble, encode_inputs

SURROGATES = ("mlp", "ensemble")


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


def surrogate_from_state(state: dict[str, Any]) -> MLPSurrogate | EnsembleSurrogate:
    if state.get("kind") == "mlp":
        return MLPSurrogate.from_state_dict(state)
    if state.get("kind") == "ensemble":
        return EnsembleSurrogate.from_state_dict(state)
    raise ValueError(f"unknown surrogate kind {state.get('kind')!r}")


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
        return {name: getattr(self, name) for name in ("obs_dims", "num_layers", "raw_split", "one_hot")}
