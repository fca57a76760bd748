"""Running the study: plan the runs, launch one job per run with submitit, record the sessions.

A :class:`RunJob` is one run as a picklable unit of work: it trains the run's network with
:func:`dereverb.training.run.run` (a checkpoint after each step of ``evaluation.at_steps``,
:class:`SaveAtSteps`), scores the weights of each of those steps and of the last one on the
study's evaluation items and writes ``result.json`` (atomically, last). :func:`run_study` hands
the jobs to a submitit executor (:func:`make_executor`): ``local`` runs each in its own process
on this machine (``jobs`` at a time), ``slurm`` submits them to a cluster with the same job
function, ``debug`` runs them one after another in this process.

Incremental: a run whose ``result.json`` has the same fingerprint is skipped; an unfinished run
folder is cleared and the run starts again; a finished run with other settings stops the study
(``force`` retrains it). The data seed is fixed by the config, so every run sees the same
training items and is scored on the same test items; the seed varies the initialisation only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
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
    JOBS,
    RESULT,
    RUN_CONFIG,
    STEP_CKPTS,
    STUDY_JSON,
    TRAIN_LOG,
    read_json,
    run_dir,
    write_json_atomic,
)
from dereverb.signals.metrics import METRICS

LAUNCHERS: tuple[str, ...] = ("local", "slurm", "debug")
Items = Mapping[str, Sequence[Mapping[str, Any]]]


def train_model(config_path: Path, at_steps: Sequence[int] = ()) -> dict[int, Path]:
    """Train with ``dereverb.training.run.run(["--config", config_path])``; returns ``{step:
    checkpoint}`` for ``at_steps`` and the last step (``final.ckpt``). Raises
    :class:`StudyError` when training stopped before a step of ``at_steps``."""
    from dereverb.experiment.checkpoints import SaveAtSteps
    from dereverb.training.run import run

    saver = SaveAtSteps(at_steps, config_path.parent / STEP_CKPTS)
    cli = run(["--config", str(config_path)], callbacks=[saver])
    last = int(cli.trainer.global_step)
    cli.trainer.save_checkpoint(config_path.parent / FINAL_CKPT)
    early = sorted(s for s in saver.steps if s not in saver.saved and s != last)
    if early:
        raise StudyError(f"{config_path}: training stopped at step {last}, before evaluation.at_steps {early}")
    return dict(sorted({**saver.saved, last: config_path.parent / FINAL_CKPT}.items()))


@contextlib.contextmanager
def _quiet(log_path: Path, threads: int):
    """Lightning's and the warnings' output into ``log_path``; ``threads`` torch threads."""
    import torch

    old_threads, lightning = torch.get_num_threads(), logging.getLogger("lightning.pytorch")
    old_level = lightning.level
    if threads > 0:
        torch.set_num_threads(threads)
    lightning.setLevel(logging.WARNING)
    try:
        with open(log_path, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            yield
    finally:
        torch.set_num_threads(old_threads)
        lightning.setLevel(old_level)


def _mean(values: Sequence[Any]) -> float | None:
    a = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _parameters(ckpt: Path) -> tuple[int, int, int]:
    """``(network parameters, learned-frontend parameters, global_step)`` of a checkpoint
    (BatchNorm statistics are not parameters)."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    stats = ("running_mean", "running_var", "num_batches_tracked")

    def count(prefix: str) -> int:
        return int(sum(v.numel() for k, v in state["state_dict"].items() if k.startswith(prefix) and not k.endswith(stats)))

    return count("model.net."), count("model.input_repr."), int(state.get("global_step", -1))


def run_one(cfg: StudyConfig, spec: RunSpec, out: Path, items: Items, threads: int) -> dict[str, Any]:
    """Train and evaluate one run in ``out/runs/<run_id>``; writes and returns its result."""
    import yaml

    folder = run_dir(out, spec.run_id)
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished earlier attempt: start clean
    folder.mkdir(parents=True)
    config = run_config(cfg, spec, folder)
    config_path = folder / RUN_CONFIG
    config_path.write_text(
        f"# study run {spec.run_id}, from {cfg.path} profile {cfg.profile}\n"
        f"# train: python -m dereverb.train --config {config_path}\n" + yaml.safe_dump(config, sort_keys=False)
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    steps: list[dict[str, Any]] = []
    with _quiet(folder / TRAIN_LOG, threads):
        ckpts = train_model(config_path, [s for s in cfg.eval_steps if s != cfg.max_steps])
        t_train = time.perf_counter() - t0
        for step, ckpt in ckpts.items():
            t1 = time.perf_counter()
            rows = evaluate_checkpoint(ckpt, items, cfg.sample_rate, spec.condition,
                                       device=str(cfg.evaluation.get("device", "cpu")))
            if (saved_at := _parameters(ckpt)[2]) != step:
                raise StudyError(f"{ckpt}: saved at global step {saved_at}, expected {step}")
            means = {s: {m: _mean([r.get(m) for r in rs]) for m in METRICS} for s, rs in rows.items()}
            steps.append({"step": step, "checkpoint": str(ckpt.relative_to(folder)),
                          "eval_seconds": time.perf_counter() - t1, "means": means, "rows": rows})
    n_params, n_frontend, global_step = _parameters(ckpts[steps[-1]["step"]])
    arm = spec.arm
    result = {
        "study_version": STUDY_VERSION, "run_id": spec.run_id, "condition": spec.condition, "arm": arm.name,
        "target": spec.target, "seed": spec.seed, "capacity": spec.capacity, "net": config["model"]["net"],
        "representation": arm.representation, "representation_kwargs": arm.representation_kwargs,
        "input_expansion": arm.input_expansion, "profile": cfg.profile, "fingerprint": run_fingerprint(cfg, spec),
        "items_sha": {s: items_fingerprint(v) for s, v in items.items()}, "checkpoint": steps[-1]["checkpoint"],
        "global_step": global_step, "parameters": n_params, "frontend_parameters": n_frontend,
        "train_seconds": t_train, "eval_seconds": float(sum(s["eval_seconds"] for s in steps)),
        "cpu_seconds": time.process_time() - cpu0, "threads": threads,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # the last step's scores, and every evaluated step's
        "means": steps[-1]["means"], "rows": steps[-1]["rows"], "steps": steps,
    }
    write_json_atomic(folder / RESULT, result)
    return result


@dataclass(frozen=True)
class RunJob:
    """One run as a picklable unit of work for an executor: ``job()`` trains, evaluates and
    writes ``result.json``; it returns the result, or ``{"error": traceback}`` when the run
    failed (so that no executor needs to handle the exception). ``items``: the evaluation sets
    (None: the job materialises them itself)."""

    cfg: StudyConfig
    spec: RunSpec
    out: Path
    threads: int
    items: Items | None = None

    def __call__(self) -> dict[str, Any]:
        try:
            items = self.items if self.items is not None else eval_items(self.cfg)
            return run_one(self.cfg, self.spec, self.out, items, self.threads)
        except Exception:
            return {"error": traceback.format_exc()}


def make_executor(launcher: str, folder: Path, cfg: StudyConfig):
    """A submitit executor whose logs go to ``folder``: ``local`` (a process per run, no time
    limit), ``slurm`` (``submitit.AutoExecutor`` parameters from the study config's ``slurm``,
    e.g. ``slurm_partition``, ``timeout_min``, ``gpus_per_node``) or ``debug`` (in this process)."""
    import submitit

    if launcher == "debug":
        return submitit.DebugExecutor(folder)
    if launcher == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=7 * 24 * 60)
        return executor
    if launcher != "slurm":
        raise StudyError(f"--launcher {launcher!r}: choose from {', '.join(LAUNCHERS)}")
    if shutil.which("srun") is None:
        raise StudyError("--launcher slurm: no srun on PATH; run the study on a SLURM login node, or use --launcher local")
    executor = submitit.AutoExecutor(folder, cluster="slurm")
    try:
        executor.update_parameters(**{"cpus_per_task": max(cfg.threads, 1), "timeout_min": 24 * 60, **cfg.slurm})
    except (NameError, ValueError, TypeError, AssertionError) as exc:  # submitit's checks, first line
        raise StudyError(f"{cfg.path}: slurm: {str(exc).splitlines()[0]}") from exc
    return executor


def launch(
    jobs: Sequence[RunJob],
    executor,
    parallel: int,
    done: Callable[[RunJob, dict[str, Any] | None, str | None], None],
) -> None:
    """Submit ``jobs`` with ``executor``, at most ``parallel`` at a time; ``done(job, result,
    None)`` or ``done(job, None, error)`` as each ends. Ctrl-C cancels the jobs in flight."""
    pending, running = list(jobs), {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                running[executor.submit(job)] = job
            finished = [j for j in running if j.done()]
            for handle in finished:
                job = running.pop(handle)
                # the pickled job holds the evaluation audio: not kept once the run is over
                handle.paths.submitted_pickle.unlink(missing_ok=True)
                try:
                    res = handle.result()
                except Exception as exc:  # the job's process died (killed, out of memory, timed out)
                    done(job, None, f"{type(exc).__name__}: {exc}")
                    continue
                done(job, None, res["error"]) if "error" in res else done(job, res, None)
            if not finished:
                time.sleep(0.5)
    except KeyboardInterrupt:
        for handle in running:
            handle.cancel()
        raise


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "load_average": list(os.getloadavg())}


def plan(cfg: StudyConfig, specs: Sequence[RunSpec], out: Path, force: bool = False) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split ``specs`` into (finished, to run); a finished run with other settings is an error
    unless ``force`` (then it is retrained)."""
    done, todo, stale = [], [], []
    for spec in specs:
        res = read_json(run_dir(out, spec.run_id) / RESULT)
        if res is None:
            todo.append(spec)
        elif res.get("fingerprint") == run_fingerprint(cfg, spec):
            done.append(spec)
        else:
            (todo if force else stale).append(spec)
    if stale:
        raise StudyError(
            f"{len(stale)} finished run(s) in {out} used other settings ({', '.join(s.run_id for s in stale[:4])}"
            f"{' ...' if len(stale) > 4 else ''}); use another --out, or --force to retrain them"
        )
    return done, todo


def _update_study_json(out: Path, cfg: StudyConfig, session: dict[str, Any]) -> None:
    old = read_json(out / STUDY_JSON) or {}
    sessions = [s for s in old.get("sessions", []) if s.get("id") != session["id"]]
    plan = [{"run_id": s.run_id, "condition": s.condition, "capacity": s.capacity, "seed": s.seed} for s in cfg.specs()]
    write_json_atomic(out / STUDY_JSON, {
        "study_version": STUDY_VERSION, "config_path": cfg.path, "profile": cfg.profile,
        "description": cfg.description, "reference": cfg.reference,
        "arms": {n: asdict(a) for n, a in cfg.arms.items()}, "capacities": cfg.capacities, "plan": plan,
        "eval_steps": cfg.eval_steps, "analysis": cfg.analysis, "train": cfg.train, "evaluation": cfg.evaluation,
        "jobs": cfg.jobs, "threads": cfg.threads,
        "sessions": [*sessions, session],
    })


def run_study(
    cfg: StudyConfig,
    out: Path,
    specs: Sequence[RunSpec],
    *,
    jobs: int = 1,
    launcher: str = "local",
    force: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every unfinished run of ``specs`` through the ``launcher``'s executor;
    returns the session record (``trained``, ``skipped``, ``failed`` run ids, ``wall_seconds``)."""
    out.mkdir(parents=True, exist_ok=True)
    notes = check_inputs(cfg)
    for n in notes:
        log(f"note: {n}")
    done, todo = plan(cfg, specs, out, force)
    executor = make_executor(launcher, out / JOBS, cfg)
    started = time.perf_counter()
    session: dict[str, Any] = {
        "id": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": command, "launcher": launcher,
        "machine": machine_info(), "planned": [s.run_id for s in specs], "skipped": [s.run_id for s in done],
        "trained": [], "failed": {}, "wall_seconds": 0.0, "complete": False, "notes": notes,
    }
    _update_study_json(out, cfg, session)
    log(f"study {cfg.path} profile {cfg.profile}: {len(specs)} runs, {len(done)} finished, {len(todo)} to run "
        f"({launcher}, {jobs} at a time x {cfg.threads} thread(s)) -> {out}")

    def finished(job: RunJob, res: dict[str, Any] | None, err: str | None) -> None:
        n = len(session["trained"]) + len(session["failed"]) + 1
        elapsed = time.perf_counter() - started
        if res is not None:
            session["trained"].append(job.spec.run_id)
            m = res["means"].get("sim", {})
            log(f"[{n}/{len(todo)}] {job.spec.run_id}: train {res['train_seconds']:.0f} s, eval "
                f"{res['eval_seconds']:.0f} s; sim PESQ {m.get('pesq') or float('nan'):.2f} | {elapsed / 60:.1f} min")
        else:
            session["failed"][job.spec.run_id] = err
            log(f"[{n}/{len(todo)}] {job.spec.run_id}: FAILED ({(err or '?').strip().splitlines()[-1]}); "
                f"see {run_dir(out, job.spec.run_id) / TRAIN_LOG}")
        _update_study_json(out, cfg, {**session, "wall_seconds": elapsed})

    if todo:
        try:
            prepare_data(cfg)
            items = eval_items(cfg)
            compute_baselines(cfg, items, out, log)
            parallel = len(todo) if launcher == "slurm" else jobs
            launch([RunJob(cfg, s, out, cfg.threads, items) for s in todo], executor, parallel, finished)
        except KeyboardInterrupt:
            session["interrupted"] = True
            raise
        finally:  # the session's runtime is recorded even when it is cut short
            session["wall_seconds"] = time.perf_counter() - started
            _update_study_json(out, cfg, session)
    session["complete"] = not session["failed"]
    _update_study_json(out, cfg, session)
    return session
