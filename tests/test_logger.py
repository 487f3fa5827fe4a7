"""The shared TensorBoard tag tree's logger (agents.common.logger)."""

from __future__ import annotations

import os

import pytest
from agent_helpers import scalars

from agents.common.logger import TagTreeLogger, configure_logger


def test_configure_logger_naming_and_mirroring(tmp_path):
    a = configure_logger(str(tmp_path), "MBRL")
    b = configure_logger(str(tmp_path), "MBRL")
    assert os.path.basename(a.get_dir()) == "MBRL_1" and os.path.basename(b.get_dir()) == "MBRL_2"
    a.record("train/loss", 0.5)
    a.record("cost/quality_evals", 7)
    a.dump(3)
    a.close()
    tags = scalars(a.get_dir())
    assert tags["model/loss"] == [(3, 0.5)] and tags["train/loss"] == [(3, 0.5)]
    assert tags["cost/quality_evals"] == [(3, 7.0)]
    silent = configure_logger(None, "x")
    assert isinstance(silent, TagTreeLogger) and silent.get_dir() is None and silent.output_formats == []
    silent.record("train/x", 1.0)
    silent.dump(1)
    with pytest.raises(ValueError, match="run_name"):
        configure_logger(str(tmp_path), "")
