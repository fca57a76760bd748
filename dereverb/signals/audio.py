"""Audio file I/O: read anything soundfile reads to float32 ``(C, L)``, resample, write atomically.

Every failure is an :class:`AudioError` whose message names the file and what to do, so a CLI
can print one line instead of a libsndfile traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dereverb.atomic import atomic_path

# File extensions of the container formats libsndfile may read; those this build actually reads
# (asked of soundfile at run time) are AUDIO_EXTENSIONS, searched for in folders.
_FORMAT_EXTENSIONS = {"WAV": (".wav",), "WAVEX": (".wav",), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"),
                      "MP3": (".mp3",), "AIFF": (".aif", ".aiff"), "CAF": (".caf",), "W64": (".w64",),
                      "AU": (".au", ".snd")}


@functools.cache
def readable_formats() -> tuple[str, ...]:
    """The container formats this soundfile/libsndfile build reads, e.g. ``("WAV", "FLAC", ...)``."""
    available = sf.available_formats()
    return tuple(name for name in _FORMAT_EXTENSIONS if name in available and name != "WAVEX")


AUDIO_EXTENSIONS: tuple[str, ...] = tuple(
    dict.fromkeys(ext for name in readable_formats() for ext in _FORMAT_EXTENSIONS[name])
)


_SFE_BAD_FILE = 7  # libsndfile's error code for "not a regular file"


class AudioError(Exception):
    """A problem with an audio file; the message names the file and the fix."""


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open an audio file for (streamed) reading, or raise :class:`AudioError` naming it.

    The path is checked first (missing, a folder, 0 bytes); then libsndfile opens it and its
    own reason for refusing (corrupt, truncated header, not audio) is passed on in one line.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes); re-export or remove it")
    try:
        with quiet_stderr():  # libmpg123 prints "Note: Illegal Audio-MPEG-Header" lines itself
            f = sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # The file is known to exist and be a regular file, so libsndfile's "bad file" code
        # means that no decoder accepted its data.
        code = getattr(exc, "code", None)
        reason = "no decoder accepts the data" if code == _SFE_BAD_FILE else getattr(exc, "error_string", exc)
        raise AudioError(
            f"{p}: cannot decode audio ({reason}); this build reads {', '.join(readable_formats())}: "
            "a file in one of these is corrupt (re-export it), another format needs converting "
            "(e.g. ffmpeg -i in.m4a out.wav)"
        ) from exc
    if f.frames <= 0:
        f.close()
        raise AudioError(f"{p}: contains no samples; re-export or remove it")
    return f


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what C libraries write to file descriptor 2 inside the block (libmpg123 prints
    one note per bad MPEG frame); Python's own ``sys.stderr`` is flushed first and restored."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured or replaced stderr: nothing to silence
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def read_audio(path: str | os.PathLike, *, allow_silent: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file (any format in :func:`readable_formats`) into float32 ``(C, L)`` and its sample rate.

    Raises :class:`AudioError` when the file is missing, empty, unreadable (corrupt, truncated,
    not audio), has no samples, or holds NaN/Inf samples; with ``allow_silent=False`` also when
    every sample is zero.
    """
    p = Path(path)
    with open_audio(p) as f:
        try:
            with quiet_stderr():
                data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"{p}: cannot decode audio ({exc}); re-export it") from exc
        sr = f.samplerate
    if data.shape[0] == 0:
        raise AudioError(f"{p}: contains no samples; re-export or remove it")
    if not np.isfinite(data).all():
        raise AudioError(f"{p}: contains NaN or Inf samples; the file is corrupt, re-export it")
    if not allow_silent and not np.any(data):
        raise AudioError(f"{p}: every sample is zero (silent); nothing to process")
    return np.ascontiguousarray(data.T), int(sr)


def to_mono(x: np.ndarray) -> np.ndarray:
    """Downmix ``(C, L)`` to ``(L,)`` by averaging channels; ``(L,)`` passes through."""
    return x if x.ndim == 1 else x.mean(axis=0)


def resample(x: np.ndarray | torch.Tensor, orig_sr: int, new_sr: int) -> np.ndarray | torch.Tensor:
    """Resample the last axis of ``(..., L)`` from ``orig_sr`` to ``new_sr`` (torchaudio, sinc).

    Returns the same type it is given (numpy float32 or a torch tensor).
    """
    if orig_sr == new_sr:
        return x
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    import torchaudio.functional as AF  # imported here: it costs start-up time most calls never need

    if isinstance(x, torch.Tensor):
        return AF.resample(x.float(), int(orig_sr), int(new_sr))
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(orig_sr), int(new_sr))
    return out.numpy()


def load(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True) -> np.ndarray:
    """Read a file, optionally downmix and resample: ``(L,)`` if mono else ``(C, L)``."""
    x, sr = read_audio(path)
    if mono:
        x = to_mono(x)
    if sample_rate is not None and sr != sample_rate:
        x = resample(x, sr, sample_rate)
    return np.asarray(x, dtype=np.float32)


def write_audio(path: str | os.PathLike, x: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write ``(L,)`` or ``(C, L)`` as a float32 WAV, atomically (temp file in the same folder + rename).

    A killed process never leaves a partial file under ``path``.
    """
    p = Path(path)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"write_audio expects (L,) or (C, L), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioError(f"{p}: refusing to write NaN/Inf samples")
    with atomic_path(p, suffix=".tmp.wav") as tmp:
        sf.write(tmp, x.T, int(sample_rate), subtype="FLOAT", format="WAV")
    return p


def find_audio_files(root: str | os.PathLike, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """All audio files under ``root`` (recursive), sorted; a file path returns itself."""
    r = Path(root)
    if r.is_file():
        return [r]
    return sorted(p for p in r.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
