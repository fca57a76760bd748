"""Scoring systems on items, with a per-item score cache.

:func:`evaluate_systems` runs every system (see :mod:`dereverb.evaluation.systems`) on every item
(see :mod:`dereverb.data.sources`) and scores it with the metrics of the registry
(:mod:`dereverb.signals.metrics`): the intrusive ones against the clean reference, SRMR on
the estimate alone. Every (item, system) score is cached (:class:`ScoreCache`: JSON lines, one
file per system, keyed by the item's id + content hash and the system's settings / checkpoint
hash), so a re-run only computes what is new.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dereverb.evaluation.report import t60_band
from dereverb.evaluation.systems import needs_clean
from dereverb.signals import metrics

__all__ = [
    "CACHE_VERSION",
    "SRMR_MODES",
    "ScoreCache",
    "evaluate_systems",
    "item_key",
    "run_system",
    "score_item",
    "system_fingerprint",
]

#: Bump when a cached score would change for the same item and system (metric code changes).
CACHE_VERSION = 1
SRMR_MODES = ("full", "fast", "none")

Item = Mapping[str, Any]
SystemFn = Callable[..., torch.Tensor]


# ============================================================================ scoring
def _cache_key(metric: str, srmr: str) -> str:
    """The cache key of a metric: its name, except SRMR's fast mode (``srmr_fast``), so the
    two SRMR modes never mix."""
    return "srmr_fast" if metric == "srmr" and srmr == "fast" else metric


def _metric_keys(has_clean: bool, srmr: str) -> list[str]:
    """Cache keys scored for one item: the intrusive metrics need the clean reference; the
    non-intrusive ones (SRMR, unless ``srmr="none"``) are scored for every item."""
    return [
        _cache_key(name, srmr)
        for name, m in metrics.REGISTRY.items()
        if (has_clean if m.needs_reference else not (name == "srmr" and srmr == "none"))
    ]


def score_item(
    est: np.ndarray, clean: np.ndarray | None, sample_rate: int, keys: Sequence[str]
) -> dict[str, float]:
    """The requested cache keys for one estimate ``(L,)`` against ``clean (L,)`` (or None)."""
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


# ============================================================================ cache
def item_key(item: Item, sample_rate: int) -> str:
    """``id`` + a hash of the audio, so a changed item under the same id is rescored."""
    h = hashlib.sha1(str(int(sample_rate)).encode())
    h.update(np.ascontiguousarray(item["reverb"], dtype=np.float32).tobytes())
    if item.get("clean") is not None:
        h.update(b"clean")
        h.update(np.ascontiguousarray(item["clean"], dtype=np.float32).tobytes())
    return f"{item['id']}|{h.hexdigest()[:20]}"


def system_fingerprint(name: str, system: object) -> str:
    """A system's settings as text: its ``fingerprint`` attribute (baselines, checkpoints:
    their settings / file hash), else its name (a plain callable is cached by name)."""
    fp = getattr(system, "fingerprint", None)
    return str(fp) if fp else f"name:{name}"


class ScoreCache:
    """Per-system JSON-lines file of ``{"key": item key, <metric>: value, ...}`` records.

    Appends one line per newly scored item (flushed), so an interrupted run keeps its work; on
    load, later lines for a key extend earlier ones and an unparsable (truncated) line is
    skipped. ``cache_dir=None`` keeps records in memory only.
    """

    def __init__(
        self, cache_dir: str | os.PathLike | None, name: str, fingerprint: str, sample_rate: int
    ) -> None:
        ident = json.dumps(
            {"v": CACHE_VERSION, "system": fingerprint, "sr": int(sample_rate)}, sort_keys=True
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "system"
        self.path = Path(cache_dir) / f"{safe}-{digest}.jsonl" if cache_dir is not None else None
        self.records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self.records.setdefault(str(rec.pop("key")), {}).update(rec)
                    except (json.JSONDecodeError, KeyError, AttributeError):
                        continue  # a line cut short by a killed run

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, key: str, record: Mapping[str, Any]) -> None:
        self.records.setdefault(key, {}).update(record)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        with open(self.path, "a+b") as f:
            # After a run killed mid-line, start on a fresh line so this record stays readable.
            lead = b""
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                lead = b"" if f.read(1) == b"\n" else b"\n"
            f.write(lead + (json.dumps({"key": key, **clean}) + "\n").encode())
            f.flush()


def _cached_value(rec: Mapping[str, Any], key: str) -> float:
    v = rec.get(key)
    return math.nan if v is None else float(v)


# ============================================================================ evaluation
def run_system(
    system: SystemFn, reverb: np.ndarray, clean: np.ndarray | None, sample_rate: int
) -> np.ndarray:
    """One item through a system: ``(L,)`` numpy -> ``(L,)`` float32 numpy."""
    x = torch.from_numpy(np.ascontiguousarray(reverb, dtype=np.float32))[None]
    c = (
        None
        if clean is None
        else torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None]
    )
    with torch.no_grad():
        y = system(x, int(sample_rate), c)
    y = y.detach().float().cpu().numpy().reshape(-1)
    if y.shape[0] != x.shape[-1]:
        raise RuntimeError(
            f"a system returned {y.shape[0]} samples for a {x.shape[-1]}-sample input"
        )
    return y


_META_KEYS = ("drr", "rir", "speech", "room")


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
        cache_dir: folder of the per-system score caches (None: no cache).
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
    caches = {
        n: ScoreCache(cache_dir, n, system_fingerprint(n, s), sample_rate)
        for n, s in systems.items()
    }
    counts = {"computed": 0, "cached": 0, "skipped": 0}
    rows: list[dict[str, Any]] = []
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = _progress_bar(total, enabled=progress)
    try:
        for item in items:
            clean = item.get("clean")
            keys = _metric_keys(clean is not None, srmr)
            ikey = item_key(item, sample_rate)
            t60 = item.get("t60")
            t60 = float(t60) if t60 is not None else math.nan
            for name, system in systems.items():
                if clean is None and needs_clean(system):
                    counts["skipped"] += 1
                    continue
                cache = caches[name]
                rec = cache.get(ikey) or {}
                missing = [k for k in keys if k not in rec]
                if missing:
                    t0 = time.perf_counter()
                    est = run_system(system, item["reverb"], clean, sample_rate)
                    seconds = time.perf_counter() - t0
                    new = score_item(est, clean, sample_rate, missing)
                    new["seconds"] = seconds
                    cache.put(ikey, new)
                    rec = cache.get(ikey) or new
                    counts["computed"] += 1
                else:
                    counts["cached"] += 1
                rows.append(_row(item, name, t60, rec, clean is not None, srmr))
            bar.update(1)
            bar.set_postfix(computed=counts["computed"], cached=counts["cached"])
    finally:
        bar.close()
    if stats is not None:
        stats.update(counts)
    return rows


def _row(
    item: Item, system: str, t60: float, rec: Mapping[str, Any], has_clean: bool, srmr: str
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": str(item["id"]),
        "system": system,
        "band": t60_band(t60) or "all",
        "t60": t60,
    }
    for k in _META_KEYS:
        if k in item and item[k] is not None:
            row[k] = item[k]
    scored = set(_metric_keys(has_clean, srmr))
    for m in metrics.REGISTRY:
        key = _cache_key(m, srmr)
        row[m] = _cached_value(rec, key) if key in scored else math.nan
    row["seconds"] = _cached_value(rec, "seconds")
    return row


def _progress_bar(total: int | None, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluating", unit="item", disable=not enabled, file=sys.stderr)
