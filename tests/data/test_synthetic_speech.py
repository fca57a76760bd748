"""Tests for dereverb.data.synthetic_speech: SyntheticSpeech, the procedural speech generator.

Its generation time is measured by ``benchmarks/speech.py``, not asserted here.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dereverb.data.speech import SpeechSource, SyntheticSpeech

SR = 16000
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers
def _modulation_bands(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """1/3-octave modulation spectrum of the 100 Hz intensity envelope (0.5-32 Hz)."""
    hop = sr // 100
    e = np.mean(x[: len(x) // hop * hop].reshape(-1, hop).astype(np.float64) ** 2, axis=1)
    e = e / e.mean() - 1.0
    spec = np.abs(np.fft.rfft(e * np.hanning(len(e)))) ** 2
    fm = np.fft.rfftfreq(len(e), 0.01)
    centres = 2.0 ** np.arange(-1, 5.01, 1 / 3)
    bands = np.array(
        [spec[(fm >= c * 2 ** (-1 / 6)) & (fm < c * 2 ** (1 / 6))].sum() for c in centres]
    )
    return centres, bands


# ---------------------------------------------------------------------------- SyntheticSpeech
def test_synthetic_deterministic() -> None:
    g = SyntheticSpeech()
    a = g.utterance(7, 1.5)
    assert a.shape == (int(1.5 * SR),) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, g.utterance(7, 1.5))
    assert np.array_equal(a, SyntheticSpeech().utterance(7, 1.5))
    assert not np.allclose(a, g.utterance(8, 1.5))
    assert not np.allclose(g.utterance(7, 1.5, speaker=3), g.utterance(7, 1.5, speaker=4))
    assert not np.allclose(a, SyntheticSpeech(seed=1).utterance(7, 1.5))
    with pytest.raises(ValueError, match="speaker"):
        g.utterance(0, 1.0, speaker=200)
    with pytest.raises(ValueError, match="seed"):
        g.utterance(-1, 1.0)


def test_synthetic_identical_across_processes() -> None:
    code = (
        "import hashlib; from dereverb.data.synthetic_speech import SyntheticSpeech as S; "
        "print(hashlib.sha256(S().utterance(123, 1.0, speaker=5).tobytes()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    here = hashlib.sha256(SyntheticSpeech().utterance(123, 1.0, speaker=5).tobytes()).hexdigest()
    assert out.stdout.strip() == here


def test_synthetic_splits_and_protocol() -> None:
    g = SyntheticSpeech(n_speakers=20)
    assert isinstance(g, SpeechSource)
    parts = {n: g.split(n) for n in ("train", "val", "test")}
    ids = {n: {int(spk.removeprefix("synth")) for spk in p.speakers} for n, p in parts.items()}
    assert [len(ids[n]) for n in ("train", "val", "test")] == [16, 2, 2]
    assert set().union(*ids.values()) == set(range(20))
    assert (
        not ids["train"] & ids["val"]
        and not ids["val"] & ids["test"]
        and not ids["train"] & ids["test"]
    )
    assert set(parts["val"].speakers).isdisjoint(parts["train"].speakers)
    # sample() draws only this split's speakers
    drawn: list[int] = []
    val = parts["val"]
    orig = val._render
    val._render = lambda rng, n, speaker: (drawn.append(speaker), orig(rng, n, speaker))[1]  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = val.sample(rng, 4000)
        assert x.shape == (4000,) and x.dtype == np.float32
    assert set(drawn) <= ids["val"]
    # item(): deterministic per (split, index); val and test differ
    assert np.array_equal(parts["val"].item(3, 4000), g.split("val").item(3, 4000))
    assert not np.allclose(parts["val"].item(3, 4000), parts["test"].item(3, 4000))
    assert not np.allclose(parts["val"].item(3, 4000), parts["val"].item(4, 4000))
    assert len(parts["train"]) == 16 * g.utterances_per_speaker
    with pytest.raises(ValueError, match="3 non-empty"):
        SyntheticSpeech(n_speakers=2).split("train")


def test_synthetic_level_and_nonsilent_crops() -> None:
    g = SyntheticSpeech().split("train")
    rng = np.random.default_rng(5)
    for length in [800] * 40 + [SR] * 10:  # 50 ms items too: speech starts at once
        x = g.sample(rng, length)
        rms_db = 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        assert -25.5 < rms_db < -24.5  # RMS -25 dBFS; a silent item would sit at the -70 dB floor
        assert np.max(np.abs(x)) < 0.99


def test_synthetic_speaker_voices() -> None:
    """F0 measured by autocorrelation lies in the speaker's sex range; female tracts are shorter."""
    g = SyntheticSpeech()
    seen = set()
    for spk in range(8):
        p = g.speaker_params(spk)
        lo, hi = (165, 255) if p.female else (85, 155)
        assert lo <= p.f0_mean <= hi
        assert (p.vt_scale > 1.1) == p.female
        seen.add(p.female)
        x = g.utterance(1, 2.0, speaker=spk).astype(np.float64)
        est = []
        for i in range(0, len(x) - 640, 320):
            s = x[i : i + 640] - x[i : i + 640].mean()
            ac = np.correlate(s, s, "full")[639:]
            if ac[0] < 1e-4:
                continue
            lag = 40 + int(np.argmax(ac[40:267]))  # 60-400 Hz
            if ac[lag] > 0.5 * ac[0]:
                est.append(SR / lag)
        assert len(est) > 10
        assert 0.85 * lo < np.median(est) < 1.15 * hi
    assert seen == {True, False}


def test_synthetic_is_scored_by_pesq_and_stoi() -> None:
    pesq = pytest.importorskip("pesq")
    pystoi = pytest.importorskip("pystoi")
    g = SyntheticSpeech().split("test")
    rng = np.random.default_rng(0)
    for i in range(2):
        ref = g.item(i, 3 * SR).astype(np.float64)
        rms = np.sqrt(np.mean(ref**2))
        light = ref + rms * 10 ** (-40 / 20) * rng.standard_normal(len(ref))  # 40 dB SNR
        heavy = ref + rms * 10 ** (0 / 20) * rng.standard_normal(len(ref))  # 0 dB SNR
        p_light = pesq.pesq(SR, ref, light, "wb")
        p_heavy = pesq.pesq(SR, ref, heavy, "wb")
        assert p_light > 3.8 and p_heavy < 1.5
        s_light, s_heavy = pystoi.stoi(ref, light, SR), pystoi.stoi(ref, heavy, SR)
        assert s_light > 0.97 and s_heavy < s_light - 0.1


def test_synthetic_is_speech_like() -> None:
    g = SyntheticSpeech()
    xs = [g.utterance(i, 8.0) for i in range(6)]
    # ~4 Hz syllable rhythm: the 1/3-octave modulation spectrum peaks within 2-8 Hz
    acc = 0.0
    for x in xs:
        c, b = _modulation_bands(x)
        acc = acc + b / b.sum()
    assert 2.0 <= c[int(np.argmax(acc))] <= 8.0
    # pauses: some 20 ms frames 30+ dB below the loudest frame
    x = xs[0].astype(np.float64)
    e = 10 * np.log10(np.mean(x[: len(x) // 320 * 320].reshape(-1, 320) ** 2, axis=1) + 1e-20)
    assert np.mean(e < e.max() - 30) > 0.05
    # long-term spectrum falls from 500 Hz to 4 kHz (LibriSpeech here: -8.4 dB 1k->2k, -9 dB 1k->4k)
    from scipy.signal import welch

    f, p = welch(np.concatenate(xs), SR, nperseg=1024)
    band = {
        k: 10 * np.log10(p[(f >= 0.85 * k) & (f <= 1.15 * k)].mean())
        for k in (500, 1000, 2000, 4000)
    }
    assert band[500] > band[1000] > band[2000] > band[4000]
    assert 6 < band[1000] - band[4000] < 25
