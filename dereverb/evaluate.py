"""``python -m dereverb.evaluate``: checkpoints and baselines on a test set, tables by T60 band.

Sources (one of):

- ``--datamodule-config X.yaml`` (a training config; its ``data:`` section), or nothing: the
  :class:`~dereverb.data.datamodule.DereverbDataModule`'s *test split* (simulated rooms by default);
  ``--speech`` / ``--rirs`` override the config's ``data.speech`` / ``data.rirs``.
- ``--rirs FOLDER`` (without a config): speech (``--speech FOLDER``, default synthetic) x every
  measured RIR under the folder, pairs built as in training (:func:`dereverb.data.datamodule.make_pair`),
  item ``i`` seeded by ``(seed, i)``, rooms (first-level subfolders) taken in turn.
- ``--paired FOLDER``: ``FOLDER/reverb/*`` and ``FOLDER/clean/*`` with the same relative names.
- ``--unpaired FOLDER``: real reverberant recordings; only the non-intrusive SRMR is computed.

Every (item, system) score is cached under ``--cache-dir`` (JSON lines, one file per system,
keyed by the item's id + content hash and the system's settings / checkpoint hash), so a re-run
only computes what is new. Outputs in ``-o OUTDIR``: ``results.md``, ``results.csv`` (means by
system x T60 band), ``results_ci.csv`` (paired-bootstrap intervals), ``results.json`` (both, and
the run's settings), ``per_item.csv`` and ``pesq_stoi_vs_t60.png``.

From Python: :func:`evaluate_systems`, :func:`summarize`, :func:`bootstrap_diff`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dereverb.cli_errors import read_yaml_mapping, unwritable_reason
from dereverb.evaluation import metrics as metric_fns
from dereverb.evaluation.baselines import ORACLES, build_baselines, needs_clean, parse_names
from dereverb.evaluation.bootstrap import bootstrap_diff
from dereverb.evaluation.report import (
    METRICS,
    ci_csv,
    plot_vs_t60,
    rows_csv,
    summarize,
    t60_band,
    table_csv,
    to_json,
    to_markdown,
    write_atomic,
)
from dereverb.inference.checkpoint import CheckpointError, DeviceError, load_model, resolve_device
from dereverb.inference.enhance import dereverberate

__all__ = [
    "METRICS",
    "CheckpointSystem",
    "EvaluationError",
    "bootstrap_diff",
    "checkpoint_names",
    "datamodule_items",
    "evaluate_systems",
    "main",
    "measured_items",
    "paired_items",
    "summarize",
    "unpaired_items",
]

#: Bump when a cached score would change for the same item and system (metric code changes).
CACHE_VERSION = 1
SRMR_MODES = ("full", "fast", "none")
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
OUTPUT_FILES = (
    "results.md",
    "results.csv",
    "results_ci.csv",
    "results.json",
    "per_item.csv",
    "pesq_stoi_vs_t60.png",
)
MEASURED_SEED_TAG = 7  # keeps measured-source items apart from the DataModule's split streams


class EvaluationError(Exception):
    """Bad input for an evaluation; the message names the argument/file and the fix."""


Item = Mapping[str, Any]
SystemFn = Callable[..., torch.Tensor]


# ============================================================================ scoring
def srmr_score(est: np.ndarray, sample_rate: int, mode: str = "full") -> float:
    """SRMR (Falk et al. 2010) of ``est (L,)`` via torchmetrics; ``mode`` ``fast`` uses the
    FFT gammatone approximation (about 10x faster, values on a different scale). NaN if
    the signal is silent, non-finite or too short."""
    if mode == "none":
        return math.nan
    from torchmetrics.functional.audio.srmr import speech_reverberation_modulation_energy_ratio

    x = np.asarray(est, dtype=np.float64)
    if x.ndim != 1 or x.size < sample_rate // 4 or not np.isfinite(x).all() or not np.any(x):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the fast mode's accuracy
        try:
            v = speech_reverberation_modulation_energy_ratio(
                torch.from_numpy(x), int(sample_rate), fast=(mode == "fast")
            )
        except (RuntimeError, ValueError):
            return math.nan
    v = float(v.reshape(-1)[0])
    return v if math.isfinite(v) else math.nan


def _metric_keys(has_clean: bool, srmr: str) -> list[str]:
    """Keys stored in the cache for one item: intrusive metrics need the clean reference;
    SRMR is stored under its mode (``srmr`` / ``srmr_fast``) so the modes never mix."""
    keys = list(metric_fns.METRICS) if has_clean else []
    if srmr != "none":
        keys.append("srmr" if srmr == "full" else "srmr_fast")
    return keys


def score_item(
    est: np.ndarray, clean: np.ndarray | None, sample_rate: int, keys: Sequence[str]
) -> dict[str, float]:
    """The requested cache keys for one estimate ``(L,)`` against ``clean (L,)`` (or None)."""
    out: dict[str, float] = {}
    intrusive = [k for k in keys if k in metric_fns.METRICS]
    if intrusive:
        if clean is None:
            raise ValueError("intrusive metrics need the clean reference")
        out.update(metric_fns.score(clean, est, sample_rate, metrics=intrusive))
    for k in keys:
        if k in ("srmr", "srmr_fast"):
            out[k] = srmr_score(est, sample_rate, "full" if k == "srmr" else "fast")
    return out


# ============================================================================ cache
def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


_META_KEYS = ("t60", "drr", "rir", "speech", "room")


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
            (s, NaN/None when unknown); optional ``drr``, ``rir``, ``speech`` are copied to rows.
        systems: name -> callable ``(reverb (B, L), sample_rate, clean (B, L) | None) -> (B, L)``.
            A system with ``needs_clean`` (oracles) is skipped for items without a reference.
            A ``fingerprint`` attribute (settings / checkpoint hash) keys its cache.
        sample_rate: of the items, Hz.
        cache_dir: folder of the per-system score caches (None: no cache).
        srmr: ``full`` (reference SRMR), ``fast`` (FFT gammatone approximation) or ``none``.
        total: number of items, for the progress bar when ``items`` has no ``len``.
        stats: if given, receives ``computed`` (system runs) and ``cached`` (reused) counts.

    Returns one row per (item, system): ``id, system, band, t60`` (+ item metadata), the
    metrics ``pesq, stoi, estoi, si_sdr`` (NaN without a reference or on failure), ``srmr``
    and ``seconds`` (the system's processing time when it was computed).
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
                row: dict[str, Any] = {
                    "id": str(item["id"]),
                    "system": name,
                    "band": t60_band(t60) or "all",
                    "t60": t60,
                }
                for k in _META_KEYS[1:]:
                    if k in item and item[k] is not None:
                        row[k] = item[k]
                for m in metric_fns.METRICS:
                    row[m] = _cached_value(rec, m) if clean is not None else math.nan
                row["srmr"] = (
                    _cached_value(rec, "srmr" if srmr == "full" else "srmr_fast")
                    if srmr != "none"
                    else math.nan
                )
                row["seconds"] = _cached_value(rec, "seconds")
                rows.append(row)
            bar.update(1)
            bar.set_postfix(computed=counts["computed"], cached=counts["cached"])
    finally:
        bar.close()
    if stats is not None:
        stats.update(counts)
    return rows


def _progress_bar(total: int | None, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluating", unit="item", disable=not enabled, file=sys.stderr)


# ============================================================================ checkpoints
@dataclass
class CheckpointSystem:
    """A trained checkpoint as an evaluation system (inference via :mod:`dereverb.inference`).

    ``phase`` / ``n_iter`` override the model's own phase recovery (None: the model's).
    """

    path: Path
    model: torch.nn.Module
    sha256: str
    phase: str | None = None
    n_iter: int | None = None
    needs_clean = False

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str = "cpu",
        phase: str | None = None,
        n_iter: int | None = None,
    ) -> CheckpointSystem:
        p = Path(path)
        if not p.is_file():
            raise EvaluationError(
                f"--ckpt {p}: checkpoint not found; pass a .ckpt file written by dereverb.train"
            )
        try:
            model = load_model(p, resolve_device(device))
        except (CheckpointError, DeviceError) as exc:
            raise EvaluationError(str(exc)) from exc
        return cls(p, model, _sha256_file(p), phase, n_iter)

    @property
    def fingerprint(self) -> str:
        return f"checkpoint sha256={self.sha256} phase={self.phase} n_iter={self.n_iter}"

    def __call__(
        self, reverb: torch.Tensor, sample_rate: int, clean: torch.Tensor | None = None
    ) -> torch.Tensor:
        # (B, L) rows go in as channels: processed independently, resampled if needed.
        x = reverb.detach().float().cpu().numpy()
        y = dereverberate(x, int(sample_rate), self.model, phase=self.phase, n_iter=self.n_iter)
        return torch.from_numpy(np.asarray(y, dtype=np.float32))


def checkpoint_names(paths: Sequence[str | os.PathLike], taken: Iterable[str] = ()) -> list[str]:
    """Readable unique names for checkpoints.

    The file stem, except Lightning's generic ``last`` / ``best...`` / ``epoch=...`` files,
    which take their run's name (the first folder above that is not ``checkpoints`` or
    ``version_N``; ``best`` files get ``-best``). Clashes (with each other or ``taken``) add the
    ``version_N`` folder, then a counter.
    """
    taken_set = set(taken)
    base: list[str] = []
    for raw in paths:
        p = Path(raw)
        stem = p.stem
        if stem == "last" or stem.startswith(("best", "epoch=", "last-")):
            run = next(
                (
                    a.name
                    for a in p.parents
                    if a.name
                    and a.name != "checkpoints"
                    and not re.fullmatch(r"version_\d+", a.name)
                ),
                stem,
            )
            name = run + ("-best" if stem.startswith("best") else "")
        else:
            name = stem
        base.append(name)
    names: list[str] = []
    for raw, name in zip(paths, base, strict=True):
        if base.count(name) > 1 or name in taken_set:
            version = next(
                (a.name for a in Path(raw).parents if re.fullmatch(r"version_\d+", a.name)), None
            )
            if version:
                name = f"{name}-{version}"
        candidate, k = name, 2
        while candidate in taken_set or candidate in names:
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


# ============================================================================ sources
def _as_item(
    idx: str, reverb: np.ndarray, clean: np.ndarray | None, t60: float = math.nan, **meta: Any
) -> dict[str, Any]:
    return {
        "id": idx,
        "reverb": np.asarray(reverb, dtype=np.float32),
        "clean": None if clean is None else np.asarray(clean, dtype=np.float32),
        "t60": float(t60),
        **meta,
    }


def load_datamodule_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """The ``data`` section of a training YAML (LightningCLI layout) as DataModule kwargs."""
    if path is None:
        return {}
    p = Path(path)
    cfg = read_yaml_mapping(
        p, option="--datamodule-config", example="a training config such as configs/quickstart.yaml",
        expected="a mapping with a 'data:' section", error=EvaluationError,
    )
    data = cfg.get("data", cfg if "model" not in cfg and "trainer" not in cfg else {})
    if isinstance(data, dict) and "init_args" in data:
        data = data["init_args"]
    if not isinstance(data, dict):
        raise EvaluationError(
            f"--datamodule-config {p}: 'data:' must be a mapping of DataModule arguments"
        )
    return dict(data)


def _build_datamodule(kwargs: Mapping[str, Any]) -> Any:
    import inspect

    from dereverb.data.datamodule import DereverbDataModule
    from dereverb.data.rir import RoomSampler

    kw = dict(kwargs)
    room = kw.get("room")
    if isinstance(room, dict):
        room = room.get("init_args", room) if "class_path" in room else room
        try:
            kw["room"] = RoomSampler(**room)
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"data.room: {exc}") from exc
    allowed = set(inspect.signature(DereverbDataModule.__init__).parameters) - {"self"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise EvaluationError(
            f"data config: unknown DataModule argument(s) {', '.join(unknown)}; see dereverb/data.py"
        )
    for key in ("rir_bank_sizes", "gain_db_range"):
        if key in kw and isinstance(kw[key], list):
            kw[key] = tuple(kw[key])
    try:
        return DereverbDataModule(**kw)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc


def datamodule_items(
    kwargs: Mapping[str, Any],
) -> tuple[list[Callable[[], dict[str, Any]]], int, str]:
    """The DataModule's test split: ``(item loaders, sample_rate, description)``.

    Items are built lazily (one loader per index) so a long test set is never all in memory.
    """
    dm = _build_datamodule(kwargs)
    ds = dm.build_dataset("test")
    names = ds.rirs.names

    def load(i: int) -> dict[str, Any]:
        it = ds.item(i)
        return _as_item(
            f"test-{i:05d}", it.reverb, it.clean, it.t60, drr=float(it.drr), rir=names[it.rir_index]
        )

    hp = dm.hparams  # the DataModule's own arguments, defaults filled in
    desc = (
        f"DataModule test split: speech={hp.get('speech')}, rirs={hp.get('rirs')}, {len(ds)} items of "
        f"{hp.get('segment_seconds'):g} s, target={hp.get('clean_target', hp.get('target'))}, seed={hp.get('seed')}"
    )
    return [lambda i=i: load(i) for i in range(len(ds))], int(hp.get("sample_rate", 16000)), desc


def measured_items(
    rirs: str | os.PathLike,
    speech: str | os.PathLike = "synthetic",
    n_items: int = 24,
    segment_seconds: float = 4.0,
    sample_rate: int = 16000,
    seed: int = 0,
    target: str = "dry",
    gain_db_range: tuple[float, float] = (-6.0, 0.0),
    speech_split: str = "all",
    channel: int = 0,
    min_duration: float = 1.0,
) -> tuple[list[Callable[[], dict[str, Any]]], str]:
    """Speech x measured RIRs, built like training pairs: ``(item loaders, description)``.

    Item ``i``: speech crop ``speech.item(i, L)`` (deterministic), room ``i mod n_rooms``
    (rooms = first-level subfolders of ``rirs``, so every room gets its share), one of that
    room's RIRs and a gain drawn from ``default_rng([seed, 7, i])``, then
    :func:`dereverb.data.datamodule.make_pair` (direct-path-aligned ``target``, shared gain, no clipping).
    """
    from dereverb.data.datamodule import make_pair
    from dereverb.data.rir import RirBank, RirError
    from dereverb.data.speech import CorpusError, SpeechCorpus, SyntheticSpeech

    if not Path(rirs).is_dir():
        raise EvaluationError(
            f"--rirs {rirs}: not a folder; give a folder of measured RIR WAV/FLAC files"
        )
    if n_items < 1:
        raise EvaluationError(f"--n-items must be >= 1, got {n_items}")
    try:
        bank = RirBank.from_folder(rirs, sample_rate=sample_rate, channel=channel)
    except RirError as exc:
        raise EvaluationError(f"--rirs: {exc}") from exc
    try:
        if str(speech) == "synthetic":
            source: Any = SyntheticSpeech(sample_rate=sample_rate, seed=seed)
        else:
            if not Path(speech).is_dir():
                raise EvaluationError(
                    f"--speech {speech}: not a folder; give a folder of WAV/FLAC speech or 'synthetic'"
                )
            source = SpeechCorpus(
                speech, sample_rate=sample_rate, min_duration=min_duration, seed=seed
            )
        if speech_split != "all":
            source = source.split(speech_split)
    except (CorpusError, ValueError) as exc:
        if isinstance(exc, EvaluationError):
            raise
        raise EvaluationError(f"--speech: {exc}") from exc
    rooms: dict[str, list[int]] = {}
    for i, name in enumerate(bank.names):
        rooms.setdefault(name.split("/")[0] if "/" in name else ".", []).append(i)
    room_names = sorted(rooms)
    length = int(round(segment_seconds * sample_rate))

    def load(i: int) -> dict[str, Any]:
        rng = np.random.default_rng([seed, MEASURED_SEED_TAG, i])
        room = room_names[i % len(room_names)]
        r = bank[rooms[room][int(rng.integers(len(rooms[room])))]]
        gain_db = float(rng.uniform(*gain_db_range))
        dry = source.item(i, length)
        reverb, clean = make_pair(dry, r.rir, r.direct_index, sample_rate, target, gain_db)  # type: ignore[arg-type]
        return _as_item(
            f"measured-{i:05d}", reverb, clean, r.t60, drr=float(r.drr), rir=r.name, room=room
        )

    desc = (
        f"speech={speech} (split {speech_split}) x measured RIRs {rirs} ({len(bank)} RIRs, rooms "
        f"{', '.join(room_names)}), {n_items} items of {segment_seconds:g} s, target={target}, seed={seed}"
    )
    return [lambda i=i: load(i) for i in range(n_items)], desc


def _read_mono(path: Path, sample_rate: int) -> np.ndarray:
    from dereverb.signal.audio import AudioError, load

    try:
        return load(path, sample_rate=sample_rate, mono=True)
    except AudioError as exc:
        raise EvaluationError(str(exc)) from exc


def paired_items(
    folder: str | os.PathLike, sample_rate: int = 16000
) -> tuple[list[Callable[[], dict[str, Any]]], str, list[str]]:
    """``folder/reverb/X`` with ``folder/clean/X`` (same relative path, any audio extension):
    ``(item loaders, description, notes)``. Both are downmixed, resampled to ``sample_rate``
    and cut to the shorter length; the clean file must be time-aligned with the reverberant
    file's direct sound."""
    from dereverb.signal.audio import find_audio_files

    root = Path(folder)
    rdir, cdir = root / "reverb", root / "clean"
    if not rdir.is_dir() or not cdir.is_dir():
        raise EvaluationError(
            f"--paired {root}: needs subfolders reverb/ and clean/ with same-named audio files"
        )
    rev = {p.relative_to(rdir).with_suffix("").as_posix(): p for p in find_audio_files(rdir)}
    cln = {p.relative_to(cdir).with_suffix("").as_posix(): p for p in find_audio_files(cdir)}
    if not rev:
        raise EvaluationError(f"--paired {root}: no audio files in {rdir}")
    common = sorted(set(rev) & set(cln))
    if not common:
        raise EvaluationError(
            f"--paired {root}: no file in reverb/ has a same-named file in clean/; name pairs identically"
        )
    notes = []
    if len(common) < max(len(rev), len(cln)):
        notes.append(
            f"{len(set(rev) - set(cln))} reverb and {len(set(cln) - set(rev))} clean file(s) without a partner were skipped"
        )

    def load(name: str) -> dict[str, Any]:
        r, c = _read_mono(rev[name], sample_rate), _read_mono(cln[name], sample_rate)
        n = min(r.shape[-1], c.shape[-1])
        return _as_item(name, r[:n], c[:n], math.nan)

    return (
        [lambda n=n: load(n) for n in common],
        f"paired folder {root} ({len(common)} pairs)",
        notes,
    )


def unpaired_items(
    folder: str | os.PathLike, sample_rate: int = 16000
) -> tuple[list[Callable[[], dict[str, Any]]], str]:
    """Every audio file under ``folder`` as an item without reference (SRMR only)."""
    from dereverb.signal.audio import find_audio_files

    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(
            f"--unpaired {root}: not a folder; give a folder of reverberant recordings"
        )
    files = find_audio_files(root)
    if not files:
        raise EvaluationError(f"--unpaired {root}: no audio files found")

    def load(p: Path) -> dict[str, Any]:
        return _as_item(
            p.relative_to(root).with_suffix("").as_posix(), _read_mono(p, sample_rate), None
        )

    return [
        lambda p=p: load(p) for p in files
    ], f"unpaired folder {root} ({len(files)} recordings, SRMR only)"


class LazyItems:
    """A sized iterable over item loaders (each called once, when its item is evaluated)."""

    def __init__(self, loaders: Sequence[Callable[[], dict[str, Any]]]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (load() for load in self.loaders)


# ============================================================================ CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dereverb.evaluate",
        description="Evaluate checkpoints and baselines (reverberant input, WPE, oracle magnitudes) on a "
        "test set; write tables by T60 band with paired-bootstrap confidence intervals.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--ckpt", nargs="+", default=[], metavar="CKPT", help="checkpoint(s) to evaluate"
    )
    p.add_argument(
        "--baselines",
        default="reverberant,wpe,oracle",
        help="comma-separated: reverberant, wpe, oracle_reverb_phase, oracle_gl, oracle_gl_warm; "
        "'oracle' = the three oracles, 'all', or 'none'",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="OUTDIR",
        help="folder for tables and plot",
    )
    src = p.add_argument_group("source (default: the DataModule's test split with its defaults)")
    ex = src.add_mutually_exclusive_group()
    ex.add_argument(
        "--datamodule-config",
        type=Path,
        metavar="YAML",
        help="training config whose data: section defines the test split",
    )
    ex.add_argument(
        "--paired",
        type=Path,
        metavar="FOLDER",
        help="FOLDER/reverb/* and FOLDER/clean/* with the same names",
    )
    ex.add_argument(
        "--unpaired", type=Path, metavar="FOLDER", help="real reverberant recordings (SRMR only)"
    )
    src.add_argument(
        "--speech",
        help="speech folder (or 'synthetic'); overrides data.speech, or pairs with --rirs FOLDER",
    )
    src.add_argument(
        "--rirs",
        help="measured-RIR folder (speech x these RIRs, built as in training), or with "
        "--datamodule-config an override of data.rirs ('simulated' or a folder)",
    )
    src.add_argument(
        "--n-items",
        type=int,
        help="items to evaluate (DataModule: test_items; measured: default 24)",
    )
    src.add_argument(
        "--segment-seconds",
        type=float,
        help="crop length (DataModule: segment_seconds; measured: default 4)",
    )
    src.add_argument(
        "--speech-split",
        choices=("all", "train", "val", "test"),
        default="all",
        help="measured source: use only this speaker-disjoint split of --speech (test = the speakers "
        "a model trained on that folder never saw)",
    )
    src.add_argument(
        "--target",
        choices=("dry", "early"),
        default="dry",
        help="measured source: the clean target",
    )
    src.add_argument(
        "--rir-channel",
        type=int,
        default=0,
        help="measured source: channel of multi-channel RIR files",
    )
    src.add_argument(
        "--seed", type=int, default=0, help="measured source: item seed (and the speech split seed)"
    )
    src.add_argument(
        "--sample-rate",
        type=int,
        default=16000,
        help="paired/unpaired/measured: rate audio is resampled to",
    )
    m = p.add_argument_group("systems and metrics")
    m.add_argument(
        "--device", default="cpu", help="device for checkpoints: cpu, cuda, cuda:N or auto"
    )
    m.add_argument(
        "--phase",
        choices=("reverberant", "griffinlim", "griffinlim-warm"),
        help="override the checkpoints' phase recovery (default: each model's own)",
    )
    m.add_argument(
        "--model-gl-iters", type=int, help="override the checkpoints' Griffin-Lim iterations"
    )
    m.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations of the oracles")
    m.add_argument("--wpe-taps", type=int, default=10)
    m.add_argument("--wpe-delay", type=int, default=3)
    m.add_argument("--wpe-iterations", type=int, default=5)
    m.add_argument(
        "--srmr",
        choices=SRMR_MODES,
        default="full",
        help="SRMR: full (reference), fast (FFT gammatone approximation, ~10x faster, other scale) or none",
    )
    m.add_argument("--bootstrap", type=int, default=2000, help="paired-bootstrap resamples")
    p.add_argument("--cache-dir", type=Path, help="score cache (default OUTDIR/cache)")
    p.add_argument(
        "--force",
        action="store_true",
        help="rewrite the tables of an existing OUTDIR (cached scores are reused)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if (args.paired or args.unpaired) and (args.speech or args.rirs):
        raise EvaluationError(
            "--speech/--rirs cannot be combined with --paired/--unpaired; pick one source"
        )
    for flag, v in (
        ("--n-items", args.n_items),
        ("--bootstrap", args.bootstrap),
        ("--sample-rate", args.sample_rate),
    ):
        if v is not None and v < 1:
            raise EvaluationError(f"{flag} must be >= 1, got {v}")
    if args.segment_seconds is not None and not args.segment_seconds > 0:
        raise EvaluationError(f"--segment-seconds must be > 0, got {args.segment_seconds}")
    for flag, v in (
        ("--gl-iters", args.gl_iters),
        ("--wpe-taps", args.wpe_taps),
        ("--wpe-iterations", args.wpe_iterations),
    ):
        if v < 1:
            raise EvaluationError(f"{flag} must be >= 1, got {v}")
    for c in args.ckpt:
        if not Path(c).is_file():
            raise EvaluationError(
                f"--ckpt {c}: checkpoint not found; pass a .ckpt file written by dereverb.train"
            )
    for flag, folder in (("--paired", args.paired), ("--unpaired", args.unpaired)):
        if folder is not None and not folder.is_dir():
            raise EvaluationError(f"{flag} {folder}: folder not found")
    for flag, v in (("--speech", args.speech), ("--rirs", args.rirs)):
        if v and v not in ("synthetic", "simulated") and not Path(v).is_dir():
            raise EvaluationError(f"{flag} {v}: folder not found")
    if args.speech == "simulated" or args.rirs == "synthetic":
        raise EvaluationError(
            "--speech takes a folder or 'synthetic'; --rirs takes a folder or 'simulated'"
        )
    existing = [f for f in OUTPUT_FILES if (args.output / f).exists()]
    if existing and not args.force:
        raise EvaluationError(
            f"-o {args.output}: already holds {existing[0]}; pass --force to rewrite the tables "
            "(cached scores are reused) or choose another folder"
        )
    if args.output.exists() and not args.output.is_dir():
        raise EvaluationError(f"-o {args.output}: exists and is not a folder")
    # Before any scoring: an unwritable -o or cache would otherwise fail only at the end.
    for flag, folder in (("-o", args.output), ("--cache-dir", args.cache_dir)):
        reason = unwritable_reason(folder) if folder is not None else None
        if reason is not None:
            raise EvaluationError(f"{flag} {folder}: {reason}; choose a writable folder")


def _source(args: argparse.Namespace) -> tuple[LazyItems, int, str, list[str]]:
    notes: list[str] = []
    if args.paired is not None:
        loaders, desc, notes = paired_items(args.paired, args.sample_rate)
        return LazyItems(loaders), args.sample_rate, desc, notes
    if args.unpaired is not None:
        loaders, desc = unpaired_items(args.unpaired, args.sample_rate)
        return LazyItems(loaders), args.sample_rate, desc, notes
    measured = args.datamodule_config is None and args.rirs not in (None, "simulated")
    if measured:
        loaders, desc = measured_items(
            args.rirs,
            args.speech or "synthetic",
            n_items=args.n_items or 24,
            segment_seconds=args.segment_seconds or 4.0,
            sample_rate=args.sample_rate,
            seed=args.seed,
            target=args.target,
            speech_split=args.speech_split,
            channel=args.rir_channel,
        )
        return LazyItems(loaders), args.sample_rate, desc, notes
    kw = load_datamodule_config(args.datamodule_config)
    if args.speech:
        kw["speech"] = args.speech
    if args.rirs:
        kw["rirs"] = args.rirs
    if args.n_items:
        kw["test_items"] = args.n_items
    if args.segment_seconds:
        kw["segment_seconds"] = args.segment_seconds
    loaders, sr, desc = datamodule_items(kw)
    return LazyItems(loaders), sr, desc, notes


def _systems(args: argparse.Namespace, unpaired: bool) -> tuple[dict[str, SystemFn], list[str]]:
    notes: list[str] = []
    try:
        names = parse_names(args.baselines)
    except ValueError as exc:
        raise EvaluationError(f"--baselines: {exc}") from exc
    if unpaired and any(n in ORACLES for n in names):
        notes.append("oracles need a clean reference: skipped for unpaired recordings")
        names = [n for n in names if n not in ORACLES]
    baselines = build_baselines(
        ",".join(names),
        wpe_taps=args.wpe_taps,
        wpe_delay=args.wpe_delay,
        wpe_iterations=args.wpe_iterations,
        gl_iters=args.gl_iters,
    )
    ckpt_names = checkpoint_names(args.ckpt, taken=baselines)
    ckpts = {
        n: CheckpointSystem.load(c, args.device, args.phase, args.model_gl_iters)
        for n, c in zip(ckpt_names, args.ckpt, strict=True)
    }
    # Order: references, then the checkpoints, then the oracle bounds.
    systems: dict[str, SystemFn] = {n: f for n, f in baselines.items() if n not in ORACLES}
    systems.update(ckpts)
    systems.update({n: f for n, f in baselines.items() if n in ORACLES})
    if not systems:
        raise EvaluationError("nothing to evaluate: give --ckpt and/or --baselines")
    for n, c in zip(ckpt_names, args.ckpt, strict=True):
        notes.append(f"{n} = {c}")
    return systems, notes


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    # Systems first: a bad --baselines or checkpoint fails before any data is built.
    systems, sys_notes = _systems(args, unpaired=args.unpaired is not None)
    items, sample_rate, desc, notes = _source(args)
    if len(items) == 0:
        raise EvaluationError("the source has no items")
    out: Path = args.output
    cache_dir = args.cache_dir or out / "cache"
    t0 = time.perf_counter()
    stats: dict[str, int] = {}
    rows = evaluate_systems(
        items,
        systems,
        sample_rate,
        cache_dir,
        srmr=args.srmr,
        progress=not args.no_progress,
        stats=stats,
    )
    if not rows:
        raise EvaluationError("no scores: every system needs a clean reference these items lack")
    elapsed = time.perf_counter() - t0
    summary = summarize(rows, n_boot=args.bootstrap, seed=0)
    command = (
        "python -m dereverb.evaluate " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith("evaluate.py")
        else None
    )
    all_notes = [
        desc,
        *notes,
        *sys_notes,
        f"SRMR: {args.srmr}; T60 bands from each item's measured RIR T60; sample rate {sample_rate} Hz",
        f"{stats.get('computed', 0)} (item, system) scores computed, {stats.get('cached', 0)} reused "
        f"from {cache_dir}, {elapsed:.0f} s",
    ]
    meta = {
        "source": desc,
        "notes": all_notes,
        "systems": list(systems),
        "sample_rate": sample_rate,
        "srmr": args.srmr,
        "bootstrap": args.bootstrap,
        "stats": stats,
        "seconds": elapsed,
        "checkpoints": {
            n: str(getattr(s, "path", ""))
            for n, s in systems.items()
            if isinstance(s, CheckpointSystem)
        },
        "command": command,
    }
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(summary, title="Dereverberation evaluation", notes=all_notes)
    write_atomic(out / "results.md", md + "\n")
    write_atomic(out / "results.csv", table_csv(summary))
    write_atomic(out / "results_ci.csv", ci_csv(summary))
    write_atomic(out / "per_item.csv", rows_csv(rows))
    write_atomic(out / "results.json", to_json({"meta": meta, **summary}))
    plot_vs_t60(rows, summary, out / "pesq_stoi_vs_t60.png")
    print(md.split("## By T60 band")[0].rstrip())
    print(
        f"\nwrote {out}/results.md, results.csv, results_ci.csv, results.json, per_item.csv, pesq_stoi_vs_t60.png"
    )
    return EXIT_OK


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input (a file, folder or setting), not a bug."""
    from dereverb.data.rir import RirError
    from dereverb.data.speech import CorpusError
    from dereverb.signal.audio import AudioError

    return (EvaluationError, AudioError, CheckpointError, DeviceError, CorpusError, RirError)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 on success, 2 on bad input (one line on stderr), 1 on an internal error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("evaluate: interrupted (cached scores are kept; re-run to continue)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, _input_errors()):
            print(f"evaluate: error: {text}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(
            f"evaluate: internal error: {type(exc).__name__}: {text} (re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
