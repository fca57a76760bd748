"""Running the study: plan the runs, train and evaluate each as one job, record the sessions.

A :class:`RunJob` is one run as a self-contained, picklable unit of work: calling it trains the
run's network with :func:`dereverb.training.run.run` (saving a checkpoint at every step of
``evaluation.at_steps``, :class:`~dereverb.experiment.checkpoints.SaveAtSteps`), scores the
weights of each of those steps and of the last step on the study's evaluation items and writes
``result.json`` (atomically, last): the last step's scores where they always were (``rows``,
``means``), every step's under ``steps``. :func:`run_study`
executes the jobs in a local process pool (``jobs`` at a time); a cluster launcher can run the
same jobs, e.g. ``submitit``'s ``executor.submit(job)`` for each of :func:`make_jobs`.

Incremental: a run with a ``result.json`` whose fingerprint (its resolved training + evaluation
settings, :func:`~dereverb.experiment.config.run_fingerprint`) matches is skipped; an unfinished
run folder is cleared and the run starts again; a finished run with a different fingerprint
stops the study (``force`` retrains it).

Seeds: ``seed_everything`` (network initialisation and any torch randomness). The data seed is
fixed by the config, so every run sees the same training items in the same order and is scored
on the same test items: the comparison is paired, and the seed-to-seed spread measures
initialisation noise only.

Nothing here imports torch at module level: a spawned worker sets its thread count before torch
is imported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import math
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.experiment.config import (
    STUDY_VERSION,
    RunSpec,
    StudyConfig,
    StudyError,
    items_fingerprint,
    run_config,
    run_fingerprint,
)
from dereverb.experiment.eval_sets import (
    check_inputs,
    compute_baselines,
    eval_items,
    evaluate_checkpoint,
    prepare_data,
)
from dereverb.experiment.files import (
    FINAL_CKPT,
    RESULT,
    RUN_CONFIG,
    RUNS,
    STEP_CKPTS,
    STUDY_JSON,
    TRAIN_LOG,
    load_result,
    read_json,
    run_dir,
    write_json_atomic,
)
from dereverb.signals.metrics import METRICS

#: Runs per worker process before the pool is replaced (see :func:`execute`).
RUNS_PER_WORKER = 4
Items = Mapping[str, Sequence[Mapping[str, Any]]]


# ============================================================================ one run
def train_model(config_path: Path, at_steps: Sequence[int] = ()) -> dict[int, Path]:
    """Train with ``dereverb.training.run.run(["--config", config_path])``, saving a checkpoint
    after each of ``at_steps`` (in ``steps/`` next to the config); returns ``{step: checkpoint}``
    for those steps and the last one, whose weights go to ``final.ckpt``. Lightning's
    ``last.ckpt`` is not used: it is only refreshed when a top-k checkpoint is saved in the same
    step, so it can be older. Raises :class:`StudyError` when training stopped before a step of
    ``at_steps``."""
    from dereverb.experiment.checkpoints import SaveAtSteps
    from dereverb.training.run import run

    final = config_path.parent / FINAL_CKPT
    saver = SaveAtSteps(at_steps, config_path.parent / STEP_CKPTS)
    cli = run(["--config", str(config_path)], callbacks=[saver])
    last = int(cli.trainer.global_step)
    cli.trainer.save_checkpoint(final)
    early = [s for s in saver.missing() if s != last]
    if early:
        raise StudyError(
            f"{config_path}: training stopped at step {last}, before evaluation.at_steps {early}"
        )
    out = {s: p for s, p in saver.saved.items() if s != last}
    out[last] = final  # the same weights as a step checkpoint there would hold
    return dict(sorted(out.items()))


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


def mean_or_none(values: Sequence[Any]) -> float | None:
    """Mean of the finite values (None counts as missing); None when there are none (for JSON)."""
    a = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _count_parameters(ckpt: Path) -> tuple[int, int, int]:
    """``(network parameters, frontend parameters, global_step)`` of a checkpoint: the trainable
    parameters of its network (BatchNorm statistics excluded) and of a learned input
    representation (0 for a fixed one), and the training step it was saved at."""
    import torch

    from dereverb.models.dereverber import upgrade_state_dict

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    weights = upgrade_state_dict(state["state_dict"])  # today's layout: model.net.*

    def count(prefix: str) -> int:
        return int(
            sum(
                v.numel()
                for k, v in weights.items()
                if k.startswith(prefix)
                and not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
            )
        )

    return count("model.net."), count("model.input_repr."), int(state.get("global_step", -1))


def _means(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, float | None]]:
    return {s: {m: mean_or_none([r.get(m) for r in rs]) for m in METRICS} for s, rs in rows.items()}


def run_one(
    cfg: StudyConfig, spec: RunSpec, out: Path, items: Items, threads: int | None = None
) -> dict[str, Any]:
    """Train and evaluate one run in ``out/runs/<run_id>``; writes and returns its result."""
    import yaml

    folder = run_dir(out, spec.run_id)
    if folder.exists():  # an unfinished earlier attempt: start clean (finished runs never get here)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config_path = folder / RUN_CONFIG
    header = (
        f"# study run {spec.run_id} ({spec.condition}, seed {spec.seed}); generated by "
        f"dereverb.study from {cfg.path} profile {cfg.profile}\n"
        f"# train: python -m dereverb.train --config {config_path}\n"
    )
    config = run_config(cfg, spec, folder)
    config_path.write_text(header + yaml.safe_dump(config, sort_keys=False))
    threads = cfg.threads if threads is None else threads
    at_steps = [s for s in cfg.eval_steps if s != cfg.max_steps]
    cpu0, t0 = time.process_time(), time.perf_counter()
    device = str(cfg.evaluation.get("device", "cpu"))
    steps: list[dict[str, Any]] = []
    with _quiet(folder / TRAIN_LOG, threads):
        ckpts = train_model(config_path, at_steps)
        t_train = time.perf_counter() - t0
        for step, ckpt in ckpts.items():
            t1 = time.perf_counter()
            rows = evaluate_checkpoint(ckpt, items, cfg.sample_rate, spec.condition, device=device)
            saved_at = _count_parameters(ckpt)[2]
            if saved_at != step:  # the checkpoint must hold the weights of that very step
                raise StudyError(f"{ckpt}: saved at global step {saved_at}, expected {step}")
            steps.append(
                {
                    "step": step,
                    "checkpoint": _relative(ckpt, folder),
                    "eval_seconds": time.perf_counter() - t1,
                    "means": _means(rows),
                    "rows": rows,
                }
            )
    final = steps[-1]
    n_params, n_frontend, global_step = _count_parameters(ckpts[final["step"]])
    result = {
        "study_version": STUDY_VERSION,
        "run_id": spec.run_id,
        "condition": spec.condition,
        "arm": spec.arm.name,
        "target": spec.target,
        "seed": spec.seed,
        "capacity": spec.capacity,
        "net": (config.get("model") or {}).get("net"),
        "representation": spec.arm.representation,
        "representation_kwargs": spec.arm.representation_kwargs,
        "input_expansion": spec.arm.input_expansion,
        "profile": cfg.profile,
        "fingerprint": run_fingerprint(cfg, spec),
        "items_sha": {s: items_fingerprint(v) for s, v in items.items()},
        "checkpoint": final["checkpoint"],
        "global_step": global_step,
        "parameters": n_params,
        "frontend_parameters": n_frontend,
        "train_seconds": t_train,
        "eval_seconds": float(sum(s["eval_seconds"] for s in steps)),
        "cpu_seconds": time.process_time() - cpu0,
        "threads": threads,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # The last step's scores (where version 1 kept them) ...
        "means": final["means"],
        "rows": final["rows"],
        # ... and every evaluated step's, the last one included.
        "steps": steps,
    }
    write_json_atomic(folder / RESULT, result)
    return result


def _relative(path: Path, folder: Path) -> str:
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


@dataclass(frozen=True)
class RunJob:
    """One run as a picklable unit of work: ``job()`` trains, evaluates and writes its
    ``result.json``, returning the result. ``items``: the evaluation sets (None: the job
    materialises them itself, e.g. on a cluster node)."""

    cfg: StudyConfig
    spec: RunSpec
    out: Path
    threads: int
    items: Items | None = None

    def __call__(self) -> dict[str, Any]:
        items = self.items if self.items is not None else eval_items(self.cfg)
        return run_one(self.cfg, self.spec, self.out, items, self.threads)


def make_jobs(
    cfg: StudyConfig, specs: Sequence[RunSpec], out: Path, items: Items | None = None
) -> list[RunJob]:
    """One :class:`RunJob` per run of ``specs``."""
    return [RunJob(cfg, s, Path(out), cfg.threads, items) for s in specs]


def _in_worker(job: RunJob) -> dict[str, Any]:
    """Process-pool entry: one thread pool per worker so parallel runs do not oversubscribe."""
    os.environ.setdefault("OMP_NUM_THREADS", str(max(job.threads, 1)))
    return job()


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
        res = load_result(run_dir(out, spec.run_id))
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
    path = out / STUDY_JSON
    old = read_json(path) or {}
    sessions = [s for s in old.get("sessions", []) if s.get("id") != session["id"]]
    write_json_atomic(
        path,
        {
            "study_version": STUDY_VERSION,
            "config_path": cfg.path,
            "profile": cfg.profile,
            "description": cfg.description,
            "seeds": cfg.seeds,
            "reference": cfg.reference,
            "arms": {n: asdict(a) for n, a in cfg.arms.items()},
            "capacities": cfg.capacities,
            # The profile's whole plan (not only what this session was asked to run).
            "plan": [
                {"run_id": s.run_id, "condition": s.condition, "capacity": s.capacity, "seed": s.seed}
                for s in cfg.specs()
            ],
            "eval_steps": cfg.eval_steps,
            "analysis": cfg.analysis,
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
    planned = {s.run_id for s in cfg.specs()}
    others = sorted(
        p.parent.name for p in (out / RUNS).glob(f"*/{RESULT}") if p.parent.name not in planned
    )
    if others:
        notes.append(
            f"{len(others)} finished run(s) in {out} are not in profile {cfg.profile}'s plan "
            f"(e.g. {others[0]}: another profile or study version); the report includes them"
        )
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
        f"study {cfg.path} profile {cfg.profile}: {len(specs)} runs, {len(done)} finished, "
        f"{len(todo)} to run ({jobs} job(s) x {cfg.threads} thread(s)) -> {out}"
    )
    if todo:
        t0 = time.perf_counter()
        prepare_data(cfg)
        items = eval_items(cfg)
        log(
            f"data ready in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{len(v)} {k} items" for k, v in items.items())
        )
        progress = _Progress(out, cfg, session, log, started, len(todo))
        try:
            compute_baselines(cfg, items, out, log)
            execute(make_jobs(cfg, todo, out, items), jobs, progress)
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


def _f(v: Any, digits: int = 2) -> str:
    return "nan" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}f}"


class _Progress:
    """Records each finished job in the session (and study.json) and logs one line with ETA."""

    def __init__(self, out, cfg, session, log, started: float, total: int) -> None:
        self.out, self.cfg, self.session, self.log = out, cfg, session, log
        self.started, self.total, self.finished = started, total, 0
        self.runs_started = time.perf_counter()

    def __call__(self, job: RunJob, res: dict[str, Any] | None, err: str | None) -> None:
        self.finished += 1
        spec, n = job.spec, f"[{self.finished}/{self.total}]"
        elapsed = time.perf_counter() - self.started
        eta = (time.perf_counter() - self.runs_started) / self.finished * (self.total - self.finished)
        clock = f"elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min"
        if res is not None:
            self.session["trained"].append(spec.run_id)
            m = res["means"].get("sim", {})
            cap = f" {spec.capacity}" if spec.capacity else ""
            self.log(
                f"{n} {spec.condition}{cap} seed {spec.seed}: train {res['train_seconds']:.0f} s, "
                f"eval {res['eval_seconds']:.0f} s; sim PESQ {_f(m.get('pesq'))} STOI "
                f"{_f(m.get('stoi'), 3)} ESTOI {_f(m.get('estoi'), 3)} | {clock}"
            )
        else:
            self.session["failed"][spec.run_id] = err
            last = err.strip().splitlines()[-1] if err else "?"
            self.log(
                f"{n} {spec.run_id}: FAILED ({last}); "
                f"see {run_dir(self.out, spec.run_id) / TRAIN_LOG}"
            )
        _update_study_json(self.out, self.cfg, {**self.session, "wall_seconds": elapsed})


def execute(
    jobs: Sequence[RunJob],
    workers: int,
    done: Callable[[RunJob, dict[str, Any] | None, str | None], None],
) -> None:
    """Run ``jobs``: in this process when ``workers`` <= 1, else in a pool of ``workers``
    processes. ``done(job, result, None)`` or ``done(job, None, traceback)`` after each."""
    if workers <= 1:
        for job in jobs:
            try:
                res = job()
                gc.collect()  # LightningCLI objects hold reference cycles
            except KeyboardInterrupt:
                raise
            except Exception:
                done(job, None, traceback.format_exc())
            else:
                done(job, res, None)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Workers are replaced every few runs: a long-lived worker accumulates each run's leftovers
    # (audio caches, allocator fragmentation; ~150 MB per run measured), while a fresh process
    # per run costs ~10-20 s of imports on a loaded 2-core machine. A fresh pool per wave of
    # runs does it: Python 3.11's max_tasks_per_child hangs once every worker has retired.
    wave = workers * RUNS_PER_WORKER
    for start in range(0, len(jobs), wave):
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_in_worker, job): job for job in jobs[start : start + wave]}
            try:
                for fut in as_completed(futures):
                    try:
                        res = fut.result()
                    except Exception:
                        done(futures[fut], None, traceback.format_exc())
                    else:
                        done(futures[fut], res, None)
            except KeyboardInterrupt:
                # Stop the runs in flight too (killed: Lightning traps SIGTERM to finish the epoch).
                pool.shutdown(wait=False, cancel_futures=True)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
                raise
