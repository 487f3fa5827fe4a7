"""Privacy leakage: how well an eavesdropper on the uplink recovers the input tokens from ``H_k``.

The attacker standardises the transmitted hidden state of each position, maps it with a closed-form ridge
regression onto the input-embedding row of the token at that position, and decodes by the nearest embedding row
(cosine). The probe is fitted on one stretch of text and scored on a disjoint one. Token-recovery accuracy is a lower
bound on leakage (a stronger attacker recovers more) and a cheap, honest default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from llmsplit_env.llm.channel import Channel
from llmsplit_env.llm.model import SplitModel


def hidden_states(model: SplitModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Clean hidden states after 0..L layers: ``[L + 1, batch, tokens, d]``."""
    return model.hidden_states(input_ids)


def _batches(ids: np.ndarray, window: int, windows_per_batch: int, device) -> Iterator[torch.Tensor]:
    usable = len(ids) // window * window
    win = torch.from_numpy(np.ascontiguousarray(ids[:usable])).view(-1, window)
    for i in range(0, win.shape[0], windows_per_batch):
        yield win[i : i + windows_per_batch].to(device)


@torch.inference_mode()
def token_recovery_accuracy(
    model: SplitModel,
    fit_ids: np.ndarray,
    test_ids: np.ndarray,
    splits: Sequence[int] | None = None,
    channel: Channel | None = None,
    seed: int = 0,
    ridge: float = 10.0,
    window: int = 512,
    windows_per_batch: int = 8,
) -> np.ndarray:
    """Accuracy of the ridge inversion probe per split (hidden state after ``k`` layers, ``k`` in ``splits``).

    ``channel``, if given, corrupts the scored (not the fitted) hidden states, with draws from ``seed``.
    """
    L = model.num_layers
    splits = list(range(1, L + 1)) if splits is None else [int(k) for k in splits]
    bad = [k for k in splits if not 1 <= k <= L]
    if bad:
        raise ValueError(f"probe splits must lie in [1, {L}], got {bad}")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge!r}")
    if len(fit_ids) < window or len(test_ids) < window:
        raise ValueError(f"probe needs at least one window ({window}) of fit and test tokens")
    emb = model.input_embeddings().float()
    d = model.hidden_size
    dev = emb.device
    n = 0
    sx = {k: torch.zeros(d, dtype=torch.float64, device=dev) for k in splits}
    sxx = {k: torch.zeros(d, d, dtype=torch.float64, device=dev) for k in splits}
    sxy = {k: torch.zeros(d, emb.shape[1], dtype=torch.float64, device=dev) for k in splits}
    sy = torch.zeros(emb.shape[1], dtype=torch.float64, device=dev)
    for ids in _batches(fit_ids, window, windows_per_batch, dev):
        states = hidden_states(model, ids)
        y = emb[ids.reshape(-1)].double()
        n += y.shape[0]
        sy += y.sum(0)
        for k in splits:
            x = states[k].reshape(-1, d).double()
            sx[k] += x.sum(0)
            sxx[k] += x.T @ x
            sxy[k] += x.T @ y
    ybar = sy / n
    maps = {}
    for k in splits:
        mu = sx[k] / n
        var = (torch.diagonal(sxx[k]) / n - mu**2).clamp_min(1e-12)
        inv_sd = var.rsqrt()
        # Normal equations of the standardised, centred problem, assembled from the running sums.
        xtx = (sxx[k] - n * torch.outer(mu, mu)) * torch.outer(inv_sd, inv_sd)
        xty = (sxy[k] - n * torch.outer(mu, ybar)) * inv_sd[:, None]
        w = torch.linalg.solve(xtx + ridge * torch.eye(d, dtype=xtx.dtype, device=dev), xty)
        maps[k] = (mu.float(), inv_sd.float(), w.float())
    emb_unit = F.normalize(emb, dim=1)
    hits = {k: 0 for k in splits}
    total = 0
    gen = torch.Generator().manual_seed(seed)
    for ids in _batches(test_ids, window, windows_per_batch, dev):
        states = hidden_states(model, ids)
        flat = ids.reshape(-1)
        total += flat.numel()
        for k in splits:
            h = states[k] if channel is None else channel.transmit(states[k], gen).hidden
            mu, inv_sd, w = maps[k]
            pred = ((h.reshape(-1, d).float() - mu) * inv_sd) @ w + ybar.float()
            pred = F.normalize(pred, dim=1)
            for i in range(0, pred.shape[0], 1024):
                guess = (pred[i : i + 1024] @ emb_unit.T).argmax(dim=1)
                hits[k] += int((guess == flat[i : i + 1024]).sum())
    return np.asarray([hits[k] / total for k in splits])


def probe_leakage(runner, fit_tokens: int, test_tokens: int) -> list[float]:
    """Leakage per split: the inversion probe's token-recovery accuracy on ``runner``'s model, fitted on the text
    after its evaluation tokens (0 at k = L, where nothing is sent)."""
    extra = runner.extra_ids
    window = runner.window
    fit_tokens = fit_tokens // window * window
    test_tokens = test_tokens // window * window
    if extra is None or fit_tokens < window or test_tokens < window or len(extra) < fit_tokens + test_tokens:
        have = 0 if extra is None else len(extra)
        raise ValueError(
            f"the leakage probe needs probe_fit_tokens + probe_test_tokens (>= one window of {window} each) "
            f"tokens of text after the evaluation tokens; the text has {have}"
        )
    acc = token_recovery_accuracy(
        runner.model, extra[:fit_tokens], extra[fit_tokens : fit_tokens + test_tokens], window=window
    )
    leak = [float(v) for v in acc]
    leak[-1] = 0.0  # nothing is sent at k = L
    return leak
