"""Pairs and the DataModule: alignment, gain, determinism, fresh training items, disjoint splits."""

import numpy as np
import pytest
import torch

from dereverb.data.datamodule import DereverbDataModule, EpochSampler, ReverbPairDataset, make_pair
from dereverb.data.rir import RirBank, RoomSampler
from dereverb.data.speech import SyntheticSpeech
from tests.conftest import shared_path, toy_rir

SMALL_ROOMS = {"t60_range": (0.25, 0.45), "room_dims_max": (6.0, 5.0, 3.0), "distance_range": (0.7, 1.2)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("rircache"))


def small_dm(cache_dir, **kw):
    args = dict(
        speech="synthetic", rirs="simulated", segment_seconds=1.0, batch_size=4, train_items=8,
        val_items=4, test_items=4, rir_bank_sizes=(6, 3, 3), room=RoomSampler(**SMALL_ROOMS),
        rir_max_order=12, rir_calibrate=0, rir_cache_dir=cache_dir, synthetic_speakers=30,
    )
    args.update(kw)
    return DereverbDataModule(**args)


def _lag(reverb: np.ndarray, clean: np.ndarray, max_lag: int = 400) -> int:
    n = reverb.size
    spec = np.fft.rfft(reverb, 2 * n) * np.conj(np.fft.rfft(clean, 2 * n))
    xc = np.fft.irfft(spec)
    lags = np.r_[xc[: max_lag + 1], xc[-max_lag:]]
    idx = int(np.argmax(np.abs(lags)))
    return idx if idx <= max_lag else idx - 2 * max_lag - 1


def test_make_pair_dry_target_is_aligned_and_unclipped():
    rng = np.random.default_rng(0)
    dry = rng.standard_normal(16000).astype(np.float32)  # white: cross-correlation = the RIR
    rir = np.zeros(4000, np.float32)
    rir[37] = 1.0  # direct path at the dry level, as RirBank delivers it
    rir[37 + 200 :] = toy_rir(0.3)[: 4000 - 237] * 0.5
    reverb, clean = make_pair(dry, rir, 37, 16000, "dry", gain_db=20.0)
    assert _lag(reverb, clean) == 0
    assert max(np.abs(reverb).max(), np.abs(clean).max()) <= 0.99 + 1e-6  # gain lowered, no clipping
    # clean is exactly the dry speech delayed to the direct path, at the same gain
    g = clean[100] / dry[63]
    np.testing.assert_allclose(clean[37:], g * dry[:-37], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reverb[37:237], clean[37:237], atol=1e-5)  # before the first reflection


def test_early_target_contains_first_50ms_only():
    dry = np.zeros(8000, np.float32)
    dry[0] = 1.0
    rir = toy_rir(0.5)
    _, early = make_pair(dry, rir, 0, 16000, "early")
    reverb, _ = make_pair(dry, rir, 0, 16000, "dry")
    n50 = int(0.05 * 16000)
    np.testing.assert_allclose(early[: n50 + 1], reverb[: n50 + 1], atol=1e-6)
    assert np.abs(early[n50 + 2 :]).max() < 1e-6  # FFT round-off only


def test_dataset_items_aligned_with_simulated_rooms(cache_dir):
    dm = small_dm(cache_dir)
    ds = dm.build_dataset("val")
    # white noise as speech makes the cross-correlation the RIR; rooms are small so the
    # direct path dominates and the peak must sit at lag 0 (+-1 sample for fractional delays)
    noise = ReverbPairDataset(
        _NoiseSource(), ds.rirs, num_items=3, segment_samples=16000, split="val", seed=1
    )
    for i in range(3):
        it = noise.item(i)
        assert abs(_lag(it.reverb, it.clean)) <= 1


class _NoiseSource:
    speakers = ["noise"]

    def split(self, name):
        return self

    def sample(self, rng, length):
        return rng.standard_normal(length).astype(np.float32) * 0.1

    def item(self, index, length):
        return self.sample(np.random.default_rng(index), length)

    def __len__(self):
        return 1


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


def test_measured_rirs_as_source_split_disjointly(tmp_path):
    folder = shared_path("rirs", "surrey-room-a")
    dm = DereverbDataModule(rirs=str(folder), segment_seconds=1.0, val_items=2, synthetic_speakers=30)
    names = {s: {r.name for r in dm.rir_bank(s)} for s in ("train", "val", "test")}
    assert sum(len(v) for v in names.values()) == 37
    assert not (names["train"] & names["val"]) and not (names["val"] & names["test"])
    item = dm.build_dataset("val").item(0)
    assert item.reverb.shape == (16000,) and 0.15 < item.t60 < 0.6


def test_bad_config_values_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="clean_target"):
        DereverbDataModule(clean_target="wet")
    with pytest.raises(ValueError, match="data.speech"):
        DereverbDataModule(speech=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="data.rirs"):
        DereverbDataModule(rirs=str(tmp_path / "nope"))


def test_synthetic_speech_pairs_are_deterministic_per_seed(cache_dir):
    bank = RirBank.simulate(3, RoomSampler(**SMALL_ROOMS), seed=0, split="val", cache_dir=cache_dir, max_order=12, progress=False)
    sp = SyntheticSpeech(n_speakers=30)
    a = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    b = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    c = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=6).item(1)
    assert np.array_equal(a.reverb, b.reverb) and not np.array_equal(a.reverb, c.reverb)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("target", ["dry", "early"])
def test_device_path_builds_the_same_pairs_as_the_cpu_path(cache_dir, target, device):
    cpu = small_dm(cache_dir, clean_target=target)
    dev = small_dm(cache_dir, clean_target=target, reverb_on_device=True)
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
        assert torch.equal(bc["t60"], bd["t60"])
