"""The study folder's layout (one home for its file names) and its JSON files.

A study folder (``--out``, default ``runs/study/<profile>``) holds ``study.json`` (settings and
one entry per invocation), ``baselines.json`` (reverberant / WPE / oracle scores on the same
items), ``jobs/`` (the launcher's logs) and ``runs/<arm>__<target>__<capacity>__seed<k>/`` with
the run's ``config.yaml``, ``train.log``, ``final.ckpt``, ``steps/step=<k>.ckpt``, TensorBoard
events under ``tb/version_0/`` and, written atomically at the very end, ``result.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.atomic import write_atomic

STUDY_JSON = "study.json"
BASELINES_JSON = "baselines.json"
BASELINE_CACHE = "baseline_cache"
JOBS = "jobs"
RUNS = "runs"
RESULT = "result.json"
FINAL_CKPT = "final.ckpt"
STEP_CKPTS = "steps"
RUN_CONFIG = "config.yaml"
TRAIN_LOG = "train.log"


def run_dir(out: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` in the study folder ``out``."""
    return Path(out) / RUNS / run_id


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def write_json_atomic(path: Path, obj: Any, indent: int | None = 1) -> Path:
    """JSON to ``path`` atomically, so a reader never sees half a file."""
    return write_atomic(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``; None if absent or unreadable (every writer is atomic, so only a
    hand-edited file can be broken)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def finite_or_none(v: Any) -> Any:
    """A float as itself, NaN / inf as None (so result files hold plain JSON numbers)."""
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v
