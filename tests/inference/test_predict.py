"""Tests for ``dereverb.predict`` (CLI + Python API) and ``dereverb.signals.chunking``.

Models are tiny and untrained (base_channels=4, depth=2); checkpoints are written by a real
``lightning.Trainer`` so their format is the one ``python -m dereverb.train`` produces.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from dereverb.inference import enhance
from dereverb.inference.enhance import grid_alignment
from dereverb.models.dereverber import Dereverber
from dereverb.predict import CheckpointError, dereverberate, load_model, main
from dereverb.training.module import DereverbModule
from tests.conftest import noise, write_wav

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- fixtures
class _Pairs(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {
            "reverb": torch.randn(4000, generator=g) * 0.1,
            "clean": torch.randn(4000, generator=g) * 0.1,
        }


def _trainer(root: Path) -> L.Trainer:
    return L.Trainer(
        max_steps=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Lightning checkpoint of a tiny log-magnitude model (no per-utterance normalisation;
    batch norm in eval mode uses running statistics, so processing is chunk-invariant)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = DereverbModule(
        net={"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}},
        representation="log_magnitude",
        scheduler="none",
        val_metric_batches=0,
    )
    trainer = _trainer(root)
    trainer.fit(model, DataLoader(_Pairs(), batch_size=2))
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt: Path) -> Dereverber:
    return load_model(ckpt, "cpu")


_noise = noise


_write = write_wav


def _run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _files(folder: Path) -> list[Path]:
    return (
        sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


# ---------------------------------------------------------------------------- chunking
def test_grid_alignment_is_a_whole_number_of_pooled_hops_at_the_model_rate() -> None:
    for sr in (8000, 16000, 22050, 44100, 48000):
        for frames in (1, 4, 16):
            step = grid_alignment(sr, 16000, 128, frames)
            assert (step * 16000) % (128 * frames * sr) == 0, (sr, frames)
    assert grid_alignment(44100, 16000, 128) == 1764  # 40 ms = 5 hops
    assert grid_alignment(16000, 16000, 128, 16) == 2048
    # 32 frames at 44.1 kHz would need 1.28 s: fall back to 16 frames (0.64 s).
    assert grid_alignment(44100, 16000, 128, 32) == grid_alignment(44100, 16000, 128, 16) == 28224


def test_chunk_settings_sit_on_the_grid(model: Dereverber) -> None:
    s = enhance.ChunkSettings.make(44100, model, 10.0, 1.0)
    step = grid_alignment(44100, 16000, 128, 2**model.net.depth)
    assert s.chunk % step == 0 and s.context % step == 0 and s.context >= 44100
    assert 0 < s.fade <= s.context // 2


def test_reads_stay_bounded(model: Dereverber) -> None:
    """The streaming loop only ever asks for one segment (core + context) at a time; the level
    pass before it reads the file in chunk-sized blocks."""
    sr, length = 16000, 16000 * 3
    x = _noise((1, length))
    reads: list[int] = []

    def read(a: int, b: int) -> np.ndarray:
        reads.append(b - a)
        return x[:, a:b]

    out: list[np.ndarray] = []
    settings = enhance.ChunkSettings.make(sr, model, 0.4, 0.1)
    enhance.run_chunks(
        model,
        length,
        1,
        sr,
        read,
        out.append,
        phase="reverberant",
        n_iter=None,
        settings=settings,
        batch_size=2,
    )
    level_reads = -(-length // settings.chunk)
    assert len(reads) == level_reads + 8 and max(reads) <= settings.chunk * 1.5 + 2 * settings.context
    assert sum(b.shape[1] for b in out) == length


# ---------------------------------------------------------------------------- Python API
def test_checkpoint_loads_with_weights_only(ckpt: Path, model: Dereverber) -> None:
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["net"]["init_args"]["base_channels"] == 4
    assert isinstance(model, Dereverber) and not model.training
    from dereverb.models.checkpoints import build_model, read_model

    built = build_model(read_model(ckpt), ckpt)  # before load_model folds the batch norms
    for k, v in built.state_dict().items():
        torch.testing.assert_close(v, raw["state_dict"][f"model.{k}"])


def test_lean_path_matches_the_lightning_module_within_1e_5(ckpt: Path, model: Dereverber) -> None:
    """The Lightning-free loader gives the LightningModule's own numbers: same magnitude
    estimate and the same waveform through warm-started Griffin-Lim."""
    lit = DereverbModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    x = torch.from_numpy(_noise((2, 8000), seed=3))
    with torch.no_grad():
        y_lit, ctx = lit(lit.model.analyse(x)[1])
        y_lean, _ = model(model.analyse(x)[1])
        torch.testing.assert_close(y_lean, y_lit, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.decode(y_lean, ctx), lit.model.decode(y_lit, ctx), atol=1e-5, rtol=0)
    w_lit = lit.model.enhance(x, phase="griffinlim-warm", n_iter=4)
    w_lean = model.enhance(x, phase="griffinlim-warm", n_iter=4)
    assert float((w_lit - w_lean).abs().max()) <= 1e-5


def test_import_predict_loads_no_training_stack() -> None:
    """``import dereverb.predict`` (and the inference API) pulls in neither Lightning nor
    TensorBoard nor the training module: checked in a fresh interpreter."""
    code = (
        "import sys, dereverb.predict, dereverb.inference\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'tensorboard')"
        " or m in ('dereverb.training.module', 'dereverb.train', 'dereverb.data.datamodule', 'dereverb.signals.metrics')]\n"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported by dereverb.predict: {out}"


@pytest.mark.parametrize("sr", [16000, 44100])
def test_chunked_matches_unchunked(model: Dereverber, sr: int) -> None:
    """Tolerance found: max |diff| <= 6e-8 for a peak of ~0.3 (float32 noise) at 8-48 kHz, over
    the whole signal including its edges, because chunk starts sit on the STFT-hop x U-Net
    pooling grid (without the pooling alignment it was ~1e-4 of the peak). Without context the
    seams differ by ~5e-3 of the peak, so the bound detects a broken context/crossfade."""
    x = _noise((2 if sr == 16000 else 1, int(2.6 * sr)), seed=sr)
    whole = dereverberate(x, sr, model, phase="reverberant", chunk_seconds=None)
    chunked = dereverberate(
        x, sr, model, phase="reverberant", chunk_seconds=1.0, context_seconds=0.25, batch_size=2
    )
    peak = np.abs(whole).max()
    assert np.abs(whole - chunked).max() <= 1e-5 * peak
    no_context = dereverberate(
        x, sr, model, phase="reverberant", chunk_seconds=1.0, context_seconds=0.0
    )
    assert np.abs(whole - no_context).max() > 1e-4 * peak


def test_dereverberate_keeps_type_shape_and_channels_independent(model: Dereverber) -> None:
    sr = 22050
    x = _noise((2, sr // 2))
    y = dereverberate(x, sr, model, phase="reverberant")
    assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == np.float32
    mono = dereverberate(x[1], sr, model, phase="reverberant")
    assert mono.shape == (sr // 2,)
    np.testing.assert_allclose(
        mono, y[1], atol=1e-5
    )  # channel 1 alone == channel 1 of the stereo run
    assert np.abs(y - x).max() > 1e-3  # the model changed something
    t = dereverberate(torch.from_numpy(x[0]), sr, model, phase="reverberant")
    assert isinstance(t, torch.Tensor) and t.shape == (sr // 2,)
    np.testing.assert_allclose(t.numpy(), y[0], atol=1e-5)


def test_dereverberate_griffin_lim_is_finite_and_deterministic(model: Dereverber) -> None:
    x = _noise((1, 8000))
    a = dereverberate(x, 16000, model, phase="griffinlim", n_iter=2)
    b = dereverberate(x, 16000, model, phase="griffinlim", n_iter=2)
    assert np.isfinite(a).all() and np.array_equal(a, b)


def test_dereverberate_rejects_bad_arguments(model: Dereverber) -> None:
    with pytest.raises(ValueError, match="phase"):
        dereverberate(_noise((100,)), 16000, model, phase="magic")
    with pytest.raises(ValueError, match="NaN"):
        dereverberate(np.full(100, np.nan, np.float32), 16000, model)
    with pytest.raises(ValueError, match=r"\(L,\) or \(C, L\)"):
        dereverberate(np.zeros((1, 1, 10), np.float32), 16000, model)


# ---------------------------------------------------------------------------- CLI: outputs
def test_help_works(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in (
        "--ckpt",
        "--phase",
        "--iters",
        "--chunk-seconds",
        "--context-seconds",
        "--batch-size",
        "--device",
        "--force",
        "--debug",
    ):
        assert opt in out


def test_stereo_44k_keeps_rate_channels_length(
    ckpt: Path, model: Dereverber, tmp_path: Path, capsys
) -> None:
    x = _noise((2, int(1.1 * 44100)))
    src = _write(tmp_path / "in" / "stereo.wav", x, 44100)
    rc, out, err = _run(
        capsys,
        "--ckpt",
        ckpt,
        "-o",
        tmp_path / "out",
        src,
        "--phase",
        "reverberant",
        "--chunk-seconds",
        "0.5",
        "--context-seconds",
        "0.1",
    )
    assert rc == 0, err
    dst = tmp_path / "out" / "stereo.wav"
    info = sf.info(str(dst))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (
        44100,
        2,
        x.shape[1],
        "FLOAT",
    )
    y, _ = sf.read(str(dst), dtype="float32", always_2d=True)
    expected = dereverberate(
        x, 44100, model, phase="reverberant", chunk_seconds=0.5, context_seconds=0.1
    )
    np.testing.assert_allclose(y.T, expected, atol=1e-6)  # the streaming path == the in-memory path
    assert f"{src} -> {dst}" in out
    assert _files(tmp_path / "out") == [Path("stereo.wav")]  # no temporary files left


@pytest.mark.parametrize(
    ("sr", "n"),
    [(16000, 160), (44100, 441), (8000, 16000)],
    ids=["10ms-16k", "10ms-44k", "mono-8k"],
)
def test_short_and_low_rate_files(ckpt: Path, tmp_path: Path, capsys, sr: int, n: int) -> None:
    src = _write(tmp_path / "x.flac", _noise((n,)), sr)
    out = tmp_path / "o.wav"
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", out, src, "--iters", "2")
    assert rc == 0, err
    y, ysr = sf.read(str(out), dtype="float32", always_2d=True)
    assert ysr == sr and y.shape == (n, 1) and np.isfinite(y).all() and np.abs(y).max() > 0


def test_silent_input_gives_silence_and_a_warning(ckpt: Path, tmp_path: Path, capsys) -> None:
    src = _write(tmp_path / "zero.wav", np.zeros(8000, np.float32), 16000)
    rc, _, err = _run(
        capsys, "--ckpt", ckpt, "-o", tmp_path / "out", src, "--phase", "griffinlim", "--iters", "2"
    )
    assert rc == 0
    assert "warning:" in err and "zero.wav" in err and "silent" in err
    y, _ = sf.read(str(tmp_path / "out" / "zero.wav"))
    assert y.shape == (8000,) and not np.any(y)


def test_existing_output_is_skipped_and_force_overwrites(
    ckpt: Path, tmp_path: Path, capsys
) -> None:
    a = _write(tmp_path / "in" / "a.wav", _noise((4000,)), 16000)
    b = _write(tmp_path / "in" / "b.wav", _noise((4000,), seed=1), 16000)
    out = tmp_path / "out"
    _write(out / "a.wav", np.ones(10, np.float32), 16000)  # a previous (killed) run finished a.wav
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", out, tmp_path / "in", "--phase", "reverberant")
    assert rc == 0
    assert "a.wav" in err and "skipped" in err and "--force" in err
    assert sf.info(str(out / "a.wav")).frames == 10  # untouched
    assert sf.info(str(out / "b.wav")).frames == 4000  # the missing one was made
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", out, a, b, "--phase", "reverberant", "--force")
    assert rc == 0 and "skipped" not in err
    assert sf.info(str(out / "a.wav")).frames == 4000


def test_folder_recursion_and_globs_mirror_paths(
    ckpt: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    src = tmp_path / "corpus"
    _write(src / "s1" / "u1.wav", _noise((3000,)), 16000)
    _write(src / "s1" / "deep" / "u2.flac", _noise((3000,), 1), 16000)
    _write(src / "s2" / "u3.ogg", _noise((3000,), 2), 16000)
    (src / "s2" / "notes.txt").write_text("not audio")
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", tmp_path / "out", src, "--phase", "reverberant")
    assert rc == 0, err
    assert _files(tmp_path / "out") == [
        Path("s1/deep/u2.wav"),
        Path("s1/u1.wav"),
        Path("s2/u3.wav"),
    ]
    # Globs (quoted, as a shell that does not expand them would pass them), relative to the cwd;
    # outputs mirror paths below each pattern's literal folder; non-audio matches are ignored.
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(
        capsys,
        "--ckpt",
        ckpt,
        "-o",
        "globbed",
        "corpus/**/*.flac",
        "corpus/s2/*",
        "--phase",
        "reverberant",
    )
    assert rc == 0, err
    assert _files(tmp_path / "globbed") == [Path("s1/deep/u2.wav"), Path("u3.wav")]
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", "none", "corpus/**/*.mp3")
    assert rc == 2 and "corpus/**/*.mp3" in err and "no audio files match" in err


def test_output_folder_inside_input_folder_is_not_reprocessed(
    ckpt: Path, tmp_path: Path, capsys
) -> None:
    _write(tmp_path / "d" / "a.wav", _noise((3000,)), 16000)
    for _ in range(2):  # the second run must not pick up d/out/a.wav as an input
        rc, _, err = _run(
            capsys,
            "--ckpt",
            ckpt,
            "-o",
            tmp_path / "d" / "out",
            tmp_path / "d",
            "--phase",
            "reverberant",
        )
        assert rc == 0, err
    assert _files(tmp_path / "d") == [Path("a.wav"), Path("out/a.wav")]


def test_a_bad_file_does_not_stop_the_others(ckpt: Path, tmp_path: Path, capsys) -> None:
    good = _write(tmp_path / "good.wav", _noise((3000,)), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk" * 10)
    rc, _, err = _run(
        capsys, "--ckpt", ckpt, "-o", tmp_path / "out", bad, good, "--phase", "reverberant"
    )
    assert rc == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip()]
    assert "bad.wav" in err
    assert _files(tmp_path / "out") == [Path("good.wav")]


# ---------------------------------------------------------------------------- CLI: errors
class _OtherModule(L.LightningModule):
    def __init__(self, hidden: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(hidden, 1)


def _bad_case(name: str, tmp: Path, ckpt: Path) -> tuple[list[str], str]:
    """Arguments for one failure and the file name the error line must mention."""
    good = _write(tmp / "good.wav", _noise((3000,)), 16000)
    out = tmp / "out"
    if name == "missing_input":
        return ["--ckpt", str(ckpt), "-o", str(out), str(tmp / "nope.wav")], "nope.wav"
    if name == "corrupt_input":
        (tmp / "corrupt.wav").write_bytes(os.urandom(2000))
        return ["--ckpt", str(ckpt), "-o", str(out), str(tmp / "corrupt.wav")], "corrupt.wav"
    if name == "empty_input":
        (tmp / "empty.wav").write_bytes(b"")
        return ["--ckpt", str(ckpt), "-o", str(out), str(tmp / "empty.wav")], "empty.wav"
    if name == "nan_input":
        x = _noise((20000,))
        x[17000] = np.nan  # in the second chunk: the first one is already being written
        _write(tmp / "nan.wav", x, 16000)
        return [
            "--ckpt",
            str(ckpt),
            "-o",
            str(out),
            str(tmp / "nan.wav"),
            "--chunk-seconds",
            "0.5",
            "--context-seconds",
            "0.1",
            "--batch-size",
            "1",
            "--phase",
            "reverberant",
        ], "nan.wav"
    if name == "folder_without_audio":
        (tmp / "docs").mkdir()
        (tmp / "docs" / "readme.txt").write_text("hi")
        return ["--ckpt", str(ckpt), "-o", str(out), str(tmp / "docs")], "docs"
    if name == "missing_ckpt":
        return ["--ckpt", str(tmp / "gone.ckpt"), "-o", str(out), str(good)], "gone.ckpt"
    if name == "text_ckpt":
        (tmp / "text.ckpt").write_text("this is not a checkpoint\n")
        return ["--ckpt", str(tmp / "text.ckpt"), "-o", str(out), str(good)], "text.ckpt"
    if name == "truncated_ckpt":
        data = ckpt.read_bytes()
        (tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])
        return ["--ckpt", str(tmp / "cut.ckpt"), "-o", str(out), str(good)], "cut.ckpt"
    if name == "plain_dict_ckpt":
        torch.save({"weights": torch.zeros(3)}, tmp / "dict.ckpt")
        return ["--ckpt", str(tmp / "dict.ckpt"), "-o", str(out), str(good)], "dict.ckpt"
    if name == "other_model_ckpt":
        trainer = _trainer(tmp)
        trainer.strategy.connect(_OtherModule())
        trainer.save_checkpoint(tmp / "other.ckpt")
        return ["--ckpt", str(tmp / "other.ckpt"), "-o", str(out), str(good)], "other.ckpt"
    if name == "unwritable_output":
        (tmp / "afile").write_text("x")
        out = tmp / "afile" / "out"  # a folder cannot be made inside a file (holds even for root)
        return ["--ckpt", str(ckpt), "-o", str(out), str(good)], "afile"
    if name == "output_is_input":
        return ["--ckpt", str(ckpt), "-o", str(tmp), str(good), "--force"], "good.wav"
    raise AssertionError(name)


BAD_CASES = [
    "missing_input",
    "corrupt_input",
    "empty_input",
    "nan_input",
    "folder_without_audio",
    "missing_ckpt",
    "text_ckpt",
    "truncated_ckpt",
    "plain_dict_ckpt",
    "other_model_ckpt",
    "unwritable_output",
    "output_is_input",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_line_and_exit_2(case: str, ckpt: Path, tmp_path: Path, capsys) -> None:
    argv, mention = _bad_case(case, tmp_path, ckpt)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    rc, _, err = _run(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and mention in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written, no temporary file, no empty folder
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # inputs untouched


def test_debug_shows_the_traceback(ckpt: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _run(
        capsys,
        "--ckpt",
        tmp_path / "gone.ckpt",
        "-o",
        tmp_path / "o",
        _write(tmp_path / "a.wav", _noise((100,)), 16000),
        "--debug",
    )
    assert rc == 2 and "Traceback" in err and "gone.ckpt" in err


def test_output_wav_file_needs_exactly_one_input(ckpt: Path, tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a.wav", _noise((100,)), 16000)
    b = _write(tmp_path / "b.wav", _noise((100,)), 16000)
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", tmp_path / "r.wav", a, b)
    assert rc == 2 and "r.wav" in err and "folder" in err
    assert not (tmp_path / "r.wav").exists()


def test_two_inputs_with_the_same_output_are_refused(ckpt: Path, tmp_path: Path, capsys) -> None:
    _write(tmp_path / "in" / "x.wav", _noise((1000,)), 16000)
    _write(tmp_path / "in" / "x.flac", _noise((1000,), 1), 16000)
    rc, _, err = _run(
        capsys, "--ckpt", ckpt, "-o", tmp_path / "out", tmp_path / "in", "--phase", "reverberant"
    )
    assert rc == 2 and "x.wav" in err and "rename" in err
    assert _files(tmp_path / "out") == [Path("x.wav")]


def test_device_errors_are_one_line(ckpt: Path, tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a.wav", _noise((100,)), 16000)
    rc, _, err = _run(capsys, "--ckpt", ckpt, "-o", tmp_path / "o", a, "--device", "tpu")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--device" in err


def test_load_model_refuses_another_lightning_module(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.strategy.connect(_OtherModule())
    trainer.save_checkpoint(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a DereverbModule checkpoint"):
        load_model(tmp_path / "other.ckpt")


def test_subprocess_reports_one_line_without_traceback(ckpt: Path, tmp_path: Path) -> None:
    good = _write(tmp_path / "good.wav", _noise((1000,)), 16000)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dereverb.predict",
            "--ckpt",
            str(tmp_path / "missing.ckpt"),
            "-o",
            str(tmp_path / "o"),
            str(good),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.ckpt'}: checkpoint not found; check the --ckpt path"
    ]
    assert not (tmp_path / "o").exists()


def test_corrupt_mp3_is_one_line_and_a_real_mp3_is_processed(ckpt: Path, tmp_path: Path) -> None:
    """A real MP3 (written by soundfile) is dereverberated; a corrupt one gives our one error
    line and nothing of libmpg123's own notes on the terminal."""
    t = np.arange(16000) / 16000
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "good.mp3", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format="MP3")
    raw = bytearray((tmp_path / "in" / "good.mp3").read_bytes())
    raw[400:-200] = np.random.default_rng(0).integers(0, 256, len(raw) - 600, dtype=np.uint8).tobytes()
    (tmp_path / "in" / "broken.mp3").write_bytes(bytes(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "dereverb.predict", "--ckpt", str(ckpt), "-o", str(tmp_path / "out"),
         str(tmp_path / "in"), "--phase", "reverberant"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2  # one input failed
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.mp3" in lines[0] and "corrupt" in lines[0], proc.stderr
    assert "Illegal" not in proc.stderr and "libmpg123" not in proc.stderr
    assert (tmp_path / "out" / "good.wav").exists() and not (tmp_path / "out" / "broken.wav").exists()


def test_compile_flag_gives_the_same_output(ckpt: Path, tmp_path: Path, capsys) -> None:
    """--compile (torch.compile of the U-Net, dynamic shapes) changes speed, not the result."""
    x = _noise((4000,), seed=3)
    src = _write(tmp_path / "in" / "a.wav", x, 16000)
    rc1, _, _ = _run(capsys, "--ckpt", ckpt, "-o", tmp_path / "plain", "--phase", "reverberant", "--device", "cpu", src)
    rc2, _, err = _run(capsys, "--ckpt", ckpt, "-o", tmp_path / "compiled", "--phase", "reverberant", "--device", "cpu", "--compile", src)
    assert rc1 == rc2 == 0, err
    a, _ = sf.read(tmp_path / "plain" / "a.wav")
    b, _ = sf.read(tmp_path / "compiled" / "a.wav")
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-4 * max(np.abs(a).max(), 1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("phase", ["reverberant", "griffinlim-warm"])
def test_cuda_matches_cpu(ckpt: Path, phase: str) -> None:
    """The same checkpoint on CUDA (batched chunks) gives the CPU's output to within 30 dB
    (cuDNN may use TF32 convolutions, so not bit for bit)."""
    x = _noise((3 * 16000,), seed=4)
    cpu = dereverberate(x, 16000, load_model(ckpt, "cpu"), phase=phase, n_iter=8, chunk_seconds=1.0)
    gpu = dereverberate(torch.from_numpy(x).cuda(), 16000, load_model(ckpt, "cuda"), phase=phase,
                        n_iter=8, chunk_seconds=1.0, batch_size=4)
    assert gpu.device.type == "cuda" and gpu.shape == (x.size,)
    diff = gpu.cpu().numpy() - cpu
    snr = 10 * np.log10(np.sum(cpu**2) / max(np.sum(diff**2), 1e-20))
    assert snr > 30, snr


def test_folded_batch_norms_give_the_same_output():
    """``load_model`` folds batch norms into the convolutions: same output as the unfolded model."""
    import copy

    from dereverb.inference.checkpoint import fold_batch_norms
    from dereverb.models.dereverber import Dereverber

    torch.manual_seed(0)
    model = Dereverber.from_hparams({"net": {"class_path": "dereverb.models.unet.UNet",
                                             "init_args": {"base_channels": 4, "depth": 2}}})
    with torch.no_grad():  # non-trivial statistics, so folding has something to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5)
    model.eval()
    folded = fold_batch_norms(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(1, 16000) * 0.1
    torch.testing.assert_close(folded.enhance(x, phase="reverberant"), model.enhance(x, phase="reverberant"),
                               rtol=1e-4, atol=1e-5)
