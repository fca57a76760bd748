"""The study folder's layout (one home for its file names) and its JSON files.

Layout of a study folder (``--out``, default ``runs/study/<profile>``)::

    study.json                  settings, machine, one entry per invocation (command, runtime)
    baselines.json              reverberant / WPE / oracle scores on the same items
    baseline_cache/             per-item baseline scores
    runs/<arm>__<target>__seed<k>/
        config.yaml             the generated LightningCLI config of this run
        train.log               Lightning's output
        final.ckpt              the weights after the last training step (evaluated)
        steps/step=<k>.ckpt     the weights after step k, for each evaluation.at_steps k (evaluated)
        tb/version_0/           TensorBoard events, resolved config, checkpoints/{last,best-*}.ckpt
        result.json             written atomically at the very end: per-item scores at every
                                evaluated step (``steps``; the last one also as ``rows``), timings

(with capacities, run folders are ``<arm>__<target>__<capacity>__seed<k>``)
    report/REPORT.md + *.png    (or --report-dir)
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
RUNS = "runs"
RESULT = "result.json"
FINAL_CKPT = "final.ckpt"
STEP_CKPTS = "steps"
RUN_CONFIG = "config.yaml"
TRAIN_LOG = "train.log"
TB_VERSION = Path("tb") / "version_0"


def run_dir(out: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` in the study folder ``out``."""
    return Path(out) / RUNS / run_id


def json_default(v: Any) -> Any:
    """``json.dumps`` ``default`` for numpy scalars and paths."""
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def write_json_atomic(path: Path, obj: Any, indent: int = 1) -> Path:
    """JSON to ``path`` atomically, so a reader never sees half a file."""
    return write_atomic(path, json.dumps(obj, indent=indent, default=json_default) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``; None if absent or unreadable (a half-written file cannot exist:
    every writer is atomic, so only a hand-edited one is skipped)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        return None


def load_result(folder: Path) -> dict[str, Any] | None:
    """A finished run's ``result.json`` (None if absent or unreadable)."""
    return read_json(Path(folder) / RESULT)


def finite_or_none(v: Any) -> Any:
    """A float as itself, NaN / inf as None (so result files hold plain JSON numbers)."""
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    return v
