"""Tests for dereverb.data.speech: SpeechCorpus (folders of recordings) and speaker ids."""

from __future__ import annotations

import pickle
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
    active_level_db,
    speaker_from_path,
)
from tests.conftest import SHARED_DATA

SR = 16000
LIBRI = SHARED_DATA / "speech" / "librispeech-train-clean-100"


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
    # deterministic, and the same for every data seed: a new seed never trains on val/test speakers
    again = SpeechCorpus(corpus_dir, seed=0)
    assert again.split_speakers() == c.split_speakers()
    assert SpeechCorpus(corpus_dir, seed=1).split_speakers() == c.split_speakers()
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


def test_cache_is_bounded_lru_and_not_pickled(corpus_dir: Path) -> None:
    c = SpeechCorpus(corpus_dir, cache_mb=0.25)  # ~2 utterances of 1.5-1.75 s float32
    for i in range(len(c)):
        c.load(i)
    held = c._cache.cache_info().currsize
    assert 0 < held < len(c) and held * 1.75 * SR * 4 <= 0.25 * 2**20
    misses = c._cache.cache_info().misses
    c.load(len(c) - 1)  # the most recent stays decoded, the first was evicted
    assert c._cache.cache_info().misses == misses
    c.load(0)
    assert c._cache.cache_info().misses == misses + 1
    clone = pickle.loads(pickle.dumps(c.split("train")))
    assert clone._cache.cache_info().currsize == 0 and len(clone) == len(c.split("train"))
    assert np.array_equal(clone.item(3, 1000), c.split("train").item(3, 1000))


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
