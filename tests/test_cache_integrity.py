"""The user cache verifies itself (`llmsplit_env.llm.cache_entry`): corrupt, truncated, unfinished or stale entries of
every kind are rebuilt with a warning naming the path, and give the clean result; an entry that cannot be rebuilt
raises an error naming it."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmsplit_env.llm import SplitRunner
from llmsplit_env.llm.cache_entry import (
    DIR_MANIFEST,
    CacheError,
    CacheWarning,
    load_dir_entry,
    load_file_entry,
    manifest_path,
    sha256_file,
    verify_dir_entry,
    write_file_entry,
)
from llmsplit_env.llm.channel import AnalogChannel

ROOT = Path(__file__).resolve().parents[1]


def runner(model_dir) -> SplitRunner:
    return SplitRunner.from_pretrained(str(model_dir), "pydoc", num_tokens=256, window=64, dtype="float32")


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Overwrite one byte in place: same size (and the same modification time), different content."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drop_manifest(path: Path) -> None:
    manifest_path(path).unlink()


def garble_manifest(path: Path) -> None:
    manifest_path(path).write_bytes(b"\xff{not json")


CORRUPTIONS = [flip_byte, truncate, drop_manifest, garble_manifest]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def one(paths) -> Path:
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def assert_clean_load(fn):
    """``fn()`` runs without a cache warning (the entry verifies)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        return fn()


# --- token ids and hidden-state prefixes ----------------------------------------------------------------------------


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_token_ids_are_rebuilt(tiny_models, cache, corrupt):
    clean = runner(tiny_models["llama"])
    path = one((cache / "tokens").glob("*.npy"))
    corrupt(path)
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        again = runner(tiny_models["llama"])
    assert torch.equal(again.input_ids, clean.input_ids)
    np.testing.assert_array_equal(again.extra_ids, clean.extra_ids)
    assert_clean_load(lambda: runner(tiny_models["llama"]))  # repaired on disk


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_prefixes_are_rebuilt_and_the_perplexity_is_the_clean_one(tiny_models, cache, corrupt):
    clean = runner(tiny_models["llama"])
    ppl = clean.perplexity(2, AnalogChannel(5.0), seed=3)
    path = one((cache / "prefixes").glob("*.pt"))
    corrupt(path)
    again = runner(tiny_models["llama"])
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        prefixes = again.prefixes()
    assert torch.equal(prefixes, clean.prefixes())
    assert again.perplexity(2, AnalogChannel(5.0), seed=3) == ppl
    assert_clean_load(lambda: runner(tiny_models["llama"]).prefixes())


def test_prefixes_made_with_other_settings_are_rebuilt(tiny_models, cache):
    clean = runner(tiny_models["llama"])
    clean.prefixes()
    path = one((cache / "prefixes").glob("*.pt"))
    man = json.loads(manifest_path(path).read_text())
    man["settings"]["dtype"] = "torch.bfloat16"
    manifest_path(path).write_text(json.dumps(man))
    with pytest.warns(CacheWarning, match="other settings"):
        assert torch.equal(runner(tiny_models["llama"]).prefixes(), clean.prefixes())


def test_a_pickled_object_that_passes_the_hash_is_never_unpickled(tiny_models, cache, tmp_path):
    """``torch.load(weights_only=True)``: a prefix file holding pickled code is refused (and rebuilt), not run."""
    clean = runner(tiny_models["llama"])
    clean.prefixes()
    path = one((cache / "prefixes").glob("*.pt"))
    settings = json.loads(manifest_path(path).read_text())["settings"]
    marker = tmp_path / "pwned"
    import io

    buf = io.BytesIO()
    torch.save({"x": _Evil(str(marker))}, buf)
    write_file_entry(path, buf.getvalue(), "prefixes", settings)  # a valid manifest for the evil bytes
    with pytest.warns(CacheWarning, match="do not decode"):
        assert torch.equal(runner(tiny_models["llama"]).prefixes(), clean.prefixes())
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_an_entry_that_cannot_be_rebuilt_names_its_path(tiny_models, cache, monkeypatch):
    runner(tiny_models["llama"])
    path = one((cache / "tokens").glob("*.npy"))
    flip_byte(path)

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("llmsplit_env.llm.cache_entry.atomic_write_bytes", refuse)
    with pytest.warns(CacheWarning), pytest.raises(CacheError, match=re.escape(str(path))) as err:
        runner(tiny_models["llama"])
    assert "LLMSPLIT_CACHE" in str(err.value)


def test_cache_files_get_the_umask_mode(tiny_models, cache):
    old = os.umask(0o022)
    try:
        runner(tiny_models["llama"]).prefixes()
    finally:
        os.umask(old)
    files = [*cache.glob("tokens/*"), *cache.glob("prefixes/*")]
    assert len(files) == 4  # two entries, two manifests
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# --- directory entries (the converted model) ------------------------------------------------------------------------

SETTINGS = {"alias": "tiny", "gguf": "tiny.gguf", "gguf_size": 1}


def copy_model(src: Path):
    def build(tmp: Path) -> None:
        for f in src.iterdir():
            (tmp / f.name).write_bytes(f.read_bytes())

    return build


def _corrupt_dir(root: Path, how: str) -> None:
    if how == "flip config.json":
        flip_byte(root / "config.json")
    elif how == "flip weights":
        flip_byte(root / "model.safetensors")
    elif how == "truncate weights":
        truncate(root / "model.safetensors")
    elif how == "delete a file":
        (root / "tokenizer.json").unlink()
    elif how == "extra file":
        (root / "pytorch_model.bin").write_bytes(b"x")
    elif how == "no manifest":
        (root / DIR_MANIFEST).unlink()
    elif how == "garbage manifest":
        (root / DIR_MANIFEST).write_bytes(b"\x00\xff")
    else:
        raise ValueError(how)


DIR_CORRUPTIONS = [
    "flip config.json",
    "flip weights",
    "truncate weights",
    "delete a file",
    "extra file",
    "no manifest",
    "garbage manifest",
]


@pytest.mark.parametrize("how", DIR_CORRUPTIONS)
def test_corrupt_model_directory_is_rebuilt(tiny_models, tmp_path, how):
    src = tiny_models["llama"]
    root = tmp_path / "models" / "tiny"
    assert load_dir_entry(root, "model", SETTINGS, copy_model(src)) == root
    manifest = json.loads((root / DIR_MANIFEST).read_text())
    assert set(manifest["files"]) == {f.name for f in src.iterdir()}  # every file is hashed
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256_file(src / "model.safetensors")
    _corrupt_dir(root, how)
    assert verify_dir_entry(root, "model", SETTINGS)
    with pytest.warns(CacheWarning, match=re.escape(str(root))):
        load_dir_entry(root, "model", SETTINGS, copy_model(src))
    assert verify_dir_entry(root, "model", SETTINGS) == ""
    for f in src.iterdir():
        assert (root / f.name).read_bytes() == f.read_bytes()
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temporary directories left


def test_model_directory_from_other_settings_is_rebuilt_and_unbuildable_one_names_its_path(tiny_models, tmp_path):
    root = tmp_path / "models" / "tiny"
    load_dir_entry(root, "model", SETTINGS, copy_model(tiny_models["llama"]))
    other = {**SETTINGS, "gguf_size": 2}
    assert "other settings" in verify_dir_entry(root, "model", other)

    def fail(_tmp: Path) -> None:
        raise PermissionError(13, "Permission denied")

    with pytest.warns(CacheWarning, match="other settings"), pytest.raises(CacheError, match=re.escape(str(root))):
        load_dir_entry(root, "model", other, fail)


def test_an_unfinished_model_conversion_is_never_used(tiny_models, tmp_path):
    """A conversion interrupted before its manifest leaves no entry in place (it is built beside it)."""
    root = tmp_path / "models" / "tiny"

    def interrupted(tmp: Path) -> None:
        copy_model(tiny_models["llama"])(tmp)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_dir_entry(root, "model", SETTINGS, interrupted)
    assert not root.exists() and not list(root.parent.iterdir())


# --- concurrent builders --------------------------------------------------------------------------------------------

_CONCURRENT = r"""
import sys, time
from pathlib import Path
from llmsplit_env.llm.cache_entry import load_dir_entry, load_file_entry

kind, target = sys.argv[1], Path(sys.argv[2])
if kind == "file":
    def build():
        time.sleep(0.3)
        return b"payload " * 100000
    assert load_file_entry(target, "test", {"v": 1}, build, bytes) == b"payload " * 100000
else:
    def build_into(tmp):
        time.sleep(0.3)
        (tmp / "a.bin").write_bytes(b"a" * 100000)
        (tmp / "b.bin").write_bytes(b"b" * 10)
    root = load_dir_entry(target, "test", {"v": 1}, build_into)
    assert (root / "a.bin").read_bytes() == b"a" * 100000
print("ok")
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_two_processes_building_the_same_entry_both_get_a_valid_one(tmp_path, kind):
    target = tmp_path / ("entry.bin" if kind == "file" else "entry")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, kind, str(target)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0] and all(o.strip() == "ok" for o in outs)
    if kind == "file":
        assert load_file_entry(target, "test", {"v": 1}, lambda: b"never", bytes) == b"payload " * 100000
    else:
        assert verify_dir_entry(target, "test", {"v": 1}) == ""
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --- the repository never unpickles without weights_only ------------------------------------------------------------


def test_every_torch_load_in_the_repository_uses_weights_only():
    offenders = []
    files = [*ROOT.glob("llmsplit_env/**/*.py"), *ROOT.glob("agents/**/*.py"), *ROOT.glob("benchmarks/*.py")]
    files += [ROOT / "train.py", ROOT / "evaluate.py"]
    for f in files:
        if not f.is_file():
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    offenders.append(f"{f.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


# --- the real converted model (slow: one GGUF conversion) -----------------------------------------------------------


@pytest.mark.slow
def test_real_converted_model_with_a_flipped_weight_byte_is_reconverted(real_runner, tmp_path, monkeypatch):
    import shutil

    from llmsplit_env.llm.model import convert_alias
    from llmsplit_env.util.cache import cache_dir

    converted = convert_alias("smollm2-135m")  # the session's conversion (verified on the way)
    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path / "cache"))
    root = cache_dir("models") / "smollm2-135m"
    shutil.copytree(converted, root)
    clean_hash = sha256_file(root / "model.safetensors")
    flip_byte(root / "model.safetensors")
    with pytest.warns(CacheWarning, match=re.escape(str(root))):
        assert convert_alias("smollm2-135m") == root
    assert sha256_file(root / "model.safetensors") == clean_hash  # the conversion is deterministic
