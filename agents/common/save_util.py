"""Saving and loading helpers shared by every agent, and ``predict``'s one-observation-or-batch handling.

Saved agents are data: JSON for everything but tensors, tensors read back with ``torch.load(weights_only=True)``
(which refuses pickled code), written atomically (an interrupted save keeps the old file). Errors name the file.

* spaces as data: `describe_space`, `space_from`, `check_spaces`, `SpacesOnlyEnv` (stands in for the env of an agent
  loaded only to predict)
* files: `require_saved` (``FileNotFoundError``), `write_files` / `read_files` (a zip archive or a directory of
  named parts), `read_json` (a part as a JSON object), `check_format`, `not_a_saved` (the error naming the file)
* tensors: `weights_bytes`, `load_weights`
* acting: `predict_actions`
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from llmsplit_env.util.files import atomic_directory, atomic_output

__all__ = [
    "SpacesOnlyEnv",
    "check_format",
    "check_spaces",
    "describe_space",
    "load_weights",
    "not_a_saved",
    "predict_actions",
    "read_files",
    "read_json",
    "require_saved",
    "space_from",
    "weights_bytes",
    "write_files",
]


# ------------------------------------------------------------------------------------------------ spaces
def describe_space(space: gym.Space) -> dict[str, Any]:
    """A space as plain data (type, shape, dtype; bounds or n), to check an env against a saved agent."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": np.asarray(space.low).tolist(), "high": np.asarray(space.high).tolist()}  # fmt: skip
    raise ValueError(f"unsupported space {space}")


def space_from(description: Any, path: str | os.PathLike) -> gym.Space:
    """The space `describe_space` described; ``ValueError`` naming ``path`` for anything else."""
    d = description
    if isinstance(d, dict) and d.get("type") == "Discrete":
        return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if isinstance(d, dict) and d.get("type") == "Box":
        return gym.spaces.Box(np.array(d["low"], dtype=d["dtype"]), np.array(d["high"], dtype=d["dtype"]),
                              dtype=np.dtype(d["dtype"]))  # fmt: skip
    raise ValueError(f"{path}: unreadable space description {d!r}")


def check_spaces(env: gym.Env, meta: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``ValueError`` unless ``env``'s spaces are the ones ``meta`` (``observation_space``, ``action_space``) saved."""
    for what, space in (("observation_space", env.observation_space), ("action_space", env.action_space)):
        if describe_space(space) != meta.get(what):
            raise ValueError(f"the env's {what} differs from the one {path} was saved with")


class SpacesOnlyEnv(gym.Env):
    """Stands in for the env when an agent is loaded only to predict: models need the spaces, nothing steps it."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("this agent was loaded without an env: pass env= to load it for training")

    def step(self, action):
        raise RuntimeError("this agent was loaded without an env: pass env= to load it for training")


# ------------------------------------------------------------------------------------------------ files
def not_a_saved(path: str | os.PathLike, what: str, error: BaseException | None = None) -> ValueError:
    """The error for a file that is not a loadable saved ``what`` (naming the file, and the parser's ``error``)."""
    detail = f" ({type(error).__name__}: {error})" if error is not None else ""
    return ValueError(f"{path} is not a saved {what}{detail}")


def require_saved(path: str | os.PathLike, what: str = "agent", kind: str = "any") -> Path:
    """``path`` as a `Path`; ``FileNotFoundError`` ("no saved <what> at ...") unless it exists (``kind="file"``: as
    a file)."""
    path = Path(path)
    if not (path.is_file() if kind == "file" else path.exists()):
        raise FileNotFoundError(f"no saved {what} at {str(path)!r}")
    return path


def write_files(path: str | os.PathLike, files: Mapping[str, bytes], as_zip: bool | None = None) -> None:
    """Write named parts atomically: one deflated zip archive (``as_zip``, or by default when ``path`` ends with
    ``.zip``), else a directory of files."""
    path = Path(path)
    if as_zip is None:
        as_zip = path.suffix == ".zip"
    if as_zip:
        with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        with atomic_directory(path) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)


def read_files(path: str | os.PathLike, what: str, directories: bool = True) -> Callable[[str], bytes]:
    """A reader of the parts `write_files` wrote (``read(name) -> bytes``, ``KeyError`` for a missing part).

    ``ValueError`` naming ``path`` when it is neither a zip archive nor (with ``directories``) a directory.
    """
    path = Path(path)
    if directories and path.is_dir():

        def read_part(name: str) -> bytes:
            try:
                return (path / name).read_bytes()
            except FileNotFoundError:
                raise KeyError(name) from None

        return read_part
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                blobs = {n: z.read(n) for n in z.namelist()}
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise not_a_saved(path, what, e) from None
        return lambda name: blobs[name]
    if directories:
        raise ValueError(f"{path} is neither a saved {what} directory nor a zip archive")
    raise not_a_saved(path, what, zipfile.BadZipFile("File is not a zip file"))


def read_json(read: Callable[[str], bytes], name: str, path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The part ``name`` as a JSON object; ``ValueError`` naming ``path`` if it is missing or unreadable."""
    try:
        data = json.loads(read(name).decode("utf-8"))
    except KeyError:
        raise ValueError(f"{path} holds no {name}: not a saved {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable saved {what} ({name}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a saved {what} ({name} holds a {type(data).__name__}, not an object)")
    return data


def check_format(meta: Mapping[str, Any], fmt: str, versions: Collection[int] | None, path: str | os.PathLike,
                 what: str) -> None:  # fmt: skip
    """``ValueError`` unless ``meta`` names the format ``fmt`` (and one of ``versions``, unless ``None``)."""
    if meta.get("format") != fmt:
        raise ValueError(f"{path} is not a saved {what} (format {meta.get('format')!r}, expected {fmt!r})")
    if versions is not None and meta.get("version") not in versions:
        raise ValueError(f"{path}: not a saved {what} of version {', '.join(map(str, versions))}")


# ------------------------------------------------------------------------------------------------ tensors
def weights_bytes(state: Any) -> bytes:
    """``state`` (tensors in plain containers) as ``torch.save`` bytes."""
    import torch  # here, not at import: the heuristics and the oracle use this module without torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_weights(data: bytes, where: str) -> Any:
    """``torch.load(weights_only=True)`` of ``data`` onto the CPU: tensors and plain containers only (a pickled
    object is refused). ``ValueError`` naming ``where`` (``"<path>: <part>"``) if refused or unreadable."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # a crafted pickle is refused by weights_only; a truncated file fails to parse
        raise ValueError(f"{where} refused or unreadable ({type(e).__name__}: {e})") from None


# ------------------------------------------------------------------------------------------------ acting
def predict_actions(
    observation: Any,
    act: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    obs_dim: int | None = None,
    dtype: Any = np.float32,
    action_masks: Any = None,
    n_actions: int | None = None,
) -> np.ndarray:
    """SB3's ``predict`` shapes for one observation ``[D]`` or a batch ``[N, D]``: ``act(batch [N, D], masks)``
    gives ``[N]`` actions; returns ``[N]`` for a batch, the one action (a numpy scalar) for one observation.

    :param obs_dim: when given, any other observation shape is refused
    :param action_masks: ``[n_actions]`` or ``[N, n_actions]`` booleans (``True`` = allowed), broadcast to ``[N,
        n_actions]`` (``n_actions`` needed), or ``None``
    """
    obs = np.asarray(observation, dtype=dtype)
    if obs_dim is not None and (obs.ndim not in (1, 2) or obs.shape[-1] != obs_dim):
        raise ValueError(f"observation must have shape [{obs_dim}] or [N, {obs_dim}], got {obs.shape}")
    single = obs.ndim == 1
    batch = obs[None] if single else obs
    masks = None
    if action_masks is not None:
        m = np.asarray(action_masks, dtype=bool)
        masks = np.broadcast_to(m, (len(batch), n_actions if n_actions is not None else m.shape[-1]))
    actions = np.asarray(act(batch, masks))
    return actions[0] if single else actions
