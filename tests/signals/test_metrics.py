"""Tests for dereverb.signals.metrics: the registry, PESQ-WB, STOI/ESTOI, SI-SDR, SRMR, batch
helpers, failure handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dereverb.signals import metrics as M
from tests.conftest import SHARED_DATA

SR = 16000


def speechlike(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic tones (F0 ~ 105-165 Hz, slowly moving spectral tilt), 4 syllables/s, and a
    0.4-s pause every 1.5 s: enough voice activity for PESQ's detector. Not real speech.
    Shape (L,), float64, peak 0.3."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.5 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(
        np.sin(k * phase) * (1 + 0.8 * np.sin(2 * np.pi * (0.3 + 0.1 * k) * t)) / k
        for k in range(1, 40)
        if k * 170 < sr / 2
    )
    syllables = np.clip(np.sin(2 * np.pi * 2 * t), 0, None) ** 0.5
    pauses = (t % 1.5) < 1.1
    x = x * syllables * pauses + 1e-4 * rng.standard_normal(t.size)
    return 0.3 * x / np.abs(x).max()


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """x plus speech-shaped noise (x's magnitude spectrum, random phase) at ``snr_db``."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(x)
    noise = np.fft.irfft(np.abs(spec) * np.exp(2j * np.pi * rng.random(spec.size)), n=x.size)
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return x + noise


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return speechlike()


def test_identical_signals_score_at_ceiling(clean: np.ndarray) -> None:
    s = M.score(clean, clean, SR)
    assert set(s) == {"pesq", "stoi", "estoi", "si_sdr"}
    assert s["pesq"] == pytest.approx(4.64, abs=0.01)
    assert s["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert s["estoi"] == pytest.approx(1.0, abs=1e-6)
    assert s["si_sdr"] > 50


def test_every_metric_falls_monotonically_with_noise(clean: np.ndarray) -> None:
    scores = [M.score(clean, add_noise(clean, snr), SR) for snr in (20, 10, 0)]
    for name in M.METRICS:
        values = [s[name] for s in scores]
        assert all(np.isfinite(values)), (name, values)
        assert values[0] > values[1] > values[2], (name, values)
    # SI-SDR of additive uncorrelated noise is close to the SNR
    assert [s["si_sdr"] for s in scores] == pytest.approx([20, 10, 0], abs=1.5)
    assert 1.0 < scores[-1]["pesq"] < scores[0]["pesq"] < 4.0


def test_silent_reference_is_nan_not_error(clean: np.ndarray) -> None:
    zeros = np.zeros_like(clean)
    s = M.score(zeros, clean, SR)
    assert all(math.isnan(v) for v in s.values()), s
    batch = M.score_batch(np.stack([clean, zeros, zeros]), np.stack([clean, clean, zeros]), SR)
    assert batch["pesq_failed"] == 2
    assert batch["pesq"][0] == pytest.approx(4.64, abs=0.01)
    assert np.isnan(batch["pesq"][1:]).all()


def test_unscorable_signals_are_nan_not_error(clean: np.ndarray) -> None:
    # too short for PESQ's utterance detection and STOI's 30-frame window
    short = clean[: SR // 5]
    assert math.isnan(M.pesq_wb(short, short, SR))
    assert math.isnan(M.stoi(short, short, SR))
    # a 20-Hz hum has no energy in PESQ's speech band: NoUtterancesError inside pesq
    hum = 0.1 * np.sin(2 * np.pi * 20 * np.arange(SR) / SR)
    assert math.isnan(M.pesq_wb(hum, hum, SR))
    assert M.score_batch(hum[None], hum[None], SR, metrics=("pesq",))["pesq_failed"] == 1
    # non-finite estimate
    bad = clean.copy()
    bad[100] = np.nan
    assert all(math.isnan(v) for v in M.score(clean, bad, SR).values())


def test_si_sdr_is_invariant_to_estimate_scale(clean: np.ndarray) -> None:
    est = add_noise(clean, 5, seed=3)
    base = M.si_sdr(clean, est)
    for gain in (1e-3, 0.5, 7.0):
        assert M.si_sdr(clean, gain * est) == pytest.approx(base, abs=1e-6)
    # ... but adding a second, equal noise costs about 3 dB
    more_noise = est + (add_noise(clean, 5, seed=4) - clean)
    assert M.si_sdr(clean, more_noise) == pytest.approx(base - 3, abs=0.5)
    # a negated estimate scores the same (optimal scale is negative)
    assert M.si_sdr(clean, -est) == pytest.approx(base, abs=1e-6)


def test_si_sdr_known_value() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    # make noise orthogonal to ref, so SI-SDR = 10 log10(|3 ref|^2 / |0.3 noise|^2) exactly
    noise -= ref * (noise @ ref) / (ref @ ref)
    expected = 10 * np.log10((ref @ ref) / (noise @ noise) * 100)
    assert M.si_sdr(ref, 3 * ref + 0.3 * noise) == pytest.approx(expected, abs=1e-6)


def test_batch_matches_single_calls_and_accepts_torch(clean: np.ndarray) -> None:
    refs = np.stack([clean, speechlike(seed=1)[: clean.size]])
    ests = np.stack([add_noise(refs[0], 15), add_noise(refs[1], 5, seed=2)])
    batch = M.score_batch(torch.from_numpy(refs).float(), torch.from_numpy(ests).float(), SR)
    assert batch["pesq_failed"] == 0
    for i in range(2):
        single = M.score(refs[i].astype(np.float32), ests[i].astype(np.float32), SR)
        for name in M.METRICS:
            assert batch[name].shape == (2,)
            assert batch[name][i] == pytest.approx(single[name], rel=1e-6, abs=1e-6), name
    only = M.score_batch(refs, ests, SR, metrics=("si_sdr",))
    assert set(only) == {"si_sdr"}
    np.testing.assert_allclose(only["si_sdr"], batch["si_sdr"], rtol=1e-5)


@pytest.mark.parametrize("sr", [8000, 48000])
def test_pesq_resamples_other_rates(sr: int) -> None:
    x = speechlike(sr=sr)
    assert M.pesq_wb(x, x, sr) == pytest.approx(4.64, abs=0.01)
    noisy = M.pesq_wb(x, add_noise(x, 10), sr)
    assert 1.0 < noisy < 3.0
    # same content at 16 kHz gives a similar score
    assert noisy == pytest.approx(M.pesq_wb(speechlike(), add_noise(speechlike(), 10), SR), abs=0.5)


def test_shape_errors_raise_value_error(clean: np.ndarray) -> None:
    with pytest.raises(ValueError, match="same length"):
        M.pesq_wb(clean, clean[:-1], SR)
    with pytest.raises(ValueError, match="same length"):
        M.stoi(clean, clean[:-5], SR)
    with pytest.raises(ValueError, match="same length"):
        M.si_sdr(clean, clean[1:])
    with pytest.raises(ValueError, match="1-D"):
        M.score(clean[None], clean[None], SR)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        M.score_batch(clean, clean, SR)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        M.score_batch(np.stack([clean, clean]), np.stack([clean, clean])[:, :-1], SR)
    with pytest.raises(ValueError, match="metrics"):
        M.score(clean, clean, SR, metrics=("pesq", "mos"))
    with pytest.raises(ValueError, match="sample_rate"):
        M.pesq_wb(clean, clean, 0)


def test_reverberant_real_speech_scores_below_clean() -> None:
    """Real speech (VCTK) through a measured room (Surrey Room A) loses on every metric."""
    sf = pytest.importorskip("soundfile")
    speech = SHARED_DATA / "speech" / "vctk-p287"
    rir_path = SHARED_DATA / "rirs" / "surrey-room-a" / "roomA_az+000.wav"
    if not speech.is_dir() or not rir_path.is_file():
        pytest.skip(f"shared data not present under {SHARED_DATA}")
    x, sr = sf.read(sorted(speech.glob("*.wav"))[0], dtype="float64")
    rir, rir_sr = sf.read(rir_path, dtype="float64")
    assert sr == rir_sr == SR
    x = x[: 4 * SR]
    rir = rir[:, 0] if rir.ndim == 2 else rir
    direct = int(np.argmax(np.abs(rir)))
    wet = np.convolve(x, rir)[direct : direct + x.size]  # aligned to the direct path
    wet *= np.abs(x).max() / np.abs(wet).max()
    s_clean, s_wet = M.score(x, x, SR), M.score(x, wet, SR)
    assert s_clean["pesq"] == pytest.approx(4.64, abs=0.01)
    for name in M.METRICS:
        assert np.isfinite(s_wet[name]) and s_wet[name] < s_clean[name], name
    assert 1.0 < s_wet["pesq"] < 4.0
    assert 0.3 < s_wet["stoi"] < 1.0


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_metric_with_its_table_settings() -> None:
    assert M.ALL_METRICS == ("pesq", "stoi", "estoi", "si_sdr", "srmr")
    expected = {  # name: (label, digits, needs_reference)
        "pesq": ("PESQ-WB", 3, True),
        "stoi": ("STOI", 4, True),
        "estoi": ("ESTOI", 4, True),
        "si_sdr": ("SI-SDR (dB)", 2, True),
        "srmr": ("SRMR", 3, False),
    }
    for name, (label, digits, needs_reference) in expected.items():
        m = M.REGISTRY[name]
        assert (m.name, m.label, m.digits, m.needs_reference) == (
            name,
            label,
            digits,
            needs_reference,
        )
        assert m.higher_is_better and callable(m.fn)
        assert M.LABELS[name] == label and M.DIGITS[name] == digits
    # SRMR is the non-intrusive one; the intrusive ones are what score / validation compute.
    assert M.METRICS == ("pesq", "stoi", "estoi", "si_sdr")
    with pytest.raises(TypeError):
        M.REGISTRY["new"] = M.REGISTRY["pesq"]  # type: ignore[index]


def test_every_table_reads_the_registry() -> None:
    from dereverb.evaluation import report
    from dereverb.experiment import report as study_report
    from dereverb.experiment.runner import METRICS as STUDY_METRICS
    from dereverb.training.module import VAL_METRICS

    assert VAL_METRICS == M.METRICS and STUDY_METRICS == M.METRICS
    assert report.METRICS == M.ALL_METRICS
    assert report.LABELS is M.LABELS and report.DIGITS is M.DIGITS
    assert study_report.LABELS is M.LABELS and study_report.DIGITS is M.DIGITS


def test_registry_functions_score_a_pair(clean: np.ndarray) -> None:
    noisy = add_noise(clean, 10.0)
    for name, m in M.REGISTRY.items():
        v = m.fn(clean, noisy, SR) if m.needs_reference else m.fn(noisy, SR)
        assert math.isfinite(v), name
    assert M.REGISTRY["estoi"].fn(clean, noisy, SR) == M.stoi(clean, noisy, SR, extended=True)
    assert M.REGISTRY["si_sdr"].fn(clean, noisy, SR) == M.si_sdr(clean, noisy)


def test_srmr_is_non_intrusive_and_nan_when_undefined(clean: np.ndarray) -> None:
    tail = np.exp(-np.arange(8000) / 1600.0) * np.random.default_rng(0).standard_normal(8000)
    wet = np.convolve(clean, tail)[: clean.size]
    wet *= np.abs(clean).max() / np.abs(wet).max()
    assert M.srmr(clean, SR, fast=True) > M.srmr(wet, SR, fast=True)  # reverberation lowers SRMR
    assert math.isnan(M.srmr(np.zeros(SR), SR))  # silent
    assert math.isnan(M.srmr(clean[: SR // 8], SR))  # shorter than a quarter second
    assert math.isnan(M.srmr(np.full(SR, np.nan), SR))
