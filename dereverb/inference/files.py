"""Dereverberating files: expand inputs into jobs, stream each file through the model in chunks
and write it as a float32 WAV with the input's rate, channel count and length, incrementally to
a hidden ``.<name>.partial`` file renamed at the end: a killed run leaves no partial output, and
an input is never overwritten.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dereverb.inference.enhance import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    ChunkSettings,
    ProgressFactory,
    run_chunks,
)
from dereverb.models.dereverber import Dereverber
from dereverb.signals.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    find_audio_files,
    open_audio,
    quiet_stderr,
)

_open_audio = open_audio  # the one place files are opened for reading (tests spy on it)


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    src: Path
    dst: Path


def _has_glob(text: str) -> bool:
    return any(ch in "*?[" for ch in text)


def _glob_root(pattern: str) -> Path:
    """The literal folder in front of the first wildcard: outputs mirror paths below it."""
    literal: list[str] = []
    for part in Path(pattern).parts:
        if _has_glob(part):
            break
        literal.append(part)
    return Path(*literal)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def collect_inputs(
    args: Sequence[str], exclude: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Expand inputs into ``(file, base folder)`` pairs and a list of error lines.

    Folders are searched recursively for audio files; globs (``*``, ``?``, ``[...]``, ``**``)
    are expanded here and keep audio files. Files under ``exclude`` (the output folder) are left
    out of folder and glob expansions, so a re-run never eats its outputs.
    """
    found: dict[Path, tuple[Path, Path]] = {}
    errors: list[str] = []
    for arg in args:
        p = Path(arg)
        if p.is_file():
            files = [(p, p.parent)]
        elif p.is_dir():
            skip = exclude if exclude != p.resolve() else None
            files = [(f, p) for f in find_audio_files(p) if not _inside(f, skip)]
            if not files:
                errors.append(f"{p}: folder has no audio files ({', '.join(AUDIO_EXTENSIONS)}); check the path")
        elif _has_glob(arg):
            files = []
            for m in sorted(Path(m) for m in glob.glob(arg, recursive=True)):
                if m.is_dir():
                    files += [(f, m) for f in find_audio_files(m) if not _inside(f, exclude)]
                elif m.suffix.lower() in AUDIO_EXTENSIONS and not _inside(m, exclude):
                    files.append((m, _glob_root(arg)))
            if not files:
                errors.append(f"{arg}: no audio files match this pattern; check the pattern and quoting")
        else:
            files = []
            errors.append(f"{p}: file not found; check the path")
        for f, base in files:
            found.setdefault(f.resolve(), (f, base))
    return list(found.values()), errors


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
        rel = f.relative_to(base) if f.is_relative_to(base) else Path(f.name)
        dst = output if single_file_output else output / rel.parent / (rel.stem + ".wav")
        key = dst.resolve()
        if key in all_inputs:
            errors.append(f"{f}: output {dst} is an input file; choose another -o "
                          "(inputs are never overwritten, even with --force)")
        elif key in claimed:
            errors.append(f"{f}: output {dst} is also the output of {claimed[key]}; "
                          "rename one of them or process them separately")
        else:
            claimed[key] = f
            jobs.append(Job(f, dst))
    return jobs, errors


def _truncation(path: Path, f: sf.SoundFile) -> str | None:
    """A note when a WAV header promises more data than the file holds (a copy cut short or a
    recorder that never finalised the header); libsndfile reads the data that is there."""
    if f.format not in ("WAV", "WAVEX") or not f.frames:
        return None
    with open(path, "rb") as fh:  # walk the RIFF chunks to the data chunk's stated size
        if fh.read(12)[8:] != b"WAVE":
            return None
        while len(head := fh.read(8)) == 8:
            size = int.from_bytes(head[4:], "little")
            if head[:4] == b"data":
                present = os.fstat(fh.fileno()).st_size - fh.tell()
                if present >= size or size >= 0xFFFFFFF0:  # placeholder sizes of streaming writers
                    return None
                return (f"{path}: header promises {size * f.frames / present / f.samplerate:.2f} s but the "
                        f"file holds {f.frames / f.samplerate:.2f} s (truncated?); processing the audio that is there")
            fh.seek(size + size % 2, 1)
    return None


@contextlib.contextmanager
def _partial_wav(dst: Path, sample_rate: int, channels: int) -> Iterator[Callable[[np.ndarray], None]]:
    """A writer of ``(C, n)`` blocks into a float32 WAV ``.<name>.partial`` beside ``dst``,
    renamed onto ``dst`` on a normal exit; on any error the partial file and the folders made
    for it are removed."""
    created = [d for d in [dst.parent, *dst.parent.parents] if not d.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial"
    try:
        with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=channels, subtype="FLOAT",
                          format="WAV") as out:

            def write(block: np.ndarray) -> None:
                if not np.isfinite(block).all():
                    raise AudioError(f"{dst}: the model produced NaN/Inf samples; nothing written "
                                     "(try --phase reverberant)")
                out.write(np.ascontiguousarray(block.T))

            yield write
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for d in created:  # innermost first; leave no empty folders behind
            try:
                d.rmdir()
            except OSError:
                break
        raise


@dataclass
class FileResult:
    frames: int
    sample_rate: int
    silent: bool
    seconds: float


def process_file(
    src: Path, dst: Path, model: Dereverber, *, phase: str | None = None, n_iter: int | None = None,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS, context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    batch_size: int | None = None, progress: ProgressFactory | None = None,
    warn: Callable[[str], None] | None = None, strength: float = 1.0,
) -> FileResult:
    """Stream ``src`` through the model into ``dst`` (float32 WAV, same rate/channels/length),
    reading only the chunks in flight (seek + read with context); on any error nothing is left
    at ``dst``. Raises :class:`AudioError` for unreadable, truncated or NaN input. ``strength``:
    see :func:`dereverb.inference.enhance.dereverberate`."""
    t0 = time.perf_counter()
    with _open_audio(src) as f:
        sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        if warn is not None and (note := _truncation(src, f)) is not None:
            warn(note)
        settings = ChunkSettings.make(sr, model, chunk_seconds, context_seconds)
        any_sound = False

        def read(start: int, stop: int) -> np.ndarray:
            nonlocal any_sound
            try:
                with quiet_stderr():  # libmpg123's notes on bad frames; the checks below report
                    f.seek(start)
                    block = f.read(stop - start, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{src}: read failed at {start / sr:.2f} s ({exc}); "
                                 "the file is corrupt, re-export it") from exc
            if block.shape[0] != stop - start:
                raise AudioError(f"{src}: data ends at {(start + block.shape[0]) / sr:.2f} s but the file claims "
                                 f"{frames / sr:.2f} s; the file is truncated or corrupt, re-export it")
            bad = ~np.isfinite(block)
            if bad.any():
                at = (start + int(np.argmax(bad.any(axis=1)))) / sr
                raise AudioError(f"{src}: contains NaN or Inf samples (first at {at:.3f} s); "
                                 "the file is corrupt, re-export it")
            any_sound = any_sound or bool(np.any(block))
            return np.ascontiguousarray(block.T)

        with _partial_wav(dst, sr, channels) as write:
            run_chunks(model, frames, channels, sr, read, write, phase=phase, n_iter=n_iter, settings=settings,
                       batch_size=batch_size, progress=progress, strength=strength)
    return FileResult(frames, sr, not any_sound, time.perf_counter() - t0)
