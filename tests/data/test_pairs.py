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

    def sample(self, rng, length, preroll=0):
        return rng.standard_normal(preroll + length).astype(np.float32) * 0.1

    def item(self, index, length, preroll=0):
        return self.sample(np.random.default_rng(index), length, preroll)

    def __len__(self):
        return 1


def test_synthetic_speech_pairs_are_deterministic_per_seed(val_bank):
    bank = val_bank
    sp = SyntheticSpeech(n_speakers=30)
    a = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    b = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=5).item(1)
    c = ReverbPairDataset(sp.split("val"), bank, 2, 8000, split="val", seed=6).item(1)
    assert np.array_equal(a.reverb, b.reverb) and not np.array_equal(a.reverb, c.reverb)


@pytest.mark.parametrize("target", ["dry", "early"])
def test_pair_of_any_window_is_that_window_of_the_whole_convolution(target):
    """With a preroll as long as the RIR, a segment's pair equals the same window cut from the
    convolution of the whole utterance: the tail of the speech before it is in the segment."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(3)
    speech = rng.standard_normal(48000)
    rir = toy_rir(0.6)[:9000].astype(np.float64)
    rir[:20] = 0.0
    rir[20] = 1.0
    d, L, P = 20, 8000, len(rir)
    full = fftconvolve(speech, rir)
    if target == "dry":
        full_clean = np.concatenate([np.zeros(d), speech])
    else:
        full_clean = fftconvolve(speech, rir[: d + int(0.05 * 16000) + 1])
    for start in (0, 5000, 17000, 40000):  # 0: the very start of the utterance, silence before it
        lo = max(start - P, 0)
        dry = np.concatenate([np.zeros(P - (start - lo)), speech[lo : start + L]])
        reverb, clean = make_pair(dry, rir, d, 16000, target, gain_db=-40.0, preroll=P)
        g = 10 ** (-40 / 20)
        np.testing.assert_allclose(reverb, g * full[start : start + L], atol=1e-5)
        np.testing.assert_allclose(clean, g * full_clean[start : start + L], atol=1e-5)
    # without the preroll the first part of the window misses the tail: the old, too-easy pair
    short, _ = make_pair(speech[17000 : 17000 + L], rir, d, 16000, target, gain_db=-40.0)
    assert np.abs(short[:2000] - g * full[17000:19000]).max() > 1e-3


def test_noise_is_added_at_the_requested_snr_and_not_to_the_target():
    from dereverb.data.noise import coloured_noise

    rng = np.random.default_rng(0)
    dry = rng.standard_normal(20000).astype(np.float32) * 0.1
    rir = np.zeros(400, np.float32)
    rir[0] = 1.0
    noise = coloured_noise(rng, 16000, 1.0)
    assert abs(np.sqrt(np.mean(noise**2)) - 1.0) < 1e-4
    clean_pair = make_pair(dry, rir, 0, 16000, preroll=4000)
    noisy, clean = make_pair(dry, rir, 0, 16000, preroll=4000, noise=noise, snr_db=10.0)
    np.testing.assert_allclose(clean, clean_pair[1], atol=1e-6)
    n = noisy - clean_pair[0]
    snr = 10 * np.log10(np.mean(clean_pair[0] ** 2) / np.mean(n**2))
    assert abs(snr - 10.0) < 0.01
    # pink: more power below 500 Hz than white noise has (a quarter of its band is 16x)
    spec = np.abs(np.fft.rfft(noise)) ** 2
    assert spec[: len(spec) // 16].sum() > 0.5 * spec.sum()


def test_dataset_noise_share_and_snr_range(val_bank):
    ds = ReverbPairDataset(
        _NoiseSource(), val_bank, num_items=40, segment_samples=4000, split="val", seed=1,
        noise_prob=0.5, noise_snr_db_range=(10.0, 20.0),
    )
    snrs = np.array([ds.item(i).snr_db for i in range(40)])
    noisy = np.isfinite(snrs)
    assert 10 <= noisy.sum() <= 30
    assert snrs[noisy].min() >= 10.0 and snrs[noisy].max() <= 20.0
    assert ds.preroll == max(len(r.rir) for r in val_bank)
