"""Quality profiles: log-perplexity of a real split LLM measured over split × channel level × seeds.

A profile is a JSON file written by ``llmsplit profile`` (`llmsplit_env.profiling.builder`). Shipped profiles live in
``llmsplit_env/profiles/`` and load by name (``load_profile("smollm2-135m-analog")``).

| field             | shape            | meaning                                                            |
|-------------------|------------------|--------------------------------------------------------------------|
| ``splits``        | [S]              | consecutive split points k (layers on the UE)                      |
| ``levels``        | [V]              | channel levels, strictly increasing (SNR dB, or erasure ρ)         |
| ``log_ppl``       | [S, V, seeds]    | measured log-perplexity of each channel draw                       |
| ``mean_log_ppl``  | [S, V]           | mean over seeds                                                    |
| ``std_log_ppl``   | [S, V]           | sample standard deviation over seeds (ddof = 1)                    |
| ``loss_fraction`` | [S, V]           | mean fraction of packets/elements lost                             |
| ``clean_ppl``     | scalar           | perplexity of the unsplit model                                    |
| ``leakage``       | [S]              | probe accuracy on ``H_k``; 0 at k = L (nothing is sent)            |
| ``probe_accuracy``| [S]              | the probe's accuracy on ``H_k`` for every k, ``H_L`` included       |
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from llmsplit_env.link import check_channel_args

FORMAT = "llmsplit-profile"
FORMAT_VERSION = 1
LEVEL_NAMES = {"analog": "snr_db", "digital": "snr_db", "erasure": "rho"}
SCHEMES = tuple(LEVEL_NAMES)  # kept here, not imported from channel, so loading a profile never imports torch
#: the largest perplexity a profile may hold (log-PPL <= MAX_LOG_PPL): far above any measured one (a split model on a
#: noisy link has reached ~1e75), low enough that the env's ``exp(mean + std·z)`` stays a finite double
MAX_PPL = 1e200
MAX_LOG_PPL = math.log(MAX_PPL)
#: ``E[PPL] = exp(mean + std²/2)`` of a cell must be a finite double (the env's closed-form expectations)
MAX_LOG_EXPECTED_PPL = math.log(np.finfo(np.float64).max)
MAX_SEED = 2**63 - 1  # the builder's --seeds range
MAX_LAYERS = 10_000  # splits and metadata num_layers: a profile's tables have a row per split
#: integer metadata a backend reads, and the range each may take
INT_METADATA = {"num_layers": (1, MAX_LAYERS), "hidden_size": (0, 2**24), "num_tokens": (1, 2**31),
                "window": (1, 2**31)}  # fmt: skip


class ProfileError(ValueError):
    """A profile file is malformed or inconsistent."""


@dataclass(frozen=True)
class Profile:
    scheme: str
    level_name: str
    splits: np.ndarray
    levels: np.ndarray
    seeds: np.ndarray
    log_ppl: np.ndarray
    mean_log_ppl: np.ndarray
    std_log_ppl: np.ndarray
    loss_fraction: np.ndarray
    clean_ppl: float
    leakage: np.ndarray
    probe_accuracy: np.ndarray
    metadata: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_layers(self) -> int:
        return int(self.metadata.get("num_layers", self.splits[-1]))

    @property
    def mean_ppl(self) -> np.ndarray:
        return np.exp(self.mean_log_ppl)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "scheme": self.scheme,
            "level_name": self.level_name,
            "splits": self.splits.tolist(),
            "levels": self.levels.tolist(),
            "seeds": self.seeds.tolist(),
            "clean_ppl": self.clean_ppl,
            "log_ppl": self.log_ppl.tolist(),
            "mean_log_ppl": self.mean_log_ppl.tolist(),
            "std_log_ppl": self.std_log_ppl.tolist(),
            "loss_fraction": self.loss_fraction.tolist(),
            "leakage": self.leakage.tolist(),
            "probe_accuracy": self.probe_accuracy.tolist(),
            "metadata": self.metadata,
        }


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with the package."""
    root = resources.files("llmsplit_env") / "profiles"
    return sorted(p.name.removesuffix(".json") for p in root.iterdir() if p.name.endswith(".json"))


def _array(data: dict, key: str, ndim: int, where: str) -> np.ndarray:
    if key not in data:
        raise ProfileError(f"{where}: missing field {key!r}")
    try:
        arr = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ProfileError(f"{where}: field {key!r} is not a numeric array (of finite numbers)") from None
    if arr.ndim != ndim:
        raise ProfileError(f"{where}: field {key!r} must have {ndim} dimensions, has {arr.ndim}")
    if not np.all(np.isfinite(arr)):
        raise ProfileError(f"{where}: field {key!r} has non-finite values")
    return arr


def _integers(values, what: str) -> list[int]:
    """``values`` as ints, or `ProfileError` if any is not an integer (3.5, True, "3"); integral floats (3.0) pass."""
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ProfileError(f"{what} must be integers, got {v!r}")
        if not float(v).is_integer():
            raise ProfileError(f"{what} must be integers, got {v!r}")
        out.append(int(v))
    return out


def _shown(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (an integer too long to print is described instead)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more than sys.get_int_max_str_digits() digits
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[:limit] + "..."


def _cell(arr: np.ndarray, bad: np.ndarray, names: tuple[str, ...]) -> str:
    """``"split #3, level #2: -50.0"``: where the first ``True`` of ``bad`` is, and the value there."""
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return ", ".join(f"{n} #{i}" for n, i in zip(names, idx, strict=False)) + f": {float(arr[idx])!r}"


def _check_range(where: str, key: str, arr: np.ndarray, lo: float, hi: float, why: str) -> None:
    bad = (arr < lo) | (arr > hi)
    if np.any(bad):
        at = _cell(arr, bad, ("split", "level", "seed"))
        raise ProfileError(f"{where}: {key!r} must lie in [{lo:g}, {hi:g}] ({why}), got at {at}")


def _check_metadata(metadata, where: str, last_split: int) -> dict:
    if not isinstance(metadata, dict):
        raise ProfileError(f"{where}: 'metadata' must be an object")
    for key, (lo, hi) in INT_METADATA.items():
        if key in metadata:
            value = metadata[key]  # an int, or an integral float (30.0)
            ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            if isinstance(value, bool) or not ok or not lo <= value <= hi:
                raise ProfileError(f"{where}: 'metadata.{key}' must be an integer in [{lo}, {hi}], got {_shown(value)}")
    if metadata.get("num_layers", last_split) < last_split:
        raise ProfileError(f"{where}: 'metadata.num_layers' ({metadata['num_layers']}) is below the last split")
    if not isinstance(metadata.get("scheme_params", {}), dict):
        raise ProfileError(f"{where}: 'metadata.scheme_params' must be an object")
    return metadata


def check_splits(splits, what: str = "'splits'", num_layers: int | None = None) -> list[int]:
    """The one rule for a profile's splits: non-empty, integers, consecutive and increasing from >= 1; with
    ``num_layers`` (L), also within [1, L] and ending at L, which the profile backend needs (it scores every split
    up to L). Returns them as ints, or raises `ProfileError` starting with ``what``."""
    ks = _integers(splits, what)
    if not ks:
        raise ProfileError(f"{what} must name at least one split")
    if len(set(ks)) != len(ks):
        raise ProfileError(f"{what} must not repeat a split, got {ks}")
    if num_layers is not None and not all(1 <= k <= num_layers for k in ks):
        raise ProfileError(f"{what} must lie in [1, {num_layers}] (the model has L = {num_layers} layers), got {ks}")
    if ks != list(range(ks[0], ks[0] + len(ks))) or ks[0] < 1:
        raise ProfileError(f"{what} must be consecutive integers starting at >= 1, got {ks}")
    if num_layers is not None and ks[-1] != num_layers:
        raise ProfileError(
            f"{what} must cover the splits up to L = {num_layers} (the env scores every split k_min..L), got {ks}"
        )
    return ks


def profile_from_dict(data: dict, where: str = "profile") -> Profile:
    """Validate a profile's JSON object and build a `Profile` (errors name the bad field)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise ProfileError(f"{where}: field 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ProfileError(
            f"{where}: unsupported format_version {data.get('format_version')!r} (this package reads {FORMAT_VERSION})"
        )
    scheme = data.get("scheme")
    if scheme not in SCHEMES:
        raise ProfileError(f"{where}: field 'scheme' must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    level_name = data.get("level_name")
    if level_name != LEVEL_NAMES[scheme]:
        raise ProfileError(
            f"{where}: level_name for scheme {scheme!r} must be {LEVEL_NAMES[scheme]!r}, got {level_name!r}"
        )
    splits = _array(data, "splits", 1, where)
    levels = _array(data, "levels", 1, where)
    seeds = _array(data, "seeds", 1, where)
    S, V, R = len(splits), len(levels), len(seeds)
    if S == 0 or V < 2 or R < 1:
        raise ProfileError(f"{where}: needs >= 1 split, >= 2 levels and >= 1 seed (got {S}, {V}, {R})")
    ks = check_splits(data["splits"], f"{where}: 'splits'")
    if ks[-1] > MAX_LAYERS:
        raise ProfileError(f"{where}: 'splits' must lie in [1, {MAX_LAYERS}], got up to {ks[-1]}")
    if not all(0 <= s <= MAX_SEED for s in _integers(data["seeds"], f"{where}: 'seeds'")):
        raise ProfileError(f"{where}: 'seeds' must be integers in [0, 2**63 - 1], got {_shown(data['seeds'], 200)}")
    if np.any(np.diff(levels) <= 0):
        raise ProfileError(f"{where}: 'levels' must be strictly increasing")
    if scheme == "erasure" and (levels[0] < 0 or levels[-1] > 1):
        raise ProfileError(f"{where}: erasure levels (rho) must lie in [0, 1]")
    for v in (levels[0], levels[-1]):
        try:
            check_channel_args(scheme, v)
        except ValueError as e:
            raise ProfileError(f"{where}: 'levels': {e}") from None
    log_ppl = _array(data, "log_ppl", 3, where)
    if log_ppl.shape != (S, V, R):
        raise ProfileError(
            f"{where}: 'log_ppl' has shape {log_ppl.shape}, expected (splits, levels, seeds) = {(S, V, R)}"
        )
    arrays = {}
    for key in ("mean_log_ppl", "std_log_ppl", "loss_fraction"):
        arrays[key] = _array(data, key, 2, where)
        if arrays[key].shape != (S, V):
            raise ProfileError(f"{where}: {key!r} has shape {arrays[key].shape}, expected (splits, levels) = {(S, V)}")
    for key in ("leakage", "probe_accuracy"):
        arrays[key] = _array(data, key, 1, where)
        if arrays[key].shape != (S,):
            raise ProfileError(f"{where}: {key!r} has {len(arrays[key])} entries, expected one per split ({S})")
        if np.any(arrays[key] < 0) or np.any(arrays[key] > 1):
            raise ProfileError(f"{where}: {key!r} must lie in [0, 1]")
    if np.any(arrays["loss_fraction"] < 0) or np.any(arrays["loss_fraction"] > 1):
        raise ProfileError(f"{where}: 'loss_fraction' must lie in [0, 1]")
    why = f"a perplexity is >= 1 and at most {MAX_PPL:g} here"
    _check_range(where, "log_ppl", log_ppl, 0.0, MAX_LOG_PPL, why)
    _check_range(where, "std_log_ppl", arrays["std_log_ppl"], 0.0, MAX_LOG_PPL, "a standard deviation is >= 0")
    if not np.allclose(arrays["mean_log_ppl"], log_ppl.mean(axis=2), rtol=0, atol=1e-9):
        raise ProfileError(f"{where}: 'mean_log_ppl' is not the mean of 'log_ppl' over seeds")
    std = log_ppl.std(axis=2, ddof=1) if R > 1 else np.zeros((S, V))
    if not np.allclose(arrays["std_log_ppl"], std, rtol=0, atol=1e-9):
        raise ProfileError(f"{where}: 'std_log_ppl' is not the sample std (ddof=1) of 'log_ppl' over seeds")
    expected = arrays["mean_log_ppl"] + 0.5 * arrays["std_log_ppl"] ** 2
    if np.any(expected > MAX_LOG_EXPECTED_PPL):
        at = _cell(expected, expected > MAX_LOG_EXPECTED_PPL, ("split", "level"))
        raise ProfileError(
            f"{where}: 'mean_log_ppl' + 'std_log_ppl'^2 / 2 (the log of a cell's expected perplexity) must be <= "
            f"{MAX_LOG_EXPECTED_PPL:.2f} (a finite double), got at {at}"
        )
    clean = data.get("clean_ppl")
    ok = not isinstance(clean, bool) and isinstance(clean, (int, float))
    try:
        ok = ok and 1 <= float(clean) <= MAX_PPL  # NaN fails both comparisons
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        shown = _shown(clean)
        raise ProfileError(f"{where}: 'clean_ppl' must be a finite number >= 1 (and <= {MAX_PPL:g}), got {shown}")
    metadata = _check_metadata(data.get("metadata", {}), where, ks[-1])
    return Profile(
        scheme=scheme,
        level_name=level_name,
        splits=splits.astype(int),
        levels=levels,
        seeds=seeds.astype(int),
        log_ppl=log_ppl,
        clean_ppl=float(clean),
        metadata=metadata,
        source=where,
        **arrays,
    )


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load a shipped profile by name (see `shipped_profiles`) or a profile JSON file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        name = str(name_or_path)
        shipped = resources.files("llmsplit_env") / "profiles" / f"{name}.json"
        if shipped.is_file():
            path = Path(str(shipped))
        else:
            raise FileNotFoundError(
                f"profile {name!r} is neither a file nor a shipped profile; shipped: {', '.join(shipped_profiles())}"
            )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not a UTF-8 text file (byte {e.start}); is it a profile JSON?") from None
    except ValueError as e:  # JSONDecodeError, or an integer literal too long to convert
        raise ProfileError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ProfileError(f"{path}: not a profile (its JSON is nested too deeply to read)") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot be read ({e.__class__.__name__}: {e.strerror or e})") from None
    return profile_from_dict(data, str(path))


#: metadata fields a live backend compares with its profile (``profile_match="model"`` checks the first four)
PROFILE_FIELDS = ("model", "num_layers", "scheme", "scheme_params", "text", "num_tokens", "window")
MODEL_FIELDS = PROFILE_FIELDS[:4]


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def profile_mismatches(profile: Profile, wanted: dict, fields=PROFILE_FIELDS) -> list[str]:
    """``"field: profile X, env Y"`` for each of ``fields`` where the profile's metadata differs from ``wanted``."""
    meta = dict(profile.metadata)
    have = {
        "model": meta.get("model"),
        "num_layers": profile.num_layers,
        "scheme": profile.scheme,
        "scheme_params": dict(meta.get("scheme_params", {})),
        "text": meta.get("text"),
        "num_tokens": meta.get("num_tokens"),
        "window": meta.get("window"),
    }
    return [f"{f}: profile {have[f]!r}, env {wanted[f]!r}" for f in fields if not _same(have[f], wanted[f])]
