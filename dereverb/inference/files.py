"""Dereverberating files: expand inputs into jobs, stream each file through the model in chunks
and write it atomically.

Each output is a float32 WAV with the input's sample rate, channel count and length, written
incrementally to a hidden partial file renamed at the end, so a killed run leaves no partial
output and an input is never overwritten.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Sequence
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

_GLOB_CHARS = set("*?[")


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

    Folders are searched recursively for audio files (:data:`dereverb.signals.audio.AUDIO_EXTENSIONS`); globs (``*``, ``?``, ``[...]``,
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
    """Open for streamed reading with :func:`dereverb.signals.audio.open_audio`'s checks and messages."""
    return open_audio(path)


_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _truncation(path: Path) -> str | None:
    """A note when a WAV header promises more data than the file holds (a copy cut short or a
    recorder that never finalised the header); libsndfile reads the data that is there."""
    try:
        with quiet_stderr(), sf.SoundFile(str(path)) as f:
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
    model: Dereverber,
    *,
    phase: str | None = None,
    n_iter: int | None = None,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    batch_size: int | None = None,
    progress: ProgressFactory | None = None,
    warn: Callable[[str], None] | None = None,
    strength: float = 1.0,
) -> FileResult:
    """Stream ``src`` through the model into ``dst`` (float32 WAV, same rate/channels/length).

    Reads only the samples of the chunks in flight (seek + read with context) and writes
    incrementally to a temporary file renamed onto ``dst`` at the end; on any error nothing
    is left at ``dst``. Raises :class:`AudioError` for unreadable, truncated or NaN input.
    ``strength``: see :func:`dereverb.inference.enhance.dereverberate`.
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
                with quiet_stderr():  # libmpg123's notes on bad frames; the check below reports
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
            run_chunks(
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
                strength=strength,
            )
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return FileResult(frames, sr, channels, not any_sound[0], time.perf_counter() - t0)
