"""Banks of room impulse responses (conventions of :mod:`dereverb.data.rooms`): simulated in
parallel per split from disjoint seed streams and cached on disk, or measured folders split by
:meth:`RirBank.split`."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from dereverb.atomic import atomic_path
from dereverb.data.rooms import (
    RirError,
    RoomSampler,
    RoomSpec,
    direct_path_index,
    drr,
    estimate_t60,
    simulate_rir,
)

SPLITS = ("train", "val", "test")
Split = Literal["train", "val", "test"]
CACHE_VERSION = 1  # in every simulated bank's cache key: bump when content or conventions change


@dataclass(frozen=True)
class Rir:
    """One bank entry: ``rir (L,)`` float32, measured ``t60`` (s), ``drr`` (dB), ``direct_index``,
    its ``name`` and its ``room`` (what :meth:`RirBank.split` keeps apart)."""

    rir: np.ndarray
    t60: float
    drr: float
    direct_index: int
    name: str
    room: str


def _measure(rir: np.ndarray, sr: int, direct_index: int | None = None) -> tuple[float, float, int]:
    """``(t60, drr, direct_index)`` of one RIR."""
    d = direct_path_index(rir) if direct_index is None else direct_index
    return estimate_t60(rir, sr), drr(rir, sr, d), d


def _simulate_one(spec: RoomSpec, sim: dict[str, Any]) -> tuple[np.ndarray, float, float, int]:
    rir = simulate_rir(spec, **sim)
    return (rir, *_measure(rir, int(sim["sample_rate"])))


def _one_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a pool worker with one thread: loky sets ``OMP_NUM_THREADS`` and the like,
    pyroomacoustics reads only its own setting."""
    import pyroomacoustics as pra

    pra.constants.set("num_threads", 1)
    return fn(*args)


def _parallel_map(fn: Any, items: Sequence[tuple], workers: int, desc: str, progress: bool) -> list:
    """``[fn(*a) for a in items]`` on ``workers`` processes of one thread each (joblib's loky; 1:
    in this process), in order, with a tqdm progress bar."""
    n = len(items)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        if workers == 1 or n <= 1:
            results = (fn(*a) for a in items)
        else:
            run = Parallel(n_jobs=min(workers, n), return_as="generator")
            results = run(delayed(_one_thread)(fn, *a) for a in items)
        return list(tqdm(results, total=n, desc=desc, unit="rir", disable=not progress or n == 0))


class RirBank:
    """A list of RIRs (variable lengths) with their measured T60, DRR, direct-path index and room
    (``rooms``; default: every RIR a room of its own, as a simulated bank's are)."""

    def __init__(
        self, rirs: Sequence[np.ndarray], t60s: Sequence[float], drrs: Sequence[float],
        direct_indices: Sequence[int], names: Sequence[str], sample_rate: int = 16000,
        nominal_t60s: Sequence[float] | None = None, rooms: Sequence[str] | None = None,
    ) -> None:
        n = len(rirs)
        rooms = list(names) if rooms is None else list(rooms)
        if not all(len(v) == n for v in (t60s, drrs, direct_indices, names, rooms)):
            raise RirError("RirBank: rirs, t60s, drrs, direct_indices, names and rooms must have one entry per RIR")
        self.rirs = [np.asarray(r, dtype=np.float32) for r in rirs]
        self.t60s = np.asarray(t60s, dtype=np.float64)
        self.drrs = np.asarray(drrs, dtype=np.float64)
        self.direct_indices = np.asarray(direct_indices, dtype=np.int64)
        self.names = list(names)
        self.rooms = rooms
        self.sample_rate = int(sample_rate)
        self.nominal_t60s = np.full(n, np.nan) if nominal_t60s is None else np.asarray(nominal_t60s, float)

    def __len__(self) -> int:
        return len(self.rirs)

    def __getitem__(self, i: int) -> Rir:
        i = int(i)
        return Rir(self.rirs[i], float(self.t60s[i]), float(self.drrs[i]), int(self.direct_indices[i]), self.names[i], self.rooms[i])

    def __iter__(self) -> Iterator[Rir]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        t = f", T60 {np.nanmin(self.t60s):.2f}-{np.nanmax(self.t60s):.2f} s" if len(self) else ""
        return f"RirBank({len(self)} RIRs at {self.sample_rate} Hz{t})"

    def subset(self, indices: Sequence[int]) -> RirBank:
        """A bank of the given entries (in that order)."""
        idx = [int(i) for i in indices]
        return RirBank(
            [self.rirs[i] for i in idx], self.t60s[idx], self.drrs[idx], self.direct_indices[idx],
            [self.names[i] for i in idx], self.sample_rate, self.nominal_t60s[idx], [self.rooms[i] for i in idx],
        )

    def by_room(self) -> dict[str, list[int]]:
        """The indices of each room's RIRs, rooms in sorted order."""
        rooms: dict[str, list[int]] = {}
        for i, room in enumerate(self.rooms):
            rooms.setdefault(room, []).append(i)
        return dict(sorted(rooms.items()))

    def split(self, name: str, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> RirBank:
        """Disjoint deterministic train/val/test part of one bank (for a measured folder), split by
        **room**, never by file (responses of one room are too alike to validate on each other):
        a seeded permutation of the rooms cut into ``fractions``, at least one room for val and test."""
        if name not in SPLITS:
            raise RirError(f"split name {name!r}: must be one of {SPLITS}")
        by_room = self.by_room()
        rooms = list(by_room)
        n = len(rooms)
        if n < 3:
            raise RirError(
                f"RirBank.split: {n} room(s) ({', '.join(rooms)}) cannot make three disjoint splits; measured RIRs "
                "are split by room (a subfolder each; files directly in the folder are one room): give >= 3 rooms, "
                "or every RIR to every split (data.measured_rir_split: all)"
            )
        if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
            raise RirError(f"RirBank.split: fractions={tuple(fractions)} must be three non-negative numbers")
        f = np.asarray(fractions, float) / sum(fractions)
        n_val, n_test = (max(1, int(round(x * n))) for x in f[1:])
        n_train = n - n_val - n_test
        if n_train < 1:
            raise RirError(f"RirBank.split: {n} rooms leave no training room with fractions {tuple(fractions)}")
        perm = np.random.default_rng(seed).permutation(n)
        parts = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
        return self.subset(sorted(i for k in parts[name] for i in by_room[rooms[k]]))

    @classmethod
    def simulate(
        cls, n: int, sampler: RoomSampler | None = None, seed: int = 0, split: str = "train",
        cache_dir: str | os.PathLike | None = "data/cache/rirs", workers: int | None = None,
        progress: bool = True, **settings: Any,
    ) -> RirBank:
        """Simulate ``n`` rooms from ``sampler`` for ``split``, cached on disk.

        Room ``i`` is drawn from child ``i`` of ``SeedSequence([seed, split index])``: splits
        share no room and the first k rooms do not depend on ``n``. Cached as
        ``<cache_dir>/rirs-<split>-n<n>-<hash>.npz``, the hash over the sampler, the settings,
        ``n``, ``seed``, ``split`` and pyroomacoustics' version (``cache_dir=None``: no cache).
        ``workers`` processes (default: all cores; 1: in this process) of one thread each;
        ``settings``: :func:`~dereverb.data.rooms.simulate_rir`'s keyword arguments.
        """
        import pyroomacoustics as pra

        if n < 0:
            raise RirError(f"RirBank.simulate: n must be >= 0, got {n}")
        if split not in SPLITS:
            raise RirError(f"split={split!r}: must be one of {SPLITS}")
        sampler = sampler or RoomSampler()
        defaults = inspect.signature(simulate_rir).parameters
        unknown = set(settings) - set(defaults)
        if unknown:
            raise RirError(f"RirBank.simulate: unknown simulation setting(s) {', '.join(sorted(unknown))}")
        sim = {k: settings.get(k, p.default) for k, p in defaults.items() if k != "spec"}
        children = np.random.SeedSequence([int(seed), SPLITS.index(split)]).spawn(n)
        specs = [sampler.sample(np.random.default_rng(c)) for c in children]
        path = None
        if cache_dir is not None:
            config = dict(version=CACHE_VERSION, pyroomacoustics=pra.__version__,
                          sampler=dataclasses.asdict(sampler), sim=sim, n=int(n), seed=int(seed), split=split)  # fmt: skip
            key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
            path = Path(cache_dir) / f"rirs-{split}-n{n}-{key}.npz"
            if path.exists():
                try:
                    return cls.load(path)
                except Exception as exc:  # a corrupt cache is rebuilt, not fatal
                    print(f"RirBank: cache {path} unreadable ({exc}); rebuilding")
        workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
        results = _parallel_map(_simulate_one, [(spec, sim) for spec in specs], workers,
                               f"simulating {n} {split} RIRs", progress)  # fmt: skip
        rirs, t60s, drrs, direct = zip(*results, strict=True) if results else ([], [], [], [])
        names = [f"{split}-{i:05d}" for i in range(n)]
        bank = cls(rirs, t60s, drrs, direct, names, sim["sample_rate"], [s.t60 for s in specs])
        if path is not None:
            bank.save(path)
        return bank

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank to ``path`` (``.npz``) atomically: temp file in the folder + rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([r.size for r in self.rirs], dtype=np.int64)
        flat = np.concatenate(self.rirs) if self.rirs else np.zeros(0, np.float32)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, flat=flat, lengths=lengths, t60s=self.t60s, drrs=self.drrs,
                         direct_indices=self.direct_indices, nominal_t60s=self.nominal_t60s,
                         names=np.array(self.names, dtype=str), sample_rate=np.int64(self.sample_rate))  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RirBank:
        """Read a bank written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            rirs = np.split(z["flat"], np.cumsum(z["lengths"])[:-1]) if len(z["lengths"]) else []
            return cls(rirs, z["t60s"], z["drrs"], z["direct_indices"], z["names"].tolist(),
                       int(z["sample_rate"]), z["nominal_t60s"])  # fmt: skip

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, sample_rate: int = 16000, channel: int = 0, pre_delay_ms: float = 1.0
    ) -> RirBank:
        """Measured RIRs: every audio file under ``folder`` (recursive, sorted), resampled, reduced
        to ``channel``, cut so the direct path is ``pre_delay_ms`` from the start (zero-padded if
        earlier) and scaled so it is +1. Names: paths relative to ``folder``, no extension. Rooms:
        every first-level subfolder is a room; files directly in ``folder`` are one room, named after it."""
        from dereverb.signals.audio import find_audio_files

        root = Path(folder)
        if not root.is_dir():
            raise RirError(f"RirBank.from_folder: {root} is not a folder; give a folder of RIR audio files")
        files = find_audio_files(root)
        if not files:
            raise RirError(f"RirBank.from_folder: no audio files (WAV, FLAC, MP3, ...) under {root}; "
                           "put measured impulse responses there")  # fmt: skip
        return cls.from_files(files, root, sample_rate, channel, pre_delay_ms)

    @classmethod
    def from_files(
        cls, files: Sequence[str | os.PathLike], root: str | os.PathLike, sample_rate: int = 16000,
        channel: int = 0, pre_delay_ms: float = 1.0,
    ) -> RirBank:
        """Measured RIR files loaded as :meth:`from_folder` does; names and rooms relative to ``root``."""
        from dereverb.signals.audio import AudioError, read_audio, resample

        files, root = [Path(f) for f in files], Path(root)
        pre = int(round(pre_delay_ms * 1e-3 * sample_rate))
        rirs, t60s, drrs, names, rooms = [], [], [], [], []
        for p in files:
            try:
                x, sr = read_audio(p, allow_silent=False)
            except AudioError as exc:
                raise RirError(f"RirBank.from_folder: {exc}") from exc
            if not 0 <= channel < x.shape[0]:
                raise RirError(f"{p}: has {x.shape[0]} channel(s); channel={channel} does not exist")
            x = np.asarray(resample(x[channel], sr, sample_rate), dtype=np.float64)
            d = direct_path_index(x)
            x = np.concatenate([np.zeros(max(0, pre - d)), x[max(0, d - pre) :]])
            x = x / x[pre]
            try:
                t60, ratio, _ = _measure(x, sample_rate, pre)
            except RirError as exc:
                raise RirError(f"{p}: {exc}") from exc
            rirs.append(x.astype(np.float32))
            t60s.append(t60)
            drrs.append(ratio)
            relative = p.relative_to(root)
            names.append(relative.with_suffix("").as_posix())
            rooms.append(relative.parts[0] if len(relative.parts) > 1 else root.name)
        return cls(rirs, t60s, drrs, [pre] * len(rirs), names, sample_rate, rooms=rooms)

