"""RIR banks: simulated (seeded splits, cache, parallel build) and measured folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dereverb.data import rir_bank
from dereverb.data.rir_bank import RirBank
from dereverb.data.rooms import RirError, RoomSampler, direct_path_index, drr, estimate_t60
from tests.conftest import shared_path
from tests.data.conftest import FAST

SR = 16000


# --------------------------------------------------------------------------- simulated banks


def _bank(split: str, tmp_path: Path, **kw) -> RirBank:
    args = dict(sampler=RoomSampler(**FAST), seed=3, split=split, cache_dir=tmp_path, workers=1,
                progress=False, max_order=6)  # fmt: skip
    args.update(kw)
    return RirBank.simulate(4, **args)


def test_bank_items_and_arrays(tmp_path):
    bank = _bank("train", tmp_path)
    assert len(bank) == 4 and bank.t60s.shape == bank.drrs.shape == (4,)
    item = bank[2]
    assert isinstance(item.rir, np.ndarray) and item.rir.dtype == np.float32
    assert item.name == "train-00002"
    assert item.direct_index == direct_path_index(item.rir)
    assert item.t60 == pytest.approx(estimate_t60(item.rir, SR))
    assert item.drr == pytest.approx(drr(item.rir, SR, item.direct_index))
    sampler, children = RoomSampler(**FAST), np.random.SeedSequence([3, 0]).spawn(4)
    assert np.allclose(bank.nominal_t60s, [sampler.sample(np.random.default_rng(c)).t60 for c in children])
    assert [r.name for r in bank] == bank.names


def test_splits_share_no_rir_and_seeds_are_stable(tmp_path):
    banks = {s: _bank(s, tmp_path) for s in ("train", "val", "test")}
    fingerprints = {s: {r.rir[:400].tobytes() for r in b} for s, b in banks.items()}
    assert all(len(f) == 4 for f in fingerprints.values())
    assert not fingerprints["train"] & fingerprints["val"]
    assert not fingerprints["train"] & fingerprints["test"]
    assert not fingerprints["val"] & fingerprints["test"]
    # the first rooms of a bank do not depend on its size; another seed gives other rooms
    bigger = RirBank.simulate(6, RoomSampler(**FAST), seed=3, split="val", cache_dir=None,
                              workers=1, progress=False, max_order=6)  # fmt: skip
    assert all(np.array_equal(a.rir, b.rir) for a, b in zip(list(bigger)[:4], banks["val"], strict=True))
    assert not np.array_equal(_bank("val", tmp_path, seed=4)[0].rir, banks["val"][0].rir)
    with pytest.raises(RirError, match="split"):
        _bank("dev", tmp_path)


def test_cache_is_reused_not_resimulated(tmp_path, monkeypatch):
    calls = []
    real = rir_bank._simulate_one
    monkeypatch.setattr(
        rir_bank, "_simulate_one", lambda spec, sim: calls.append(1) or real(spec, sim)
    )
    first = _bank("val", tmp_path)
    assert len(calls) == 4
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))  # atomic: no temp left

    def boom(spec, sim):
        raise AssertionError("simulated although the bank is cached")

    monkeypatch.setattr(rir_bank, "_simulate_one", boom)
    again = _bank("val", tmp_path)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.rir, b.rir)
        assert (a.t60, a.drr, a.direct_index, a.name) == (b.t60, b.drr, b.direct_index, b.name)
    # any change of configuration is a different cache entry
    monkeypatch.setattr(rir_bank, "_simulate_one", real)
    _bank("val", tmp_path, max_order=5)
    _bank("val", tmp_path, sampler=RoomSampler(**{**FAST, "t60_range": (0.2, 0.31)}))
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_corrupt_cache_is_rebuilt(tmp_path):
    first = _bank("test", tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip")
    again = _bank("test", tmp_path)
    np.testing.assert_array_equal(first[0].rir, again[0].rir)
    assert RirBank.load(path)[0].name == "test-00000"


def test_parallel_build_matches_serial(tmp_path):
    kw = dict(
        sampler=RoomSampler(**FAST),
        seed=5,
        split="train",
        cache_dir=None,
        progress=False,
        max_order=6,
    )
    serial = RirBank.simulate(4, workers=1, **kw)
    parallel = RirBank.simulate(4, workers=2, **kw)
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_allclose(a.rir, b.rir, atol=1e-6)  # libroom threads sum in another order
        assert a.direct_index == b.direct_index


# --------------------------------------------------------------------------- measured banks


def test_surrey_room_a_loads_aligned_with_t60_near_0_3():
    folder = shared_path("rirs", "surrey-room-a")
    bank = RirBank.from_folder(folder, sample_rate=SR, channel=0)
    assert len(bank) == 37 and bank.sample_rate == SR
    assert bank.names[0] == "roomA_az+000"
    assert set(bank.direct_indices.tolist()) == {16}  # 1 ms pre-delay
    assert all(r.rir[16] == 1.0 for r in bank)
    # measured 0.291-0.309 s (T30) for every azimuth; the dataset quotes RT60 ~0.32 s
    assert np.all((bank.t60s > 0.26) & (bank.t60s < 0.36))
    right = RirBank.from_folder(folder, channel=1)
    assert not np.array_equal(right[0].rir, bank[0].rir)
    with pytest.raises(RirError, match="channel=2 does not exist"):
        RirBank.from_folder(folder, channel=2)
    # 37 responses of one room: one room, which a split by room cannot share out
    assert set(bank.rooms) == {"surrey-room-a"}
    with pytest.raises(RirError, match=r"1 room\(s\) \(surrey-room-a\) cannot make three disjoint splits"):
        bank.split("train")


def test_clap_rir_is_resampled_to_16k():
    folder = shared_path("rirs", "clap-seminar-room")
    bank = RirBank.from_folder(folder, sample_rate=SR)
    (item,) = list(bank)
    # 1 s at 44.1 kHz -> 16000 samples; the clap starts at once (first near-peak sample: 0.5 ms),
    # so aligning it to the 1 ms pre-delay pads 8 samples
    assert item.rir.size == 16008
    assert item.direct_index == 16 and item.rir[16] == 1.0
    assert 0.45 <= item.t60 <= 0.85  # measured 0.63 s (T30)


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(RirError, match="not a folder"):
        RirBank.from_folder(tmp_path / "missing")
    with pytest.raises(RirError, match=r"no audio files \(WAV, FLAC"):
        RirBank.from_folder(tmp_path)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(RirError, match="broken.wav"):
        RirBank.from_folder(tmp_path)


def _rooms_bank(rooms: list[str]) -> RirBank:
    n = len(rooms)
    return RirBank([np.full(4, i, np.float32) for i in range(n)], [0.1] * n, [0.0] * n, [0] * n,
                   [f"{room}/{i}" for i, room in enumerate(rooms)], rooms=rooms)  # fmt: skip


def test_bank_splits_by_room_never_by_file():
    rooms = [f"room{k}" for k in range(10) for _ in range(3)]  # 10 rooms of 3 responses each
    bank = _rooms_bank(rooms)
    parts = {s: bank.split(s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 30
    assert {s: len(set(p.rooms)) for s, p in parts.items()} == {"train": 8, "val": 1, "test": 1}
    by_split = {s: set(p.rooms) for s, p in parts.items()}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not by_split["val"] & by_split["test"]
    assert all(len(p) == 3 * len(set(p.rooms)) for p in parts.values())  # a room's responses stay together
    assert bank.split("val").names == parts["val"].names  # deterministic
    assert all(r.room == r.name.split("/")[0] for r in parts["train"])


def test_bank_split_needs_three_rooms():
    with pytest.raises(RirError, match=r"2 room\(s\) \(a, b\) cannot make three disjoint splits.*>= 3 rooms"):
        _rooms_bank(["a", "a", "b", "b", "b"]).split("train")


def _threads(_: int) -> tuple[str | None, int, int]:
    import pyroomacoustics as pra

    return os.environ.get("OMP_NUM_THREADS"), pra.constants.get("num_threads"), os.getpid()


def test_pool_workers_run_one_thread_each(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the parent's setting does not reach the workers
    out = rir_bank._parallel_map(_threads, [(i,) for i in range(4)], 2, "", progress=False)
    assert {(omp, pra) for omp, pra, _ in out} == {("1", 1)}
    assert os.getpid() not in {pid for *_, pid in out}
