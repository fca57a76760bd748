"""One command that turns a few GPU minutes into measurements and a trained model.

    python benchmarks/gpu_run.py --out "$OUT"                # on a CUDA machine, <= --budget seconds
    python benchmarks/gpu_run.py --out /tmp/gpu --dry-run    # every step on the CPU at tiny sizes

Steps, each a subprocess with its own time limit, each writing its output under ``--out`` as
soon as it ends (``summary.json`` is rewritten after every step, so a run cut short still
returns what it finished):

1. ``env.txt``: GPU, driver, torch/torchaudio versions.
2. ``cuda_tests.txt``: ``pytest -k cuda`` (the CUDA twins of the device path, predict and training).
3. ``bench_train.txt``: training samples/s and GPU utilisation for fp32 / bf16 / 16-mixed;
   ``bench_data.txt``: device-path pairs/s; ``bench_predict.txt``: predict real-time factor.
4. ``train/``: the recipe (``configs/recipe.yaml``) for the remaining time, continuing from the
   shipped pretrained weights (``--init-weights``; bf16, reverberation convolved on the device),
   then ``weights/librispeech_unet/`` (the model folder: float16 ``model.safetensors`` +
   ``config.json``, <= 10 MiB; copy it to ``dereverb/pretrained/`` if it scores better) and
   ``eval_sim/`` (+ ``eval_measured/`` when the measured rooms are present): the trained model
   beside the weights it started from, the reverberant input and WPE through
   ``python -m dereverb.evaluate``.

Beside step 4 (the GPU has room for both) runs ``study/``: the representation study's
``--study`` profile (default ``full``: every arm at both capacities, 5 seeds, 8000 steps; 190
runs, far more than one run of this script) as far as the training time allows, each run a
submitit job in its own process (``--launcher local``). It starts from
the finished runs committed in ``--study-dir`` (default ``docs/study/full``, reused by their
fingerprints), is stopped with Ctrl-C's signal when training ends, and keeps only what a study
folder commits (``study.json``, ``baselines.json``, ``runs/*/result.json`` and ``config.yaml``):
copy ``study/`` over ``--study-dir`` and commit it, and each GPU session adds its finished runs.

A small U-Net uses a fraction of an H200: ``--share`` leaves that many CPU workers and the
GPU's spare capacity to another job started alongside (see docs/gpu.md); the study step
takes its share itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dereverb.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
LIBRISPEECH = ROOT.parent / "shared" / "data" / "speech" / "librispeech-train-clean-100"
MEASURED_RIRS = ROOT.parent / "shared" / "data" / "rirs"
MAX_WEIGHTS_BYTES = 16 * 2**20
STUDY_CONFIG = "configs/study.yaml"
#: What a study folder commits (docs/study/core): the rest (weights, TensorBoard logs, caches) stays behind.
STUDY_KEEP = ("study.json", "baselines.json", "runs/*/result.json", "runs/*/config.yaml")


class Run:
    """Runs steps within a total budget and records each one in ``summary.json``."""

    def __init__(self, out: Path, budget: float, dry_run: bool) -> None:
        self.out, self.budget, self.dry_run = out, budget, dry_run
        self.t0 = time.monotonic()
        self.summary: dict = {"dry_run": dry_run, "budget_s": budget, "command": " ".join(sys.argv), "steps": {}}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def record(self, name: str, **info) -> None:
        self.summary["steps"][name] = info
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        write_atomic(self.out / "summary.json", json.dumps(self.summary, indent=1) + "\n")

    def step(self, name: str, cmd: list[str], limit: float, env: dict | None = None) -> bool:
        """Run ``cmd`` (stdout + stderr to ``<name>.txt``) for at most ``limit`` seconds (and what
        the budget has left, minus a reserve for the steps after it)."""
        limit = min(limit, self.left())
        if limit < 5:
            self.record(name, status="skipped: no time left")
            return False
        log = self.out / f"{name}.txt"
        t = time.monotonic()
        with open(log, "w") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            try:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, timeout=limit,
                                    env={**os.environ, **(env or {})}).returncode
                status = "ok" if rc == 0 else f"exit {rc}"
            except subprocess.TimeoutExpired:
                status = f"timed out after {limit:.0f} s"
        self.record(name, status=status, seconds=round(time.monotonic() - t, 1), log=log.name)
        print(f"{name}: {status} ({time.monotonic() - t:.0f} s)", flush=True)
        return status == "ok"


def copy_study_results(src: Path, dst: Path) -> int:
    """Copy the committed files of study folder ``src`` (:data:`STUDY_KEEP`) into ``dst``, so
    the study reuses its finished runs; returns how many finished runs were copied."""
    for pattern in STUDY_KEEP:
        for f in src.glob(pattern):
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    return finished_runs(dst)


def finished_runs(folder: Path) -> int:
    return sum(1 for _ in folder.glob("runs/*/result.json"))


def prune_study(folder: Path) -> None:
    """Delete everything but :data:`STUDY_KEEP` from a study folder (weights, logs, caches):
    what comes back from the GPU machine is what gets committed."""
    keep = {f for pattern in STUDY_KEEP for f in folder.glob(pattern)}
    for f in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if f.is_file() or f.is_symlink():
            if f not in keep:
                f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()


class Background:
    """A step that runs beside the others (the study beside the training): started now,
    stopped with SIGINT (the study keeps its finished runs and exits 130) by :meth:`stop`."""

    def __init__(self, run: Run, name: str, cmd: list[str]) -> None:
        self.run, self.name, self.t = run, name, time.monotonic()
        self.log = open(run.out / f"{name}.txt", "w")  # noqa: SIM115 - closed in stop()
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.log.flush()
        # its own process group, so that stop() reaches the study's worker processes too
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        run.record(name, status="running")

    def stop(self, wait: float, **info) -> str:
        """Wait up to ``wait`` s for it to end by itself, then interrupt it (30 s to finish
        writing, then kill); records and returns its status."""
        try:
            rc = self.proc.wait(timeout=max(wait, 0))
            status = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            status = "stopped at the time limit"
        self.log.close()
        self.run.record(self.name, status=status, seconds=round(time.monotonic() - self.t, 1),
                        log=f"{self.name}.txt", **info)
        print(f"{self.name}: {status} ({time.monotonic() - self.t:.0f} s)", flush=True)
        return status


def export_bundle(ckpt: Path, dst: Path, meta: dict) -> int:
    """The checkpoint as a model folder (float16 weights + hyperparameters, the format
    ``--ckpt pretrained`` loads, <= 10 MiB); returns its size in bytes (0: too large, not written)."""
    from dereverb.models.checkpoints import CheckpointError, write_model_folder

    try:
        return sum(f.stat().st_size for f in write_model_folder(ckpt, dst, meta=meta).iterdir())
    except CheckpointError as exc:
        print(f"weights: {exc}")
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="everything is written under this folder")
    ap.add_argument("--budget", type=float, default=540.0, help="total seconds (default 540 = 9 min)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: exercise every step")
    ap.add_argument("--config", default="configs/recipe.yaml", help="training config")
    ap.add_argument("--init-weights", default="pretrained",
                    help="continue from these weights (default: the shipped pretrained model; 'none': from scratch)")
    ap.add_argument("--speech", default=None, help="speech folder (default: LibriSpeech in ../shared if present, else synthetic)")
    ap.add_argument("--share", type=int, default=0, help="CPU workers to leave free for another job")
    ap.add_argument("--study", default="full",
                    help="study profile to run beside the training (default full; smoke in a dry run; 'none': no study)")
    ap.add_argument("--study-dir", type=Path, default=ROOT / "docs" / "study" / "full",
                    help="committed results of that study to continue from (default docs/study/full)")
    args = ap.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, args.budget, args.dry_run)
    py = sys.executable
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    speech = args.speech or (str(LIBRISPEECH) if LIBRISPEECH.exists() and not dry else "synthetic")
    study_profile = ("smoke" if dry and args.study == "full" else args.study) if args.study != "none" else None
    # the study's runs load their own data (4 workers each in profile full)
    share = args.share + (5 if study_profile and not dry else 0)
    workers = 0 if dry else max(1, (os.cpu_count() or 2) - 2 - share)
    run.summary.update(device=device, speech=speech, workers=workers, study=study_profile)

    # 1. the machine
    env_cmd = [py, "-c", "import torch, torchaudio; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__);"
               "print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"]
    run.step("env", env_cmd, 60)
    if shutil.which("nvidia-smi"):
        run.step("nvidia_smi", ["nvidia-smi"], 30)

    # 2. the CUDA tests (they skip on a CPU; the dry run only checks that they are collected)
    run.step("cuda_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                            *(["tests/inference", "tests/data/test_datamodule.py"] if dry else [])], 150)

    # 3. benchmarks: the rows docs/performance.md leaves empty
    tiny = ["--steps", "1", "--warmup", "1", "--batch-size", "2"] if dry else ["--steps", "20", "--warmup", "3"]
    run.step("bench_train", [py, "benchmarks/train.py", "--device", device, "--precision", "32", "bf16",
                             *([] if dry else ["16", "--config", args.config]), *tiny], 90)
    run.step("bench_data", [py, "benchmarks/data.py", "--device", device, "--speech", speech,
                            *(["--batches", "2", "--batch-size", "4", "--bank", "4", "--seconds", "0.5", "--workers", "0"]
                              if dry else ["--batches", "30", "--workers", "0", "4", str(workers)])], 90)
    run.step("bench_predict", [py, "benchmarks/predict.py", "--device", device,
                               *(["--files", "2", "--seconds", "2", "--iters", "2"] if dry else ["--files", "20"])], 90)

    # 4. train for what is left (minus the export and the evaluations), bf16, reverb on the device
    reserve = 60 if dry else 100
    train_seconds = max(int(run.left() - reserve), 10)
    runs = out / "train"
    train_cmd = [py, "-m", "dereverb.train", "--config", "configs/quickstart.yaml" if dry else args.config,
                 "--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", "gpu",
                 "--trainer.enable_progress_bar", "false", "--data.speech", speech,
                 "--data.num_workers", str(workers), "--data.reverb_on_device", "true"]
    if dry:
        train_cmd += ["--trainer.max_steps", "2", "--trainer.max_epochs", "1", "--data.train_items", "4",
                      "--data.val_items", "2", "--data.batch_size", "2", "--data.segment_seconds", "0.5",
                      "--data.rir_bank_sizes", "[4, 2, 2]", "--data.rir_max_order", "10", "--data.rir_calibrate", "0",
                      "--model.net.init_args.base_channels", "4", "--model.net.init_args.depth", "2",
                      "--model.val_metric_batches", "1", "--model.griffin_lim_iters", "2",
                      "--trainer.precision", "bf16-mixed"]
    else:
        if args.init_weights != "none":
            train_cmd += ["--init_weights", args.init_weights]
        train_cmd += ["--trainer.precision", "bf16-mixed", "--trainer.accelerator", "gpu", "--trainer.devices", "1",
                      "--trainer.max_epochs", "-1", "--trainer.max_time", f"00:00:{train_seconds // 60:02d}:{train_seconds % 60:02d}"]
    study = None
    if study_profile and not dry and not LIBRISPEECH.exists():
        run.record("study", status="skipped: the study needs LibriSpeech in ../shared")
    elif study_profile:
        study_out = out / "study"
        reused = copy_study_results(args.study_dir, study_out) if args.study_dir.is_dir() else 0
        study = Background(run, "study", [py, "-m", "dereverb.study", "--config", STUDY_CONFIG, "--profile", study_profile,
                                          "--out", str(study_out), "--launcher", "local", "--no-report"])
    run.step("train", train_cmd, train_seconds + 60)
    if study is not None:
        # a dry run's smoke study is short: let it finish; a real one stops with the training
        study.stop(120 if dry else 0)
        prune_study(study_out)
        run.record("study", **run.summary["steps"]["study"], reused_runs=reused, finished_runs=finished_runs(study_out))
    ckpts = sorted(runs.glob("gpu/version_*/checkpoints/last.ckpt"))
    if not ckpts:
        run.record("weights", status="no checkpoint")
        return 1
    ckpt = ckpts[-1]
    meta = {"trained_by": "benchmarks/gpu_run.py", "config": args.config, "init_weights": args.init_weights,
            "train_seconds": train_seconds, "device": device}
    size = export_bundle(ckpt, out / "weights" / "librispeech_unet", meta)
    run.record("weights", status="ok" if 0 < size <= MAX_WEIGHTS_BYTES else "too large", bytes=size, checkpoint=str(ckpt))

    # 5. evaluate the model: simulated test rooms, and the measured rooms when present
    items = ["--n-items", "2", "--srmr", "none"] if dry else ["--n-items", "64"]
    before = [] if dry or args.init_weights == "none" else [args.init_weights]  # the weights it started from, side by side
    ev = [py, "-m", "dereverb.evaluate", "--ckpt", str(ckpt), *before, "--baselines", "reverberant,wpe", "--device", device,
          "--no-progress", *items]
    run.step("eval_sim", [*ev, "-o", str(out / "eval_sim"), "--datamodule-config", "configs/quickstart.yaml" if dry else args.config,
                          "--speech", speech], 60 if dry else 90)
    if MEASURED_RIRS.exists():
        run.step("eval_measured", [*ev, "-o", str(out / "eval_measured"), "--rirs", str(MEASURED_RIRS),
                                   "--speech", speech, *(["--speech-split", "test"] if speech != "synthetic" else [])], 90)
    failed = [k for k, v in run.summary["steps"].items() if v.get("status") not in ("ok", "stopped at the time limit")]
    print(f"done in {time.monotonic() - run.t0:.0f} s; not ok: {', '.join(failed) or 'none'}; results in {out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
