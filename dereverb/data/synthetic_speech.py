"""Procedural speech-like audio: the built-in speech source (no download needed).

A source-filter model in numpy: Rosenberg glottal pulses on a prosodic F0 contour, four gliding
formants (Peterson & Barney vowels scaled per speaker) applied per STFT frame, fricative and
plosive noise, phrases and pauses (docs/speech.md). Every output is a pure function of
``(corpus seed, speaker, utterance seed)``; RMS -25 dBFS, peak below 0.99.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

SplitName = Literal["train", "val", "test"]
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Stream tags keep the random streams of different purposes independent.
_TAG_SPEAKER, _TAG_UTTERANCE, _TAG_ITEM, _TAG_CHOOSE = 0, 1, 2, 3

# Adult-male vowel formants F1-F4 in Hz of i I E ae a O U u V er (Peterson & Barney 1952; F4 nominal).
_VOWELS = np.array([
    [270, 2290, 3010, 3500], [390, 1990, 2550, 3500], [530, 1840, 2480, 3500], [660, 1720, 2410, 3500],
    [730, 1090, 2440, 3400], [570, 840, 2410, 3400], [440, 1020, 2240, 3400], [300, 870, 2240, 3400],
    [640, 1190, 2390, 3400], [490, 1350, 1690, 3300],
], dtype=np.float64)  # fmt: skip
_BANDWIDTHS = np.array([65.0, 90.0, 130.0, 180.0])  # F1-F4 bandwidths, Hz
# High-frequency correction (dB) at _HF_SHELF_HZ (x vocal-tract scale), see _hf_correction.
_HF_SHELF_HZ = (1.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7500.0, 16000.0)
_HF_SHELF_DB = (0.0, 1.0, 7.0, 1.5, 4.5, 1.0, 1.0, -13.0, -20.0, -20.0)
_HP_BANDWIDTH = (300.0, 150.0)  # bandwidth of pole k >= 5: a + b * (k - 5), Hz
_F2_LOCI = np.array([900.0, 1700.0, 2200.0])  # labial, alveolar, velar consonant F2 loci
# Fricative noise bands: centre (Hz, adult male), width (natural-log units), level (dB re vowel RMS).
_FRICATIVES = MappingProxyType({
    "s": (5500.0, 0.30, -7.0), "sh": (3000.0, 0.40, -6.0), "f": (3500.0, 0.90, -16.0),
    "h": (1800.0, 0.70, -18.0),  # aspiration after a plosive release
})  # fmt: skip
_FRIC_NAMES = ("s", "sh", "f")

N_FFT, HOP = 512, 128  # frame grid of the time-varying filter (32 ms window, 8 ms hop at 16 kHz)
TARGET_RMS_DBFS = -25.0


@dataclass(frozen=True)
class SpeakerParams:
    """Voice of one synthetic speaker; sampled from its id (see ``SyntheticSpeech.speaker_params``)."""

    female: bool
    f0_mean: float  # Hz, geometric centre of the F0 contour
    f0_range: tuple[float, float]  # Hz, the contour is clipped to this range
    vt_scale: float  # formant frequency scale (1 = adult male; shorter tract -> higher)
    rate: float  # syllables per second
    open_quotient: float  # Rosenberg opening phase, fraction of the period
    closing_quotient: float  # Rosenberg closing phase, fraction of the period
    jitter: float  # relative s.d. of the period per glottal cycle
    shimmer: float  # relative s.d. of the amplitude per glottal cycle
    breathiness: float  # aspiration noise relative to the excitation RMS
    pitch_span: float  # semitones of a pitch accent
    bandwidth_scale: float  # formant bandwidth factor (wider = duller, more damped voice)
    tilt: float  # extra spectral slope above 1 kHz, dB/octave (softer glottal closure < 0)


@dataclass
class _Syllable:
    start: float  # s
    end: float  # s
    onset: str  # "none" | "fric" | "plos" | "nasal"
    onset_end: float  # s, where the vowel starts
    fricative: str  # s | sh | f (for "fric" onsets and codas)
    coda: bool  # fricative coda at the end
    coda_start: float
    vowel: int
    diphthong: int  # second vowel target, or -1
    locus: float  # F2 locus of the onset consonant, Hz
    amplitude: float
    stressed: bool
    phrase_pos: float  # 0 at the phrase start, 1 at its end


def _rng(*entropy: int) -> np.random.Generator:
    if min(entropy) < 0:
        raise ValueError(f"seeds must be non-negative integers, got {entropy}; pass a seed >= 0")
    return np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy]))


def split_ranges(n: int, fractions: tuple[float, float, float]) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of ``n`` items for train/val/test: every split with a
    positive fraction gets at least one, the rest follow the fractions, train the remainder."""
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1 (train, val, test), got {fractions}")
    need = int((fr > 0).sum())
    if n < need:
        raise ValueError(
            f"{n} speaker(s) cannot be split speaker-disjointly into {need} non-empty splits; "
            f"use more speakers or set the unused split fractions to 0"
        )
    counts = [0, 0, 0]
    for i in (1, 2):
        if fr[i] > 0:
            counts[i] = max(1, int(round(fr[i] * n)))
    counts[0] = n - counts[1] - counts[2]
    if fr[0] > 0 and counts[0] < 1:  # tiny n: take from the larger of val/test
        j = 1 if counts[1] >= counts[2] else 2
        counts[j] -= 1
        counts[0] = 1
    edges = np.cumsum([0, *counts])
    return [(int(edges[i]), int(edges[i + 1])) for i in range(3)]


def _raised_ramp(n: int, attack: int, release: int) -> np.ndarray:
    """Flat-top window of length n with raised-cosine attack/release. (n,)"""
    w = np.ones(n)
    a, r = min(attack, n // 2), min(release, n - min(attack, n // 2))
    if a > 0:
        w[:a] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(a) + 0.5) / a)
    if r > 0:
        w[n - r :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(r) + 0.5) / r)
    return w


def _stft_rows(x: np.ndarray, window: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Centred STFT frames ``rows`` of x (frame m is centred on sample m * HOP).

    x (L,) -> (len(rows), N_FFT // 2 + 1) complex64
    """
    pad = N_FFT // 2
    xp = np.zeros(len(x) + 2 * pad + N_FFT, dtype=np.float32)
    xp[pad : pad + len(x)] = x
    frames = sliding_window_view(xp, N_FFT)[::HOP][rows]
    return np.fft.rfft(frames * window, axis=-1)


def _istft_rows(spec: np.ndarray, rows: np.ndarray, window: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of ``_stft_rows``; frames not in ``rows`` are zero.

    spec (len(rows), K) -> (length,) float64
    """
    m = length // HOP + 1
    r = N_FFT // HOP
    frames = np.zeros((m, N_FFT), dtype=np.float32)
    frames[rows] = np.fft.irfft(spec, n=N_FFT, axis=-1) * window
    frames = frames.reshape(m, r, HOP)
    out = np.zeros((m + r - 1, HOP))
    norm = np.zeros((m + r - 1, HOP))
    w2 = (window.astype(np.float64) ** 2).reshape(r, HOP)
    for i in range(r):
        out[i : i + m] += frames[:, i, :]
        norm[i : i + m] += w2[i]
    pad = N_FFT // 2
    y = out.reshape(-1)[pad : pad + length]
    return y / np.maximum(norm.reshape(-1)[pad : pad + length], 1e-8)


def _active_frames(active: np.ndarray, m: int) -> np.ndarray:
    """Indices of the frames (N_FFT long, centred on m * HOP) that touch an active sample.

    active (L,) bool -> (R,) int
    """
    cs = np.concatenate([[0], np.cumsum(active)])
    centre = np.arange(m) * HOP
    lo = np.clip(centre - N_FFT // 2, 0, len(active))
    hi = np.clip(centre + N_FFT // 2, 0, len(active))
    return np.flatnonzero(cs[hi] > cs[lo])


class SyntheticSpeech:
    """Seeded procedural speech as a ``SpeechSource``. Splits are contiguous speaker-id ranges;
    ``len()`` is nominal (``utterances_per_speaker`` per speaker): ``item`` takes any index >= 0."""

    def __init__(
        self, sample_rate: int = 16000, n_speakers: int = 200, seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        utterances_per_speaker: int = 100, noise_floor_dbfs: float | None = -70.0,
    ) -> None:
        if sample_rate < 8000:
            raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
        if n_speakers < 1:
            raise ValueError(f"n_speakers must be >= 1, got {n_speakers}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.sample_rate = int(sample_rate)
        self.n_speakers = int(n_speakers)
        self.seed = int(seed)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        self.utterances_per_speaker = int(utterances_per_speaker)
        self.noise_floor_dbfs = noise_floor_dbfs
        self.split_name: str | None = None
        self._ids = np.arange(self.n_speakers)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
        self._freqs = np.fft.rfftfreq(N_FFT, 1.0 / self.sample_rate)
        self._z1 = np.exp(-2j * np.pi * self._freqs / self.sample_rate).astype(np.complex64)  # z^-1
        self._z2 = self._z1 * self._z1
        self._hf_cache: dict[int, np.ndarray] = {}  # speaker -> _hf_correction (deterministic)

    # ------------------------------------------------------------------ SpeechSource protocol
    @property
    def speakers(self) -> list[str]:
        return [f"synth{i:04d}" for i in self._ids]

    def __len__(self) -> int:
        return len(self._ids) * self.utterances_per_speaker

    def __repr__(self) -> str:
        part = f", split={self.split_name!r}" if self.split_name else ""
        return f"SyntheticSpeech(speakers={len(self._ids)}, seed={self.seed}{part})"

    def split(self, name: SplitName) -> SyntheticSpeech:
        """The speaker-disjoint ``train``/``val``/``test`` part (contiguous speaker-id range)."""
        if name not in SPLITS:
            raise ValueError(f"split name must be one of {SPLITS}, got {name!r}")
        if self.split_name is not None:
            raise ValueError(f"this source is already the {self.split_name!r} split; split the full source")
        lo, hi = split_ranges(self.n_speakers, self.split_fractions)[SPLITS.index(name)]
        if hi <= lo:
            raise ValueError(f"split {name!r} is empty: its fraction in split_fractions={self.split_fractions} is 0")
        view = SyntheticSpeech.__new__(SyntheticSpeech)
        view.__dict__.update(self.__dict__)
        view.split_name = name
        view._ids = np.arange(lo, hi)
        return view

    def sample(self, rng: np.random.Generator, length: int, preroll: int = 0) -> np.ndarray:
        """A fresh utterance by a speaker of this split; speech starts at once, so no item is
        silent. (preroll + length,) float32"""
        length = check_length(length)
        speaker = int(rng.choice(self._ids))
        seed = int(rng.integers(0, 2**63 - 1))
        return self._render(_rng(self.seed, _TAG_UTTERANCE, speaker, seed), preroll + length, speaker)

    def item(self, index: int, length: int, preroll: int = 0) -> np.ndarray:
        """Deterministic utterance ``index`` (any int >= 0) of this split, by speaker ``index``
        modulo the split's speakers. (preroll + length,) float32"""
        length = check_length(length)
        if index < 0:
            raise IndexError(f"index must be >= 0, got {index}")
        split_code = SPLITS.index(self.split_name) + 1 if self.split_name else 0
        speaker = int(self._ids[index % len(self._ids)])
        return self._render(_rng(self.seed, _TAG_ITEM, split_code, index), preroll + length, speaker)

    # ------------------------------------------------------------------ public helpers
    def utterance(self, seed: int, duration: float, speaker: int | None = None) -> np.ndarray:
        """Utterance ``seed`` of ``duration`` s by ``speaker`` (an id in ``[0, n_speakers)``;
        ``None``: one of this source's, from ``seed``). (L,) float32"""
        if duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration}")
        if speaker is None:
            speaker = int(_rng(self.seed, _TAG_CHOOSE, seed).choice(self._ids))
        elif not 0 <= speaker < self.n_speakers:
            raise ValueError(f"speaker must be in [0, {self.n_speakers}), got {speaker}")
        n = int(round(duration * self.sample_rate))
        return self._render(_rng(self.seed, _TAG_UTTERANCE, speaker, seed), max(n, 1), speaker)

    def speaker_params(self, speaker: int) -> SpeakerParams:
        """The voice of speaker ``speaker`` (deterministic from the corpus seed and the id)."""
        rng = _rng(self.seed, _TAG_SPEAKER, speaker)
        female = bool(rng.random() < 0.5)
        if female:
            f0_mean, f0_range, vt = rng.uniform(185, 230), (165.0, 255.0), rng.uniform(1.12, 1.24)
        else:
            f0_mean, f0_range, vt = rng.uniform(100, 135), (85.0, 155.0), rng.uniform(0.93, 1.05)
        return SpeakerParams(  # keyword order = draw order
            female=female, f0_mean=float(f0_mean), f0_range=f0_range, vt_scale=float(vt),
            rate=float(rng.uniform(3.5, 5.0)), open_quotient=float(rng.uniform(0.35, 0.5)),
            closing_quotient=float(rng.uniform(0.08, 0.18)), jitter=float(rng.uniform(0.004, 0.012)),
            shimmer=float(rng.uniform(0.03, 0.08)),
            breathiness=float(rng.uniform(0.05, 0.3) * (1.6 if female else 1.0)),
            pitch_span=float(rng.uniform(1.5, 4.0)), bandwidth_scale=float(rng.uniform(0.8, 1.25)),
            tilt=float(rng.uniform(-5.0, -2.0) if female else rng.uniform(-1.5, 1.5)),
        )  # fmt: skip

    # ------------------------------------------------------------------ rendering
    def _plan(self, rng: np.random.Generator, dur: float, p: SpeakerParams) -> list[_Syllable]:
        """Syllables and phrases covering ``dur`` seconds (Python loop over ~5 syllables/s)."""
        syl: list[_Syllable] = []
        t = rng.uniform(0.02, 0.25) * min(1.0, dur / 1.0)
        while t < dur:
            n_syl = int(rng.integers(3, 12))
            for i in range(n_syl):
                d = float(np.clip(rng.lognormal(np.log(1.0 / p.rate), 0.3), 0.1, 0.5))
                onset = str(rng.choice(["none", "fric", "plos", "nasal"], p=[0.2, 0.3, 0.3, 0.2]))
                if onset == "plos" and not syl:  # an initial closure would only be silence
                    onset = "nasal"
                # all three onset durations are drawn, whichever is used (the stream depends on it)
                od = {"none": 0.0, "fric": rng.uniform(0.06, 0.12), "plos": rng.uniform(0.06, 0.11),
                      "nasal": rng.uniform(0.04, 0.08)}[onset]  # fmt: skip
                od = min(od, 0.45 * d)
                coda = bool(rng.random() < 0.15) and d - od > 0.16
                cd = rng.uniform(0.05, 0.09) if coda else 0.0
                stressed = bool(rng.random() < 0.35)
                pos = i / max(n_syl - 1, 1)
                syl.append(_Syllable(  # keyword order = draw order
                    start=t, end=t + d, onset=onset, onset_end=t + od,
                    fricative=str(rng.choice(_FRIC_NAMES, p=[0.45, 0.25, 0.3])), coda=coda,
                    coda_start=t + d - cd, vowel=int(rng.integers(len(_VOWELS))),
                    diphthong=int(rng.integers(len(_VOWELS))) if rng.random() < 0.25 else -1,
                    locus=float(rng.choice(_F2_LOCI)),
                    amplitude=(1.0 if stressed else 0.55) * (1.0 - 0.35 * pos) * rng.uniform(0.85, 1.15),
                    stressed=stressed, phrase_pos=pos,
                ))  # fmt: skip
                t += d
                if t >= dur:
                    break
            t += rng.uniform(0.15, 0.7)  # pause between phrases
        return syl

    def _render(self, rng: np.random.Generator, n: int, speaker: int) -> np.ndarray:
        """Render ``n`` samples of speaker ``speaker`` from the stream ``rng``. (n,) float32"""
        sr = self.sample_rate
        p = self.speaker_params(speaker)
        dur = n / sr
        syl = self._plan(rng, dur, p)
        m = n // HOP + 1  # frames
        tf = np.arange(m) * HOP / sr  # frame centre times, s

        # --- amplitude envelopes: voicing per sample, noises per frame, bursts per sample
        voice = np.zeros(n)
        fric = {k: np.zeros(m) for k in _FRICATIVES}
        burst_t: list[tuple[int, float]] = []
        for s in syl:
            a, b = int(s.onset_end * sr), int((s.coda_start if s.coda else s.end) * sr)
            if n > a and b > a:  # the last syllable may run past the end: render, then truncate
                w = s.amplitude * _raised_ramp(b - a, int(0.04 * sr), int(0.06 * sr))
                w *= np.linspace(1.0, 0.65, b - a)  # vowels decay towards their end
                voice[a:b] = w[: len(voice[a:b])]
            if s.onset == "nasal":
                i0 = int(s.start * sr)
                if n > i0 and a > i0:
                    w = 0.3 * s.amplitude * _raised_ramp(a - i0, int(0.01 * sr), 0)
                    voice[i0:a] = w[: len(voice[i0:a])]
            elif s.onset == "fric":
                self._frame_env(fric[s.fricative], s.start, s.onset_end, s.amplitude, tf)
            elif s.onset == "plos":
                vot = min(rng.uniform(0.01, 0.045), 0.4 * (s.onset_end - s.start))
                release = s.onset_end - vot
                burst_t.append((int(release * sr), s.amplitude * rng.uniform(0.6, 1.2)))
                self._frame_env(fric["h"], release, s.onset_end + 0.01, s.amplitude, tf)
            if s.coda:
                self._frame_env(fric[s.fricative], s.coda_start, s.end, 0.8 * s.amplitude, tf)

        # --- F0 contour (semitones re the speaker mean) on the frame grid, then per sample
        st = 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * tf + rng.uniform(0, 2 * np.pi))
        st += 0.3 * np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * tf + rng.uniform(0, 2 * np.pi))
        phrase_start = 0
        for i, s in enumerate(syl):
            if s.phrase_pos == 0:
                phrase_start = i
            if s.stressed:
                mid = 0.5 * (s.onset_end + s.end)
                st += p.pitch_span * rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((tf - mid) / 0.07) ** 2)
            last = i + 1 == len(syl) or syl[i + 1].phrase_pos == 0
            if last:  # declination over the phrase, and a final fall (or question rise)
                t0, t1 = syl[phrase_start].start, s.end
                top, bottom = rng.uniform(0.5, 2.5), -rng.uniform(2.0, 4.5)
                inside = (tf >= t0) & (tf < t1 + 0.35)
                frac = np.clip((tf - t0) / max(t1 - t0, 1e-3), 0, 1)
                final = rng.choice([-2.5, 3.0], p=[0.8, 0.2])
                fin = final * np.clip((tf - s.onset_end) / max(s.end - s.onset_end, 1e-3), 0, 1)
                st += inside * (top + (bottom - top) * frac + fin)
        f0_frames = np.clip(p.f0_mean * 2.0 ** (st / 12.0), *p.f0_range)
        ts = np.arange(n) / sr
        f0 = np.interp(ts, tf, f0_frames)

        # --- glottal source: Rosenberg flow pulses, jitter and shimmer per cycle
        phase0 = rng.random() + np.cumsum(f0) / sr
        n_cycles = int(phase0[-1]) + 2
        f0 = f0 * (1.0 + p.jitter * rng.standard_normal(n_cycles)[phase0.astype(np.int64)])
        phase = phase0[0] + np.cumsum(f0) / sr
        cycle = phase.astype(np.int64)
        tau = phase - cycle
        tp, tn = p.open_quotient, p.closing_quotient
        flow = np.where(
            tau < tp,
            0.5 - 0.5 * np.cos(np.pi * tau / tp),
            np.where(tau < tp + tn, np.cos(0.5 * np.pi * np.clip(tau - tp, 0, tn) / tn), 0.0),
        )
        flow *= 1.0 + p.shimmer * rng.standard_normal(int(cycle[-1]) + 2)[cycle]
        exc = np.diff(flow, prepend=flow[0])  # lip radiation: differentiate the flow
        exc_rms = np.sqrt(np.mean(exc**2)) + 1e-12
        exc = exc + p.breathiness * exc_rms * rng.standard_normal(n) * (0.3 + flow)
        src = exc * voice

        # --- time-varying vocal tract (formant cascade) applied per STFT frame; only the
        # frames that contain voicing are computed (silence and closures are skipped)
        rows = _active_frames(voice > 0, m)
        formants = self._formant_tracks(syl, tf[rows], p)  # (R, 4) Hz
        formants = np.minimum(formants, 0.45 * sr)
        bw = _BANDWIDTHS * p.bandwidth_scale * (1.0 + 0.1 * (formants / 1000.0 - 0.5).clip(0))
        r = np.exp(-np.pi * bw / sr)  # pole radius (R, 4)
        c = -2.0 * r * np.cos(2 * np.pi * formants / sr)  # (R, 4)
        # H_j(z) = (1 + c + r^2) / (1 + c z^-1 + r^2 z^-2): 0 dB at DC; complex64 for speed
        cc, rr = c.astype(np.complex64), (r**2).astype(np.complex64)
        den = np.ones((len(rows), len(self._z1)), dtype=np.complex64)
        for j in range(formants.shape[1]):
            den *= 1.0 + cc[:, j : j + 1] * self._z1 + rr[:, j : j + 1] * self._z2
        gain_dc = np.prod(1.0 + c + r**2, axis=1, keepdims=True).astype(np.float32)  # (R, 1)
        hf = self._hf_cache.get(speaker)
        if hf is None:
            hf = self._hf_cache[speaker] = self._hf_correction(p).astype(np.float32)
        spec = _stft_rows(src, self._window, rows) * (gain_dc * hf[None, :] / den)
        y = _istft_rows(spec, rows, self._window, n)
        active = voice > 0.5 * voice.max() if voice.max() > 0 else np.ones(n, bool)
        v_rms = np.sqrt(np.mean(y[active] ** 2)) + 1e-12
        y *= max(voice.max(), 1e-6) / v_rms  # loudest vowels at RMS ~1: noise levels are relative to it

        # --- fricative / aspiration noise: shaped complex Gaussian frames, one more iSTFT
        gain = np.zeros((m, len(self._freqs)), dtype=np.float32)
        logf = np.log(np.maximum(self._freqs, 1.0))
        for name, env in fric.items():
            if not env.any():
                continue
            fc, width, level_db = _FRICATIVES[name]
            shape = np.exp(-0.5 * ((logf - np.log(fc * p.vt_scale)) / width) ** 2)
            # unit-variance output for a unit envelope: var = 2 * sum|shape|^2 / (N^2 * 1.5)
            shape *= 10 ** (level_db / 20) * np.sqrt(1.5 * N_FFT**2 / (2.0 * np.sum(shape**2)))
            gain += env[:, None] * shape[None, :]
        nrows = np.flatnonzero(gain.max(axis=1) > 0)
        if len(nrows):  # one complex Gaussian field shared by the (rarely overlapping) types
            noise = rng.standard_normal((2, len(nrows), gain.shape[1]), dtype=np.float32)
            nspec = gain[nrows] * (noise[0] + 1j * noise[1]) * np.float32(np.sqrt(0.5))
            y += _istft_rows(nspec, nrows, self._window, n)

        # --- plosive bursts: 10 ms decaying high-passed noise at each release
        if burst_t:
            bursts = np.zeros(n)
            blen = int(0.012 * sr)
            decay = np.exp(-np.arange(blen) / (0.003 * sr))
            for i0, amp in burst_t:
                seg = bursts[i0 : i0 + blen]
                seg += 1.5 * amp * decay[: len(seg)] * rng.standard_normal(len(seg))
            y += lfilter([1.0, -0.85], [1.0], bursts)

        # --- level: RMS -25 dBFS, peak below 0.99, an optional tiny noise floor
        rms = np.sqrt(np.mean(y**2))
        if rms > 0:
            y *= 10 ** (TARGET_RMS_DBFS / 20) / rms
        peak = np.max(np.abs(y))
        if peak > 0.99:
            y *= 0.99 / peak
        if self.noise_floor_dbfs is not None:
            y += 10 ** (self.noise_floor_dbfs / 20) * rng.standard_normal(n)
        return y.astype(np.float32)

    def _hf_correction(self, p: SpeakerParams) -> np.ndarray:
        """Gain of the resonances above F4, which the moving 4-formant cascade leaves out:
        uniform-tube poles F_k = (2k - 1) * 500 Hz * vt_scale, k >= 5 (Fant's higher-pole
        correction), times the shelf ``_HF_SHELF_DB`` fitted to LibriSpeech and the speaker's
        tilt. (K,) real
        """
        f = self._freqs
        g = np.ones(len(f))
        for k in range(5, 60):
            fk = (2 * k - 1) * 500.0 * p.vt_scale
            bk = p.bandwidth_scale * (_HP_BANDWIDTH[0] + _HP_BANDWIDTH[1] * (k - 5))
            g /= np.abs(1.0 - (f / fk) ** 2 + 1j * f * bk / fk**2)
        db = np.interp(np.log(np.maximum(f / p.vt_scale, 1.0)), np.log(_HF_SHELF_HZ), _HF_SHELF_DB)
        db += p.tilt * np.log2(np.maximum(f, 1000.0) / 1000.0)
        return g * 10 ** (db / 20)

    @staticmethod
    def _frame_env(env: np.ndarray, t0: float, t1: float, amp: float, tf: np.ndarray) -> None:
        """Add a noise segment [t0, t1) with ~15 ms ramps to a frame envelope, in place. (M,)"""
        w = np.clip(np.minimum(tf - t0 + 0.008, t1 - tf + 0.008) / 0.016, 0, 1)
        np.maximum(env, amp * w, out=env)

    @staticmethod
    def _formant_tracks(syl: list[_Syllable], tf: np.ndarray, p: SpeakerParams) -> np.ndarray:
        """Formant frequencies gliding between consonant loci and vowel targets. (M, 4) Hz"""
        if not syl:
            return np.tile(_VOWELS[8] * p.vt_scale, (len(tf), 1))
        kt: list[float] = []
        kf: list[np.ndarray] = []
        for s in syl:
            v = _VOWELS[s.vowel]
            if s.onset == "none":
                kt.append(s.start)
                kf.append(v)
            else:
                locus = np.array([250.0 if s.onset == "nasal" else 300.0, s.locus, 2500.0, 3400.0])
                kt += [s.start, s.onset_end]
                kf += [locus, 0.5 * (locus + v)]
            vs, ve = s.onset_end, s.coda_start if s.coda else s.end
            kt.append(vs + 0.35 * (ve - vs))
            kf.append(v)
            kt.append(ve - 0.1 * (ve - vs))
            kf.append(_VOWELS[s.diphthong] if s.diphthong >= 0 else v)
        kt_a = np.asarray(kt) + np.arange(len(kt)) * 1e-6  # strictly increasing
        kf_a = np.stack(kf) * p.vt_scale
        out = np.stack([np.interp(tf, kt_a, kf_a[:, j]) for j in range(4)], axis=1)
        # keep formants ordered and below Nyquist-ish
        out[:, 1] = np.maximum(out[:, 1], out[:, 0] + 200)
        out[:, 2] = np.maximum(out[:, 2], out[:, 1] + 300)
        out[:, 3] = np.maximum(out[:, 3], out[:, 2] + 300)
        return out


def check_length(length: int) -> int:
    """``length`` as an int, or ValueError unless it is a positive whole number of samples."""
    if int(length) != length or length < 1:
        raise ValueError(f"length must be a positive number of samples, got {length}")
    return int(length)
