"""The DataModule: batches, determinism, fresh training items, disjoint splits, the device path."""

import numpy as np
import pytest
import soundfile as sf
import torch

from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.pairs import EpochSampler
from dereverb.data.rooms import RirError, RoomSampler
from tests.conftest import shared_path
from tests.data.conftest import SMALL_ROOMS


def small_dm(cache_dir, **kw):
    args = dict(
        speech="synthetic", rirs="simulated", segment_seconds=1.0, batch_size=4, train_items=8,
        val_items=4, test_items=4, rir_bank_sizes=(6, 3, 3), room=RoomSampler(**SMALL_ROOMS),
        rir_max_order=12, rir_calibrate=0, rir_cache_dir=cache_dir, synthetic_speakers=30,
    )
    args.update(kw)
    return DereverbDataModule(**args)


def test_batches_have_documented_keys_shapes(cache_dir):
    dm = small_dm(cache_dir)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["reverb"].shape == b["clean"].shape == (4, 16000)
    assert b["t60"].shape == b["drr"].shape == (4,)
    assert b["reverb"].dtype == torch.float32
    assert torch.isfinite(b["reverb"]).all() and b["clean"].abs().max() <= 0.99 + 1e-6
    assert (b["t60"] > 0.1).all()


def test_val_items_identical_across_instances(cache_dir):
    a = next(iter(small_dm(cache_dir).val_dataloader()))
    b = next(iter(small_dm(cache_dir).val_dataloader()))
    for k in ("reverb", "clean", "rir_index"):
        assert torch.equal(a[k], b[k])


def test_train_items_differ_between_epochs_and_workers_but_not_with_worker_count(cache_dir):
    dm = small_dm(cache_dir)
    loader = dm.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, EpochSampler)
    sampler.set_epoch(0)
    e0 = torch.cat([b["reverb"] for b in loader])
    sampler.set_epoch(1)
    e1 = torch.cat([b["reverb"] for b in loader])
    assert e0.shape == e1.shape and not torch.allclose(e0, e1)
    # every item of an epoch is distinct (each index is handed to exactly one worker)
    assert len({tuple(x[:50].tolist()) for x in e0}) == e0.shape[0]
    dm2 = small_dm(cache_dir, num_workers=2)
    l2 = dm2.train_dataloader()
    l2.sampler.set_epoch(0)
    w0 = torch.cat([b["reverb"] for b in l2])
    assert torch.allclose(e0, w0)  # reproducible whatever the worker count


def test_splits_share_no_speaker_and_no_rir(cache_dir):
    dm = small_dm(cache_dir)
    src = dm.speech_source()
    spk = {s: set(src.split(s).speakers) for s in ("train", "val", "test")}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    banks = {s: dm.rir_bank(s) for s in ("train", "val", "test")}
    keys = {s: {r.rir[:64].tobytes() for r in b} for s, b in banks.items()}
    assert not (keys["train"] & keys["val"]) and not (keys["train"] & keys["test"]) and not (keys["val"] & keys["test"])


def _write_room_folder(root, rooms: int, per_room: int):
    """``root/room<k>/<j>.wav``: exponentially decaying noise after a unit direct path (T60 0.3 s)."""
    rng = np.random.default_rng(0)
    t = np.arange(4800) / 16000
    for k in range(rooms):
        (root / f"room{k}").mkdir(parents=True)
        for j in range(per_room):
            rir = 0.3 * rng.standard_normal(t.size) * np.exp(-6.9 * t / 0.3)
            rir[0] = 1.0
            sf.write(root / f"room{k}" / f"{j}.wav", rir.astype(np.float32), 16000)


def test_measured_rirs_as_source_split_by_room(tmp_path):
    _write_room_folder(tmp_path / "rooms", rooms=10, per_room=2)
    dm = DereverbDataModule(rirs=str(tmp_path / "rooms"), segment_seconds=1.0, val_items=2, synthetic_speakers=30)
    rooms = {s: {r.room for r in dm.rir_bank(s)} for s in ("train", "val", "test")}
    assert sum(len(dm.rir_bank(s)) for s in rooms) == 20 and sum(len(v) for v in rooms.values()) == 10
    assert not (rooms["train"] & rooms["val"]) and not (rooms["train"] & rooms["test"])
    assert not rooms["val"] & rooms["test"]
    # a new data seed draws new items, never a new split (its val/test rooms stay out of training)
    other = DereverbDataModule(rirs=str(tmp_path / "rooms"), segment_seconds=1.0, val_items=2, synthetic_speakers=30, seed=1)
    assert {s: {r.room for r in other.rir_bank(s)} for s in rooms} == rooms
    item = dm.build_dataset("val").item(0)
    assert item.reverb.shape == (16000,) and 0.15 < item.t60 < 0.6


def test_measured_rirs_of_one_room_cannot_be_split():
    folder = shared_path("rirs", "surrey-room-a")  # 37 responses of one room
    with pytest.raises(RirError, match="1 room.*surrey-room-a.*measured_rir_split: all"):
        DereverbDataModule(rirs=str(folder), segment_seconds=1.0, synthetic_speakers=30).rir_bank("train")
    every = DereverbDataModule(rirs=str(folder), segment_seconds=1.0, synthetic_speakers=30, measured_rir_split="all")
    assert len(every.rir_bank("train")) == len(every.rir_bank("val")) == 37


def test_bad_config_values_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="clean_target"):
        DereverbDataModule(clean_target="wet")
    with pytest.raises(ValueError, match="data.speech"):
        DereverbDataModule(speech=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="data.rirs"):
        DereverbDataModule(rirs=str(tmp_path / "nope"))


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize(("target", "drr"), [("dry", None), ("early", None), ("dry", (-15.0, 10.0))])
def test_device_path_builds_the_same_pairs_as_the_cpu_path(cache_dir, target, drr, device):
    cpu = small_dm(cache_dir, clean_target=target, drr_db_range=drr)
    dev = small_dm(cache_dir, clean_target=target, reverb_on_device=True, drr_db_range=drr)
    for split in ("train", "val"):
        loader_c = cpu._loader(split)
        loader_d = dev._loader(split)
        if split == "train":
            loader_c.sampler.set_epoch(3)
            loader_d.sampler.set_epoch(3)
        bc = next(iter(loader_c))
        bd = next(iter(loader_d))
        assert "reverb" not in bd  # workers did not convolve
        bd = dev.on_after_batch_transfer({k: v.to(device) for k, v in bd.items()}, 0)
        assert bd["reverb"].device.type == device
        bd = {k: v.cpu() for k, v in bd.items()}
        assert torch.allclose(bc["reverb"], bd["reverb"], atol=2e-5)
        assert torch.allclose(bc["clean"], bd["clean"], atol=2e-5)
        assert torch.equal(bc["t60"], bd["t60"]) and torch.equal(bc["drr"], bd["drr"])


def test_drr_augmentation_draws_training_drrs_in_its_range_and_leaves_validation_alone(cache_dir):
    plain, aug = small_dm(cache_dir), small_dm(cache_dir, drr_db_range=(-15.0, 10.0))
    own = torch.tensor([r.drr for r in plain.rir_bank("train")], dtype=torch.float32)
    loaders = [dm.train_dataloader() for dm in (plain, aug)]
    for loader in loaders:
        loader.sampler.set_epoch(0)
    bp, ba = (torch.cat([b["drr"] for b in loader]) for loader in loaders)
    assert torch.isin(bp, own).all()  # without it every item keeps its RIR's DRR
    assert ((ba >= -15.0) & (ba <= 10.0)).all() and ba.std() > 3 and not torch.isin(ba, own).any()
    for loader in loaders:
        loader.sampler.set_epoch(0)
    rp, ra = (torch.cat([b["reverb"] for b in loader]) for loader in loaders)
    assert rp.shape == ra.shape and not torch.allclose(rp, ra)
    vp, va = (next(iter(dm.val_dataloader())) for dm in (plain, aug))
    assert torch.equal(vp["reverb"], va["reverb"]) and torch.equal(vp["drr"], va["drr"])


def test_drr_augmentation_tied_to_t60_leaves_the_shorter_rooms_their_own_drr(cache_dir):
    plain = small_dm(cache_dir)
    bank = plain.rir_bank("train")
    cut = float(np.median(bank.t60s))
    aug = small_dm(cache_dir, drr_db_range=(20.0, 30.0), drr_min_t60=cut)
    loader = aug.train_dataloader()
    loader.sampler.set_epoch(0)
    batches = list(loader)
    drr, t60, r = (torch.cat([b[k] for b in batches]) for k in ("drr", "t60", "rir_index"))
    own = torch.tensor(bank.drrs, dtype=torch.float32)[r]
    short = t60 < cut
    assert short.any() and (~short).any()
    assert torch.equal(drr[short], own[short])  # below the cut: the room's own DRR
    assert ((drr[~short] >= 20.0) & (drr[~short] <= 30.0)).all()
