"""The micro study, trained once for the tests of this folder (a few seconds per run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dereverb import study
from tests.experiment.studies import micro_config


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> tuple[Path, Path]:
    """``(config, study folder)`` of a finished micro study (two capacities, two training
    lengths) with its report, run in this process (submitit's debug executor). Shared by every test here: read it, never write into it (use
    :func:`micro_copy` for that)."""
    tmp = tmp_path_factory.mktemp("study")
    config = micro_config(tmp, tmp / "rircache", large=True)
    out = tmp / "out"
    assert study.main(["--config", str(config), "--out", str(out), "--launcher", "debug"]) == 0
    return config, out


@pytest.fixture
def micro_copy(micro, tmp_path) -> tuple[Path, Path]:
    """``(config, study folder)``: a private copy of the micro study, free to change."""
    config, out = micro
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return config, copy
