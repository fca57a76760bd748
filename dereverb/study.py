"""``python -m dereverb.study --config configs/study.yaml``: the representation study.

Can an RGB (colormapped) spectrogram beat the raw one as U-Net input? A matrix of
*conditions* (arm x target domain) x *seeds* is trained with one architecture (only the input /
output channels differ), one data set, one step budget and one optimiser, then every run is
evaluated on the same simulated test set and, when the measured RIRs are present, on the same
measured-room set (test-split speakers x measured RIRs). :mod:`dereverb.experiment.report` turns the
results into ``REPORT.md`` + PNG figures.

Layout of a study folder (``--out``, default ``runs/study/<profile>``)::

    study.json                  settings, machine, one entry per invocation (command, runtime)
    baselines.json              reverberant / WPE / oracle scores on the same items
    runs/<arm>__<target>__seed<k>/
        config.yaml             the generated LightningCLI config of this run
        train.log               Lightning's output
        final.ckpt              the weights after the last training step (the evaluated model)
        tb/version_0/           TensorBoard events, resolved config, checkpoints/{last,best-*}.ckpt
        result.json             written atomically at the very end: per-item scores, timings
    report/REPORT.md + *.png    (or --report-dir)

Incremental: a run with a ``result.json`` whose fingerprint (its training + evaluation
settings) matches is skipped; an unfinished run folder is cleared and the run starts again; a
finished run with a different fingerprint stops the study (``--force`` retrains it).

Seeds: ``seed_everything`` (network initialisation and any torch randomness). The data seed is
fixed by the config, so every run sees the same training items in the same order and is scored
on the same test items: the comparison is paired, and the seed-to-seed spread measures
initialisation noise only.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.atomic import write_atomic
from dereverb.cli_errors import read_yaml_mapping

TARGETS: tuple[str, ...] = ("log_magnitude", "same")
PROFILES: tuple[str, ...] = ("quick", "full")
EVAL_SETS: tuple[str, ...] = ("sim", "measured")
METRICS: tuple[str, ...] = ("pesq", "stoi", "estoi", "si_sdr")
RESULT = "result.json"
FINAL_CKPT = "final.ckpt"
RUNS_PER_WORKER = 4
EXIT_OK, EXIT_FAILED_RUNS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Bump when a result would change for the same settings (training or evaluation code changes).
STUDY_VERSION = 1


class StudyError(Exception):
    """Bad study input; the message names the file / argument and the fix."""


# ============================================================================ configuration
@dataclass(frozen=True)
class Arm:
    """One input representation of the study (the network body is the same for every arm)."""

    name: str
    representation: str
    representation_kwargs: dict[str, Any] = field(default_factory=dict)
    input_expansion: int | None = None
    targets: tuple[str, ...] = ("log_magnitude",)


@dataclass(frozen=True)
class RunSpec:
    """One training run: an arm, its target domain and a seed."""

    arm: Arm
    target: str
    seed: int

    @property
    def condition(self) -> str:
        """``<arm>@<target>``: what is compared (seeds are repeats of a condition)."""
        return f"{self.arm.name}@{self.target}"

    @property
    def run_id(self) -> str:
        return f"{self.arm.name}__{self.target}__seed{self.seed}"


@dataclass
class StudyConfig:
    """A study config with one profile applied (``train`` / ``evaluation`` merged)."""

    path: str
    profile: str
    arms: dict[str, Arm]
    seeds: list[int]
    reference: str
    train: dict[str, Any]
    evaluation: dict[str, Any]
    jobs: int = 1
    threads: int = 1
    description: str = ""

    def specs(
        self, arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None
    ) -> list[RunSpec]:
        """Runs in seed-major order (seed, arm, target), filtered by ``arms`` (arm names or
        ``arm@target`` conditions) and ``seeds``."""
        wanted = list(arms) if arms else None
        if wanted:
            known = {a for a in self.arms} | {
                f"{a.name}@{t}" for a in self.arms.values() for t in a.targets
            }
            bad = [w for w in wanted if w not in known]
            if bad:
                raise StudyError(
                    f"--arms: unknown arm(s) {', '.join(bad)}; choose from {', '.join(self.arms)} "
                    "(or arm@target, e.g. rgb_turbo@same)"
                )
        use_seeds = list(self.seeds if seeds is None else seeds)
        out = []
        # Seed-major: every condition gets seed 0 before any gets seed 1, so a study cut short
        # still covers all conditions.
        for s in use_seeds:
            for arm in self.arms.values():
                for target in arm.targets:
                    cond = f"{arm.name}@{target}"
                    if wanted and arm.name not in wanted and cond not in wanted:
                        continue
                    out.append(RunSpec(arm, target, int(s)))
        return out

    @property
    def sample_rate(self) -> int:
        return int(self.train.get("data", {}).get("sample_rate", 16000))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursively for mappings (lists and scalars replace)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _parse_arm(name: str, raw: Any, where: str) -> Arm:
    if not isinstance(raw, Mapping) or "representation" not in raw:
        raise StudyError(
            f"{where}: arm {name!r} needs a mapping with 'representation' (and optional "
            "representation_kwargs, input_expansion, targets)"
        )
    unknown = sorted(
        set(raw) - {"representation", "representation_kwargs", "input_expansion", "targets"}
    )
    if unknown:
        raise StudyError(f"{where}: arm {name!r} has unknown key(s) {', '.join(unknown)}")
    targets = tuple(raw.get("targets") or ("log_magnitude",))
    bad = [t for t in targets if t not in TARGETS]
    if bad or len(set(targets)) != len(targets):
        raise StudyError(
            f"{where}: arm {name!r} targets must be distinct values from {', '.join(TARGETS)}, "
            f"got {list(targets)}"
        )
    if "__" in name or "@" in name or not name.replace("_", "").isalnum():
        raise StudyError(
            f"{where}: arm name {name!r} must be letters, digits and single underscores"
        )
    from dereverb import representations as reps

    kwargs = dict(raw.get("representation_kwargs") or {})
    try:  # fail now, not after an hour of other runs
        reps.build(str(raw["representation"]), **kwargs)
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{where}: arm {name!r}: {exc}") from exc
    exp = raw.get("input_expansion")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int) or exp < 1):
        raise StudyError(
            f"{where}: arm {name!r} input_expansion must be a positive integer or null, got {exp!r}"
        )
    return Arm(name, str(raw["representation"]), kwargs, exp, targets)


def load_config(path: str | os.PathLike, profile: str | None = None) -> StudyConfig:
    """Read a study YAML and apply ``profile`` (default: its ``default_profile``)."""
    p = Path(path)
    raw = read_yaml_mapping(
        p, option="--config", example="a study config such as configs/study.yaml",
        expected="a mapping with arms, train and profiles", error=StudyError,
    )
    unknown = sorted(
        set(raw)
        - {
            "description",
            "default_profile",
            "seeds",
            "reference",
            "arms",
            "train",
            "evaluation",
            "profiles",
            "jobs",
            "threads",
        }
    )
    if unknown:
        raise StudyError(f"--config {p}: unknown top-level key(s) {', '.join(unknown)}")
    profiles = raw.get("profiles") or {}
    name = profile or raw.get("default_profile")
    if name is None:
        name = next(iter(profiles), None)
    if name is None:
        prof: dict[str, Any] = {}
        name = "default"
    elif name not in profiles:
        raise StudyError(
            f"--profile {name!r}: not in {p}; choose from {', '.join(profiles) or '(none defined)'}"
        )
    else:
        prof = profiles[name] or {}
    bad_prof = sorted(
        set(prof) - {"seeds", "train", "evaluation", "jobs", "threads", "description"}
    )
    if bad_prof:
        raise StudyError(f"--config {p}: profile {name!r} has unknown key(s) {', '.join(bad_prof)}")
    arms_raw = raw.get("arms") or {}
    if not arms_raw:
        raise StudyError(f"--config {p}: no arms defined")
    arms = {n: _parse_arm(n, a, str(p)) for n, a in arms_raw.items()}
    train = deep_merge(raw.get("train") or {}, prof.get("train") or {})
    evaluation = deep_merge(raw.get("evaluation") or {}, prof.get("evaluation") or {})
    seeds = [int(s) for s in prof.get("seeds", raw.get("seeds", [0]))]
    reference = str(raw.get("reference", "log_magnitude@log_magnitude"))
    if reference.split("@")[0] not in arms:
        raise StudyError(
            f"--config {p}: reference {reference!r} is not an arm@target of this study"
        )
    desc = " ".join(str(x) for x in (raw.get("description", ""), prof.get("description", "")) if x)
    return StudyConfig(
        str(p),
        str(name),
        arms,
        seeds,
        reference,
        train,
        evaluation,
        jobs=int(prof.get("jobs", raw.get("jobs", 1))),
        threads=int(prof.get("threads", raw.get("threads", 1))),
        description=desc,
    )


def fingerprint(obj: Any) -> str:
    """Short sha256 of a JSON-able object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(cfg: StudyConfig, spec: RunSpec) -> str:
    """What makes a finished run reusable: its training and evaluation settings."""
    arm = asdict(spec.arm)
    arm.pop("targets")
    return fingerprint(
        {
            "v": STUDY_VERSION,
            "train": cfg.train,
            "evaluation": cfg.evaluation,
            "arm": arm,
            "target": spec.target,
            "seed": spec.seed,
        }
    )


def run_config(cfg: StudyConfig, spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """The LightningCLI config (``seed_everything``, ``trainer``, ``model``, ``data``) of one run."""
    c = copy.deepcopy(cfg.train)
    c["seed_everything"] = int(spec.seed)
    trainer = c.setdefault("trainer", {})
    trainer["default_root_dir"] = str(run_dir)
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": str(run_dir), "name": "tb", "version": 0},
    }
    model = c.setdefault("model", {})
    model["representation"] = spec.arm.representation
    model["representation_kwargs"] = copy.deepcopy(spec.arm.representation_kwargs)
    model["target"] = spec.target
    model["input_expansion"] = spec.arm.input_expansion
    return c


# ============================================================================ evaluation items
def _data_kwargs(cfg: StudyConfig) -> dict[str, Any]:
    return copy.deepcopy(cfg.train.get("data") or {})


def check_inputs(cfg: StudyConfig) -> list[str]:
    """Clear errors for missing data before anything runs; returns notes (e.g. no measured set)."""
    speech = str(_data_kwargs(cfg).get("speech", "synthetic"))
    if speech != "synthetic" and not Path(speech).is_dir():
        raise StudyError(
            f"data.speech {speech!r}: folder not found (from {cfg.path}, profile {cfg.profile}); "
            "put LibriSpeech there, or pass --speech FOLDER (or --speech synthetic for a trial run)"
        )
    notes = []
    rirs = cfg.evaluation.get("measured_rirs")
    if rirs and not Path(str(rirs)).is_dir():
        notes.append(f"measured RIR folder {rirs} is absent: the measured-room set is skipped")
    return notes


def prepare_data(cfg: StudyConfig) -> None:
    """Simulate (or load from the cache) the RIR banks once, before any run starts."""
    from dereverb.evaluate import _build_datamodule

    _build_datamodule(_data_kwargs(cfg)).prepare_data()


def eval_items(cfg: StudyConfig) -> dict[str, list[dict[str, Any]]]:
    """The evaluation sets, materialised: ``{"sim": [...], "measured": [...]}`` (measured only when
    its folder exists). Items are dicts with ``id``, ``reverb (L,)``, ``clean (L,)``, ``t60`` ..."""
    from dereverb.evaluate import datamodule_items, measured_items

    ev = cfg.evaluation
    data = _data_kwargs(cfg)
    seconds = float(ev.get("segment_seconds") or data.get("segment_seconds", 2.0))
    sim_kwargs = {**data, "test_items": int(ev.get("sim_items", 32)), "segment_seconds": seconds}
    loaders, _, _ = datamodule_items(sim_kwargs)
    out = {"sim": [load() for load in loaders]}
    rirs = ev.get("measured_rirs")
    n_measured = int(ev.get("measured_items", 0))
    if rirs and n_measured > 0 and Path(str(rirs)).is_dir():
        loaders, _ = measured_items(
            str(rirs),
            speech=str(data.get("speech", "synthetic")),
            n_items=n_measured,
            segment_seconds=seconds,
            sample_rate=cfg.sample_rate,
            seed=int(data.get("seed", 0)),
            target=str(data.get("clean_target", "dry")),
            speech_split="test",
            min_duration=float(data.get("min_duration", 1.0)),
        )
        out["measured"] = [load() for load in loaders]
    return out


def items_fingerprint(items: Sequence[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(str(it["id"]).encode())
        h.update(np.ascontiguousarray(it["reverb"], dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(it["clean"], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def _plain_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    keep = ("id", "band", "t60", "drr", "rir", "room", *METRICS, "seconds")
    out = []
    for r in rows:
        d = {}
        for k in keep:
            if k in r:
                v = r[k]
                if isinstance(v, (float, np.floating)):
                    v = float(v) if math.isfinite(float(v)) else None
                d[k] = v
        out.append(d)
    return out


def evaluate_checkpoint(
    ckpt: Path,
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    sample_rate: int,
    name: str,
    device: str = "cpu",
) -> dict[str, list[dict[str, Any]]]:
    """Score one checkpoint on every evaluation set (no score cache: ``result.json`` is the cache)."""
    from dereverb.evaluate import CheckpointSystem, evaluate_systems

    system = CheckpointSystem.load(ckpt, device=device)
    return {
        s: _plain_rows(
            evaluate_systems(
                its, {name: system}, sample_rate, cache_dir=None, srmr="none", progress=False
            )
        )
        for s, its in items.items()
    }


def compute_baselines(
    cfg: StudyConfig,
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    out: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Reverberant / WPE / oracle scores on the study's items -> ``baselines.json`` (reused when
    the items are unchanged; per-item scores are also cached under ``baseline_cache/``)."""
    from dereverb.evaluate import evaluate_systems
    from dereverb.evaluation.baselines import build_baselines

    spec = str(cfg.evaluation.get("baselines", "reverberant"))
    shas = {s: items_fingerprint(v) for s, v in items.items()}
    path = out / "baselines.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("items_sha") == shas and old.get("spec") == spec:
            return old
    t0 = time.perf_counter()
    systems = build_baselines(spec)
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for s, its in items.items():
        scored = evaluate_systems(
            its,
            systems,
            cfg.sample_rate,
            cache_dir=out / "baseline_cache",
            srmr="none",
            progress=False,
        )
        rows[s] = {n: _plain_rows([r for r in scored if r["system"] == n]) for n in systems}
    result = {"spec": spec, "items_sha": shas, "rows": rows, "seconds": time.perf_counter() - t0}
    write_json_atomic(path, result)
    log(f"baselines ({spec}) scored in {result['seconds']:.0f} s")
    return result


# ============================================================================ one run
def write_json_atomic(path: Path, obj: Any) -> None:
    """JSON to ``path`` atomically, so a reader never sees half a file."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def train_model(config_path: Path) -> Path:
    """Train with ``dereverb.train.run(["--config", config_path])``; returns ``final.ckpt`` (next
    to the config): the weights after the last step. Lightning's ``last.ckpt`` is not used: it
    is only refreshed when a top-k checkpoint is saved in the same step, so it can be older."""
    from dereverb.train import run

    cli = run(["--config", str(config_path)])
    final = config_path.parent / FINAL_CKPT
    cli.trainer.save_checkpoint(final)
    return final


def load_result(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's ``result.json`` (None if absent or unreadable)."""
    p = run_dir / RESULT
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        return None


@contextlib.contextmanager
def _quiet(log_path: Path, threads: int):
    """Lightning's and the warnings' output into ``log_path``; ``threads`` torch threads."""
    import torch

    old_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with open(log_path, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)
            torch.set_num_threads(old_threads)


def run_one(
    cfg: StudyConfig,
    spec: RunSpec,
    out: Path,
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    threads: int | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run in ``out/runs/<run_id>``; writes and returns its result."""
    import torch
    import yaml

    run_dir = out / "runs" / spec.run_id
    if run_dir.exists():
        shutil.rmtree(
            run_dir
        )  # an unfinished earlier attempt: start clean (finished runs never get here)
    run_dir.mkdir(parents=True)
    config = run_config(cfg, spec, run_dir)
    config_path = run_dir / "config.yaml"
    header = (
        f"# study run {spec.run_id} ({spec.condition}, seed {spec.seed}); generated by dereverb.study from "
        f"{cfg.path} profile {cfg.profile}\n# train: python -m dereverb.train --config {config_path}\n"
    )
    config_path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    cpu0, t0 = time.process_time(), time.perf_counter()
    with _quiet(run_dir / "train.log", cfg.threads if threads is None else threads):
        ckpt = train_model(config_path)
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = evaluate_checkpoint(
            ckpt,
            items,
            cfg.sample_rate,
            spec.condition,
            device=str(cfg.evaluation.get("device", "cpu")),
        )
        t_eval = time.perf_counter() - t1
    model = torch.load(ckpt, map_location="cpu", weights_only=True)
    n_params = int(
        sum(
            v.numel()
            for k, v in model["state_dict"].items()
            if k.startswith("net.")
            and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
    )
    means = {s: {m: _nanmean([r.get(m) for r in rs]) for m in METRICS} for s, rs in rows.items()}
    result = {
        "run_id": spec.run_id,
        "condition": spec.condition,
        "arm": spec.arm.name,
        "target": spec.target,
        "seed": spec.seed,
        "representation": spec.arm.representation,
        "representation_kwargs": spec.arm.representation_kwargs,
        "input_expansion": spec.arm.input_expansion,
        "profile": cfg.profile,
        "fingerprint": run_fingerprint(cfg, spec),
        "items_sha": {s: items_fingerprint(v) for s, v in items.items()},
        "checkpoint": str(ckpt.relative_to(run_dir)) if ckpt.is_relative_to(run_dir) else str(ckpt),
        "global_step": int(model.get("global_step", -1)),
        "parameters": n_params,
        "train_seconds": t_train,
        "eval_seconds": t_eval,
        "cpu_seconds": time.process_time() - cpu0,
        "threads": cfg.threads if threads is None else threads,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "means": means,
        "rows": rows,
    }
    write_json_atomic(run_dir / RESULT, result)
    return result


def _nanmean(values: Sequence[Any]) -> float | None:
    a = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _worker(
    cfg: StudyConfig, spec: RunSpec, out: Path, items: Mapping[str, Any], threads: int
) -> dict[str, Any]:
    """Process-pool entry: one thread pool per worker so parallel runs do not oversubscribe."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(threads, 1)))
    return run_one(cfg, spec, out, items, threads)


# ============================================================================ the study
def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def plan(
    cfg: StudyConfig, specs: Sequence[RunSpec], out: Path, force: bool = False
) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split ``specs`` into (finished, to run); a finished run with other settings is an error
    unless ``force`` (then it is retrained)."""
    done, todo, stale = [], [], []
    for spec in specs:
        res = load_result(out / "runs" / spec.run_id)
        if res is None:
            todo.append(spec)
        elif res.get("fingerprint") == run_fingerprint(cfg, spec):
            done.append(spec)
        elif force:
            todo.append(spec)
        else:
            stale.append(spec.run_id)
    if stale:
        raise StudyError(
            f"{len(stale)} finished run(s) in {out} used other settings ({', '.join(stale[:4])}"
            f"{' ...' if len(stale) > 4 else ''}); use another --out, or --force to retrain them"
        )
    return done, todo


def _update_study_json(out: Path, cfg: StudyConfig, session: dict[str, Any]) -> None:
    path = out / "study.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    sessions = [s for s in old.get("sessions", []) if s.get("id") != session["id"]]
    write_json_atomic(
        path,
        {
            "config_path": cfg.path,
            "profile": cfg.profile,
            "description": cfg.description,
            "seeds": cfg.seeds,
            "reference": cfg.reference,
            "arms": {n: asdict(a) for n, a in cfg.arms.items()},
            "train": cfg.train,
            "evaluation": cfg.evaluation,
            "jobs": cfg.jobs,
            "threads": cfg.threads,
            "sessions": [*sessions, session],
        },
    )


def run_study(
    cfg: StudyConfig,
    out: Path,
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    force: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every unfinished run of ``specs``; returns the session record
    (``trained``, ``skipped``, ``failed`` run ids, ``wall_seconds``)."""
    out.mkdir(parents=True, exist_ok=True)
    notes = check_inputs(cfg)
    for n in notes:
        log(f"note: {n}")
    done, todo = plan(cfg, specs, out, force)
    started = time.perf_counter()
    session: dict[str, Any] = {
        "id": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "planned": [s.run_id for s in specs],
        "skipped": [s.run_id for s in done],
        "trained": [],
        "failed": {},
        "wall_seconds": 0.0,
        "complete": False,
        "notes": notes,
    }
    _update_study_json(out, cfg, session)
    log(
        f"study {cfg.path} profile {cfg.profile}: {len(specs)} runs, {len(done)} finished, {len(todo)} to run "
        f"({jobs} job(s) x {cfg.threads} thread(s)) -> {out}"
    )
    if todo:
        t0 = time.perf_counter()
        prepare_data(cfg)
        items = eval_items(cfg)
        log(
            f"data ready in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{len(v)} {k} items" for k, v in items.items())
        )
        try:
            compute_baselines(cfg, items, out, log)
            _execute(cfg, out, todo, items, jobs, session, log, started)
        except KeyboardInterrupt:
            session["interrupted"] = True
            raise
        finally:  # the session's runtime is recorded even when it is cut short
            session["wall_seconds"] = time.perf_counter() - started
            _update_study_json(out, cfg, session)
    session["wall_seconds"] = time.perf_counter() - started
    session["complete"] = not session["failed"]
    _update_study_json(out, cfg, session)
    return session


def _execute(
    cfg: StudyConfig,
    out: Path,
    todo: Sequence[RunSpec],
    items: Mapping[str, Any],
    jobs: int,
    session: dict[str, Any],
    log: Callable[[str], None],
    started: float,
) -> None:
    total = len(todo)
    finished = 0
    runs_started = time.perf_counter()

    def report(spec: RunSpec, res: dict[str, Any] | None, err: str | None) -> None:
        nonlocal finished
        finished += 1
        elapsed = time.perf_counter() - started
        eta = (time.perf_counter() - runs_started) / finished * (total - finished)
        if res is not None:
            session["trained"].append(spec.run_id)
            m = res["means"].get("sim", {})
            log(
                f"[{finished}/{total}] {spec.condition} seed {spec.seed}: train {res['train_seconds']:.0f} s, "
                f"eval {res['eval_seconds']:.0f} s; sim PESQ {_f(m.get('pesq'))} STOI {_f(m.get('stoi'), 3)} "
                f"ESTOI {_f(m.get('estoi'), 3)} | elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min"
            )
        else:
            session["failed"][spec.run_id] = err
            log(
                f"[{finished}/{total}] {spec.condition} seed {spec.seed}: FAILED ({err.strip().splitlines()[-1] if err else '?'}); "
                f"see {out / 'runs' / spec.run_id / 'train.log'}"
            )
        _update_study_json(out, cfg, {**session, "wall_seconds": elapsed})

    if jobs <= 1:
        for spec in todo:
            try:
                res = run_one(cfg, spec, out, items)
                gc.collect()  # LightningCLI objects hold reference cycles
            except KeyboardInterrupt:
                raise
            except Exception:
                report(spec, None, traceback.format_exc())
            else:
                report(spec, res, None)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Workers are replaced every few runs: a long-lived worker accumulates each run's leftovers
    # (audio caches, allocator fragmentation; ~150 MB per run measured), while a fresh process
    # per run costs ~10-20 s of imports on a loaded 2-core machine. A fresh pool per wave of
    # runs does it: Python 3.11's max_tasks_per_child hangs once every worker has retired.
    wave = jobs * RUNS_PER_WORKER
    for start in range(0, len(todo), wave):
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(_worker, cfg, spec, out, items, cfg.threads): spec
                for spec in todo[start : start + wave]
            }
            try:
                for fut in as_completed(futures):
                    spec = futures[fut]
                    try:
                        res = fut.result()
                    except Exception:
                        report(spec, None, traceback.format_exc())
                    else:
                        report(spec, res, None)
            except KeyboardInterrupt:
                # Stop the runs in flight too (killed: Lightning traps SIGTERM to finish the epoch).
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
                raise


def _f(v: Any, digits: int = 2) -> str:
    return "nan" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


# ============================================================================ CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dereverb.study",
        description=__doc__.splitlines()[0].split(": ", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python -m dereverb.study --config configs/study.yaml --profile quick\n"
        "Report only: python -m dereverb.study --config configs/study.yaml --report-only "
        "--report-dir docs/study --force",
    )
    p.add_argument(
        "--config", required=True, help="study YAML (arms, shared training config, profiles)"
    )
    p.add_argument(
        "--profile",
        help="profile of the config (quick | full; default: the config's default_profile)",
    )
    p.add_argument("--out", type=Path, help="study folder (default runs/study/<profile>)")
    p.add_argument("--arms", help="comma-separated arms or arm@target conditions (default: all)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
    p.add_argument(
        "--jobs", type=int, help="runs trained in parallel processes (default: the profile's)"
    )
    p.add_argument(
        "--speech", help="override data.speech (a folder, or 'synthetic' for a trial run)"
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="print the runs and whether they are finished, then exit",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="do not train; write the report from finished runs",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write the report after training"
    )
    p.add_argument(
        "--report-dir", type=Path, help="where REPORT.md and the figures go (default <out>/report)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="retrain finished runs whose settings changed; overwrite a --report-dir report",
    )
    return p


def _int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise StudyError(f"{what} {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not vals:
        raise StudyError(f"{what} is empty; give comma-separated integers, e.g. 0,1,2")
    return vals


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m dereverb.study " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    try:
        cfg = load_config(args.config, args.profile)
        if args.speech:
            cfg.train = deep_merge(cfg.train, {"data": {"speech": args.speech}})
        arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
        seeds = _int_list(args.seeds, "--seeds") if args.seeds else None
        specs = cfg.specs(arms, seeds)
        if not specs:
            raise StudyError("no runs selected; check --arms and --seeds")
        out = args.out or Path("runs") / "study" / cfg.profile
        jobs = args.jobs if args.jobs is not None else cfg.jobs
        if jobs < 1:
            raise StudyError(f"--jobs must be >= 1, got {jobs}")
        report_dir = args.report_dir or out / "report"
        if (
            args.report_dir
            and (report_dir / "REPORT.md").exists()
            and not args.force
            and not args.list
        ):
            raise StudyError(
                f"--report-dir {report_dir} already holds a REPORT.md; pass --force to overwrite it"
            )
        if args.list:
            done, todo = plan(cfg, specs, out, force=True)
            finished = {s.run_id for s in done}
            for s in specs:
                print(f"{'done' if s.run_id in finished else 'todo'}  {s.run_id}")
            print(f"{len(done)} finished, {len(todo)} to run in {out}")
            return EXIT_OK
        status = EXIT_OK
        if not args.report_only:
            session = run_study(cfg, out, specs, jobs=jobs, force=args.force, command=command)
            if session["failed"]:
                print(
                    f"{len(session['failed'])} run(s) failed: {', '.join(session['failed'])}",
                    file=sys.stderr,
                )
                status = EXIT_FAILED_RUNS
            print(f"study session took {session['wall_seconds'] / 60:.1f} min")
        elif not (out / "study.json").exists():
            raise StudyError(
                f"--out {out}: no study.json; run the study first (without --report-only)"
            )
        if not args.no_report:
            from dereverb.experiment.report import write_report

            path = write_report(out, report_dir, report_command=command)
            print(f"report: {path}")
        return status
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted; finished runs are kept, run the same command to continue", file=sys.stderr
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
