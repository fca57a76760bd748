"""Tests for dereverb.data.speech (SpeechCorpus) and dereverb.data.synthetic_speech (SyntheticSpeech)."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dereverb.data.speech import (
    CorpusError,
    CorpusWarning,
    SpeechCorpus,
    SpeechSource,
    SyntheticSpeech,
    active_level_db,
    speaker_from_path,
)

SR = 16000
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LIBRI = DATA / "speech" / "librispeech-train-clean-100"


# ---------------------------------------------------------------------------- helpers
def _tone_burst_audio(rng: np.random.Generator, seconds: float, sr: int = SR) -> np.ndarray:
    """Synthetic noise with a speech-like on/off pattern (no third-party audio). (L,)"""
    n = int(seconds * sr)
    x = 0.1 * rng.standard_normal(n)
    env = (np.sin(2 * np.pi * 3.0 * np.arange(n) / sr) > 0).astype(float)
    return (x * env).astype(np.float32)


def _write(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)
    return path


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """10 LibriSpeech-named speakers x 2 utterances, one of them at 8 kHz, one stereo."""
    rng = np.random.default_rng(0)
    for s in range(10):
        for u in range(2):
            spk = 100 + s
            x = _tone_burst_audio(rng, 1.5 + 0.25 * u)
            sr = 8000 if (s, u) == (0, 0) else SR
            if sr != SR:
                x = x[::2]
            if (s, u) == (1, 0):
                x = np.stack([x, 0.5 * x], axis=1)  # stereo -> downmixed on load
            _write(tmp_path / "corpus" / f"{spk}-7-{u:04d}.flac", x, sr)
    return tmp_path / "corpus"


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


# ---------------------------------------------------------------------------- speaker ids
@pytest.mark.parametrize(
    ("path", "speaker"),
    [
        ("any/where/103-1240-0000.flac", "103"),
        ("LibriSpeech/train-clean-100/19/198/19-198-0001.flac", "19"),
        ("LibriSpeech/19/198/renamed.wav", "19"),  # SPEAKER/CHAPTER layout
        ("VCTK/wav48/p287/p287_001.wav", "p287"),
        ("flat/p225_001_mic1.flac", "p225"),
        ("vctk/s5_120_mic2.flac", "s5"),
        ("arctic/cmu_arctic_us_axb_a0006.wav", "axb"),
        ("cmu_us_slt_arctic/wav/arctic_a0001.wav", "slt"),
        ("my_recordings/alice/take1.wav", "alice"),
        ("my_recordings/bob/2024-01-01.wav", "bob"),
    ],
)
def test_speaker_from_path(path: str, speaker: str) -> None:
    assert speaker_from_path(path) == speaker


# ---------------------------------------------------------------------------- SpeechCorpus
def test_corpus_scan_and_splits(corpus_dir: Path) -> None:
    c = SpeechCorpus(corpus_dir)
    assert len(c) == 20 and len(c.speakers) == 10
    assert isinstance(c, SpeechSource)
    parts = {n: c.split(n) for n in ("train", "val", "test")}
    spk = {n: set(p.speakers) for n, p in parts.items()}
    assert [len(spk[n]) for n in ("train", "val", "test")] == [8, 1, 1]
    assert (
        not spk["train"] & spk["val"]
        and not spk["train"] & spk["test"]
        and not spk["val"] & spk["test"]
    )
    assert spk["train"] | spk["val"] | spk["test"] == set(c.speakers)
    assert sum(len(p) for p in parts.values()) == len(c)
    # deterministic for a seed, different for another seed
    again = SpeechCorpus(corpus_dir, seed=0)
    assert again.split_speakers() == c.split_speakers()
    assert SpeechCorpus(corpus_dir, seed=1).split_speakers() != c.split_speakers()
    with pytest.raises(ValueError, match="already"):
        parts["train"].split("val")
    with pytest.raises(ValueError, match="split name"):
        c.split("dev")  # type: ignore[arg-type]


def test_corpus_resamples_downmixes_and_crops(corpus_dir: Path) -> None:
    c = SpeechCorpus(corpus_dir)
    idx = {u.path.name: i for i, u in enumerate(c.utterances)}
    x8k, _ = c.load(idx["100-7-0000.flac"])
    assert c.utterances[idx["100-7-0000.flac"]].sample_rate == 8000
    assert x8k.ndim == 1 and abs(len(x8k) - int(1.5 * SR)) <= 2  # resampled to 16 kHz
    stereo, _ = c.load(idx["101-7-0000.flac"])
    assert stereo.ndim == 1 and stereo.dtype == np.float32
    rng = np.random.default_rng(1)
    crops = [c.sample(rng, 4000) for _ in range(40)]
    assert all(x.shape == (4000,) and x.dtype == np.float32 for x in crops)
    # non-silent: every crop is within min_crop_level_db (10 dB) of the active level (-20 dB)
    powers = np.array([10 * np.log10(np.mean(x.astype(np.float64) ** 2)) for x in crops])
    assert powers.min() > -30.5


def test_corpus_crops_skip_silence(tmp_path: Path) -> None:
    """Long silences with short speech: training crops must never be all silent."""
    rng = np.random.default_rng(2)
    for s in range(3):
        x = np.zeros(4 * SR, dtype=np.float32)
        a = int((0.5 + s) * SR)
        x[a : a + SR // 5] = 0.2 * rng.standard_normal(SR // 5)  # 0.2 s of sound in 4 s
        _write(tmp_path / f"spk{s}" / "u.wav", x)
    c = SpeechCorpus(tmp_path, split_fractions=(1.0, 0.0, 0.0)).split("train")
    r = np.random.default_rng(3)
    for _ in range(50):
        crop = c.sample(r, SR // 2)
        assert np.sqrt(np.mean(crop**2)) > 0.02, "an all-silent training crop"


def test_corpus_item_is_deterministic(corpus_dir: Path) -> None:
    val = SpeechCorpus(corpus_dir).split("val")
    other = SpeechCorpus(corpus_dir).split("val")
    a, b = val.item(1, 8000), other.item(1, 8000)
    assert np.array_equal(a, b) and a.shape == (8000,)
    assert not np.array_equal(val.item(0, 8000), val.item(1, 8000))
    assert not np.array_equal(
        val.item(0, 8000), val.item(2, 8000)
    )  # wraps: same utterance, new crop
    with pytest.raises(IndexError):
        val.item(-1, 8000)


def test_short_utterance_is_zero_padded_at_random_offset(tmp_path: Path) -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)  # 1.0 s
    x = sf.read(str(_write(tmp_path / "a" / "one.wav", x)), dtype="float32")[
        0
    ]  # as stored (16-bit)
    c = SpeechCorpus(tmp_path, min_duration=0.5, split_fractions=(1.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(5):
        y = c.sample(rng, 2 * SR)
        nz = np.flatnonzero(y)
        assert y.shape == (2 * SR,) and nz[-1] - nz[0] + 1 <= SR
        assert np.allclose(y[nz[0] : nz[0] + SR], x, atol=1e-6)  # the whole utterance, unlooped
        offsets.add(int(nz[0]))
    assert len(offsets) > 1


def test_corrupt_files_are_skipped_with_one_warning(corpus_dir: Path) -> None:
    (corpus_dir / "bad").mkdir()
    (corpus_dir / "bad" / "text.wav").write_text("this is not audio\n")
    (corpus_dir / "bad" / "empty.wav").write_bytes(b"")
    (corpus_dir / "bad" / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = SpeechCorpus(corpus_dir)
    ours = [w for w in caught if issubclass(w.category, CorpusWarning)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "skipped 3" in msg and "text.wav" in msg and "empty.wav" in msg
    assert sorted(p.name for p in c.skipped) == ["empty.wav", "garbage.flac", "text.wav"]
    assert len(c) == 20


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no audio files .* found under .*empty"):
        (tmp_path / "empty").mkdir()
        SpeechCorpus(tmp_path / "empty")
    with pytest.raises(CorpusError, match="does not exist"):
        SpeechCorpus(tmp_path / "missing")
    _write(tmp_path / "short" / "a" / "x.wav", np.zeros(800, np.float32))
    with pytest.raises(CorpusError, match="min_duration"):
        SpeechCorpus(tmp_path / "short")
    (tmp_path / "onlybad").mkdir()
    (tmp_path / "onlybad" / "x.wav").write_text("nope")
    with pytest.warns(CorpusWarning), pytest.raises(CorpusError, match="1 unreadable"):
        SpeechCorpus(tmp_path / "onlybad")
    with pytest.raises(ValueError, match="split_fractions"):
        SpeechCorpus(tmp_path / "short", split_fractions=(0.5, 0.1, 0.1))


def test_too_few_speakers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("alice", "bob"):
        _write(tmp_path / name / "u1.wav", _tone_burst_audio(rng, 1.2))
    c = SpeechCorpus(tmp_path)
    assert c.speakers == ["alice", "bob"]
    with pytest.raises(CorpusError, match=r"found 2 speaker.*at least 3"):
        c.split("train")
    only_train = SpeechCorpus(tmp_path, split_fractions=(1.0, 0.0, 0.0))
    assert len(only_train.split("train")) == 2
    with pytest.raises(CorpusError, match="empty"):
        only_train.split("val")


def test_cache_is_bounded_and_not_pickled(corpus_dir: Path) -> None:
    c = SpeechCorpus(corpus_dir, cache_mb=0.25)  # ~2 utterances of 1.5 s float32
    for i in range(len(c)):
        c.load(i)
    assert 0 < c._cache.nbytes <= 0.25 * 2**20 and len(c._cache) < len(c)
    clone = pickle.loads(pickle.dumps(c))
    assert len(clone._cache) == 0 and len(clone) == len(c)
    assert np.array_equal(clone.item(3, 1000), c.item(3, 1000))


def test_active_level_ignores_pauses() -> None:
    x = np.zeros(2 * SR)
    x[:SR] = 0.1 * np.random.default_rng(0).standard_normal(SR)  # -20 dB power, then silence
    assert active_level_db(x, SR) == pytest.approx(-20.0, abs=0.5)
    assert active_level_db(np.zeros(SR), SR) == -np.inf


@pytest.mark.skipif(not LIBRI.is_dir(), reason="../shared/data LibriSpeech subset not present")
def test_librispeech_subset() -> None:
    c = SpeechCorpus(LIBRI)
    assert len(c.speakers) == 251 and len(c) == 251
    parts = {n: c.split(n) for n in ("train", "val", "test")}
    sets = [set(p.speakers) for p in parts.values()]
    assert [len(s) for s in sets] == [201, 25, 25]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = parts["train"].sample(rng, 2 * SR)
        assert x.shape == (2 * SR,) and 10 * np.log10(np.mean(x.astype(np.float64) ** 2)) > -60


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
        cwd=Path(__file__).resolve().parents[1],
    )
    here = hashlib.sha256(SyntheticSpeech().utterance(123, 1.0, speaker=5).tobytes()).hexdigest()
    assert out.stdout.strip() == here


def test_synthetic_splits_and_protocol() -> None:
    g = SyntheticSpeech(n_speakers=20)
    assert isinstance(g, SpeechSource)
    parts = {n: g.split(n) for n in ("train", "val", "test")}
    ids = {n: set(p.speaker_ids.tolist()) for n, p in parts.items()}
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


def test_synthetic_speed() -> None:
    g = SyntheticSpeech()
    g.utterance(0, 2.0)
    times = []
    for i in range(10):
        t = time.process_time()  # CPU time: robust to other processes sharing the cores
        g.utterance(i, 2.0, speaker=i)
        times.append(time.process_time() - t)
    ms = 1000 * float(np.median(times))
    print(f"SyntheticSpeech: 2 s of audio in {ms:.1f} ms CPU")
    assert ms < 50
