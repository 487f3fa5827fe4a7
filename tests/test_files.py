"""Atomic writes (`llmsplit_env.util.files`): all or nothing, and the mode a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from llmsplit_env.util.files import atomic_output, atomic_write_bytes, atomic_write_json


def test_atomic_write_replaces_whole_files_and_keeps_the_old_one_on_error(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": 1})
    assert path.read_text() == '{\n "a": 1\n}\n'
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == '{\n "a": 1\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left behind


def test_new_files_get_the_umask_mode_and_existing_files_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "model.bin"
        atomic_write_bytes(path, b"x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        path.chmod(0o600)
        atomic_write_bytes(path, b"y")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"y"
    finally:
        os.umask(old)
