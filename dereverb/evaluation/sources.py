"""Evaluation item sources: the (reverberant, clean) items a system is scored on.

- :func:`datamodule_items`: the :class:`~dereverb.data.datamodule.DereverbDataModule`'s *test
  split*, from the ``data:`` arguments of a training config (:func:`load_datamodule_config`,
  :func:`build_datamodule`).
- :func:`measured_items`: speech x every measured RIR of a folder, pairs built as in training
  (:func:`dereverb.data.pairs.make_pair`), item ``i`` seeded by ``(seed, i)``, rooms (first-level
  subfolders) taken in turn.
- :func:`paired_items`: ``FOLDER/reverb/*`` with ``FOLDER/clean/*`` of the same relative names.
- :func:`unpaired_items`: real reverberant recordings without a reference (SRMR only).

Each returns item *loaders* (one callable per item, so a long test set is never all in
memory; :class:`LazyItems` iterates them). An item is a dict with ``id`` (unique str),
``reverb (L,)`` and ``clean (L,) | None`` float32, ``t60`` (s, NaN when unknown) and optional
metadata (``drr``, ``rir``, ``room``). Bad input raises :class:`EvaluationError` with one line
naming the option or file and the fix.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dereverb.cli_errors import read_yaml_mapping
from dereverb.data.noise import coloured_noise
from dereverb.data.pairs import make_pair
from dereverb.data.rir_bank import RirBank
from dereverb.data.rooms import RirError, RoomSampler
from dereverb.data.speech import CorpusError, SpeechCorpus, SyntheticSpeech
from dereverb.signals.audio import AudioError, find_audio_files, load

if TYPE_CHECKING:
    from dereverb.data.datamodule import DereverbDataModule

MEASURED_SEED_TAG = 7  # keeps measured-source items apart from the DataModule's split streams
NOISE_SEED_TAG = 8

ItemLoader = Callable[[], dict[str, Any]]


class EvaluationError(Exception):
    """Bad input for an evaluation; the message names the argument/file and the fix."""


def _as_item(idx: str, reverb: np.ndarray, clean: np.ndarray | None, t60: float = math.nan, **meta: Any) -> dict:
    clean = None if clean is None else np.asarray(clean, dtype=np.float32)
    return {"id": idx, "reverb": np.asarray(reverb, dtype=np.float32), "clean": clean, "t60": float(t60), **meta}


class LazyItems:
    """Item loaders as a sized iterable of items (each loaded when it is evaluated)."""

    def __init__(self, loaders: Sequence[ItemLoader]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (load() for load in self.loaders)


# ============================================================================ the DataModule
def load_datamodule_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """The ``data`` section of a training YAML (LightningCLI layout) as DataModule arguments
    (a ``class_path``/``init_args`` section gives its ``init_args``); ``{}`` for None."""
    if path is None:
        return {}
    p = Path(path)
    cfg = read_yaml_mapping(p, option="--datamodule-config", example="a training config such as configs/quickstart.yaml",
                            expected="a mapping with a 'data:' section", error=EvaluationError)
    data = cfg.get("data", cfg if "model" not in cfg and "trainer" not in cfg else {})
    if isinstance(data, dict) and "init_args" in data:
        data = data["init_args"]
    if not isinstance(data, dict):
        raise EvaluationError(f"--datamodule-config {p}: 'data:' must be a mapping of DataModule arguments")
    return dict(data)


def build_datamodule(kwargs: Mapping[str, Any]) -> DereverbDataModule:
    """A :class:`~dereverb.data.datamodule.DereverbDataModule` from its arguments (a config's
    ``data:`` section), parsed and instantiated by jsonargparse as ``dereverb.train`` does: YAML
    lists become tuples, ``room`` may be a mapping of :class:`~dereverb.data.rooms.RoomSampler`
    arguments or a ``class_path``/``init_args`` pair. Raises :class:`EvaluationError`."""
    from jsonargparse import ArgumentError, ArgumentParser

    from dereverb.data.datamodule import DereverbDataModule

    kw = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in kwargs.items()}
    allowed = set(inspect.signature(DereverbDataModule.__init__).parameters) - {"self"}
    unknown = sorted(set(kw) - allowed)
    if unknown:  # before jsonargparse: one message listing every unknown key
        raise EvaluationError(
            f"data config: unknown DataModule argument(s) {', '.join(unknown)}; "
            "see dereverb/data/datamodule.py"
        )
    room = kw.get("room")
    if isinstance(room, Mapping):  # our own class: built here, so its own message names the problem
        try:
            kw["room"] = RoomSampler(**dict(room.get("init_args", room) if "class_path" in room else room))
        except (TypeError, ValueError, RirError) as exc:
            raise EvaluationError(f"data.room: {exc}") from exc
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DereverbDataModule, "data", skip={"room"})
    try:  # the parser checks keys and types against the signature and converts YAML lists to tuples
        args = parser.parse_object({"data": {k: v for k, v in kw.items() if k != "room"}}).data.as_dict()
        return DereverbDataModule(**args, room=kw.get("room"))
    except (ArgumentError, ValueError, TypeError) as exc:  # the library's own words, on one line
        raise EvaluationError(" ".join(str(exc).split())) from exc


def datamodule_items(
    kwargs: Mapping[str, Any], split: str = "test"
) -> tuple[list[ItemLoader], int, str]:
    """The DataModule's test (or val: the dev set) split: ``(item loaders, sample_rate, description)``.

    Items are built lazily (one loader per index) so a long test set is never all in memory.
    """
    dm = build_datamodule(kwargs)
    if split == "val" and kwargs.get("test_items"):
        dm.items["val"] = int(kwargs["test_items"])
    ds = dm.build_dataset(split)
    names = ds.rirs.names

    def load_item(i: int) -> dict[str, Any]:
        it = ds.item(i)
        return _as_item(
            f"{split}-{i:05d}", it.reverb, it.clean, it.t60, drr=float(it.drr), rir=names[it.rir_index]
        )

    hp = dm.hparams  # the DataModule's own arguments, defaults filled in
    desc = (
        f"DataModule {split} split: speech={hp.get('speech')}, rirs={hp.get('rirs')}, {len(ds)} items of "
        f"{hp.get('segment_seconds'):g} s, target={hp.get('clean_target', hp.get('target'))}, seed={hp.get('seed')}"
    )
    return (
        [lambda i=i: load_item(i) for i in range(len(ds))],
        int(hp.get("sample_rate", 16000)),
        desc,
    )


# ============================================================================ measured RIRs
def measured_rooms(
    rirs: str | os.PathLike | Sequence[str | os.PathLike], sample_rate: int = 16000, channel: int = 0
) -> RirBank:
    """Measured RIRs of a folder, or of several folders and files, with the room of each.

    In a folder, every first-level subfolder is a room (files directly in it: one room named
    after the folder, :meth:`RirBank.from_folder`); a file given on its own is a room of its own.
    Rooms, not files, are what a dev/test split keeps apart: responses of one room are too alike
    to test on each other."""
    entries = [rirs] if isinstance(rirs, (str, os.PathLike)) else list(rirs)
    parts = []
    for entry in map(Path, entries):
        if not entry.exists():
            raise EvaluationError(f"--rirs {entry}: does not exist; give folders or files of measured RIRs")
        try:
            if entry.is_dir():
                bank = RirBank.from_folder(entry, sample_rate=sample_rate, channel=channel)
            else:
                bank = RirBank.from_files([entry], entry.parent, sample_rate=sample_rate, channel=channel)
                bank.rooms = [entry.stem]
        except RirError as exc:
            raise EvaluationError(f"--rirs: {exc}") from exc
        parts.append(bank)
    if len(parts) == 1:
        return parts[0]
    rirs_ = [r for b in parts for r in b]
    return RirBank(
        [r.rir for r in rirs_], [r.t60 for r in rirs_], [r.drr for r in rirs_], [r.direct_index for r in rirs_],
        [r.name for r in rirs_], sample_rate, rooms=[r.room for r in rirs_],
    )


def measured_items(
    rirs: str | os.PathLike | Sequence[str | os.PathLike],
    speech: str | os.PathLike = "synthetic",
    n_items: int = 24,
    segment_seconds: float = 4.0,
    sample_rate: int = 16000,
    seed: int = 0,
    target: str = "dry",
    gain_db_range: tuple[float, float] = (-6.0, 0.0),
    speech_split: str = "all",
    channel: int = 0,
    min_duration: float = 1.0,
    snr_db: float | None = None,
    level_db: float = 0.0,
) -> tuple[list[ItemLoader], str]:
    """Speech x measured RIRs, built like training pairs: ``(item loaders, description)``.

    Item ``i``: speech crop ``speech.item(i, L, preroll)`` (deterministic, with the speech before
    it as long as the longest RIR, whose tail reaches into the item), room ``i mod n_rooms``
    (rooms as :func:`measured_rooms` finds them, so every room gets its share), one of that
    room's RIRs and a gain drawn from ``default_rng([seed, 7, i])``, then
    :func:`dereverb.data.pairs.make_pair` (direct-path-aligned clean ``target``: ``dry`` or
    ``early``; shared gain, no clipping). ``snr_db``: pink background noise at that SNR;
    ``level_db``: the reverberant input scaled to that peak level (dBFS) after the pair is made
    (the reference is unchanged: the metrics do not depend on level).
    """
    if n_items < 1:
        raise EvaluationError(f"--n-items must be >= 1, got {n_items}")
    bank = measured_rooms(rirs, sample_rate, channel)
    try:
        if str(speech) == "synthetic":
            source: Any = SyntheticSpeech(sample_rate=sample_rate, seed=seed)
        else:
            if not Path(speech).is_dir():
                raise EvaluationError(
                    f"--speech {speech}: not a folder; give a folder of WAV/FLAC speech or 'synthetic'"
                )
            source = SpeechCorpus(
                speech, sample_rate=sample_rate, min_duration=min_duration, seed=seed
            )
        if speech_split != "all":
            source = source.split(speech_split)
    except (CorpusError, ValueError) as exc:
        raise EvaluationError(f"--speech: {exc}") from exc
    rooms = bank.by_room()
    room_names = list(rooms)
    length = int(round(segment_seconds * sample_rate))
    preroll = max(len(r.rir) for r in bank)

    def load_item(i: int) -> dict[str, Any]:
        rng = np.random.default_rng([seed, MEASURED_SEED_TAG, i])
        room = room_names[i % len(room_names)]
        r = bank[rooms[room][int(rng.integers(len(rooms[room])))]]
        gain_db = float(rng.uniform(*gain_db_range))
        dry = source.item(i, length, preroll)
        noise = None if snr_db is None else coloured_noise(np.random.default_rng([seed, NOISE_SEED_TAG, i]), length, 1.0)
        reverb, clean = make_pair(
            dry, r.rir, r.direct_index, sample_rate, target, gain_db,  # type: ignore[arg-type]
            preroll=preroll, noise=noise, snr_db=float("inf") if snr_db is None else snr_db,
        )
        if level_db:
            reverb = reverb * (10 ** (level_db / 20) / max(float(np.abs(reverb).max()), 1e-12))
        return _as_item(
            f"measured-{i:05d}", reverb, clean, r.t60, drr=float(r.drr), rir=r.name, room=room
        )

    desc = (
        f"speech={speech} (split {speech_split}) x measured RIRs {rirs} ({len(bank)} RIRs, rooms "
        f"{', '.join(room_names)}), {n_items} items of {segment_seconds:g} s, target={target}, seed={seed}, "
        f"preroll {preroll / sample_rate:.2f} s"
        + ("" if snr_db is None else f", pink noise at {snr_db:g} dB SNR")
        + (f", input peak {level_db:g} dBFS" if level_db else "")
    )
    return [lambda i=i: load_item(i) for i in range(n_items)], desc


# ============================================================================ audio folders
def _read_mono(path: Path, sample_rate: int) -> np.ndarray:
    try:
        return load(path, sample_rate=sample_rate, mono=True)
    except AudioError as exc:
        raise EvaluationError(str(exc)) from exc


def paired_items(
    folder: str | os.PathLike, sample_rate: int = 16000
) -> tuple[list[ItemLoader], str, list[str]]:
    """``folder/reverb/X`` with ``folder/clean/X`` (same relative path, any audio extension):
    ``(item loaders, description, notes)``. Both are downmixed, resampled to ``sample_rate``
    and cut to the shorter length; the clean file must be time-aligned with the reverberant
    file's direct sound."""
    root = Path(folder)
    rdir, cdir = root / "reverb", root / "clean"
    if not rdir.is_dir() or not cdir.is_dir():
        raise EvaluationError(
            f"--paired {root}: needs subfolders reverb/ and clean/ with same-named audio files"
        )
    rev = {p.relative_to(rdir).with_suffix("").as_posix(): p for p in find_audio_files(rdir)}
    cln = {p.relative_to(cdir).with_suffix("").as_posix(): p for p in find_audio_files(cdir)}
    if not rev:
        raise EvaluationError(f"--paired {root}: no audio files in {rdir}")
    common = sorted(set(rev) & set(cln))
    if not common:
        raise EvaluationError(
            f"--paired {root}: no file in reverb/ has a same-named file in clean/; name pairs identically"
        )
    notes = []
    if len(common) < max(len(rev), len(cln)):
        notes.append(
            f"{len(set(rev) - set(cln))} reverb and {len(set(cln) - set(rev))} clean file(s) without a partner were skipped"
        )

    def load_item(name: str) -> dict[str, Any]:
        r, c = _read_mono(rev[name], sample_rate), _read_mono(cln[name], sample_rate)
        n = min(r.shape[-1], c.shape[-1])
        return _as_item(name, r[:n], c[:n], math.nan)

    return (
        [lambda n=n: load_item(n) for n in common],
        f"paired folder {root} ({len(common)} pairs)",
        notes,
    )


def unpaired_items(
    folder: str | os.PathLike, sample_rate: int = 16000
) -> tuple[list[ItemLoader], str]:
    """Every audio file under ``folder`` as an item without reference (SRMR only)."""
    root = Path(folder)
    if not root.is_dir():
        raise EvaluationError(
            f"--unpaired {root}: not a folder; give a folder of reverberant recordings"
        )
    files = find_audio_files(root)
    if not files:
        raise EvaluationError(f"--unpaired {root}: no audio files found")

    def load_item(p: Path) -> dict[str, Any]:
        return _as_item(
            p.relative_to(root).with_suffix("").as_posix(), _read_mono(p, sample_rate), None
        )

    return [
        lambda p=p: load_item(p) for p in files
    ], f"unpaired folder {root} ({len(files)} recordings, SRMR only)"
