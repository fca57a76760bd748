"""Pairs: alignment, gain, the early target, determinism of dataset items."""

import numpy as np
import pytest

from dereverb.data.pairs import ReverbPairDataset, make_pair
from dereverb.data.rir_bank import RirBank
from dereverb.data.rooms import RoomSampler
from dereverb.data.speech import SyntheticSpeech
from tests.conftest import toy_rir
from tests.data.conftest import SMALL_ROOMS


@pytest.fixture(scope="module")
def val_bank(cache_dir):
    """The val bank of ``tests/data/test_datamodule.py``'s small DataModule (same cache entry)."""
    return RirBank.simulate(3, RoomSampler(**SMALL_ROOMS), seed=0, split="val", cache_dir=cache_dir, max_order=12, progress=False)


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


def test_dataset_items_aligned_with_simulated_rooms(val_bank):
    # white noise as speech makes the cross-correlation the RIR; rooms are small so the
    # direct path dominates and the peak must sit at lag 0 (+-1 sample for fractional delays)
    noise = ReverbPairDataset(
        _NoiseSource(), val_bank, num_items=3, segment_samples=16000, split="val", seed=1
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


def test_synthetic_speech_pairs_are_deterministic_per_seed(val_bank):
    bank = val_bank
    sp = SyntheticSpeech(n_speakers=30)
    a = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    b = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    c = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=6).item(1)
    assert np.array_equal(a.reverb, b.reverb) and not np.array_equal(a.reverb, c.reverb)
