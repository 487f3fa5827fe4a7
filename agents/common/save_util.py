"""Saving and loading helpers shared by every agent, and ``predict``'s one-observation-or-batch handling.

Saved agents are data: JSON for everything but tensors, tensors read back with ``torch.load(weights_only=True)``
(which refuses pickled code), written atomically (an interrupted save keeps the old file). Errors name the file.

* spaces as data: `describe_space`, `space_from`, `check_spaces`, `SpacesOnlyEnv` (stands in for the env of an agent
  loaded only to predict)
* files: `require_saved` (``FileNotFoundError``), `write_files` / `read_files` (a zip archive or a directory of
  named parts), `read_json` (a part as a JSON object), `check_format`, `not_a_saved` (the error naming the file)
* tensors: `weights_bytes`, `load_weights`, `state_dict_of_tensors`
* limits: every read is bounded by `agents.common.limits` (part and total sizes, JSON and pickle sizes, declared
  spaces); a refusal is a ``ValueError`` naming the file, the part and the limit
* acting: `predict_actions`
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import zipfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.common.limits import (
    MAX_JSON_BYTES,
    MAX_PART_BYTES,
    MAX_PARTS,
    MAX_PICKLE_BYTES,
    MAX_SPACE_ELEMENTS,
    MAX_TOTAL_BYTES,
    check_space_size,
    check_zip_entries,
    open_regular,
    read_bounded,
    too_large,
)
from llmsplit_env.util.files import atomic_directory, atomic_output

__all__ = [
    "Parts",
    "SpacesOnlyEnv",
    "check_format",
    "check_spaces",
    "check_torch_records",
    "describe_space",
    "load_weights",
    "not_a_saved",
    "parse_json",
    "predict_actions",
    "read_files",
    "read_json",
    "require_saved",
    "space_from",
    "state_dict_of_tensors",
    "weights_bytes",
    "write_files",
    "zip_parts",
]


# ------------------------------------------------------------------------------------------------ spaces
def describe_space(space: gym.Space) -> dict[str, Any]:
    """A space as plain data (type, shape, dtype; bounds or n), to check an env against a saved agent."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": np.asarray(space.low).tolist(), "high": np.asarray(space.high).tolist()}  # fmt: skip
    if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1 and not space.start.any():
        # the edge cell's action: one split per UE (`LLMSplit-Cell-v0`)
        return {"type": "MultiDiscrete", "nvec": [int(n) for n in space.nvec]}
    raise ValueError(f"unsupported space {space}")


def space_from(description: Any, path: str | os.PathLike) -> gym.Space:
    """The space `describe_space` described; ``ValueError`` naming ``path`` for anything else, and for a space over
    the limits (`agents.common.limits.check_space_size`: elements, dtype), checked before anything is allocated."""
    d = description
    if isinstance(d, dict) and d.get("type") == "MultiDiscrete":
        nvec = d.get("nvec")
        ok = isinstance(nvec, list) and nvec and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                     for n in nvec)  # fmt: skip
        # the policy has one output per action of each dimension: their total is what the limit bounds
        if not ok or sum(nvec) > MAX_SPACE_ELEMENTS:
            raise ValueError(f"{path}: MultiDiscrete nvec is not a non-empty list of integers >= 1 with at most "
                             f"{MAX_SPACE_ELEMENTS:,} actions in all (the limit)")  # fmt: skip
        return gym.spaces.MultiDiscrete(nvec)
    if isinstance(d, dict) and d.get("type") in ("Discrete", "Box"):
        check_space_size(d, f"{path}: {d['type']} space")
    if isinstance(d, dict) and d.get("type") == "Discrete":
        start = d.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"{path}: unreadable space description {d!r}")
        return gym.spaces.Discrete(d["n"], start=start)
    if isinstance(d, dict) and d.get("type") == "Box":
        try:
            low, high = np.array(d["low"], dtype=d["dtype"]), np.array(d["high"], dtype=d["dtype"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: unreadable space description ({type(e).__name__}: {e})") from None
        if low.shape != tuple(d["shape"]) or high.shape != low.shape:
            raise ValueError(
                f"{path}: Box bounds of shapes {low.shape}, {high.shape} do not match its shape {d['shape']}"
            )
        return gym.spaces.Box(low, high, dtype=np.dtype(d["dtype"]))
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
    a file). ``ValueError`` for a FIFO, device or socket (never opened: opening a FIFO blocks)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"no saved {what} at {str(path)!r}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ValueError(f"{path} is not a regular file or directory (a FIFO, device or socket): refused")
    if kind == "file" and not stat.S_ISREG(mode):
        raise FileNotFoundError(f"no saved {what} at {str(path)!r} (a directory, not a file)")
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


class Parts:
    """The parts of a saved agent, read on demand within the limits: ``parts(name) -> bytes`` (``KeyError`` for a
    missing part), ``parts.names``. Made by `read_files` or `zip_parts`."""

    def __init__(self, where: str, names: list[str], read_one: Callable[[str], bytes]) -> None:
        self.where = where
        self.names = names
        self.total = 0
        self.read_one = read_one

    def __call__(self, name: str) -> bytes:
        data = self.read_one(name)
        self.total += len(data)
        if self.total > MAX_TOTAL_BYTES:
            raise too_large(self.where, self.total, MAX_TOTAL_BYTES, "total uncompressed size of the parts read")
        return data


def zip_parts(source: str | os.PathLike | bytes, where: str, what: str) -> Parts:
    """The parts of the zip archive ``source`` (a path, or the archive's bytes), ``where`` naming it in errors.
    Checked before anything is read: the number of parts (`MAX_PARTS`, from the archive's own end record), each
    part's declared size (`MAX_PART_BYTES`) and their sum (`MAX_TOTAL_BYTES`); each part is then read through a
    bounded reader, since a header can lie."""
    if isinstance(source, bytes):
        check_zip_entries(source[-65557:], where)

        def archive() -> zipfile.ZipFile:
            return zipfile.ZipFile(io.BytesIO(source))
    else:
        with os.fdopen(open_regular(source, where), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65557))
            check_zip_entries(f.read(), where)

        def archive() -> zipfile.ZipFile:
            return zipfile.ZipFile(source)

    try:
        with archive() as z:
            infos = {i.filename: i for i in z.infolist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise not_a_saved(where, what, e) from None
    for name, info in infos.items():
        if info.file_size > MAX_PART_BYTES:
            raise too_large(f"{where}: {name}", info.file_size, MAX_PART_BYTES)
    declared = sum(i.file_size for i in infos.values())
    if declared > MAX_TOTAL_BYTES:
        raise too_large(where, declared, MAX_TOTAL_BYTES, "total uncompressed size of the parts")

    def read_one(name: str) -> bytes:
        info = infos[name]  # KeyError for a missing part
        try:
            with archive() as z, z.open(info) as stream:
                return read_bounded(stream, MAX_PART_BYTES, f"{where}: {name}")
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
            raise not_a_saved(where, what, e) from None

    return Parts(where, list(infos), read_one)


def directory_parts(path: Path, what: str) -> Parts:
    """The parts of a saved directory: at most `MAX_PARTS` entries, each a regular file (a FIFO is refused without
    blocking) of at most `MAX_PART_BYTES`, read through a bounded reader."""
    with os.scandir(path) as entries:
        names = []
        for entry in entries:
            names.append(entry.name)
            if len(names) > MAX_PARTS:
                raise ValueError(f"{path}: more than {MAX_PARTS:,} parts exceed the limit of {MAX_PARTS:,}")

    def read_one(name: str) -> bytes:
        where = f"{path / name}"
        try:
            fd = open_regular(path / name, where)
        except FileNotFoundError:
            raise KeyError(name) from None
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_PART_BYTES:
                raise too_large(where, size, MAX_PART_BYTES, "size")
            return read_bounded(f, MAX_PART_BYTES, where)

    return Parts(str(path), names, read_one)


def read_files(path: str | os.PathLike, what: str, directories: bool = True) -> Parts:
    """A reader of the parts `write_files` wrote (``read(name) -> bytes``, ``KeyError`` for a missing part), within
    the limits (`zip_parts`, `directory_parts`).

    ``ValueError`` naming ``path`` when it is neither a zip archive nor (with ``directories``) a directory.
    """
    path = Path(path)
    if path.exists():
        require_saved(path, what)  # a FIFO, device or socket: refused without opening it
    if directories and path.is_dir():
        return directory_parts(path, what)
    if path.is_file() and zipfile.is_zipfile(path):
        return zip_parts(path, str(path), what)
    if directories:
        raise ValueError(f"{path} is neither a saved {what} directory nor a zip archive")
    raise not_a_saved(path, what, zipfile.BadZipFile("File is not a zip file"))


def read_json(read: Callable[[str], bytes], name: str, path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The part ``name`` as a JSON object; ``ValueError`` naming ``path`` if it is missing, unreadable or over
    `MAX_JSON_BYTES`."""
    try:
        data = parse_json(read(name), f"{path}: {name}")
    except KeyError:
        raise ValueError(f"{path} holds no {name}: not a saved {what}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is not a readable saved {what} ({name}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a saved {what} ({name} holds a {type(data).__name__}, not an object)")
    return data


def parse_json(data: bytes, where: str) -> Any:
    """``json.loads`` of ``data`` unless it is over `MAX_JSON_BYTES` (``ValueError`` naming ``where``)."""
    if len(data) > MAX_JSON_BYTES:
        raise too_large(where, len(data), MAX_JSON_BYTES)
    return json.loads(data.decode("utf-8"))


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
    object is refused). ``ValueError`` naming ``where`` (``"<path>: <part>"``) if refused or unreadable.

    Bounded before torch reads it: ``data`` must be a ``torch.save`` zip whose records are all stored (never
    compressed: what torch writes) and fit in ``data``, so the tensors' total is at most ``len(data)`` (itself within
    `MAX_PART_BYTES`); at most `MAX_PARTS` records; its pickle at most `MAX_PICKLE_BYTES`."""
    import torch

    check_torch_records(data, where)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only met a class or function: refused before anything ran
        # torch's message is a paragraph of advice; what it met is the first line after "WeightsUnpickler error:"
        tail = str(e).partition("WeightsUnpickler error:")[2]
        why = next((ln.strip() for ln in tail.splitlines() if ln.strip()), "refused by torch.load(weights_only=True)")
        raise ValueError(f"{where} refused: it holds pickled objects, not only tensors ({why}); no code ran") from None
    except Exception as e:  # a truncated or damaged file fails to parse
        raise ValueError(f"{where} refused or unreadable ({type(e).__name__}: {e})") from None


def state_dict_of_tensors(state: Any, where: str) -> dict:
    """``state`` if it is a ``{name: tensor}`` mapping (what a module's ``state_dict`` saves), else ``ValueError``
    naming ``where`` and what it holds instead (plain pickled data that ``weights_only`` lets through)."""
    import torch

    if not isinstance(state, Mapping):
        raise ValueError(f"{where} holds a pickled {type(state).__name__}, not a state dict of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{where} holds {type(value).__name__} under {str(name)[:60]!r} where a state dict has "
                             "tensors: not weights an agent saved")  # fmt: skip
    return dict(state)


def check_torch_records(data: bytes, where: str) -> None:
    """``ValueError`` (``"<where> refused ..."``) unless ``data`` is a ``torch.save`` zip within the limits
    (`load_weights`)."""
    if len(data) > MAX_PART_BYTES:
        raise too_large(where, len(data), MAX_PART_BYTES)
    try:
        check_zip_entries(data[-65557:], where)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{where} refused or unreadable (not a torch.save zip file: {e})") from None
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{where} refused: its record {info.filename} is compressed (torch stores records raw)")
        if info.filename.endswith("/data.pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise too_large(f"{where}: {info.filename}", info.file_size, MAX_PICKLE_BYTES, "pickle size")
        total += info.file_size
    if total > len(data):
        raise ValueError(f"{where} refused: its records declare {total:,} bytes, more than the file's {len(data):,}")


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
