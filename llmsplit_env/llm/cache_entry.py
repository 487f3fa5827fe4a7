"""Cache entries that verify themselves: every entry of the user cache carries a manifest of its bytes and settings.

An entry is a single file (token ids ``.npy``, hidden-state prefixes ``.pt``) or a directory (a converted model).
Its manifest records, for every file, the size and SHA-256 of its bytes, and the settings that made the entry:

- a file entry ``X`` has the manifest ``X.manifest.json`` beside it, written (atomically) *after* ``X``: a missing or
  older manifest means "not finished";
- a directory entry ``D`` is built in a temporary directory beside it, its manifest ``D/.manifest.json`` written
  last, and the whole directory renamed into place, so ``D`` either does not exist or is complete.

Reading verifies: a file entry is read once into memory, hashed, and decoded from those same bytes (what was checked
is what is used). A missing or unreadable manifest, other settings, a size or hash mismatch, a missing or extra file,
or bytes that do not decode all mean the entry is rebuilt, with one `CacheWarning` naming its path. An entry that
cannot be rebuilt (the cache is not writable, say) raises `CacheError` naming its path. So a corrupt cache costs a
rebuild, never a wrong perplexity.

Two processes building the same entry are safe: every write is an atomic rename. For a file the last writer wins; a
reader that catches the file of one writer with the manifest of the other reads both again once before it gives up
on the entry. For a directory the first one in place wins and the other discards its own copy.

Cost (`benchmarks/cache_verify.py`, figures in `benchmarks/RESULTS.md`): SHA-256 runs at about 1.8 GB/s on one
core, so the converted SmolLM2 (542 MB) takes 0.34 s to verify, 1.8x its warm, memory-mapped load but 1% of the
conversion it saves; prefixes and token ids take a few percent of recomputing them. Every load re-hashes the whole
entry, once per process (the runner keeps what it loaded): a scheme that trusts size and modification time would
miss same-size corruption that keeps them (a disk error, a copy with preserved times), and the file's change time is
too coarse to trust between quick writes. CRC-32 would halve the cost; SHA-256 was kept because the saving is a
fifth of a second per start and its digests can be checked by hand (``sha256sum``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from llmsplit_env.util.files import atomic_write_bytes, atomic_write_json

T = TypeVar("T")

FORMAT = "llmsplit-cache-entry"
FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"  # file entries: beside the file
DIR_MANIFEST = ".manifest.json"  # directory entries: inside the directory
_CHUNK = 1 << 20


class CacheWarning(UserWarning):
    """A cache entry was missing its manifest, stale or corrupt, and is being rebuilt."""


class CacheError(OSError):
    """A cache entry is unusable and cannot be rebuilt."""


class InvalidEntry(Exception):
    """Raised by a decoder (or a check) to say that verified bytes still do not make a usable entry."""


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def manifest_path(entry: str | os.PathLike) -> Path:
    """The manifest of a file entry (beside it)."""
    entry = Path(entry)
    return entry.with_name(entry.name + MANIFEST_SUFFIX)


def _manifest(kind: str, settings: dict, files: dict[str, dict]) -> dict:
    from llmsplit_env import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "settings": settings,
        "files": files,
        "package_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _read_manifest(path: Path, kind: str, settings: dict) -> tuple[dict | None, str]:
    """``(manifest, "")`` if ``path`` is a manifest of this kind made with these settings, else ``(None, reason)``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, f"no manifest {path.name}: an unfinished or older entry"
    except OSError as e:
        return None, f"its manifest {path.name} is unreadable ({e.__class__.__name__})"
    try:
        man = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"its manifest {path.name} is not valid JSON"
    if not isinstance(man, dict) or man.get("format") != FORMAT or man.get("format_version") != FORMAT_VERSION:
        return None, f"its manifest {path.name} is not a {FORMAT} v{FORMAT_VERSION} manifest"
    if man.get("kind") != kind:
        return None, f"its manifest {path.name} is for a {man.get('kind')!r} entry, not {kind!r}"
    if man.get("settings") != _jsonable(settings):
        return None, "made with other settings"
    files = man.get("files")
    if not isinstance(files, dict) or not files or not all(_valid_record(r) for r in files.values()):
        return None, f"its manifest {path.name} has no valid file list"
    return man, ""


def _valid_record(rec: Any) -> bool:
    return (
        isinstance(rec, dict)
        and isinstance(rec.get("size"), int)
        and isinstance(rec.get("sha256"), str)
        and len(rec["sha256"]) == 64
    )


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so settings compare equal to a manifest's."""
    return json.loads(json.dumps(obj))


def _unwritable(path: Path, what: str, e: OSError) -> CacheError:
    return CacheError(
        f"cache entry {path} cannot be {what} ({e.__class__.__name__}: {e.strerror or e}); make its directory "
        "writable or set LLMSPLIT_CACHE to another directory"
    )


def _warn(path: Path, reason: str) -> None:
    warnings.warn(f"llmsplit cache: rebuilding {path} ({reason})", CacheWarning, stacklevel=3)


# --- file entries ---------------------------------------------------------------------------------------------------


def write_file_entry(path: str | os.PathLike, data: bytes, kind: str, settings: dict) -> None:
    """Write ``data`` to ``path`` and then its manifest, each atomically."""
    path = Path(path)
    record = {"size": len(data), "sha256": sha256_bytes(data)}
    atomic_write_bytes(path, data)
    atomic_write_json(manifest_path(path), _manifest(kind, _jsonable(settings), {path.name: record}))


def read_verified(path: Path, kind: str, settings: dict) -> tuple[bytes | None, str]:
    """The entry's bytes if they match its manifest, else ``(None, reason)`` (reason ``""``: no entry at all)."""
    if not path.exists():
        return None, ""
    man, reason = _read_manifest(manifest_path(path), kind, settings)
    if man is None:
        return None, reason
    rec = man["files"].get(path.name)
    if rec is None or len(man["files"]) != 1:
        return None, f"its manifest {manifest_path(path).name} lists other files"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"unreadable ({e.__class__.__name__})"
    if len(data) != rec["size"]:
        return None, f"{len(data)} bytes where its manifest says {rec['size']}: truncated or overwritten"
    if sha256_bytes(data) != rec["sha256"]:
        return None, "its SHA-256 differs from its manifest's: corrupt"
    return data, ""


def load_file_entry(
    path: str | os.PathLike,
    kind: str,
    settings: dict,
    build: Callable[[], bytes],
    decode: Callable[[bytes], T],
) -> T:
    """``decode`` the verified bytes of the entry at ``path``; if it is missing, stale or corrupt, ``build`` its bytes,
    write them with their manifest, and decode those.

    ``decode`` may raise `InvalidEntry` (or any error of a deserialiser) to reject bytes that pass the hash but are
    not the entry it expects (an older format, another shape).
    """
    path = Path(path)
    data, reason = read_verified(path, kind, settings)
    if data is None and reason:  # maybe another process is between writing the file and writing its manifest
        time.sleep(0.05)
        data, reason = read_verified(path, kind, settings)
    if data is not None:
        try:
            return decode(data)
        except Exception as e:  # any deserialiser error: the bytes are not the entry this reader expects
            reason = f"its bytes match the manifest but do not decode ({e.__class__.__name__}: {str(e)[:120]})"
    if reason:
        _warn(path, reason)
    data = build()
    value = decode(data)  # freshly built bytes must decode: an error here is a bug, not a cache problem
    try:
        write_file_entry(path, data, kind, settings)
    except OSError as e:
        raise _unwritable(path, "written", e) from None
    return value


# --- directory entries ----------------------------------------------------------------------------------------------


def _dir_files(root: Path) -> dict[str, Path]:
    """Every regular file under ``root`` but the manifest, by POSIX path relative to ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.relative_to(root).as_posix() != DIR_MANIFEST:
            out[p.relative_to(root).as_posix()] = p
    return out


def dir_entry_settings(root: str | os.PathLike) -> dict | None:
    """The settings recorded in a directory entry's manifest (unverified), or None."""
    try:
        man = json.loads((Path(root) / DIR_MANIFEST).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    settings = man.get("settings") if isinstance(man, dict) else None
    return settings if isinstance(settings, dict) else None


def verify_dir_entry(root: str | os.PathLike, kind: str, settings: dict) -> str:
    """``""`` if the directory entry ``root`` matches its manifest (every file hashed), else the reason it does not
    (``"is missing"`` if there is no entry)."""
    root = Path(root)
    if not root.is_dir():
        return "is missing"
    man, reason = _read_manifest(root / DIR_MANIFEST, kind, settings)
    if man is None:
        return reason
    files = _dir_files(root)
    if sorted(files) != sorted(man["files"]):
        missing = sorted(set(man["files"]) - set(files))
        extra = sorted(set(files) - set(man["files"]))
        return f"its files differ from its manifest's (missing {missing}, unexpected {extra})"
    for name, rec in man["files"].items():
        p = files[name]
        try:
            size = p.stat().st_size
            if size != rec["size"]:
                return f"{name} has {size} bytes where the manifest says {rec['size']}: truncated or overwritten"
            if sha256_file(p) != rec["sha256"]:
                return f"the SHA-256 of {name} differs from the manifest's: corrupt"
        except OSError as e:
            return f"{name} is unreadable ({e.__class__.__name__})"
    return ""


def load_dir_entry(root: str | os.PathLike, kind: str, settings: dict, build_into: Callable[[Path], None]) -> Path:
    """The verified directory entry ``root``; if it is missing, stale or corrupt, ``build_into`` a temporary directory
    beside it, record every file in its manifest, and rename it into place."""
    root = Path(root)
    reason = verify_dir_entry(root, kind, settings)
    if not reason:
        return root
    if reason != "is missing":
        _warn(root, reason)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        build_into(tmp)
        files = {name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for name, p in _dir_files(tmp).items()}
        if not files:
            raise RuntimeError(f"building cache entry {root} wrote no files")
        atomic_write_json(tmp / DIR_MANIFEST, _manifest(kind, _jsonable(settings), files))
        _place_dir(tmp, root, kind, settings)
    except OSError as e:
        raise _unwritable(root, "rebuilt", e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _place_dir(tmp: Path, root: Path, kind: str, settings: dict) -> None:
    """Rename ``tmp`` onto ``root``; an invalid ``root`` is moved aside first, a valid one (another process's) kept."""
    for _ in range(3):
        try:
            os.replace(tmp, root)  # succeeds when root is absent (or an empty directory)
            return
        except OSError:
            if not root.exists():
                continue
        if not verify_dir_entry(root, kind, settings):
            return  # another process placed a valid entry first: use it (the caller removes tmp)
        trash = root.with_name(f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(root, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, root)  # a last try; its error names both paths
