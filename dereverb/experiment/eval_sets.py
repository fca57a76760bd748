"""The study's evaluation: its item sets, the baselines on them and the scores of one run.

Every run is scored on the same items: the DataModule's simulated test split (``sim``) and,
when the measured RIRs are present, test-split speakers x measured RIRs (``measured``). Items
are materialised once per study session and handed to every run.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dereverb.experiment.config import StudyConfig, StudyError, items_fingerprint
from dereverb.experiment.files import (
    BASELINE_CACHE,
    BASELINES_JSON,
    finite_or_none,
    read_json,
    write_json_atomic,
)
from dereverb.signals.metrics import METRICS

Items = Mapping[str, Sequence[Mapping[str, Any]]]
#: The per-item keys a result file keeps.
ROW_KEYS: tuple[str, ...] = ("id", "band", "t60", "drr", "rir", "room", *METRICS, "seconds")


def data_kwargs(cfg: StudyConfig) -> dict[str, Any]:
    """The DataModule arguments of the study (``train.data``), a copy."""
    return copy.deepcopy(cfg.train.get("data") or {})


def check_inputs(cfg: StudyConfig) -> list[str]:
    """Clear errors for missing data before anything runs; returns notes (e.g. no measured set)."""
    speech = str(data_kwargs(cfg).get("speech", "synthetic"))
    if speech != "synthetic" and not Path(speech).is_dir():
        raise StudyError(f"data.speech {speech!r}: folder not found (from {cfg.path}, profile {cfg.profile}); "
                         "put LibriSpeech there, or pass --speech FOLDER (or --speech synthetic for a trial run)")
    rirs = cfg.evaluation.get("measured_rirs")
    return [f"measured RIR folder {rirs} is absent: the measured-room set is skipped"] if rirs and not Path(str(rirs)).is_dir() else []


def prepare_data(cfg: StudyConfig) -> None:
    """Simulate (or load from the cache) the RIR banks once, before any run starts."""
    from dereverb.evaluation.sources import build_datamodule

    build_datamodule(data_kwargs(cfg)).prepare_data()


def eval_items(cfg: StudyConfig) -> dict[str, list[dict[str, Any]]]:
    """The evaluation sets, materialised: ``{"sim": [...], "measured": [...]}`` (measured only when
    its folder exists). Items are dicts with ``id``, ``reverb (L,)``, ``clean (L,)``, ``t60`` ..."""
    from dereverb.evaluation.sources import datamodule_items, measured_items

    ev = cfg.evaluation
    data = data_kwargs(cfg)
    seconds = float(ev.get("segment_seconds") or data.get("segment_seconds", 2.0))
    sim_kwargs = {**data, "test_items": int(ev.get("sim_items", 32)), "segment_seconds": seconds}
    loaders, _, _ = datamodule_items(sim_kwargs)
    out = {"sim": [load() for load in loaders]}
    rirs = ev.get("measured_rirs")
    n_measured = int(ev.get("measured_items", 0))
    if rirs and n_measured > 0 and Path(str(rirs)).is_dir():
        loaders, _ = measured_items(
            str(rirs), speech=str(data.get("speech", "synthetic")), n_items=n_measured, segment_seconds=seconds,
            sample_rate=cfg.sample_rate, seed=int(data.get("seed", 0)), target=str(data.get("clean_target", "dry")),
            speech_split="test", min_duration=float(data.get("min_duration", 1.0)),
        )
        out["measured"] = [load() for load in loaders]
    return out


def plain_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scored rows as a result file keeps them: :data:`ROW_KEYS` only, NaN as None."""
    return [{k: finite_or_none(r[k]) for k in ROW_KEYS if k in r} for r in rows]


def evaluate_checkpoint(ckpt: Path, items: Items, sample_rate: int, name: str, device: str = "cpu") -> dict[str, list[dict]]:
    """Score one checkpoint on every evaluation set (no score cache: ``result.json`` is the cache)."""
    from dereverb.evaluation.scoring import evaluate_systems
    from dereverb.evaluation.systems import CheckpointSystem

    system = CheckpointSystem.load(ckpt, device=device)
    return {s: plain_rows(evaluate_systems(its, {name: system}, sample_rate, cache_dir=None, srmr="none", progress=False))
            for s, its in items.items()}


def compute_baselines(cfg: StudyConfig, items: Items, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Reverberant / WPE / oracle scores on the study's items -> ``baselines.json`` (reused when
    the items are unchanged; per-item scores are also cached under ``baseline_cache/``)."""
    from dereverb.evaluation.scoring import evaluate_systems
    from dereverb.evaluation.systems import build_baselines

    spec = str(cfg.evaluation.get("baselines", "reverberant"))
    shas = {s: items_fingerprint(v) for s, v in items.items()}
    path = out / BASELINES_JSON
    old = read_json(path)
    if old and old.get("items_sha") == shas and old.get("spec") == spec:
        return old
    t0 = time.perf_counter()
    systems = build_baselines(spec)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for s, its in items.items():
        scored = evaluate_systems(its, systems, cfg.sample_rate, cache_dir=out / BASELINE_CACHE, srmr="none", progress=False)
        rows[s] = {n: plain_rows([r for r in scored if r["system"] == n]) for n in systems}
    result = {"spec": spec, "items_sha": shas, "rows": rows, "seconds": time.perf_counter() - t0}
    write_json_atomic(path, result)
    log(f"baselines ({spec}) scored in {result['seconds']:.0f} s")
    return result
