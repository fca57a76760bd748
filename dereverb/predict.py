"""``python -m dereverb.predict --ckpt X.ckpt -o OUT inputs...``: dereverberate audio files.

Inputs are files, folders (searched recursively for WAV/FLAC/OGG) and globs (expanded here, for
shells that do not). Each output is a float32 WAV with the input's sample rate, channel count
and length; it mirrors the input's path relative to the folder it was found in. Long files are
streamed: read chunk by chunk (with context on each side), processed in batches, crossfaded
back together (:mod:`dereverb.chunking`) and written incrementally to a temporary file that is
renamed at the end, so memory stays bounded and a killed run leaves no partial output.

From Python: :func:`load_model` and :func:`dereverberate`.
"""

from __future__ import annotations

import argparse
import glob
import inspect
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dereverb import dsp
from dereverb.audio import AUDIO_EXTENSIONS, AudioError, find_audio_files, open_audio, resample
from dereverb.chunking import Chunk, OverlapAdd, plan_chunks
from dereverb.cli_errors import OneLineArgumentParser
from dereverb.module import DereverbModule

DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_CONTEXT_SECONDS = 1.0
# Chunks per model call when not given: batching buys nothing on a CPU but costs memory
# (~0.7 GB per extra 12-s chunk for the default 32-channel U-Net); on a GPU it buys speed.
BATCH_SIZE_CPU, BATCH_SIZE_CUDA = 1, 4
EXIT_OK, EXIT_FAILED = 0, 2
# Hyperparameters every DereverbModule checkpoint has; their absence means another model.
_REQUIRED_HPARAMS = (
    "representation",
    "target",
    "base_channels",
    "depth",
    "sample_rate",
    "n_fft",
    "hop_length",
)
_GLOB_CHARS = set("*?[")


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message names the file and the fix."""


class UsageError(Exception):
    """A bad command-line combination (output path, device); the message says what to do."""


# ---------------------------------------------------------------------------- model
def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UsageError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); pick cuda:0.."
            )
    elif dev.type != "cpu":
        raise UsageError(f"--device {name}: unsupported; use auto, cpu, cuda or cuda:N")
    return dev


def read_checkpoint(ckpt_path: str | os.PathLike, option: str = "--ckpt") -> dict:
    """Read a ``DereverbModule`` checkpoint dict with ``torch.load(weights_only=True)`` (CPU).

    Raises :class:`CheckpointError` (its message names the file, ``option`` and the fix) for a
    missing, empty, truncated or non-checkpoint file, a file holding Python objects, a plain
    dict, or another model's Lightning checkpoint (no DereverbModule hyperparameters).
    """
    p = Path(ckpt_path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint not found; check the {option} path")
    if p.is_dir():
        raise CheckpointError(
            f"{p}: is a folder; pass a .ckpt file (e.g. runs/<name>/version_0/checkpoints/last.ckpt)"
        )
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: checkpoint is empty (0 bytes); use another checkpoint")
    with open(p, "rb") as f:
        head = f.read(4)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a usable checkpoint"
        msg = str(exc).lower()
        if head == b"PK\x03\x04" or "zip archive" in msg:  # torch's archive, cut short or damaged
            raise CheckpointError(
                f"{p}: checkpoint is truncated or corrupt (its archive cannot be read); copy it again or use another one"
            ) from exc
        if head[:1] != b"\x80":  # neither an archive nor a (legacy) pickle: text, HTML, audio...
            raise CheckpointError(
                f"{p}: not a PyTorch checkpoint (the file is neither a torch archive nor a pickle); "
                "pass a .ckpt written by python -m dereverb.train"
            ) from exc
        if "weights only" in msg or "weights_only" in msg:
            raise CheckpointError(
                f"{p}: holds Python objects that cannot be loaded safely (weights_only=True); "
                "use a checkpoint written by python -m dereverb.train"
            ) from exc
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({type(exc).__name__} while loading); "
            "pass a .ckpt written by python -m dereverb.train"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(
            f"{p}: not a Lightning checkpoint (no state_dict / hyper_parameters); "
            "use a checkpoint written by python -m dereverb.train"
        )
    missing = [k for k in _REQUIRED_HPARAMS if k not in ckpt["hyper_parameters"]]
    if missing:
        raise CheckpointError(
            f"{p}: not a DereverbModule checkpoint (hyperparameters lack {', '.join(missing)}); "
            "use a checkpoint written by python -m dereverb.train"
        )
    return ckpt


def compile_model(model: DereverbModule) -> DereverbModule:
    """Compile the U-Net with ``torch.compile`` (dynamic shapes: chunks differ in length).

    Only the network is compiled; STFT, representation and Griffin-Lim stay eager in float32.
    """
    model.net = torch.compile(model.net, dynamic=True)
    return model


def load_model(ckpt_path: str | os.PathLike, device: str | torch.device = "cpu") -> DereverbModule:
    """Load a :class:`DereverbModule` checkpoint written by ``python -m dereverb.train`` (eval mode).

    The file is read with ``torch.load(weights_only=True)``, so a checkpoint cannot run code.
    Raises :class:`CheckpointError` for a missing, truncated or non-checkpoint file, one of a
    different model (no DereverbModule hyperparameters) or weights that do not fit the model.
    """
    p = Path(ckpt_path)
    ckpt = read_checkpoint(p)
    hp = dict(ckpt["hyper_parameters"])
    # LightningCLI bookkeeping keys; the class is always DereverbModule here.
    hp.pop("_instantiator", None)
    hp.pop("_class_path", None)
    accepted = set(inspect.signature(DereverbModule.__init__).parameters) - {"self"}
    try:
        model = DereverbModule(**{k: v for k, v in hp.items() if k in accepted})
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p}: weights or hyperparameters do not fit this version of DereverbModule ({reason[:160]}); "
            "use a checkpoint trained with this version"
        ) from exc
    return model.to(device).eval()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def default_batch_size(device: torch.device) -> int:
    """Chunks per model call when none is given: 1 on CPU, 4 on CUDA."""
    return BATCH_SIZE_CUDA if device.type == "cuda" else BATCH_SIZE_CPU


# ---------------------------------------------------------------------------- core processing
def _enhance_rows(
    model: DereverbModule, rows: torch.Tensor, phase: str | None, n_iter: int | None
) -> torch.Tensor:
    """``(B, L)`` at the model's rate -> ``(B, L)``; pads inputs shorter than one STFT frame
    (reflect padding needs more than ``n_fft // 2`` samples) with zeros and crops back.
    All-zero rows give exact zeros (no hallucinated output from silence)."""
    length = rows.shape[-1]
    n_fft = model.stft_cfg.n_fft
    x = torch.nn.functional.pad(rows, (0, n_fft - length)) if length < n_fft else rows
    y = model.enhance(x, phase=phase, n_iter=n_iter)[..., :length]
    silent = ~rows.ne(0).any(dim=-1)
    if silent.any():
        y = y.masked_fill(silent[:, None], 0.0)
    return y


def _process_segments(
    model: DereverbModule,
    segments: Sequence[np.ndarray],
    sample_rate: int,
    phase: str | None,
    n_iter: int | None,
) -> list[np.ndarray]:
    """Dereverberate segments ``(C, n_i)`` at ``sample_rate`` -> same shapes, float32.

    Segments of equal length are batched together (all channels at once); each is resampled
    to the model's rate *with* its context and back, then cropped, so resampling adds no seam.
    """
    device = model_device(model)
    model_sr = int(model.hparams.sample_rate)
    out: list[np.ndarray | None] = [None] * len(segments)
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(segments):
        by_length.setdefault(s.shape[-1], []).append(i)
    for n, idx in by_length.items():
        channels = [segments[i].shape[0] for i in idx]
        rows = torch.from_numpy(
            np.concatenate([segments[i] for i in idx], axis=0).astype(np.float32)
        ).to(device)
        x = resample(rows, sample_rate, model_sr)
        y = _enhance_rows(model, x, phase, n_iter)
        y = resample(y, model_sr, sample_rate)
        if y.shape[-1] < n:  # resampling rounds lengths up; guard against rounding down anyway
            y = torch.nn.functional.pad(y, (0, n - y.shape[-1]))
        y = y[..., :n].float().cpu().numpy()  # silent rows stay exact zeros through resampling
        start = 0
        for i, c in zip(idx, channels, strict=True):
            out[i] = y[start : start + c]
            start += c
    return out  # type: ignore[return-value]


def grid_alignment(sample_rate: int, model_rate: int, hop_length: int, frames: int = 1) -> int:
    """Smallest step (input samples) that is a whole number of ``frames``-frame blocks of STFT
    hops at the model's rate; falls back to fewer frames (down to 1) when the step would exceed
    one second, and to 1 sample when even one hop does not fit.

    Segments that start on multiples of it resample onto the unchunked run's sample grid, STFT
    frame grid and U-Net pooling grid (``frames = 2**depth``: a 2x2 max-pool groups different
    frame pairs after an odd shift), so chunking only changes the output near segment edges.
    """
    while frames >= 1:
        num = hop_length * frames * sample_rate
        step = num // math.gcd(num, model_rate)
        if step <= sample_rate:
            return step
        frames //= 2
    return 1


def _pooling_frames(model: DereverbModule) -> int:
    """Frames per U-Net pooling block (``2**depth``), 1 if the model does not say."""
    depth = getattr(getattr(model, "net", None), "depth", None)
    return 2 ** int(depth) if isinstance(depth, int) and depth >= 0 else 1


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk, context and crossfade sizes in samples at the *input* rate."""

    chunk: int | None
    context: int
    fade: int

    @classmethod
    def make(
        cls,
        sample_rate: int,
        model: DereverbModule,
        chunk_seconds: float | None,
        context_seconds: float,
    ) -> ChunkSettings:
        if chunk_seconds is not None and not chunk_seconds > 0:
            raise ValueError(
                f"chunk_seconds must be > 0 (or None for one piece), got {chunk_seconds}"
            )
        if not context_seconds >= 0:
            raise ValueError(f"context_seconds must be >= 0, got {context_seconds}")
        align = grid_alignment(
            sample_rate,
            int(model.hparams.sample_rate),
            model.stft_cfg.hop_length,
            _pooling_frames(model),
        )
        context = math.ceil(round(context_seconds * sample_rate) / align) * align
        if chunk_seconds is None:
            return cls(None, context, 0)
        chunk = max(int(round(chunk_seconds * sample_rate / align)), 1) * align
        # Crossfade over the middle half of the context (keeps half the context as margin from
        # the segment edge), and at most a quarter chunk so fades never overlap.
        fade = min(context // 2, chunk // 4)
        return cls(chunk, context, fade)


ProgressFactory = Callable[[int], "Callable[[int], None] | None"]


def _batched(chunks: Sequence[Chunk], size: int) -> Iterator[list[Chunk]]:
    for i in range(0, len(chunks), size):
        yield list(chunks[i : i + size])


def _run_chunks(
    model: DereverbModule,
    length: int,
    channels: int,
    sample_rate: int,
    read: Callable[[int, int], np.ndarray],
    emit: Callable[[np.ndarray], None],
    *,
    phase: str | None,
    n_iter: int | None,
    settings: ChunkSettings,
    batch_size: int | None,
    progress: ProgressFactory | None = None,
) -> None:
    """Shared chunk loop: ``read(start, stop) -> (C, stop - start)``; ``emit((C, n))`` in order.

    ``progress(n_chunks)`` is called once and may return a callback that receives the number
    of chunks finished after each batch.
    """
    if batch_size is None:
        batch_size = default_batch_size(model_device(model))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = plan_chunks(length, settings.chunk, settings.context, settings.fade)
    on_chunks = progress(len(chunks)) if progress is not None else None
    ola = OverlapAdd(length, channels, settings.fade, emit)
    for batch in _batched(chunks, batch_size):
        segments = [read(c.seg_start, c.seg_stop) for c in batch]
        for c, y in zip(
            batch, _process_segments(model, segments, sample_rate, phase, n_iter), strict=True
        ):
            ola.add(c, y)
        if on_chunks is not None:
            on_chunks(len(batch))
    if not ola.done:
        raise AssertionError("internal error: overlap-add did not cover the whole signal")


def dereverberate(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    model: DereverbModule,
    *,
    phase: str | None = None,
    n_iter: int | None = None,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    batch_size: int | None = None,
) -> np.ndarray | torch.Tensor:
    """Dereverberate ``(L,)`` or ``(C, L)`` audio at any ``sample_rate`` -> the same type and shape.

    Channels are processed independently (batched together). The signal is resampled to the
    model's rate and back, and processed in chunks of ``chunk_seconds`` (``None``: one piece)
    with ``context_seconds`` of context on each side, crossfaded together; ``batch_size`` chunks
    go through the model at once (default 1 on CPU, 4 on CUDA). ``phase`` /
    ``n_iter`` default to the model's (``hparams.phase`` / ``griffin_lim_iters``). A torch input
    gives a float32 tensor on the input's device; numpy gives float32 numpy.
    """
    if phase is not None and phase not in dsp.PHASE_METHODS:
        raise ValueError(
            f"phase must be one of {', '.join(dsp.PHASE_METHODS)} or None, got {phase!r}"
        )
    is_torch = isinstance(waveform, torch.Tensor)
    x = (
        waveform.detach().float().cpu().numpy()
        if is_torch
        else np.asarray(waveform, dtype=np.float32)
    )
    if x.ndim not in (1, 2):
        raise ValueError(f"waveform must be (L,) or (C, L), got shape {tuple(x.shape)}")
    if x.shape[-1] == 0:
        raise ValueError("waveform has no samples")
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or Inf samples")
    x2 = x[None] if x.ndim == 1 else x
    settings = ChunkSettings.make(int(sample_rate), model, chunk_seconds, context_seconds)
    out = np.empty_like(x2, dtype=np.float32)
    pos = [0]

    def emit(block: np.ndarray) -> None:
        out[:, pos[0] : pos[0] + block.shape[1]] = block
        pos[0] += block.shape[1]

    was_training = model.training
    model.eval()
    try:
        _run_chunks(
            model,
            x2.shape[1],
            x2.shape[0],
            int(sample_rate),
            lambda a, b: x2[:, a:b],
            emit,
            phase=phase,
            n_iter=n_iter,
            settings=settings,
            batch_size=batch_size,
        )
    finally:
        model.train(was_training)
    y = out[0] if x.ndim == 1 else out
    return torch.from_numpy(y).to(waveform.device) if is_torch else y


# ---------------------------------------------------------------------------- files
@dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    src: Path
    dst: Path


def _has_glob(text: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in text)


def _glob_root(pattern: str) -> Path:
    """The literal folder in front of the first wildcard: outputs mirror paths below it."""
    parts = Path(pattern).parts
    literal: list[str] = []
    for part in parts:
        if _has_glob(part):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def collect_inputs(
    args: Sequence[str], exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand inputs into ``(file, base folder)`` pairs and a list of error lines.

    Folders are searched recursively for WAV/FLAC/OGG; globs (``*``, ``?``, ``[...]``,
    ``**`` recursive) are expanded here and keep audio files. Files under ``exclude`` (the
    output folder) are left out of folder and glob expansions so a re-run never eats its outputs.
    """
    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    seen: set[Path] = set()

    def add(f: Path, base: Path) -> None:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            found.append((f, base))

    for arg in args:
        p = Path(arg)
        if p.is_file():
            add(p, p.parent)
        elif p.is_dir():
            skip = exclude if exclude is not None and exclude != p.resolve() else None
            files = [f for f in find_audio_files(p) if not _inside(f, skip)]
            if not files:
                errors.append(
                    f"{p}: folder has no audio files ({', '.join(AUDIO_EXTENSIONS)}); check the path"
                )
            for f in files:
                add(f, p)
        elif _has_glob(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True))
            files = []
            for m in matches:
                if m.is_dir():
                    files += [(f, m) for f in find_audio_files(m) if not _inside(f, exclude)]
                elif m.suffix.lower() in AUDIO_EXTENSIONS and not _inside(m, exclude):
                    files.append((m, _glob_root(arg)))
            if not files:
                errors.append(
                    f"{arg}: no audio files match this pattern; check the pattern and quoting"
                )
            for f, base in files:
                add(f, base)
        else:
            errors.append(f"{p}: file not found; check the path")
    return found, errors


def plan_jobs(
    inputs: list[tuple[Path, Path]], output: Path, single_file_output: bool
) -> tuple[list[Job], list[str]]:
    """Output paths (stem + ``.wav`` mirrored under ``output``) and refusals: an output that is
    an input file, or two inputs that would write the same output."""
    all_inputs = {f.resolve() for f, _ in inputs}
    jobs: list[Job] = []
    errors: list[str] = []
    claimed: dict[Path, Path] = {}
    for f, base in inputs:
        if single_file_output:
            dst = output
        else:
            rel = f.relative_to(base) if f.is_relative_to(base) else Path(f.name)
            dst = output / rel.parent / (rel.stem + ".wav")
        key = dst.resolve()
        if key in all_inputs:
            errors.append(
                f"{f}: output {dst} is an input file; choose another -o (inputs are never overwritten, even with --force)"
            )
            continue
        if key in claimed:
            errors.append(
                f"{f}: output {dst} is also the output of {claimed[key]}; rename one of them or process them separately"
            )
            continue
        claimed[key] = f
        jobs.append(Job(f, dst))
    return jobs, errors


def _open_audio(path: Path) -> sf.SoundFile:
    """Open for streamed reading with :func:`dereverb.audio.open_audio`'s checks and messages."""
    return open_audio(path)


_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _truncation(path: Path) -> str | None:
    """A note when a WAV header promises more data than the file holds (a copy cut short or a
    recorder that never finalised the header); libsndfile reads the data that is there."""
    try:
        with sf.SoundFile(str(path)) as f:
            m = _DATA_SIZE.search(f.extra_info)
            if m is None or f.format not in ("WAV", "WAVEX"):
                return None
            claimed, present = int(m.group(1)), int(m.group(2))
            bytes_per_frame = present / max(f.frames, 1)
            if (
                claimed <= present or claimed >= 0xFFFFFFF0
            ):  # placeholder sizes of streaming writers
                return None
            return (
                f"{path}: header promises {claimed / bytes_per_frame / f.samplerate:.2f} s but the file holds "
                f"{f.frames / f.samplerate:.2f} s (truncated?); processing the audio that is there"
            )
    except Exception:  # _open_audio reports unreadable files
        return None


class _AtomicWavWriter:
    """Incremental float32 WAV written to ``.<name>.partial`` next to ``dst`` and renamed onto
    ``dst`` only by :meth:`commit`; anything else removes the partial file."""

    def __init__(self, dst: Path, sample_rate: int, channels: int) -> None:
        self._created = [d for d in [dst.parent, *dst.parent.parents] if not d.exists()]
        dst.parent.mkdir(parents=True, exist_ok=True)
        self.dst = dst
        self.tmp = dst.parent / f".{dst.name}.partial"
        self._f = sf.SoundFile(
            str(self.tmp),
            "w",
            samplerate=sample_rate,
            channels=channels,
            subtype="FLOAT",
            format="WAV",
        )

    def write(self, block: np.ndarray) -> None:
        """``block`` ``(C, n)``."""
        if not np.isfinite(block).all():
            raise AudioError(
                f"{self.dst}: the model produced NaN/Inf samples; nothing written (try --phase reverberant)"
            )
        self._f.write(np.ascontiguousarray(block.T))

    def commit(self) -> None:
        self._f.close()
        os.replace(self.tmp, self.dst)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)
        for d in self._created:  # innermost first; leave no empty folders behind
            try:
                d.rmdir()
            except OSError:
                break


@dataclass
class FileResult:
    frames: int
    sample_rate: int
    channels: int
    silent: bool
    seconds: float


def process_file(
    src: Path,
    dst: Path,
    model: DereverbModule,
    *,
    phase: str | None = None,
    n_iter: int | None = None,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    batch_size: int | None = None,
    progress: ProgressFactory | None = None,
    warn: Callable[[str], None] | None = None,
) -> FileResult:
    """Stream ``src`` through the model into ``dst`` (float32 WAV, same rate/channels/length).

    Reads only the samples of the chunks in flight (seek + read with context) and writes
    incrementally to a temporary file renamed onto ``dst`` at the end; on any error nothing
    is left at ``dst``. Raises :class:`AudioError` for unreadable, truncated or NaN input.
    """
    t0 = time.perf_counter()
    truncated = _truncation(src)
    if truncated is not None and warn is not None:
        warn(truncated)
    with _open_audio(src) as f:
        sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        settings = ChunkSettings.make(sr, model, chunk_seconds, context_seconds)
        any_sound = [False]

        def read(start: int, stop: int) -> np.ndarray:
            try:
                f.seek(start)
                block = f.read(stop - start, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(
                    f"{src}: read failed at {start / sr:.2f} s ({exc}); the file is corrupt, re-export it"
                ) from exc
            if block.shape[0] != stop - start:
                raise AudioError(
                    f"{src}: data ends at {(start + block.shape[0]) / sr:.2f} s but the file claims {frames / sr:.2f} s; "
                    "the file is truncated or corrupt, re-export it"
                )
            bad = ~np.isfinite(block)
            if bad.any():
                at = (start + int(np.argmax(bad.any(axis=1)))) / sr
                raise AudioError(
                    f"{src}: contains NaN or Inf samples (first at {at:.3f} s); the file is corrupt, re-export it"
                )
            if not any_sound[0] and np.any(block):
                any_sound[0] = True
            return np.ascontiguousarray(block.T)

        writer = _AtomicWavWriter(dst, sr, channels)
        try:
            _run_chunks(
                model,
                frames,
                channels,
                sr,
                read,
                writer.write,
                phase=phase,
                n_iter=n_iter,
                settings=settings,
                batch_size=batch_size,
                progress=progress,
            )
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return FileResult(frames, sr, channels, not any_sound[0], time.perf_counter() - t0)


# ---------------------------------------------------------------------------- CLI
def _number(kind: type, text: str) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    v = _number(float, text)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def _nonneg_float(text: str) -> float:
    v = _number(float, text)
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def _positive_int(text: str) -> int:
    v = _number(int, text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def _nonneg_int(text: str) -> int:
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="python -m dereverb.predict",
        description="Dereverberate audio files with a trained checkpoint. Outputs are float32 WAV at "
        "each input's sample rate, channel count and length.",
        epilog="Example: python -m dereverb.predict --ckpt runs/dereverb/version_0/checkpoints/last.ckpt "
        "-o enhanced/ recordings/ 'more/**/*.flac'",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="audio files, folders (searched recursively for WAV/FLAC/OGG) or glob patterns",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint written by python -m dereverb.train")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder (mirrors each input's path below the folder it was found in), "
        "or a .wav file when there is exactly one input file",
    )
    p.add_argument(
        "--phase",
        choices=dsp.PHASE_METHODS,
        default=None,
        help="phase recovery (default: the checkpoint's, usually griffinlim-warm)",
    )
    p.add_argument(
        "--iters",
        type=_nonneg_int,
        default=None,
        help="Griffin-Lim iterations (default: the checkpoint's)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=_positive_float,
        default=DEFAULT_CHUNK_SECONDS,
        help=f"process long files in chunks of this length, rounded to the model's frame grid (default {DEFAULT_CHUNK_SECONDS:g})",
    )
    p.add_argument(
        "--context-seconds",
        type=_nonneg_float,
        default=DEFAULT_CONTEXT_SECONDS,
        help=f"context on each side of a chunk, half of it crossfaded (default {DEFAULT_CONTEXT_SECONDS:g})",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"chunks per model call, each with all its channels (default {BATCH_SIZE_CPU} on CPU, "
        f"{BATCH_SIZE_CUDA} on CUDA); more is faster on a GPU and costs memory",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if available), cpu, cuda or cuda:N (default auto)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the U-Net (the first chunk compiles, ~20-60 s; then ~1.5x faster "
        "on CPU, see docs/performance.md): worth it for long files and archives",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never inputs)")
    p.add_argument("--debug", action="store_true", help="print tracebacks for errors")
    return p


class _Reporter:
    """stdout for results, stderr for one-line notes and errors; tracebacks only with --debug."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self.failed = 0

    def _print(self, text: str, stream) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(text, file=stream)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            print(text, file=stream)

    def info(self, text: str) -> None:
        self._print(text, sys.stdout)

    def note(self, text: str) -> None:
        self._print(f"note: {text}", sys.stderr)

    def warn(self, text: str) -> None:
        self._print(f"warning: {text}", sys.stderr)

    def error(self, text: str, exc: BaseException | None = None) -> None:
        self.failed += 1
        if self.debug and exc is not None:
            traceback.print_exception(exc, file=sys.stderr)
        self._print(f"error: {text}", sys.stderr)


def _check_output_folder(folder: Path) -> None:
    """Create ``folder`` and prove it is writable, before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dereverb-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{folder}: cannot write to the output folder ({exc.strerror or exc}); choose another -o"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rep = _Reporter(args.debug)
    try:
        return _main(args, rep)
    except (UsageError, CheckpointError) as exc:
        rep.error(str(exc), exc)
        return EXIT_FAILED
    except Exception as exc:  # a bug: still one line unless --debug
        rep.error(
            f"unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)", exc
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        rep.error("interrupted; finished outputs are kept, re-run to continue")
        return 130


def _main(args: argparse.Namespace, rep: _Reporter) -> int:
    from tqdm import tqdm

    output = Path(args.output)
    wants_file = output.suffix.lower() == ".wav" and not output.is_dir()
    out_folder = output.parent if wants_file else output
    inputs, input_errors = collect_inputs(
        args.inputs, exclude=None if wants_file else _resolve_dir(out_folder)
    )
    if wants_file and len(inputs) > 1:
        raise UsageError(
            f"-o {output}: names a .wav file but there are {len(inputs)} input files; pass an output folder"
        )
    for line in input_errors:
        rep.error(line)
    if not inputs:
        return EXIT_FAILED
    jobs, plan_errors = plan_jobs(inputs, output, single_file_output=wants_file)
    for line in plan_errors:
        rep.error(line)
    todo: list[Job] = []
    for job in jobs:
        if job.dst.exists() and not args.force:
            rep.note(f"{job.dst}: exists, skipped (use --force to overwrite)")
        else:
            todo.append(job)
    skipped, done = len(jobs) - len(todo), 0
    folder_existed = out_folder.exists()
    if todo:
        device = resolve_device(args.device)
        model = load_model(args.ckpt, device)
        if args.compile:
            compile_model(model)
        _check_output_folder(out_folder)
    t_start = time.perf_counter()
    audio_seconds = 0.0
    files_bar = tqdm(
        todo, desc="files", unit="file", disable=None if len(todo) > 1 else True, file=sys.stderr
    )
    for job in files_bar:
        bars: list = []

        def start_bar(n: int, name: str = job.src.name, bars: list = bars) -> Callable[[int], None]:
            # Per-chunk bar only for files long enough to have several chunks.
            bars.append(
                tqdm(
                    total=n,
                    desc=name,
                    unit="chunk",
                    leave=False,
                    disable=None if n > 1 else True,
                    file=sys.stderr,
                )
            )
            return bars[-1].update

        try:
            res = process_file(
                job.src,
                job.dst,
                model,
                phase=args.phase,
                n_iter=args.iters,
                chunk_seconds=args.chunk_seconds,
                context_seconds=args.context_seconds,
                batch_size=args.batch_size,
                progress=start_bar,
                warn=rep.warn,
            )
        except AudioError as exc:
            rep.error(str(exc), exc)
            continue
        except OSError as exc:
            rep.error(
                f"{job.src}: cannot write {job.dst} ({exc.strerror or exc}); check the output folder",
                exc,
            )
            continue
        except torch.OutOfMemoryError as exc:
            rep.error(
                f"{job.src}: out of {device.type.upper()} memory; lower --batch-size or --chunk-seconds",
                exc,
            )
            continue
        except Exception as exc:  # a bug or an unexpected library error: one line, keep going
            rep.error(
                f"{job.src}: unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback)",
                exc,
            )
            continue
        finally:
            for bar in bars:
                bar.close()
        done += 1
        audio_seconds += res.frames / res.sample_rate
        if res.silent:
            rep.warn(f"{job.src}: every sample is zero (silent); wrote silence to {job.dst}")
        rep.info(
            f"{job.src} -> {job.dst} ({res.frames / res.sample_rate:.2f} s of audio in {res.seconds:.2f} s)"
        )
    elapsed = time.perf_counter() - t_start
    if todo and not folder_existed and done == 0:
        try:  # nothing written: do not leave an empty output folder behind
            out_folder.rmdir()
        except OSError:
            pass
    if todo:
        rtf = f", real-time factor {elapsed / audio_seconds:.3f}" if audio_seconds > 0 else ""
        rep.info(
            f"done: {done} written, {skipped} skipped, {rep.failed} failed in {elapsed:.1f} s{rtf}"
        )
    elif jobs:
        rep.info(f"done: nothing to do, {skipped} output(s) exist (use --force to redo)")
    return EXIT_FAILED if rep.failed else EXIT_OK


def _resolve_dir(p: Path) -> Path | None:
    try:
        return p.resolve()
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
