"""Probabilistic ensemble of Gaussian MLPs (PETS-style), vectorised over members.

``E`` members share one set of batched weights ``[E, in, out]``, so a forward pass over all members is a handful of
``torch.baddbmm`` calls rather than a Python loop over modules; that is what keeps fitting fast on two CPU cores.

What the model does, in the terms of Chua et al. (2018) and mbrl-lib:

- every member is trained on its own bootstrap resample of the training split;
- inputs and targets are standardised with the mean/std of the data given to the last ``fit`` (the agent refits on
  its whole buffer, so this tracks the data as it grows);
- each member outputs a mean and a log-variance; the log-variance is softly clamped between learned per-member bounds
  ``min_logvar``/``max_logvar`` (softplus), and a small penalty pulls the bounds together so they do not drift off;
- the loss is the Gaussian negative log-likelihood; a held-out split drives early stopping (patience), every member
  keeps the weights of its own best validation epoch, and the ``num_elites`` members with the lowest validation MSE
  are the elites used by ``predict`` and ``sample``.

Inputs for the split-selection problem are ``[observation, k / L]`` features; ``encode_inputs`` builds them for every
split at once, which is how the planner queries the model. It is the one input encoding of every learned model here
(the MBRL agent's reward model, RSM-PPO's surrogates).
"""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from llmsplit_env.util.files import atomic_write_bytes

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]
SAVE_FORMAT = "llmsplit-gaussian-ensemble"
SAVE_VERSION = 1


def encode_inputs(
    obs: ArrayLike,
    splits: ArrayLike,
    num_layers: int,
    one_hot: bool = False,
    *,
    raw_split: bool = False,
    dtype: type = np.float32,
) -> np.ndarray:
    """Model input features ``[obs, k / L]`` (optionally followed by a one-hot of ``k`` over ``1..L``).

    ``obs`` has shape ``[..., D]`` and ``splits`` shape ``[...]``; their batch shapes broadcast, so

    - ``obs [N, D]`` with ``splits [N]`` encodes N recorded transitions, and
    - ``obs [D]`` with ``splits [K]`` (or ``obs [N, 1, D]`` with ``splits [K]``) encodes every candidate split at once.

    :param obs: observation vector(s)
    :param splits: split points ``k`` (number of layers on the UE), not action indices
    :param num_layers: ``L``, the number of transformer layers
    :param one_hot: append ``L`` one-hot columns for ``k ∈ {1..L}``, which lets the model represent a reward that
        jumps between neighbouring splits without the MLP having to carve it out of ``k / L``
    :param raw_split: the split column is ``k`` itself rather than ``k / L`` (the paper's surrogate input ``p``)
    :param dtype: of the result (float32 for torch models; RSM-PPO's numpy surrogate keeps float64)
    :return: array of shape ``broadcast(obs.shape[:-1], splits.shape) + [D + 1 (+ L)]``
    """
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    num_layers = int(num_layers)
    obs = np.asarray(obs, dtype=np.float64)
    splits = np.asarray(splits, dtype=np.float64)
    if obs.ndim < 1:
        raise ValueError("obs must have shape [..., D], got a scalar")
    if not (np.all(np.isfinite(obs)) and np.all(np.isfinite(splits))):
        raise ValueError("obs and splits must be finite")
    if np.any(splits < 0) or np.any(splits > num_layers):
        raise ValueError(f"splits must lie in [0, {num_layers}], got range [{splits.min()}, {splits.max()}]")
    try:
        batch = np.broadcast_shapes(obs.shape[:-1], splits.shape)
    except ValueError:
        raise ValueError(
            f"obs batch shape {obs.shape[:-1]} (obs shape {obs.shape}) does not broadcast with splits shape "
            f"{splits.shape}"
        ) from None
    split_col = splits if raw_split else splits / num_layers
    parts = [np.broadcast_to(obs, (*batch, obs.shape[-1])), np.broadcast_to(split_col, batch)[..., None]]
    if one_hot:
        if np.any(splits != np.round(splits)) or np.any(splits < 1):
            raise ValueError(f"one_hot needs integer splits in [1, {num_layers}]")
        idx = np.broadcast_to(splits, batch).astype(np.int64) - 1
        parts.append(np.eye(num_layers)[idx])
    return np.concatenate(parts, axis=-1).astype(dtype)


class EnsemblePrediction(NamedTuple):
    """Prediction aggregated over the elites, in target units. Every field has shape ``[..., out_dim]``."""

    #: mean over elites of the member means
    mean: np.ndarray
    #: variance over elites of the member means (model disagreement)
    epistemic_var: np.ndarray
    #: mean over elites of the member variances (noise the model believes is in the data)
    aleatoric_var: np.ndarray

    @property
    def var(self) -> np.ndarray:
        """Total predictive variance of the elite mixture (law of total variance)."""
        return self.epistemic_var + self.aleatoric_var


class _Standardizer:
    """Fit-time mean/std of a ``[N, D]`` tensor; constant columns keep std 1 so they pass through unscaled."""

    def __init__(self, dim: int) -> None:
        self.mean = torch.zeros(dim)
        self.std = torch.ones(dim)

    def fit(self, x: torch.Tensor) -> None:
        self.mean = x.mean(0)
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(self.mean)
        self.std = torch.where(std < 1e-6, torch.ones_like(std), std)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.mean, self.std = state["mean"].clone(), state["std"].clone()


class _EnsembleMLP(nn.Module):
    """``E`` Gaussian MLPs with batched weights; input ``[E, B, in]``, output mean and log-variance ``[E, B, out]``."""

    def __init__(self, in_dim: int, out_dim: int, ensemble_size: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden_dims, 2 * out_dim]
        self.out_dim = out_dim
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(ensemble_size, d_in, d_out)) for d_in, d_out in itertools.pairwise(dims)]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(ensemble_size, 1, d_out)) for d_out in dims[1:]])
        # Per member, so that restoring one member's best epoch restores its bounds too.
        self.max_logvar = nn.Parameter(torch.full((ensemble_size, 1, out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((ensemble_size, 1, out_dim), -10.0))

    def reset_parameters(self, generator: torch.Generator) -> None:
        # Truncated normal with std 1/(2 sqrt(fan_in)), as in PETS and mbrl-lib.
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases, strict=True):
                std = 1.0 / (2.0 * math.sqrt(w.shape[1]))
                nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std, generator=generator)
                b.zero_()
            self.max_logvar.fill_(0.5)
            self.min_logvar.fill_(-10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.silu(x)
        mean, raw_logvar = x[..., : self.out_dim], x[..., self.out_dim :]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar


class GaussianEnsemble:
    """Bootstrapped ensemble of Gaussian MLPs with input/output standardisation, early stopping and elites.

    :param in_dim: number of input features
    :param out_dim: number of predicted targets
    :param ensemble_size: number of members ``E``
    :param num_elites: how many of the best members (by validation MSE) ``predict`` and ``sample`` use
    :param hidden_dims: widths of the hidden layers (SiLU activations)
    :param learning_rate: Adam step size
    :param weight_decay: L2 penalty on the layer weights (not on the log-variance bounds)
    :param logvar_bound_penalty: coefficient of ``sum(max_logvar) - sum(min_logvar)`` in the loss
    :param seed: seeds initialisation, bootstraps, validation split, minibatch order and ``sample`` without a generator
    :param device: torch device for the weights
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        ensemble_size: int = 7,
        num_elites: int = 5,
        hidden_dims: Sequence[int] = (128, 128),
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        logvar_bound_penalty: float = 0.01,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("ensemble_size", ensemble_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if int(num_elites) != num_elites or not 1 <= num_elites <= ensemble_size:
            raise ValueError(f"num_elites must be an integer in [1, ensemble_size={ensemble_size}], got {num_elites!r}")
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if any(h < 1 for h in hidden_dims):
            raise ValueError(f"hidden_dims must be positive, got {hidden_dims}")
        if not (learning_rate > 0 and weight_decay >= 0 and logvar_bound_penalty >= 0):
            raise ValueError("learning_rate must be > 0, weight_decay and logvar_bound_penalty >= 0")
        self.hparams: dict[str, Any] = {
            "in_dim": int(in_dim),
            "out_dim": int(out_dim),
            "ensemble_size": int(ensemble_size),
            "num_elites": int(num_elites),
            "hidden_dims": hidden_dims,
            "learning_rate": float(learning_rate),
            "weight_decay": float(weight_decay),
            "logvar_bound_penalty": float(logvar_bound_penalty),
            "seed": int(seed),
        }
        self.device = torch.device(device)
        # Generators live on the CPU so a seed means the same draws whatever the device.
        self._generator = torch.Generator().manual_seed(int(seed))
        self.net = _EnsembleMLP(int(in_dim), int(out_dim), int(ensemble_size), hidden_dims)
        self.net.reset_parameters(self._generator)
        self.net.to(self.device)
        self.input_norm = _Standardizer(int(in_dim))
        self.output_norm = _Standardizer(int(out_dim))
        self._elites = np.arange(int(num_elites))
        self.num_fits = 0

    # ------------------------------------------------------------------ properties
    # read-only views of the hyperparameters the ensemble was built with
    in_dim = property(lambda self: self.hparams["in_dim"])
    out_dim = property(lambda self: self.hparams["out_dim"])
    ensemble_size = property(lambda self: self.hparams["ensemble_size"])
    num_elites = property(lambda self: self.hparams["num_elites"])

    @property
    def elites(self) -> np.ndarray:
        """Indices of the elite members, best first (the first ``num_elites`` members before any fit)."""
        return self._elites.copy()

    # ------------------------------------------------------------------ helpers
    def _as_inputs(self, x: ArrayLike, name: str = "x") -> tuple[torch.Tensor, tuple[int, ...]]:
        """``[..., in_dim]`` array -> flat float32 tensor ``[B, in_dim]`` on the device, plus the batch shape."""
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
        if t.ndim < 1 or t.shape[-1] != self.in_dim:
            raise ValueError(f"{name} must have shape [..., in_dim={self.in_dim}], got {tuple(t.shape)}")
        t = t.to(device="cpu", dtype=torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains non-finite values")
        batch = tuple(t.shape[:-1])
        return t.reshape(-1, self.in_dim).to(self.device), batch

    def _as_dataset(self, x: ArrayLike, y: ArrayLike, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to("cpu", torch.float32)
        yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).detach().to("cpu", torch.float32)
        if yt.ndim == 1 and self.out_dim == 1:
            yt = yt[:, None]
        if xt.ndim != 2 or xt.shape[1] != self.in_dim:
            raise ValueError(f"{name} inputs must have shape [N, in_dim={self.in_dim}], got {tuple(xt.shape)}")
        if yt.ndim != 2 or yt.shape[1] != self.out_dim:
            raise ValueError(f"{name} targets must have shape [N, out_dim={self.out_dim}], got {tuple(yt.shape)}")
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"{name} inputs and targets differ in length: {xt.shape[0]} vs {yt.shape[0]}")
        if not (torch.isfinite(xt).all() and torch.isfinite(yt).all()):
            raise ValueError(f"{name} data contains non-finite values")
        return xt, yt

    def _forward_normalized(self, xn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared ``[B, in]`` (normalised) -> every member's mean and log-variance ``[E, B, out]`` (normalised)."""
        return self.net(xn.unsqueeze(0).expand(self.ensemble_size, -1, -1))

    def _nll(self, mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
        """Per-member Gaussian NLL (constant dropped), averaged over batch and outputs -> ``[E]``; ``beta > 0``: each
        term weighted by its (detached) predicted variance to the power ``beta`` (β-NLL)."""
        nll = (mean - y) ** 2 * torch.exp(-logvar) + logvar
        if beta:
            nll = nll * torch.exp(beta * logvar.detach())
        return nll.mean(dim=(1, 2))

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        X_val: ArrayLike | None = None,
        Y_val: ArrayLike | None = None,
        *,
        val_ratio: float = 0.2,
        max_epochs: int = 200,
        patience: int = 10,
        batch_size: int = 64,
        stop_on: str = "nll",
        improvement_threshold: float = 0.01,
        bootstrap: bool = True,
        reset: bool = False,
        nll_beta: float = 0.0,
    ) -> dict[str, Any]:
        """Fit the ensemble on ``X [N, in_dim]`` → ``Y [N, out_dim]`` (``Y [N]`` allowed when ``out_dim == 1``).

        The standardisers are refitted on the training inputs/targets; weights warm-start from the previous fit
        unless ``reset``. Without explicit ``X_val``/``Y_val`` a random ``val_ratio`` of the data is held out
        (at least one point, and only if at least one point is left to train on); with ``val_ratio == 0`` and no
        validation data, members are scored on the training data, so early stopping then only guards against
        a plateau.

        Training stops after ``patience`` consecutive epochs in which no member improved its validation score by
        ``improvement_threshold``; each member then gets back the weights of its best epoch. The score is the
        Gaussian NLL (``stop_on="nll"``, improvement in nats) or the MSE of the mean (``stop_on="mse"``, relative
        improvement). NLL is the default because the MSE plateaus as soon as the mean fits, long before the variance
        has been learned. Elites are ranked by validation MSE either way.

        :return: training statistics for logging (as ``model/<key>``): ``train_loss`` (mean member NLL over the
            last epoch, normalised targets), ``val_loss`` (elite mean NLL on the validation data), ``val_mse``
            (elite mean MSE, normalised targets), ``member_val_mse`` (list over members, best epoch), ``elites``
            (list, best first), ``epochs`` (run), ``stopped_early``, ``num_train``, ``num_val``,
            ``val_curve`` (mean member validation score after each epoch, index 0 = before training)
        """
        if not improvement_threshold >= 0:
            raise ValueError(f"improvement_threshold must be >= 0, got {improvement_threshold!r}")
        if not 0.0 <= nll_beta <= 1.0:
            raise ValueError(f"nll_beta must be in [0, 1], got {nll_beta!r}")
        if stop_on not in ("nll", "mse"):
            raise ValueError(f"stop_on must be 'nll' or 'mse', got {stop_on!r}")
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio!r}")
        for name, value in (("max_epochs", max_epochs), ("patience", patience), ("batch_size", batch_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if (X_val is None) != (Y_val is None):
            raise ValueError("pass both X_val and Y_val, or neither")
        x, y = self._as_dataset(X, Y, "training")
        n = x.shape[0]
        if n < 1:
            raise ValueError("fit needs at least one training sample")
        g = self._generator

        if X_val is not None:
            x_val, y_val = self._as_dataset(X_val, Y_val, "validation")
            if x_val.shape[0] < 1:
                raise ValueError("validation data is empty")
            x_tr, y_tr = x, y
            n_val = x_val.shape[0]
        else:
            n_val = round(val_ratio * n)
            n_val = min(max(n_val, 1 if val_ratio > 0 else 0), n - 1)
            perm = torch.randperm(n, generator=g)
            val_idx, tr_idx = perm[:n_val], perm[n_val:]
            x_tr, y_tr = x[tr_idx], y[tr_idx]
            x_val, y_val = (x[val_idx], y[val_idx]) if n_val > 0 else (x_tr, y_tr)
        n_tr = x_tr.shape[0]

        if reset:
            self.net.reset_parameters(g)
        self.input_norm.fit(x_tr)
        self.output_norm.fit(y_tr)
        dev = self.device
        xn_tr = ((x_tr - self.input_norm.mean) / self.input_norm.std).to(dev)
        yn_tr = ((y_tr - self.output_norm.mean) / self.output_norm.std).to(dev)
        xn_val = ((x_val - self.input_norm.mean) / self.input_norm.std).to(dev)
        yn_val = ((y_val - self.output_norm.mean) / self.output_norm.std).to(dev)

        E = self.ensemble_size
        if bootstrap:
            boot = torch.randint(n_tr, (E, n_tr), generator=g)
        else:
            boot = torch.arange(n_tr).expand(E, n_tr)
        layer_params = [*self.net.weights, *self.net.biases]
        optimizer = torch.optim.Adam(
            [
                {"params": list(self.net.weights), "weight_decay": self.hparams["weight_decay"]},
                {"params": list(self.net.biases), "weight_decay": 0.0},
                {"params": [self.net.max_logvar, self.net.min_logvar], "weight_decay": 0.0},
            ],
            lr=self.hparams["learning_rate"],
        )
        all_params = [*layer_params, self.net.max_logvar, self.net.min_logvar]
        bs = min(int(batch_size), n_tr)
        penalty = self.hparams["logvar_bound_penalty"]

        def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
            """Per-member validation (MSE, NLL), normalised targets."""
            with torch.no_grad():
                mean, logvar = self._forward_normalized(xn_val)
                return ((mean - yn_val) ** 2).mean(dim=(1, 2)).cpu(), self._nll(mean, logvar, yn_val).cpu()

        def criterion() -> torch.Tensor:
            return evaluate()[0 if stop_on == "mse" else 1]

        best = criterion()
        best_state = [p.detach().clone() for p in all_params]
        curve = [float(best.mean())]
        epochs_since_improvement, epoch, train_loss = 0, 0, float("nan")
        self.net.train()
        for epoch in range(1, int(max_epochs) + 1):  # noqa: B007 (read after the loop)
            # Independent minibatch order per member: shuffle each bootstrap row.
            order = torch.argsort(torch.rand(E, n_tr, generator=g), dim=1)
            idx = boot.gather(1, order).to(dev)
            epoch_loss, steps = 0.0, 0
            for start in range(0, n_tr, bs):
                b = idx[:, start : start + bs]
                mean, logvar = self.net(xn_tr[b])
                nll = self._nll(mean, logvar, yn_tr[b], nll_beta)
                loss = nll.sum() + penalty * (self.net.max_logvar.sum() - self.net.min_logvar.sum())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += float(nll.detach().mean())
                steps += 1
            train_loss = epoch_loss / steps

            score = criterion()
            curve.append(float(score.mean()))
            scale = best.abs().clamp_min(1e-12) if stop_on == "mse" else torch.ones_like(best)
            improved = (best - score) / scale > improvement_threshold
            if improved.any():
                with torch.no_grad():
                    for saved, p in zip(best_state, all_params, strict=True):
                        saved[improved] = p.detach()[improved]
                best = torch.where(improved, score, best)
                epochs_since_improvement = 0
            else:
                epochs_since_improvement += 1
            if epochs_since_improvement >= patience:
                break
        stopped_early = epoch < max_epochs

        # Every member goes back to its own best epoch; members that never improved go back to where they started.
        with torch.no_grad():
            for saved, p in zip(best_state, all_params, strict=True):
                p.copy_(saved)
        self.net.eval()
        member_mse, val_nll = evaluate()
        order = np.argsort(member_mse.numpy(), kind="stable")
        self._elites = order[: self.num_elites].copy()
        elites_t = torch.as_tensor(self._elites)
        self.num_fits += 1
        return {
            "train_loss": train_loss,
            "val_loss": float(val_nll[elites_t].mean()),
            "val_mse": float(member_mse[elites_t].mean()),
            "member_val_mse": member_mse.tolist(),
            "elites": self._elites.tolist(),
            "epochs": epoch,
            "stopped_early": stopped_early,
            "num_train": n_tr,
            "num_val": n_val,
            "val_curve": curve,
        }

    # ------------------------------------------------------------------ prediction
    def predict_members(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Every member's Gaussian for inputs ``[..., in_dim]``: ``(mean, var)``, each ``[E, ..., out_dim]``."""
        xt, batch = self._as_inputs(x)
        xn = (xt - self.input_norm.mean.to(self.device)) / self.input_norm.std.to(self.device)
        with torch.no_grad():
            mean, logvar = self._forward_normalized(xn)
            std = self.output_norm.std.to(self.device)
            mean = mean * std + self.output_norm.mean.to(self.device)
            var = torch.exp(logvar) * std**2
        shape = (self.ensemble_size, *batch, self.out_dim)
        return mean.cpu().double().numpy().reshape(shape), var.cpu().double().numpy().reshape(shape)

    def predict(self, x: ArrayLike) -> EnsemblePrediction:
        """Elite-aggregated prediction for inputs ``[..., in_dim]``; fields are ``[..., out_dim]``.

        ``mean`` is the elite average, ``epistemic_var`` the spread of elite means, ``aleatoric_var`` the average
        elite variance, and ``.var`` their sum.
        """
        mean, var = self.predict_members(x)
        mean, var = mean[self._elites], var[self._elites]
        return EnsemblePrediction(mean.mean(0), mean.var(0), var.mean(0))

    def sample(
        self,
        x: ArrayLike,
        generator: np.random.Generator | torch.Generator | None = None,
        members: np.ndarray | Sequence[int] | None = None,
    ) -> np.ndarray:
        """One draw per input from one member's Gaussian: ``[..., out_dim]``.

        By default each input gets a uniformly drawn elite (TS-1 in PETS terms). Passing ``members`` (member indices
        broadcastable to the batch shape, e.g. ``elites[rng.integers(num_elites, size=N)][:, None]`` for ``N``
        particles) keeps a particle on the same member across steps (TS-∞).

        :param generator: numpy or torch (CPU) generator; the ensemble's own seeded generator if ``None``
        :param members: member index per input, or ``None`` for a random elite per input
        """
        mean, var = self.predict_members(x)
        batch = mean.shape[1:-1]
        flat_mean = mean.reshape(self.ensemble_size, -1, self.out_dim)
        flat_var = var.reshape(self.ensemble_size, -1, self.out_dim)
        b = flat_mean.shape[1]
        if generator is None:
            generator = self._generator
        if not isinstance(generator, np.random.Generator | torch.Generator):
            raise ValueError(
                f"generator must be a numpy Generator or a torch Generator, got {type(generator).__name__}"
            )
        if members is not None:
            m = np.asarray(members)
            if m.dtype.kind not in "iu" or np.any(m < 0) or np.any(m >= self.ensemble_size):
                raise ValueError(f"members must be integer indices in [0, {self.ensemble_size})")
            try:
                member = np.broadcast_to(m, batch).reshape(-1)
            except ValueError:
                raise ValueError(f"members shape {m.shape} does not broadcast to the batch shape {batch}") from None
        if isinstance(generator, np.random.Generator):
            if members is None:
                member = self._elites[generator.integers(len(self._elites), size=b)]
            noise = generator.standard_normal((b, self.out_dim))
        else:
            if members is None:
                member = self._elites[torch.randint(len(self._elites), (b,), generator=generator).numpy()]
            noise = torch.randn(b, self.out_dim, generator=generator, dtype=torch.float64).numpy()
        rows = np.arange(b)
        out = flat_mean[member, rows] + np.sqrt(flat_var[member, rows]) * noise
        return out.reshape(*batch, self.out_dim)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "hparams": {**self.hparams, "hidden_dims": list(self.hparams["hidden_dims"])},
            "net": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            "input_norm": self.input_norm.state_dict(),
            "output_norm": self.output_norm.state_dict(),
            "elites": torch.as_tensor(self._elites, dtype=torch.int64),
            "generator": self._generator.get_state(),
            "num_fits": self.num_fits,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != SAVE_FORMAT:
            raise ValueError(f"not a saved GaussianEnsemble (format {state.get('format')!r})")
        hp = {**state["hparams"], "hidden_dims": tuple(state["hparams"]["hidden_dims"])}
        if hp != self.hparams:
            raise ValueError(f"saved hyperparameters {hp} differ from this ensemble's {self.hparams}")
        self.net.load_state_dict(state["net"])
        self.input_norm.load_state_dict(state["input_norm"])
        self.output_norm.load_state_dict(state["output_norm"])
        self._elites = state["elites"].numpy().copy()
        self._generator.set_state(state["generator"])
        self.num_fits = int(state["num_fits"])

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, standardisers, elites, generator state and hyperparameters; atomic (temp file + rename)."""
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> GaussianEnsemble:
        """Rebuild an ensemble saved with ``save``."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a saved GaussianEnsemble")
        if state.get("version") != SAVE_VERSION:
            raise ValueError(f"{path}: unsupported GaussianEnsemble save version {state.get('version')!r}")
        hp = dict(state["hparams"])
        model = cls(**hp, device=device)
        model.load_state_dict(state)
        return model

    def __repr__(self) -> str:
        hp = self.hparams
        return (
            f"GaussianEnsemble(in_dim={hp['in_dim']}, out_dim={hp['out_dim']}, ensemble_size={hp['ensemble_size']}, "
            f"num_elites={hp['num_elites']}, hidden_dims={hp['hidden_dims']}, fits={self.num_fits})"
        )
