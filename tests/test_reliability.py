"""Reliability: bad input for every entry point, atomic outputs, resumable training, determinism.

Tiny models and data throughout; real subprocesses where only a real process can show it
(SIGTERM / SIGKILL, no traceback reaching the user). The table in docs/reliability.md lists
every case tested here and the message the user sees.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import Callback
from torch.utils.data import DataLoader, Dataset

from dereverb import evaluate, predict
from dereverb import train as train_mod
from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.pairs import EpochSampler
from dereverb.data.rooms import RoomSampler
from dereverb.data.speech import CorpusWarning
from dereverb.inference import files
from dereverb.signals.audio import write_audio
from dereverb.training.checkpoint_io import AtomicCheckpointIO
from dereverb.training.cli import AUTOSAVE_STEPS
from dereverb.training.run import TrainingInterrupted, run
from tests.conftest import noise, tiny_train_args, write_wav

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
SR = 16000
STEPS_PER_EPOCH = 4  # train_items 8 / batch 2
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ============================================================================ helpers
def tiny(tmp: Path, cache: Path, name: str = "rel", **over: str) -> list[str]:
    """The quickstart shrunk to seconds (tests/conftest.py), 4 steps per epoch."""
    return ["--config", QUICKSTART, *tiny_train_args(tmp, cache, name, **over)]


class Probe(Callback):
    """Records the per-step training loss and, at train start, the restored training state;
    optionally sends this process SIGTERM after a given step (Lightning's handler then stops)."""

    def __init__(self, sigterm_at: int | None = None, sig: int = signal.SIGTERM) -> None:
        self.losses: dict[int, float] = {}
        self.start: dict | None = None
        self.sigterm_at, self.sig = sigterm_at, sig

    def on_train_start(self, trainer, pl_module) -> None:
        opt = trainer.optimizers[0]
        self.start = {
            "step": trainer.global_step,
            "adam_steps": sorted({float(s["step"]) for s in opt.state.values()}),
            "last_epoch": trainer.lr_scheduler_configs[0].scheduler.last_epoch,
        }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])
        if self.sigterm_at == trainer.global_step:
            os.kill(os.getpid(), self.sig)


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def _one_error(err: str, *mentions: str) -> str:
    """Exactly one ``error:`` line, mentioning each of ``mentions``, and no traceback."""
    lines = _errors(err)
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def _put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _train_main(argv: list[str]) -> int:
    """``dereverb.train.main``'s exit code; parse errors leave through SystemExit, as with argparse."""
    try:
        return train_mod.main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


_noise = noise


_wav = write_wav  # default rate 16 kHz = SR


def _wait_for(cond, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"condition not met (process rc={proc.poll() if proc else None}):\n{tail}")


def _ckpt_step(path: Path) -> int:
    """global_step of a checkpoint, 0 while it does not exist yet."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


class _OtherModule(L.LightningModule):
    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(hidden, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Ones(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.ones(3)


def _other_model_ckpt(path: Path) -> Path:
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(path.parent))
    trainer.fit(_OtherModule(), DataLoader(_Ones(), batch_size=2))
    trainer.save_checkpoint(path)
    return path


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rircache")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict:
    """Three in-process quickstart runs with one seed: uninterrupted (8 steps, 2 epochs);
    the same stopped by SIGTERM after step 6 (mid-epoch 1); resumed from its ``last.ckpt``."""
    tmp = tmp_path_factory.mktemp("runs")
    ref = Probe()
    ref_cli = run([*tiny(tmp, cache, "ref"), "--autosave.every_n_train_steps", "2"], callbacks=[ref])
    stopped = Probe(sigterm_at=6)
    with pytest.raises(TrainingInterrupted) as info:
        run([*tiny(tmp, cache, "stop"), "--autosave.every_n_train_steps", "4"], callbacks=[stopped])
    last = Path(info.value.checkpoint)
    saved = torch.load(last, map_location="cpu", weights_only=True)
    resumed = Probe()
    res_cli = run([*tiny(tmp, cache, "stop"), "--ckpt_path", str(last)], callbacks=[resumed])
    # Stopped after the last batch of epoch 0 (before its validation): resumes at epoch 1.
    with pytest.raises(TrainingInterrupted) as info4:
        run([*tiny(tmp, cache, "stop4")], callbacks=[Probe(sigterm_at=STEPS_PER_EPOCH)])
    resumed4 = Probe()
    run([*tiny(tmp, cache, "stop4"), "--ckpt_path", info4.value.checkpoint], callbacks=[resumed4])
    return {
        "tmp": tmp, "ref": ref, "ref_cli": ref_cli, "stopped": stopped, "interrupt": info.value,
        "last": last, "saved": saved, "resumed": resumed, "res_cli": res_cli, "resumed4": resumed4,
        "saved4": torch.load(info4.value.checkpoint, map_location="cpu", weights_only=True),
    }


@pytest.fixture(scope="module")
def ckpt(runs: dict) -> Path:
    """A real ``last.ckpt`` of the tiny quickstart model (finished run)."""
    return Path(runs["ref_cli"].trainer.checkpoint_callback.dirpath) / "last.ckpt"


# ============================================================================ resumable training
def test_sigterm_in_process_saves_last_ckpt_mid_epoch(runs: dict) -> None:
    exc, saved = runs["interrupt"], runs["saved"]
    assert exc.signal_name == "SIGTERM" and exc.exit_code == 143 and exc.step == 6
    assert runs["last"].name == "last.ckpt" and saved["global_step"] == 6
    # Data position: epoch 1, 2 of its 4 batches trained.
    assert saved["DereverbDataModule"] == {
        "epoch": 1, "batches_done": 2, "epoch_finished": 0, "batch_size": 2, "train_items": 8,
    }
    assert "--ckpt_path" in str(exc) and str(runs["last"]) in str(exc)


def test_ctrl_c_saves_last_ckpt_and_exits_130(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(TrainingInterrupted) as info:
        run([*tiny(tmp_path, cache, "ctrlc", **{"trainer.max_steps": "3"})], callbacks=[Probe(1, signal.SIGINT)])
    exc = info.value
    assert exc.signal_name == "Ctrl-C" and exc.exit_code == 130 and exc.step == 1
    assert Path(exc.checkpoint).name == "last.ckpt" and _ckpt_step(Path(exc.checkpoint)) == 1


def test_resume_restores_step_optimizer_and_scheduler(runs: dict) -> None:
    start, saved = runs["resumed"].start, runs["saved"]
    assert start["step"] == saved["global_step"] == 6
    assert start["adam_steps"] == [6.0]  # every parameter's AdamW step counter
    assert start["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"] == 6
    assert runs["res_cli"].trainer.global_step == 2 * STEPS_PER_EPOCH


def test_mid_epoch_resume_continues_the_uninterrupted_run_exactly(runs: dict) -> None:
    """Same batches (the epoch's remaining items, not a replay), optimiser and schedule: the
    resumed losses equal the uninterrupted run's step for step."""
    ref, resumed = runs["ref"].losses, runs["resumed"].losses
    assert sorted(resumed) == [7, 8]
    for step, loss in resumed.items():
        assert loss == ref[step], (step, loss, ref[step])


def test_resume_at_an_epoch_boundary_starts_the_next_epoch_exactly(runs: dict) -> None:
    assert runs["saved4"]["DereverbDataModule"]["epoch_finished"] == 1
    ref, resumed = runs["ref"].losses, runs["resumed4"].losses
    assert runs["resumed4"].start["step"] == STEPS_PER_EPOCH
    assert sorted(resumed) == list(range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1))
    assert all(loss == ref[step] for step, loss in resumed.items())


def test_two_runs_with_one_seed_have_identical_losses(runs: dict) -> None:
    """Determinism on CPU, read back from the TensorBoard event files of two runs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def losses(log_dir: Path) -> dict[int, float]:
        ea = EventAccumulator(str(log_dir))
        ea.Reload()
        return {e.step: e.value for e in ea.Scalars("train/loss")}

    a = losses(runs["tmp"] / "runs" / "ref" / "version_0")
    b = losses(runs["tmp"] / "runs" / "stop" / "version_0")
    assert len(a) == 2 * STEPS_PER_EPOCH and len(b) >= 6
    assert all(a[s] == b[s] for s in sorted(b)[:6])
    assert runs["stopped"].losses == {s: runs["ref"].losses[s] for s in range(1, 7)}


def test_autosave_shares_last_ckpt_with_the_best_checkpoint(runs: dict) -> None:
    folder = Path(runs["ref_cli"].trainer.checkpoint_callback.dirpath)
    names = sorted(p.name for p in folder.iterdir())
    # One last.ckpt (never last-v1.ckpt), one best checkpoint chosen at validation, no temp files.
    assert names[-1] == "last.ckpt" and len(names) == 2 and names[0].startswith("best-epoch")
    assert _ckpt_step(folder / "last.ckpt") == 2 * STEPS_PER_EPOCH


def test_last_ckpt_holds_the_end_of_every_epoch(tmp_path: Path, cache: Path) -> None:
    """Between autosaves (every 3 steps) and without a validation, last.ckpt still ends each
    epoch (4 steps), at its end: a finished run's last.ckpt is its final state."""
    epochs: list[int] = []

    class AtEpochEnd(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            epochs.append(_ckpt_step(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"))

    cli = run([*tiny(tmp_path, cache, "epochs"), "--autosave.every_n_train_steps", "3",
               "--trainer.limit_val_batches", "0"], callbacks=[AtEpochEnd()])
    last = torch.load(Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2 * STEPS_PER_EPOCH and last["DereverbDataModule"]["epoch_finished"] == 1
    assert epochs[0] == 3  # autosave at step 3; the epoch-end save comes after this probe


def test_epoch_sampler_resume_and_datamodule_state() -> None:
    s = EpochSampler(6, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.resume(2, 4)
    assert list(s) == full[4:]
    s.set_epoch(2)
    assert list(s) == full  # only the first iteration after resume() is shortened
    s.resume(3, 2)
    s.set_epoch(4)
    assert len(list(s)) == 6  # another epoch than the saved one: not shortened
    dm = DereverbDataModule(batch_size=2, train_items=6)
    assert dm.state_dict() == {}  # no trainer: nothing to save
    sampler = EpochSampler(6, seed=0)
    dm._apply_resume(sampler, {"epoch": 1, "batches_done": 3, "epoch_finished": 1, "batch_size": 2, "train_items": 6})
    assert sampler.epoch == 2 and len(list(sampler)) == 6  # saved at an epoch's end: next epoch, whole
    with pytest.warns(UserWarning, match="different data.batch_size"):
        dm._apply_resume(sampler, {"epoch": 1, "batches_done": 1, "epoch_finished": 0, "batch_size": 4, "train_items": 6})
    assert len(list(sampler)) == 6


def test_atomic_checkpoint_io_never_leaves_a_partial_file(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    dst = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, dst)
    before = dst.read_bytes()

    def dies(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"a": torch.zeros(3)}, dst)
    assert dst.read_bytes() == before and _files(dst.parent) == ["last.ckpt"]


#: Steps in the killed run's one epoch: enough that a SIGTERM delayed on a loaded machine still lands
#: mid-epoch with room for the resumed run's next autosaves.
KILLED_STEPS = 60


def _train_cmd(tmp: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dereverb.train", *tiny(tmp, cache, "killed", **{
        "data.train_items": str(2 * KILLED_STEPS), "trainer.max_epochs": "1", "autosave.every_n_train_steps": "2",
    }), *extra]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_sigterm_to_the_process_group_ends_as_sigterm(tmp_path: Path, cache: Path) -> None:
    """A scheduler or ``kill -- -PGID`` signals the loader workers too: whether a worker dies of
    it first or the main process stops first, the run ends as a SIGTERM (exit 143, one line
    naming the saved last.ckpt), not as a DataLoader error (exit 1). Lightning's autosave may
    still log the worker's death as information when the worker died first."""
    last = tmp_path / "runs" / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    log = tmp_path / "group.log"
    with open(log, "w") as out:
        p = subprocess.Popen(_train_cmd(tmp_path, cache, "--data.num_workers", "1"), cwd=tmp_path, env=SUBPROCESS_ENV,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(lambda: _ckpt_step(last) >= 2, 240, p, log)
            assert _children(p.pid), "no DataLoader worker found"
            os.killpg(p.pid, signal.SIGTERM)
            rc = p.wait(timeout=120)
        finally:
            p.kill()
    text = log.read_text()
    assert rc == 143, text[-3000:]
    _one_error(text, "SIGTERM", str(last), "--ckpt_path")
    assert _ckpt_step(last) >= 2


@pytest.mark.slow
def test_killed_training_subprocess_resumes_sigterm_then_sigkill(tmp_path: Path, cache: Path, runs: dict) -> None:
    """A real ``python -m dereverb.train``: SIGTERM mid-epoch -> exit 143, one line, fresh
    last.ckpt; resumed in a new process and SIGKILLed -> the last autosave is intact; resumed
    again here: same step, optimiser and scheduler state, and it finishes the epoch."""
    last = tmp_path / "runs" / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    log1 = tmp_path / "first.log"
    with open(log1, "w") as out:
        p1 = subprocess.Popen(_train_cmd(tmp_path, cache), cwd=tmp_path, env=SUBPROCESS_ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: _ckpt_step(last) >= 2, 240, p1, log1)
            p1.send_signal(signal.SIGTERM)
            rc = p1.wait(timeout=120)
        finally:
            p1.kill()
    text = log1.read_text()
    assert rc == 143, text[-3000:]
    line = _one_error(text, "SIGTERM", str(last), "--ckpt_path")
    step1 = _ckpt_step(last)
    assert 2 <= step1 < KILLED_STEPS - 4 and f"global step {step1};" in line  # mid-epoch

    log2 = tmp_path / "second.log"
    with open(log2, "w") as out:
        p2 = subprocess.Popen(_train_cmd(tmp_path, cache, "--ckpt_path", str(last)), cwd=tmp_path,
                              env=SUBPROCESS_ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: _ckpt_step(last) >= step1 + 2, 240, p2, log2)
            p2.send_signal(signal.SIGKILL)
            assert p2.wait(timeout=60) == -signal.SIGKILL
        finally:
            p2.kill()
    saved = torch.load(last, map_location="cpu", weights_only=True)  # intact after SIGKILL
    step2 = int(saved["global_step"])
    assert step1 + 2 <= step2 < KILLED_STEPS and step2 % 2 == 0  # an autosave step
    assert not [n for n in _files(last.parent) if n.endswith(".ckpt") and n.startswith("last-")]

    probe = Probe()
    cli = run([*_train_cmd(tmp_path, cache)[3:], "--ckpt_path", str(last)], callbacks=[probe])
    assert probe.start["step"] == step2
    assert probe.start["adam_steps"] == [float(step2)]
    assert probe.start["last_epoch"] == saved["lr_schedulers"][0]["last_epoch"] == step2
    assert sorted(probe.losses) == list(range(step2 + 1, KILLED_STEPS + 1))  # the rest of the epoch, once
    assert cli.trainer.global_step == KILLED_STEPS


# ============================================================================ train: bad input
@pytest.fixture(scope="module")
def bad_train_files(tmp_path_factory: pytest.TempPathFactory, ckpt: Path) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("badtrain")
    (d / "empty.ckpt").write_bytes(b"")
    (d / "text.ckpt").write_text("not a checkpoint\n")
    data = ckpt.read_bytes()
    (d / "cut.ckpt").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(3)}, d / "dict.ckpt")
    _other_model_ckpt(d / "other.ckpt")
    weights_only = torch.load(ckpt, map_location="cpu", weights_only=True)
    for k in ("loops", "optimizer_states", "lr_schedulers", "callbacks"):
        weights_only.pop(k, None)
    torch.save(weights_only, d / "weights.ckpt")
    (d / "unknown.yaml").write_text("model:\n  representation: log_magnitude\n  bogus_key: 3\n")
    (d / "afile").write_text("x")
    (d / "no_audio").mkdir()
    (d / "no_audio" / "notes.txt").write_text("hi")
    (d / "one_room").mkdir()  # two responses of one room: nothing to validate on apart from training
    decay = np.random.default_rng(0).standard_normal(3200) * np.exp(-np.arange(3200) / 700)
    for j in range(2):
        sf.write(d / "one_room" / f"{j}.wav", np.concatenate([[1.0], 0.3 * decay]).astype(np.float32), 16000)
    return {"ckpt": ckpt, **{p.stem: p for p in d.iterdir()}}


# case -> (extra args, text the error line must contain)
TRAIN_BAD = {
    "unknown_key": (["--model.not_a_key", "1"], ["not_a_key", "--help"]),
    "unknown_key_in_yaml": (["--config", "{unknown}"], ["bogus_key"]),
    "missing_config": (["--config", "{afile}.yaml"], ["--config", "afile.yaml", "no readable file"]),
    "wrong_type": (["--model.lr", "fast"], ["model.lr", "float", "fast"]),
    "wrong_type_int": (["--data.batch_size", "two"], ["data.batch_size", "int", "two"]),
    "bad_literal": (["--model.target", "nope"], ["model.target", "'same', 'log_magnitude'", "nope"]),
    "unknown_representation": (["--model.representation", "rgb"], ["model.representation", "'rgb'", "log_magnitude, grayscale, colormap"]),
    "unknown_colormap": (["--model.representation", "colormap", "--model.representation_kwargs.cmap", "turbu"],
                         ["model.representation_kwargs", "turbu", "turbo, viridis"]),
    "cyclic_colormap": (["--model.representation", "colormap", "--model.representation_kwargs.cmap", "hsv"],
                        ["model.representation_kwargs", "hsv", "cannot be inverted"]),
    "bad_room": (["--data.room.t60_range", "[2, 1]"], ["RoomSampler.t60_range", "need (min, max)"]),
    "bad_value": (["--data.segment_seconds", "-1"], ["data.segment_seconds", "> 0"]),
    "ckpt_path_missing": (["--ckpt_path", "{afile}.ckpt"], ["afile.ckpt", "not found", "--ckpt_path"]),
    "ckpt_path_empty": (["--ckpt_path", "{empty}"], ["empty.ckpt", "empty (0 bytes)"]),
    "ckpt_path_truncated": (["--ckpt_path", "{cut}"], ["cut.ckpt", "truncated"]),
    "ckpt_path_text": (["--ckpt_path", "{text}"], ["text.ckpt", "neither a torch archive nor a pickle"]),
    "ckpt_path_plain_dict": (["--ckpt_path", "{dict}"], ["dict.ckpt", "not a Lightning checkpoint"]),
    "ckpt_path_other_model": (["--ckpt_path", "{other}"], ["other.ckpt", "not a DereverbModule checkpoint"]),
    "ckpt_path_weights_only": (["--ckpt_path", "{weights}"], ["weights.ckpt", "weights only"]),
    "ckpt_path_other_size": (["--ckpt_path", "{ckpt}", "--model.net.init_args.base_channels", "8"],
                             ["last.ckpt", "does not fit", "model.net.init_args.base_channels=4 in the checkpoint, 8 here", "--config"]),
    "speech_not_a_folder": (["--data.speech", "{afile}"], ["data.speech", "afile", "synthetic"]),
    "speech_without_audio": (["--data.speech", "{no_audio}"], ["data.speech", "no audio files", "no_audio"]),
    "rirs_without_audio": (["--data.rirs", "{no_audio}"], ["data.rirs", "no audio files", "no_audio"]),
    "rirs_of_one_room": (["--data.rirs", "{one_room}"], ["data.rirs", "1 room(s) (one_room)", "split by room", "data.measured_rir_split: all"]),
    "unwritable_logs": (["--trainer.logger.init_args.save_dir", "{afile}/runs"], ["trainer.logger.init_args.save_dir", "is a file"]),
    "unwritable_checkpoints": (["--checkpoint.dirpath", "{afile}/ck"], ["checkpoint.dirpath", "is a file"]),
}


@pytest.mark.parametrize("case", list(TRAIN_BAD))
def test_train_bad_input_is_one_line_exit_2(case: str, bad_train_files: dict, cache: Path, tmp_path: Path, capsys) -> None:
    extra, mentions = TRAIN_BAD[case]
    extra = [a.format(**{k: str(v) for k, v in bad_train_files.items()}) for a in extra]
    before = _files(bad_train_files["ckpt"].parent)
    rc = _train_main([*tiny(tmp_path, cache), "--trainer.max_steps", "1", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error(err, *mentions)
    assert not (tmp_path / "runs").exists()  # nothing written: no logs, no checkpoints
    assert _files(bad_train_files["ckpt"].parent) == before  # the resumed checkpoint untouched


def test_parse_errors_raise_system_exit_2(tmp_path: Path, cache: Path, capsys) -> None:
    """jsonargparse's usage block is dropped; its key and expectation stay, exit 2."""
    with pytest.raises(SystemExit) as e:
        train_mod.main([*tiny(tmp_path, cache), "--model.lr", "fast"])
    assert e.value.code == 2
    assert _one_error(capsys.readouterr().err) == (
        "error: Parser key \"model.lr\": Expected a <class 'float'>. Got value: fast (see python -m dereverb.train --help)"
    )


def test_train_debug_shows_the_traceback(tmp_path: Path, cache: Path, capsys) -> None:
    rc = train_mod.main([*tiny(tmp_path, cache), "--model.representation", "rgb", "--debug"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" in err and "ConfigError" in err and _errors(err)


def test_autosave_is_a_documented_option_with_a_default(capsys) -> None:
    import yaml

    with pytest.raises(SystemExit):
        train_mod.main(["--config", QUICKSTART, "--print_config"])
    autosave = yaml.safe_load(capsys.readouterr().out)["autosave"]
    assert autosave["every_n_train_steps"] == AUTOSAVE_STEPS and autosave["save_on_exception"] is True
    assert autosave["filename"] == "last"


@pytest.mark.slow
def test_train_subprocess_prints_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dereverb.train", "--config", QUICKSTART, "--model.representation", "rgb"],
        cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    assert _one_error(proc.stderr) == (
        "error: model.representation: unknown representation 'rgb'; choose one of: magnitude, "
        "log_magnitude, grayscale, colormap, image_codec, pcen, stacked, learned_power, learned_pcen"
    )
    assert not (tmp_path / "runs").exists()


# ============================================================================ datasets
def _speech_folder(root: Path, bad: bool) -> Path:
    """Three speakers (parent folder = speaker id) of 1.2-s noisy harmonic signals; with
    ``bad`` also a text file named .wav, an empty file and a header-only WAV."""
    from tests.conftest import harmonic_speechlike

    for s in range(3):
        for u in range(2):
            _wav(root / f"spk{s}" / f"u{u}.wav", harmonic_speechlike(1.2, SR, seed=10 * s + u))
    if bad:
        (root / "spk0" / "text.wav").write_text("not audio")
        (root / "spk1" / "empty.wav").write_bytes(b"")
        sf.write(str(root / "spk2" / "header_only.wav"), np.zeros(0, np.float32), SR)
    return root


def test_datamodule_skips_unreadable_speech_with_a_counted_warning(tmp_path: Path, cache: Path) -> None:
    folder = _speech_folder(tmp_path / "speech", bad=True)
    dm = DereverbDataModule(speech=str(folder), segment_seconds=0.5, batch_size=2, train_items=4, val_items=2,
                            test_items=2, rir_bank_sizes=(4, 2, 2), rir_cache_dir=str(cache), rir_max_order=10,
                            rir_calibrate=0, room=RoomSampler(t60_range=(0.3, 0.5)))
    with pytest.warns(CorpusWarning, match=r"skipped 3 unreadable audio file\(s\)") as rec:
        dm.setup("fit")
    assert len([w for w in rec if issubclass(w.category, CorpusWarning)]) == 1
    assert sorted(p.name for p in dm.speech_source().skipped) == ["empty.wav", "header_only.wav", "text.wav"]
    batch = next(iter(dm.train_dataloader()))  # training data still flows
    assert batch["reverb"].shape == (2, SR // 2) and torch.isfinite(batch["reverb"]).all()


def test_training_on_a_folder_with_unreadable_files_runs(tmp_path: Path, cache: Path, capsys, monkeypatch) -> None:
    """A smoke run (fast_dev_run) over a folder with unreadable files trains, warns once, and
    writes nothing (no logs, no last.ckpt in the working folder)."""
    folder = _speech_folder(tmp_path / "speech", bad=True)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(CorpusWarning, match=r"skipped 3 unreadable audio file\(s\)"):
        rc = train_mod.main([*tiny(tmp_path, cache), "--trainer.fast_dev_run", "1", "--data.speech", str(folder)])
    err = capsys.readouterr().err
    assert rc == 0 and not _errors(err), err
    assert [f for f in _files(tmp_path) if not f.startswith("speech")] == []


# ============================================================================ predict
def _header_only(p: Path) -> Path:
    sf.write(str(p), np.zeros((0, 1), np.float32), SR, subtype="FLOAT")
    return p


def _truncated_data(p: Path) -> Path:
    _wav(p, _noise((8000,)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 8000])  # header promises 8000 frames, 6000 are there
    return p


def _truncated_header(p: Path) -> Path:
    _wav(p, _noise((8000,)))
    p.write_bytes(p.read_bytes()[:30])
    return p


def _with_value(p: Path, value: float) -> Path:
    x = _noise((8000,))
    x[5000] = value
    return _wav(p, x)


# case -> (make input(tmp) -> path, expected rc, text in the error line or None)
PREDICT_INPUTS = {
    "missing_file": (lambda t: t / "gone.wav", 2, "file not found"),
    "empty_file": (lambda t: _put(t / "empty.wav", b""), 2, "empty (0 bytes)"),
    "header_without_samples": (lambda t: _header_only(t / "header.wav"), 2, "contains no samples"),
    "truncated_header": (lambda t: _truncated_header(t / "cut.wav"), 2, "cannot decode audio"),
    "text_named_wav": (lambda t: _put(t / "text.wav", b"hello"), 2, "cannot decode audio"),
    "nan_samples": (lambda t: _with_value(t / "nan.wav", np.nan), 2, "NaN or Inf"),
    "inf_samples": (lambda t: _with_value(t / "inf.wav", np.inf), 2, "NaN or Inf"),
    "folder_without_audio": (lambda t: _put(t / "docs" / "a.txt", b"x").parent, 2, "folder has no audio files"),
}


@pytest.mark.parametrize("case", list(PREDICT_INPUTS))
def test_predict_bad_input_is_one_line_exit_2(case: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    make, rc_expected, text = PREDICT_INPUTS[case]
    (tmp_path / "in").mkdir()
    src = make(tmp_path / "in")
    before = {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()}
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "out"), str(src), "--phase", "reverberant"])
    err = capsys.readouterr().err
    assert rc == rc_expected
    _one_error(err, src.name, text)
    assert not (tmp_path / "out").exists()  # no output, no .partial, no empty folder
    assert {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()} == before


# case -> (make checkpoint(tmp, good ckpt) -> path, text in the error line)
PREDICT_CKPTS = {
    "missing": (lambda t, c: t / "gone.ckpt", "checkpoint not found"),
    "empty": (lambda t, c: _put(t / "e.ckpt", b""), "empty (0 bytes)"),
    "truncated": (lambda t, c: _put(t / "cut.ckpt", c.read_bytes()[:5000]), "truncated or corrupt"),
    "text": (lambda t, c: _put(t / "t.ckpt", b"hello"), "neither a torch archive nor a pickle"),
    "plain_dict": (lambda t, c: torch.save({"w": torch.ones(2)}, t / "d.ckpt") or t / "d.ckpt", "not a Lightning checkpoint"),
    "other_model": (lambda t, c: _other_model_ckpt(t / "other.ckpt"), "not a DereverbModule checkpoint"),
}


@pytest.mark.parametrize("case", list(PREDICT_CKPTS))
def test_predict_bad_checkpoint_is_one_line_exit_2(case: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    bad = PREDICT_CKPTS[case][0](tmp_path, ckpt)
    src = _wav(tmp_path / "a.wav", _noise((4000,)))
    rc = predict.main(["--ckpt", str(bad), "-o", str(tmp_path / "out"), str(src)])
    err = capsys.readouterr().err
    assert rc == 2
    _one_error(err, bad.name, PREDICT_CKPTS[case][1])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "mention"),
    [(["--bogus", "1"], "unrecognized arguments: --bogus"), (["--iters", "many"], "iters"),
     (["--phase", "nope"], "invalid choice: 'nope'"), (["--chunk-seconds", "-2"], "chunk_seconds")],
    ids=["unknown_option", "wrong_type", "bad_choice", "bad_value"],
)
def test_predict_usage_errors_are_one_line(argv: list[str], mention: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "o"), str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert _one_error(err, mention).endswith("(see python -m dereverb.predict --help)")


def test_predict_unwritable_output_and_output_equal_to_input(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = _wav(tmp_path / "a.wav", _noise((4000,)))
    (tmp_path / "afile").write_text("x")
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "afile" / "out"), str(src)])
    _one_error(capsys.readouterr().err, "afile", "cannot write to the output folder")
    assert rc == 2
    before = src.read_bytes()
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(src), str(src), "--force"])
    _one_error(capsys.readouterr().err, "a.wav", "is an input file")
    assert rc == 2 and src.read_bytes() == before


# case -> (signal (C, L), rate)
PREDICT_ODD = {
    "8k": (lambda: _noise((1, 8000)), 8000),
    "48k": (lambda: _noise((1, 48000)), 48000),
    "6_channels": (lambda: _noise((6, 8000)), SR),
    "10ms": (lambda: _noise((1, 160)), SR),
    "all_zero": (lambda: np.zeros((1, 8000), np.float32), SR),
}


@pytest.mark.parametrize("case", list(PREDICT_ODD))
def test_predict_odd_but_valid_audio_keeps_rate_channels_length(case: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    make, sr = PREDICT_ODD[case]
    x = make()
    src = _wav(tmp_path / "x.wav", x, sr)
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "out"), str(src), "--phase", "reverberant"])
    err = capsys.readouterr().err
    assert rc == 0 and not _errors(err), err
    y, ysr = sf.read(str(tmp_path / "out" / "x.wav"), dtype="float32", always_2d=True)
    assert ysr == sr and y.shape == x.T.shape and np.isfinite(y).all()
    if case == "all_zero":
        assert not np.any(y) and "warning:" in err and "silent" in err
    else:
        assert np.abs(y).max() > 0


def test_predict_truncated_data_is_processed_with_a_warning(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = _truncated_data(tmp_path / "cut.wav")
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "out"), str(src), "--phase", "reverberant"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning:" in err and "truncated?" in err and "cut.wav" in err
    assert sf.info(str(tmp_path / "out" / "cut.wav")).frames == 6000


def test_predict_streams_a_long_file_in_bounded_reads(ckpt: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """The streaming path reads one chunk (+ context) at a time whatever the file's length; the
    1-hour memory figure (0.99 GB peak RSS, flat while streaming) is in docs/predict.md."""
    src = _wav(tmp_path / "long.wav", _noise((30 * SR,)))
    reads: list[int] = []
    real_open = files._open_audio

    def spying_open(path: Path):
        f = real_open(path)
        real_read = f.read

        def read(n: int = -1, *a, **k):
            reads.append(n)
            return real_read(n, *a, **k)

        f.read = read
        return f

    monkeypatch.setattr(files, "_open_audio", spying_open)
    rc = predict.main(["--ckpt", str(ckpt), "-o", str(tmp_path / "out"), str(src), "--phase", "reverberant",
                       "--chunk-seconds", "2", "--context-seconds", "0.25"])
    assert rc == 0, capsys.readouterr().err
    assert len(reads) >= 14 and max(reads) <= 4 * SR  # ~2.5 s per read for a 30-s file
    assert sf.info(str(tmp_path / "out" / "long.wav")).frames == 30 * SR


@pytest.mark.slow
def test_predict_sigkill_leaves_no_partial_output_and_rerun_continues(ckpt: Path, tmp_path: Path, capsys) -> None:
    """Kill a real ``python -m dereverb.predict`` mid-file: the finished output is complete,
    the one being written exists only as ``.name.partial``; a re-run skips the finished file
    and completes the rest."""
    _wav(tmp_path / "in" / "a.wav", _noise((SR,)))
    _wav(tmp_path / "in" / "b.wav", _noise((40 * SR,), seed=1))
    out = tmp_path / "out"
    argv = ["--ckpt", str(ckpt), "-o", str(out), str(tmp_path / "in"), "--phase", "reverberant",
            "--chunk-seconds", "1", "--context-seconds", "0.25"]
    log = tmp_path / "predict.log"
    partial = out / ".b.wav.partial"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dereverb.predict", *argv], cwd=tmp_path,
                                env=SUBPROCESS_ENV, stdout=f, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: (out / "a.wav").exists() and partial.exists() and partial.stat().st_size > 50_000,
                      240, proc, log)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            proc.kill()
    assert not (out / "b.wav").exists()
    assert _files(out) == [".b.wav.partial", "a.wav"]
    assert sf.info(str(out / "a.wav")).frames == SR
    a_bytes = (out / "a.wav").read_bytes()

    rc = predict.main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "a.wav: exists, skipped" in cap.err and "1 written, 1 skipped" in cap.out
    assert _files(out) == ["a.wav", "b.wav"]  # the leftover .partial was replaced and renamed
    assert (out / "a.wav").read_bytes() == a_bytes and sf.info(str(out / "b.wav")).frames == 40 * SR


# ============================================================================ evaluate
@pytest.fixture
def paired(tmp_path: Path) -> Path:
    from dereverb.data.pairs import make_pair
    from tests.conftest import harmonic_speechlike, toy_rir

    root = tmp_path / "pairs"
    for i in range(3):
        reverb, clean = make_pair(harmonic_speechlike(1.0, SR, i), toy_rir(0.4, SR, i), 0, SR, "dry", -3.0)
        write_audio(root / "reverb" / f"u{i}.wav", reverb, SR)
        write_audio(root / "clean" / f"u{i}.wav", clean, SR)
    return root


EVAL_FAST = ["--baselines", "reverberant", "--srmr", "none", "--bootstrap", "20", "--no-progress"]


def _eval(capsys, *argv: str | Path) -> tuple[int, str, str]:
    rc = evaluate.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _eval_error(err: str, *mentions: str) -> str:
    """evaluate prints ``error: ...`` (one line), as every command does."""
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    return lines[0]


# case -> (modify the paired folder / build args, text in the error line)
def _eval_case(case: str, paired: Path, ckpt: Path, tmp: Path) -> tuple[list[str], list[str]]:
    out = ["-o", str(tmp / "out")]
    src = ["--paired", str(paired)]
    if case == "missing_ckpt":
        return [*src, "--ckpt", str(tmp / "gone.ckpt"), *out], ["gone.ckpt", "not found"]
    if case == "text_ckpt":
        (tmp / "t.ckpt").write_text("hello")
        return [*src, "--ckpt", str(tmp / "t.ckpt"), *out], ["t.ckpt"]
    if case == "truncated_ckpt":
        (tmp / "cut.ckpt").write_bytes(ckpt.read_bytes()[:5000])
        return [*src, "--ckpt", str(tmp / "cut.ckpt"), *out], ["cut.ckpt", "truncated"]
    if case == "other_model_ckpt":
        return [*src, "--ckpt", str(_other_model_ckpt(tmp / "other.ckpt")), *out], ["other.ckpt", "not a DereverbModule"]
    if case in ("empty_file", "text_named_wav", "header_without_samples", "nan_samples", "truncated_header"):
        p = paired / "reverb" / "u1.wav"
        if case == "empty_file":
            p.write_bytes(b"")
        elif case == "text_named_wav":
            p.write_text("hello")
        elif case == "header_without_samples":
            _header_only(p)
        elif case == "nan_samples":
            _with_value(p, np.nan)
        else:
            _truncated_header(p)
        return [*src, *out], ["u1.wav"]
    if case == "folder_without_audio":
        (tmp / "empty" / "reverb").mkdir(parents=True)
        (tmp / "empty" / "clean").mkdir()
        return ["--paired", str(tmp / "empty"), *out], ["no audio files"]
    if case == "missing_folder":
        return ["--paired", str(tmp / "nowhere"), *out], ["nowhere", "not found"]
    if case == "unwritable_output":
        (tmp / "afile").write_text("x")
        return [*src, "-o", str(tmp / "afile" / "out")], ["-o", "afile", "is a file"]
    raise AssertionError(case)


EVAL_CASES = ["missing_ckpt", "text_ckpt", "truncated_ckpt", "other_model_ckpt", "empty_file", "text_named_wav",
              "header_without_samples", "nan_samples", "truncated_header", "folder_without_audio", "missing_folder",
              "unwritable_output"]


@pytest.mark.parametrize("case", EVAL_CASES)
def test_evaluate_bad_input_is_one_line_exit_2(case: str, paired: Path, ckpt: Path, tmp_path: Path, capsys) -> None:
    argv, mentions = _eval_case(case, paired, ckpt, tmp_path)
    rc, _, err = _eval(capsys, *argv, *EVAL_FAST)
    assert rc == 2
    _eval_error(err, *mentions)
    assert not (tmp_path / "out" / "results.md").exists()


@pytest.mark.parametrize(("argv", "mention"), [(["--bogus"], "unrecognized arguments"), (["--n-items", "x"], "n_items")],
                         ids=["unknown_option", "wrong_type"])
def test_evaluate_usage_errors_are_one_line(argv: list[str], mention: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        evaluate.main(["-o", str(tmp_path / "o"), *argv])
    assert e.value.code == 2
    _eval_error(capsys.readouterr().err, mention)


def test_evaluate_odd_rates_and_channels_are_downmixed_and_resampled(paired: Path, tmp_path: Path, capsys) -> None:
    """8 kHz, 48 kHz and 6-channel files in a paired folder: read, downmixed, resampled."""
    from dereverb.signals.audio import read_audio, resample

    for name, sr, ch in (("u0", 8000, 1), ("u1", 48000, 1), ("u2", SR, 6)):
        for side in ("reverb", "clean"):
            x, _ = read_audio(paired / side / f"{name}.wav")
            write_audio(paired / side / f"{name}.wav", np.repeat(resample(x, SR, sr), ch, axis=0), sr)
    rc, out, err = _eval(capsys, "--paired", paired, "-o", tmp_path / "out", *EVAL_FAST)
    assert rc == 0, err
    assert (tmp_path / "out" / "results.md").exists()


def test_evaluate_interrupted_run_writes_no_table_and_rerun_reuses_scores(
    paired: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from dereverb.evaluation import scoring

    out = tmp_path / "out"
    real = scoring.score_item
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(scoring, "score_item", interrupting)
    rc, _, err = _eval(capsys, "--paired", paired, "-o", out, *EVAL_FAST)
    assert rc == 130 and "re-run to continue" in err
    assert (out / "cache").is_dir() and [f for f in _files(out) if not f.startswith("cache")] == []  # no tables
    monkeypatch.setattr(scoring, "score_item", real)
    rc, _, err = _eval(capsys, "--paired", paired, "-o", out, *EVAL_FAST)
    assert rc == 0, err
    import json

    stats = json.loads((out / "results.json").read_text())["meta"]["stats"]
    assert stats["cached"] == 2 and stats["computed"] == 1  # continued where it stopped
    assert not [n for n in _files(out) if n.endswith(".tmp")]
    rc, _, err = _eval(capsys, "--paired", paired, "-o", out, *EVAL_FAST)
    assert rc == 2 and "--force" in _eval_error(err, "results.md")  # finished tables are not overwritten


@pytest.mark.parametrize("text, message", [
    (None, "--config {p}: file not found; pass a study config such as configs/study.yaml"),
    ("a: [1, 2\n", "--config {p}: not valid YAML (while parsing a flow sequence)"),
    ("- 1\n- 2\n", "--config {p}: expected a mapping with arms, train and profiles"),
])
def test_yaml_configs_are_refused_in_one_line_naming_option_and_file(tmp_path, text, message):
    """The one reader behind ``evaluate --datamodule-config`` and ``study --config``."""
    from dereverb.cli_errors import read_yaml_mapping
    from dereverb.evaluation.sources import EvaluationError, load_datamodule_config
    from dereverb.experiment.config import StudyError

    p = tmp_path / "c.yaml"
    if text is not None:
        p.write_text(text)
    with pytest.raises(StudyError) as exc:
        read_yaml_mapping(p, option="--config", example="a study config such as configs/study.yaml",
                          expected="a mapping with arms, train and profiles", error=StudyError)
    assert str(exc.value) == message.format(p=p)
    with pytest.raises(EvaluationError, match=r"^--datamodule-config .*c\.yaml: "):
        load_datamodule_config(p)


def test_empty_yaml_config_reads_as_an_empty_mapping(tmp_path):
    from dereverb.cli_errors import read_yaml_mapping

    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "empty.yaml", option="--config", example="x",
                             expected="y", error=ValueError) == {}
