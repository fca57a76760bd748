"""Clean speech sources, each a ``SpeechSource``: a folder of recordings (``SpeechCorpus``),
several folders (``SpeechMix``) or procedural speech (``SyntheticSpeech``, re-exported from
``synthetic_speech.py``). docs/speech.md describes them.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import soundfile as sf

from dereverb.data.synthetic_speech import SPLITS, SplitName, check_length, split_ranges
from dereverb.data.synthetic_speech import SyntheticSpeech as SyntheticSpeech  # re-exported

log = logging.getLogger(__name__)

_TAG_ITEM = 11  # random-stream tag for deterministic item crops
SPLIT_SEED = 0  # fixed speaker shuffle: no data seed moves dev/test speakers into training


@runtime_checkable
class SpeechSource(Protocol):
    """What the data layer needs from clean speech."""

    @property
    def speakers(self) -> list[str]: ...

    def split(self, name: SplitName) -> SpeechSource: ...

    def sample(self, rng: np.random.Generator, length: int, preroll: int = 0) -> np.ndarray:
        """A random non-silent crop (training) after ``preroll`` samples of the speech before it,
        whose reverberant tail reaches into the crop. (preroll + length,) float32"""

    def item(self, index: int, length: int, preroll: int = 0) -> np.ndarray:
        """Deterministic crop number ``index`` (validation / test). (preroll + length,) float32"""

    def __len__(self) -> int: ...


class CorpusError(ValueError):
    """A speech folder cannot be used; the message names the folder and the fix."""


class CorpusWarning(UserWarning):
    """Some files of a speech folder were skipped."""


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    duration: float  # seconds
    sample_rate: int  # of the file (audio is resampled on load)


_LIBRI = re.compile(r"^([1-9]\d*)-\d+-\d{4}$")  # SPEAKER-CHAPTER-UTT (UTT: 4 digits)
_VCTK = re.compile(r"^([ps]\d+)_\d+(?:_mic\d+)?$", re.IGNORECASE)
_ARCTIC_FLAT = re.compile(r"^cmu_arctic_[a-z]+_([a-z0-9]+)_[ab]\d{4}$", re.IGNORECASE)
_ARCTIC_DIR = re.compile(r"^cmu_[a-z]+_([a-z0-9]+)_arctic$", re.IGNORECASE)


def speaker_from_path(path: str | os.PathLike) -> str:
    """Speaker id of a speech file, first rule that matches: LibriSpeech ``SPEAKER-CHAPTER-UTT``
    or ``SPEAKER/CHAPTER/file``, VCTK ``p287_001[_mic1]``, CMU ARCTIC
    ``cmu_arctic_us_axb_a0006`` or ``cmu_us_axb_arctic/wav/...``, else the parent folder."""
    p = Path(path)
    stem, parent, grand = p.stem, p.parent.name, p.parent.parent.name
    if m := _LIBRI.match(stem):
        return m.group(1)
    if parent.isdigit() and grand.isdigit():  # LibriSpeech SPEAKER/CHAPTER/file
        return grand
    if m := _VCTK.match(stem):
        return m.group(1).lower()
    if m := _ARCTIC_FLAT.match(stem):
        return m.group(1).lower()
    if m := _ARCTIC_DIR.match(grand if parent.lower() == "wav" else parent):
        return m.group(1).lower()
    return parent


def active_level_db(x: np.ndarray, sample_rate: int, frame_s: float = 0.02) -> float:
    """Mean power (dB) of the frames within 30 dB of the loudest (99th percentile) frame.

    A speech-activity level in the spirit of ITU-T P.56: pauses do not lower it. ``-inf`` for
    an all-zero signal. x (L,)
    """
    hop = max(1, int(frame_s * sample_rate))
    n = len(x) // hop
    if n == 0:
        p = np.array([np.mean(x.astype(np.float64) ** 2)]) if len(x) else np.zeros(1)
    else:
        p = np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1)
    if not np.any(p > 0):
        return -np.inf
    db = 10 * np.log10(np.maximum(p, 1e-20))
    active = db >= np.percentile(db, 99) - 30.0
    return float(10 * np.log10(np.mean(p[active])))


class SpeechCorpus:
    """A folder of WAV/FLAC speech (recursive) as a ``SpeechSource``.

    Indexed with ``soundfile.info`` (unreadable files skipped with one ``CorpusWarning``, listed
    in ``skipped``; utterances under ``min_duration`` s dropped); decoded lazily, downmixed,
    resampled and kept in an LRU cache of about ``cache_mb`` MiB per process. Splits are
    speaker-disjoint (a shuffle seeded by ``SPLIT_SEED``, not ``seed``, cut by
    ``split_fractions``). Crops are non-silent: within ``min_crop_level_db`` of the utterance's
    active level in ``max_tries`` offsets, else the most energetic one; a shorter utterance is
    placed whole in zeros (not looped).
    """

    def __init__(
        self, root: str | os.PathLike, sample_rate: int = 16000, min_duration: float = 1.0,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
        extensions: tuple[str, ...] = (".wav", ".flac"), cache_mb: float = 512.0,
        min_crop_level_db: float = 10.0, max_tries: int = 10,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise CorpusError(
                f"speech folder {self.root} does not exist; pass a folder of WAV/FLAC speech "
                "(e.g. LibriSpeech) or use the synthetic source"
            )
        if not self.root.is_dir():
            raise CorpusError(f"speech folder {self.root} is a file, not a folder; pass its folder")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self.min_duration = float(min_duration)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        split_ranges(3, self.split_fractions)  # validate the fractions early
        self.seed = int(seed)
        self.extensions = tuple(
            e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions
        )
        self.min_crop_level_db = float(min_crop_level_db)
        self.max_tries = int(max_tries)
        self.cache_mb = float(cache_mb)
        self.split_name: str | None = None
        self.skipped: list[Path] = []
        self.n_too_short = 0
        self._bad: set[Path] = set()  # files that failed to decode after indexing
        self.utterances = self._scan()
        self._cache = self._new_cache()

    def _new_cache(self) -> Callable[[Path], tuple[np.ndarray, float] | None]:
        """:meth:`_decode` behind an LRU cache of as many utterances as ``cache_mb`` MiB hold at
        their mean length."""
        mean_bytes = 4 * self.sample_rate * self.total_duration / len(self.utterances)
        return functools.lru_cache(maxsize=int(self.cache_mb * 2**20 / mean_bytes))(self._decode)

    def __getstate__(self) -> dict:
        # DataLoader workers get an empty cache of their own rather than a copy of the parent's
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache = self._new_cache()

    # ------------------------------------------------------------------ indexing
    def _scan(self) -> list[Utterance]:
        from dereverb.signals.audio import find_audio_files

        files = find_audio_files(self.root, self.extensions)
        if not files:
            raise CorpusError(
                f"no audio files ({', '.join(self.extensions)}) found under {self.root}; put WAV/FLAC "
                "speech there (subfolders are searched) or use the synthetic source"
            )
        utts: list[Utterance] = []
        reasons: list[str] = []
        for p in files:
            try:
                if p.stat().st_size == 0:
                    raise ValueError("0 bytes")
                info = sf.info(str(p))
                if info.frames <= 0 or info.samplerate <= 0:
                    raise ValueError("no samples")
            except Exception as exc:  # libsndfile raises several types for non-audio files
                self.skipped.append(p)
                reasons.append(f"{p.name} ({str(exc).strip().splitlines()[-1][-80:] or type(exc).__name__})")
                continue
            duration = info.frames / info.samplerate
            if duration < self.min_duration:
                self.n_too_short += 1
                continue
            utts.append(Utterance(p, speaker_from_path(p), duration, int(info.samplerate)))
        if self.skipped:
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} unreadable audio file(s) under {self.root}: "
                f"{'; '.join(reasons[:3])}{more} (listed in SpeechCorpus.skipped); re-export or remove them",
                CorpusWarning, stacklevel=3,
            )  # fmt: skip
        if self.n_too_short:
            log.info("%s: dropped %d utterance(s) shorter than %.2f s", self.root, self.n_too_short, self.min_duration)
        if not utts:
            raise CorpusError(
                f"no usable utterances under {self.root}: {len(files)} file(s) found, "
                f"{len(self.skipped)} unreadable, {self.n_too_short} shorter than min_duration="
                f"{self.min_duration} s; add readable speech or lower min_duration"
            )
        return utts

    # ------------------------------------------------------------------ SpeechSource protocol
    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    @property
    def total_duration(self) -> float:
        """Seconds of audio in this (split) corpus."""
        return float(sum(u.duration for u in self.utterances))

    def __len__(self) -> int:
        return len(self.utterances)

    def __repr__(self) -> str:
        part = f", split={self.split_name!r}" if self.split_name else ""
        return (f"SpeechCorpus({str(self.root)!r}, utterances={len(self)}, speakers={len(self.speakers)}, "
                f"hours={self.total_duration / 3600:.2f}{part})")  # fmt: skip

    def split_speakers(self) -> dict[str, list[str]]:
        """Speaker ids of each split: the sorted ids shuffled with ``SPLIT_SEED``, cut by the fractions."""
        if self.split_name is not None:
            raise ValueError(f"this corpus is already the {self.split_name!r} split; split the full corpus")
        spk = self.speakers
        try:
            ranges = split_ranges(len(spk), self.split_fractions)
        except ValueError as exc:
            raise CorpusError(
                f"{self.root}: found {len(spk)} speaker(s) ({', '.join(spk[:5])}); a speaker-disjoint "
                f"train/val/test split with split_fractions={self.split_fractions} needs at least "
                f"{sum(f > 0 for f in self.split_fractions)}; add speakers, or set unused split "
                "fractions to 0 (e.g. (1, 0, 0)). Speaker ids come from LibriSpeech/VCTK/CMU ARCTIC "
                "file names, else the parent folder name"
            ) from exc
        shuffled = [spk[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(spk))]
        return {name: sorted(shuffled[lo:hi]) for name, (lo, hi) in zip(SPLITS, ranges, strict=True)}

    def split(self, name: SplitName) -> SpeechCorpus:
        """The speaker-disjoint ``train``/``val``/``test`` part; shares the audio cache."""
        if name not in SPLITS:
            raise ValueError(f"split name must be one of {SPLITS}, got {name!r}")
        keep = set(self.split_speakers()[name])
        if not keep:
            raise CorpusError(f"{self.root}: split {name!r} is empty because its fraction in "
                              f"split_fractions={self.split_fractions} is 0")  # fmt: skip
        view = SpeechCorpus.__new__(SpeechCorpus)
        view.__dict__.update(self.__dict__)
        view.split_name = name
        view.utterances = [u for u in self.utterances if u.speaker in keep]
        return view

    def sample(self, rng: np.random.Generator, length: int, preroll: int = 0) -> np.ndarray:
        """A random non-silent crop of a uniformly chosen utterance, preceded by ``preroll`` samples
        of what comes before it in the utterance (zeros before its start). (preroll + length,) float32"""
        length = check_length(length)
        for _ in range(max(20, self.max_tries)):
            crop = self._crop(int(rng.integers(len(self.utterances))), rng, length, preroll)
            if crop is not None:
                return crop
        raise CorpusError(f"{self.root}: could not read a non-silent utterance in 20 tries; check the files")

    def item(self, index: int, length: int, preroll: int = 0) -> np.ndarray:
        """Deterministic crop ``index`` (any int >= 0; utterance ``index % len``), with ``preroll``
        as in :meth:`sample`. (preroll + length,) float32"""
        length = check_length(length)
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        split_code = SPLITS.index(self.split_name) + 1 if self.split_name else 0
        rng = np.random.default_rng([self.seed, _TAG_ITEM, split_code, index])
        n = len(self.utterances)
        for k in range(min(n, 20)):  # a silent/undecodable utterance defers to the next one
            crop = self._crop((index + k) % n, rng, length, preroll)
            if crop is not None:
                return crop
        raise CorpusError(f"{self.root}: utterances near index {index} are silent or unreadable")

    # ------------------------------------------------------------------ audio
    def load(self, index: int) -> tuple[np.ndarray, float] | None:
        """Decoded mono audio at ``sample_rate`` and its active level (dB) of utterance
        ``index``, or ``None`` if it cannot be decoded. ((L,), float)"""
        path = self.utterances[index].path
        return None if path in self._bad else self._cache(path)

    def _decode(self, path: Path) -> tuple[np.ndarray, float] | None:
        from dereverb.signals.audio import AudioError, read_audio, resample, to_mono

        try:
            x, sr = read_audio(path)
        except AudioError as exc:
            self._bad.add(path)
            self.skipped.append(path)
            warnings.warn(f"skipping an utterance that failed to decode: {exc}", CorpusWarning, stacklevel=4)
            return None
        x = np.asarray(to_mono(x), dtype=np.float32)
        if sr != self.sample_rate:
            x = np.asarray(resample(x, sr, self.sample_rate), dtype=np.float32)
        return x, active_level_db(x, self.sample_rate)

    def _crop(self, index: int, rng: np.random.Generator, length: int, preroll: int = 0) -> np.ndarray | None:
        loaded = self.load(index)
        if loaded is None or not np.isfinite(loaded[1]):
            return None  # undecodable or digitally silent
        x, level = loaded
        if len(x) <= length:
            out = np.zeros(preroll + length, dtype=np.float32)
            off = int(rng.integers(0, length - len(x) + 1))
            out[preroll + off : preroll + off + len(x)] = x
            return out
        threshold = 10 ** ((level - self.min_crop_level_db) / 10)
        for _ in range(self.max_tries):
            off = int(rng.integers(0, len(x) - length + 1))
            if np.mean(np.square(x[off : off + length], dtype=np.float64)) >= threshold:
                return _with_preroll(x, off, length, preroll)
        # Sparse speech: fall back to the most energetic crop (windowed energy via a cumsum).
        c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
        off = int(np.argmax(c[length:] - c[:-length]))
        return _with_preroll(x, off, length, preroll)


def _with_preroll(x: np.ndarray, off: int, length: int, preroll: int) -> np.ndarray:
    """``x[off - preroll : off + length]``, zeros where that starts before ``x``. (preroll + length,)"""
    out = np.zeros(preroll + length, dtype=np.float32)
    start = max(off - preroll, 0)
    out[preroll - (off - start) :] = x[start : off + length]
    return out


class SpeechMix:
    """Several speech folders as one ``SpeechSource``: each is split by its own speakers (so a
    corpus's test speakers are the same as when it is used alone), and crops are drawn from each
    in proportion to its duration."""

    def __init__(self, sources: list[SpeechCorpus]) -> None:
        if not sources:
            raise CorpusError("a speech mix needs at least one folder")
        self.sources = sources
        seconds = np.array([s.total_duration for s in sources])
        self.weights = seconds / seconds.sum()

    @property
    def speakers(self) -> list[str]:
        return sorted({f"{s.root.name}/{spk}" for s in self.sources for spk in s.speakers})

    def split(self, name: SplitName) -> SpeechMix:
        return SpeechMix([s.split(name) for s in self.sources])

    def sample(self, rng: np.random.Generator, length: int, preroll: int = 0) -> np.ndarray:
        return self.sources[int(rng.choice(len(self.sources), p=self.weights))].sample(rng, length, preroll)

    def item(self, index: int, length: int, preroll: int = 0) -> np.ndarray:
        """Item ``index`` of source ``index mod n`` (every corpus in every evaluation)."""
        n = len(self.sources)
        return self.sources[index % n].item(index // n, length, preroll)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __repr__(self) -> str:
        return f"SpeechMix({', '.join(repr(s) for s in self.sources)})"
