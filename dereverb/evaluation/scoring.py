"""Scoring systems on items, with a per-item score cache.

:func:`evaluate_systems` runs every system (:mod:`dereverb.evaluation.systems`) on every item
(:mod:`dereverb.evaluation.sources`) and scores it with the metric registry
(:mod:`dereverb.signals.metrics`): the intrusive metrics against the clean reference, SRMR on
the estimate alone. Every (item, system) record is cached by ``joblib.Memory`` under
``cache_dir``, keyed by the item's audio, the system's ``fingerprint`` (its settings or
checkpoint hash), the sample rate and the metrics asked for, so a re-run - or a run after
Ctrl-C - computes only what is new.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch

from dereverb.evaluation.report import t60_band
from dereverb.evaluation.systems import needs_clean
from dereverb.signals import metrics

#: Bump when a cached score would change for the same item and system (metric code changes).
CACHE_VERSION = 2
SRMR_MODES = ("full", "fast", "none")
_META_KEYS = ("drr", "rir", "speech", "room")

Item = Mapping[str, Any]
SystemFn = Callable[..., torch.Tensor]


def _metric_key(name: str, srmr: str) -> str:
    """A metric's record key: its name, except SRMR's fast mode (``srmr_fast``: another scale)."""
    return "srmr_fast" if name == "srmr" and srmr == "fast" else name


def _metric_keys(has_clean: bool, srmr: str) -> tuple[str, ...]:
    """Record keys scored for one item: intrusive metrics need the clean reference; the
    non-intrusive ones (SRMR, unless ``srmr="none"``) are scored for every item."""
    return tuple(
        _metric_key(name, srmr) for name, m in metrics.REGISTRY.items()
        if (has_clean if m.needs_reference else not (name == "srmr" and srmr == "none"))
    )


def score_item(est: np.ndarray, clean: np.ndarray | None, sample_rate: int, keys: Sequence[str]) -> dict[str, float]:
    """The requested record keys for one estimate ``(L,)`` against ``clean (L,)`` (or None)."""
    out: dict[str, float] = {}
    intrusive = [k for k in keys if k in metrics.METRICS]
    if intrusive:
        if clean is None:
            raise ValueError("intrusive metrics need the clean reference")
        out.update(metrics.score(clean, est, sample_rate, metrics=intrusive))
    for k in keys:
        if k == "srmr_fast":
            out[k] = metrics.srmr(est, sample_rate, fast=True)
        elif k in metrics.REGISTRY and not metrics.REGISTRY[k].needs_reference:
            out[k] = metrics.REGISTRY[k].fn(est, sample_rate)
    return out


def system_fingerprint(name: str, system: object) -> str:
    """A system's settings as text: its ``fingerprint`` attribute (baselines, checkpoints:
    their settings / file hash), else its name (a plain callable is cached by name)."""
    fp = getattr(system, "fingerprint", None)
    return str(fp) if fp else f"name:{name}"


def run_system(system: SystemFn, reverb: np.ndarray, clean: np.ndarray | None, sample_rate: int) -> np.ndarray:
    """One item through a system: ``(L,)`` numpy -> ``(L,)`` float32 numpy."""
    x = torch.from_numpy(np.ascontiguousarray(reverb, dtype=np.float32))[None]
    c = None if clean is None else torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None]
    with torch.no_grad():
        y = system(x, int(sample_rate), c)
    y = y.detach().float().cpu().numpy().reshape(-1)
    if y.shape[0] != x.shape[-1]:
        raise RuntimeError(f"a system returned {y.shape[0]} samples for a {x.shape[-1]}-sample input")
    return y


def _record(system: SystemFn, fingerprint: str, reverb: np.ndarray, clean: np.ndarray | None,
            sample_rate: int, keys: tuple[str, ...], version: int) -> dict[str, float]:
    """Scores of one item through ``system``: ``{key: value, "seconds": processing time}``.

    Cached on every argument but ``system`` itself (its ``fingerprint`` stands for it)."""
    t0 = time.perf_counter()
    est = run_system(system, reverb, clean, sample_rate)
    seconds = time.perf_counter() - t0
    return {**score_item(est, clean, sample_rate, keys), "seconds": seconds}


def evaluate_systems(
    items: Iterable[Item],
    systems: Mapping[str, SystemFn],
    sample_rate: int,
    cache_dir: str | os.PathLike | None = None,
    *,
    srmr: str = "full",
    total: int | None = None,
    progress: bool = True,
    stats: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Score every system on every item, reusing cached scores.

    Args:
        items: dicts with ``id`` (unique str), ``reverb (L,)``, ``clean (L,)`` or None, ``t60``
            (s, NaN/None when unknown); optional ``drr``, ``rir``, ``speech``, ``room`` are
            copied to rows.
        systems: name -> callable ``(reverb (B, L), sample_rate, clean (B, L) | None) -> (B, L)``.
            A system with ``needs_clean`` (oracles) is skipped for items without a reference.
            A ``fingerprint`` attribute (settings / checkpoint hash) keys its cache.
        sample_rate: of the items, Hz.
        cache_dir: folder of the score cache (``joblib.Memory``; None: no cache).
        srmr: ``full`` (reference SRMR), ``fast`` (FFT gammatone approximation) or ``none``.
        total: number of items, for the progress bar when ``items`` has no ``len``.
        stats: if given, receives ``computed`` (system runs), ``cached`` (reused) and
            ``skipped`` counts.

    Returns one row per (item, system): ``id, system, band, t60`` (+ item metadata), every
    metric of the registry (intrusive ones NaN without a reference or on failure; ``srmr`` NaN
    with ``srmr="none"``) and ``seconds`` (the system's processing time when it was computed).
    """
    if srmr not in SRMR_MODES:
        raise ValueError(f"srmr must be one of {SRMR_MODES}, got {srmr!r}")
    if not systems:
        raise ValueError("no systems to evaluate; give checkpoints and/or baselines")
    memory = joblib.Memory(None if cache_dir is None else Path(cache_dir), verbose=0)
    record = memory.cache(_record, ignore=["system"])
    counts = {"computed": 0, "cached": 0, "skipped": 0}
    rows: list[dict[str, Any]] = []
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="evaluating", unit="item", disable=not progress, file=sys.stderr)
    try:
        for item in items:
            clean = item.get("clean")
            if clean is not None:
                clean = np.ascontiguousarray(clean, dtype=np.float32)
            reverb = np.ascontiguousarray(item["reverb"], dtype=np.float32)
            keys = _metric_keys(clean is not None, srmr)
            t60 = math.nan if item.get("t60") is None else float(item["t60"])
            for name, system in systems.items():
                if clean is None and needs_clean(system):
                    counts["skipped"] += 1
                    continue
                args = (system, system_fingerprint(name, system), reverb, clean, int(sample_rate), keys,
                        CACHE_VERSION)
                counts["cached" if record.check_call_in_cache(*args) else "computed"] += 1
                rows.append(_row(item, name, t60, record(*args), srmr))
            bar.update(1)
            bar.set_postfix(computed=counts["computed"], cached=counts["cached"])
    finally:
        bar.close()
    if stats is not None:
        stats.update(counts)
    return rows


def _row(item: Item, system: str, t60: float, rec: Mapping[str, float], srmr: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": str(item["id"]), "system": system, "band": t60_band(t60) or "all", "t60": t60}
    row.update({k: item[k] for k in _META_KEYS if item.get(k) is not None})
    for m in metrics.REGISTRY:
        row[m] = float(rec.get(_metric_key(m, srmr), math.nan))
    row["seconds"] = float(rec["seconds"])
    return row
