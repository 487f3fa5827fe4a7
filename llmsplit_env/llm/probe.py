"""Privacy leakage: how well an eavesdropper on the uplink recovers the input tokens from ``H_k``.

The attacker standardises the transmitted hidden state of each position, maps it with a closed-form ridge
regression onto the input-embedding row of the token at that position, and decodes by the nearest embedding row
(cosine). The probe is fitted on one stretch of text and scored on a disjoint one. Token-recovery accuracy is a lower
bound on leakage (a stronger attacker recovers more) and a cheap, honest default.

Windows start with the model's BOS where its tokenizer adds one (``bos_ids``, as the runner's windows do); the BOS
positions are neither fitted nor scored (they carry no text token to recover).

The accuracies depend only on the model (configuration and weights), dtype, device type, the fit and test tokens, the
window, the BOS, the batching and the ridge: `runner_probe_accuracy` keeps them in the user cache keyed by exactly
these (``probe/``, one verified entry per key holding every split measured so far), so a second profile build of the
same model and text, another scheme's build, or a live env on the same text reuses them instead of recomputing (808 s
of a 28-minute build for a 262k-token vocabulary). The probe cannot be skipped: a profile's ``leakage`` is the
privacy term of the reward.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from llmsplit_env.llm.cache_entry import CacheWarning, read_verified, write_file_entry
from llmsplit_env.llm.channel import Channel
from llmsplit_env.llm.model import SplitModel
from llmsplit_env.util.cache import cache_dir

#: bump when the probe's arithmetic changes: cached accuracies of another version are not reused
PROBE_VERSION = 1


def hidden_states(model: SplitModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Clean hidden states after 0..L layers: ``[L + 1, batch, tokens, d]``."""
    return model.hidden_states(input_ids)


def _batches(
    ids: np.ndarray, window: int, windows_per_batch: int, device, bos: tuple[int, ...] = ()
) -> Iterator[torch.Tensor]:
    """Windows of ``window`` positions: ``bos`` then ``window - len(bos)`` text tokens each."""
    per = window - len(bos)
    usable = len(ids) // per * per
    win = torch.from_numpy(np.ascontiguousarray(ids[:usable], dtype=np.int64)).view(-1, per)
    if bos:
        win = torch.cat([torch.tensor(bos, dtype=torch.long).expand(win.shape[0], -1), win], dim=1)
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
    bos: Sequence[int] = (),
) -> np.ndarray:
    """Accuracy of the ridge inversion probe per split (hidden state after ``k`` layers, ``k`` in ``splits``).

    ``channel``, if given, corrupts the scored (not the fitted) hidden states, with draws from ``seed``. ``bos``: the
    ids the model's tokenizer puts before a text; each window starts with them, and their positions are skipped.
    """
    bos = tuple(int(i) for i in bos)
    text = slice(len(bos), None)  # the positions that hold text tokens
    L = model.num_layers
    splits = list(range(1, L + 1)) if splits is None else [int(k) for k in splits]
    bad = [k for k in splits if not 1 <= k <= L]
    if bad:
        raise ValueError(f"probe splits must lie in [1, {L}], got {bad}")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge!r}")
    per = window - len(bos)
    if per < 1 or len(fit_ids) < per or len(test_ids) < per:
        raise ValueError(f"probe needs at least one window ({window}, {per} of them text) of fit and test tokens")
    emb = model.input_embeddings().float()
    d = model.hidden_size
    dev = emb.device
    n = 0
    sx = {k: torch.zeros(d, dtype=torch.float64, device=dev) for k in splits}
    sxx = {k: torch.zeros(d, d, dtype=torch.float64, device=dev) for k in splits}
    sxy = {k: torch.zeros(d, emb.shape[1], dtype=torch.float64, device=dev) for k in splits}
    sy = torch.zeros(emb.shape[1], dtype=torch.float64, device=dev)
    for ids in _batches(fit_ids, window, windows_per_batch, dev, bos):
        states = hidden_states(model, ids)[:, :, text]
        y = emb[ids[:, text].reshape(-1)].double()
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
    for ids in _batches(test_ids, window, windows_per_batch, dev, bos):
        states = hidden_states(model, ids)[:, :, text]
        flat = ids[:, text].reshape(-1)
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


def model_fingerprint(model: SplitModel) -> str:
    """SHA-256 of the model's configuration and the bytes of every parameter and buffer (about 0.3 s for SmolLM2)."""
    lm = model.lm
    h = hashlib.sha256(type(lm).__name__.encode())
    h.update(lm.config.to_json_string(use_diff=False).encode())
    for name, t in [*lm.named_parameters(), *lm.named_buffers()]:
        t = t.detach().contiguous()
        h.update(f"\0{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).cpu().numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _ids_sha(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


def probe_settings(model: SplitModel, fit_ids, test_ids, window: int, bos: Sequence[int], ridge: float = 10.0,
                   windows_per_batch: int = 8) -> dict:  # fmt: skip
    """Everything the probe's accuracies depend on (the cache key), splits aside: the entry holds one per split."""
    return {
        "probe_version": PROBE_VERSION,
        "model": model_fingerprint(model),
        "dtype": str(model.dtype),
        "device": model.device.type,
        "fit_ids": _ids_sha(fit_ids),
        "test_ids": _ids_sha(test_ids),
        "window": int(window),
        "bos": [int(i) for i in bos],
        "ridge": float(ridge),
        "windows_per_batch": int(windows_per_batch),
    }


def cached_accuracy(
    model: SplitModel,
    fit_ids: np.ndarray,
    test_ids: np.ndarray,
    splits: Sequence[int],
    window: int,
    bos: Sequence[int] = (),
    cache: bool = True,
) -> np.ndarray:
    """`token_recovery_accuracy` (no channel, default ridge and batching) for ``splits``, through the user cache: the
    splits already measured for the same settings (`probe_settings`) are read back, only the others computed, and the
    entry rewritten (atomically, with its manifest) with them all. A corrupt entry warns and is recomputed."""
    splits = [int(k) for k in splits]
    if not cache:
        return token_recovery_accuracy(model, fit_ids, test_ids, splits=splits, window=window, bos=bos)
    settings = probe_settings(model, fit_ids, test_ids, window, bos)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir("probe") / f"{key}.json"
    known: dict[int, float] = {}
    data, reason = read_verified(path, "probe", settings)
    if data is not None:
        try:
            raw = json.loads(data.decode("utf-8"))["accuracy"]
            known = {int(k): float(v) for k, v in raw.items()}
            if not all(1 <= k <= model.num_layers and 0.0 <= v <= 1.0 for k, v in known.items()):
                raise ValueError("a split or accuracy out of range")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            known, reason = {}, f"its bytes match the manifest but do not decode ({e.__class__.__name__})"
    if reason:
        warnings.warn(f"cache entry {path} is rebuilt: {reason}", CacheWarning, stacklevel=2)
    missing = [k for k in splits if k not in known]
    if missing:
        acc = token_recovery_accuracy(model, fit_ids, test_ids, splits=missing, window=window, bos=bos)
        known.update({k: float(a) for k, a in zip(missing, acc, strict=True)})
        body = {"accuracy": {str(k): known[k] for k in sorted(known)}}
        write_file_entry(path, (json.dumps(body, indent=1) + "\n").encode(), "probe", settings)
    return np.asarray([known[k] for k in splits])


def runner_probe_accuracy(runner, splits: Sequence[int] | None, fit_tokens: int, test_tokens: int,
                          cache: bool = True) -> np.ndarray:  # fmt: skip
    """The probe's accuracy per split on ``runner``'s model and windows (its BOS included), fitted on the first
    ``fit_tokens`` text tokens after its evaluation tokens and scored on the next ``test_tokens``; cached."""
    extra = runner.extra_ids
    splits = list(range(1, runner.num_layers + 1)) if splits is None else list(splits)
    return cached_accuracy(
        runner.model,
        extra[:fit_tokens],
        extra[fit_tokens : fit_tokens + test_tokens],
        splits,
        runner.window,
        getattr(runner, "bos_ids", ()),
        cache,
    )


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
    acc = runner_probe_accuracy(runner, None, fit_tokens, test_tokens)
    leak = [float(v) for v in acc]
    leak[-1] = 0.0  # nothing is sent at k = L
    return leak
