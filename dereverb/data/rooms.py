"""Rooms and their impulse responses: sample shoebox rooms, simulate them, measure RIRs.

A RIR is float32 ``(L,)``; ``rir[n]`` is the response ``n / sample_rate`` s after emission and
its direct path has the dry signal's level (simulated: a unit-gain fractional delay at
``distance / c``; measured: direct-path sample +1). T60s are always measured from the RIR.
docs/rir.md gives the conventions and their checks. Needs only numpy (pyroomacoustics is
imported when a room is simulated); banks of RIRs are :mod:`dereverb.data.rir_bank`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s, pyroomacoustics' default constant
DIRECT_WINDOW_MS = 2.5  # half-width of the direct-path window used by drr()
RAYS_ISM_ORDER = 3  # image-source order under the ray tracer in hybrid mode
OCTAVE_BANDS_HZ = (125, 250, 500, 1000, 2000, 4000, 8000)  # centres of the walls' absorption bands


class RirError(ValueError):
    """Bad RIR input or configuration; the message names the file/argument and the fix."""


# --------------------------------------------------------------------------- rooms


Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class RoomSpec:
    """One shoebox room: dimensions (m), requested T60 (s), source/mic positions (m); ``seed``
    drives the ray tracer (hybrid mode), so a spec always gives one RIR."""

    dims: Vec3
    t60: float
    source: Vec3
    mic: Vec3
    seed: int = 0
    hf_absorption: float = 1.0  # wall absorption at 8 kHz / at <= 1 kHz (:func:`wall_material`)

    @property
    def distance(self) -> float:
        """Source-microphone distance in metres."""
        return float(np.linalg.norm(np.subtract(self.source, self.mic)))


def _vec3(v: Sequence[float]) -> Vec3:
    # micrometre rounding: plain floats that print, compare and serialise cleanly
    return tuple(round(float(x), 6) for x in v)  # type: ignore[return-value]


@dataclass(frozen=True)
class RoomSampler:
    """Distribution of shoebox rooms and placements, uniform within each range: T60 (s), room
    dimensions (m, per axis), source-mic distance and heights (m), ``wall_clearance`` (m) from
    the walls, ``hf_absorption_range``: how many times more the walls absorb at 8 kHz than at
    1 kHz and below (1: frequency-flat walls; more: soft furnishings, docs/rir.md). A
    placement that does not fit its room is redrawn (long distances favour larger rooms).
    ``t60_log_uniform``: draw T60 uniform in log(T60) instead, so a wide range reaches long
    rooms while short rooms keep their share (0.2–2 s: 30 % below 0.4 s, 30 % above 1 s)."""

    t60_range: tuple[float, float] = (0.2, 1.0)
    room_dims_min: Vec3 = (4.0, 3.5, 2.5)
    room_dims_max: Vec3 = (10.0, 8.0, 3.5)
    distance_range: tuple[float, float] = (1.0, 3.0)
    wall_clearance: float = 0.5
    mic_height_range: tuple[float, float] = (1.0, 1.6)
    source_height_range: tuple[float, float] = (1.2, 1.8)
    hf_absorption_range: tuple[float, float] = (1.0, 1.0)
    max_tries: int = 1000
    t60_log_uniform: bool = False

    def __post_init__(self) -> None:
        # float tuples: the same cache key whether built from YAML lists of ints or tuples
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, f.name, tuple(float(x) for x in v))
        object.__setattr__(self, "wall_clearance", float(self.wall_clearance))
        for name in ("t60_range", "distance_range", "mic_height_range", "source_height_range", "hf_absorption_range"):
            r = getattr(self, name)
            if len(r) != 2 or not 0 < r[0] <= r[1]:
                raise RirError(f"RoomSampler.{name}={tuple(r)!r}: need (min, max) with 0.0 < min <= max")
        if len(self.room_dims_min) != 3 or len(self.room_dims_max) != 3:
            raise RirError("RoomSampler.room_dims_min/max: give three lengths (x, y, z) in metres")
        for a, b in zip(self.room_dims_min, self.room_dims_max, strict=True):
            if not 0 < a <= b:
                raise RirError(f"RoomSampler.room_dims_min={self.room_dims_min} / room_dims_max="
                               f"{self.room_dims_max}: need 0 < min <= max on every axis")  # fmt: skip
        if self.wall_clearance < 0 or 2 * self.wall_clearance >= min(self.room_dims_min[:2]):
            raise RirError(
                f"RoomSampler.wall_clearance={self.wall_clearance}: must be >= 0 and leave floor "
                f"space in the smallest room {self.room_dims_min}"
            )
        top = max(self.mic_height_range[1], self.source_height_range[1])
        if top >= self.room_dims_min[2]:
            raise RirError(
                f"RoomSampler heights up to {top} m do not fit under the lowest ceiling "
                f"{self.room_dims_min[2]} m; lower the height ranges or raise room_dims_min[2]"
            )
        lx, ly, lz = self.room_dims_max  # Sabine's absorption (pra.inverse_sabine's) must be <= 1
        surface = 2 * (lx * ly + lx * lz + ly * lz)
        t_lo = self.t60_range[0]
        worst = 24 * math.log(10) * lx * ly * lz / (SPEED_OF_SOUND * surface * t_lo)
        if worst > 1.0:
            raise RirError(
                f"RoomSampler: T60 {t_lo} s is impossible in a {self.room_dims_max} m room "
                f"(Sabine absorption {worst:.2f} > 1); raise t60_range[0] or shrink room_dims_max"
            )

    def sample(self, rng: np.random.Generator) -> RoomSpec:
        """Draw one room; deterministic for a given generator state."""
        lo, hi = self.t60_range  # one draw either way: the rest of the room stays as it was
        t60 = float(math.exp(rng.uniform(math.log(lo), math.log(hi))) if self.t60_log_uniform else rng.uniform(lo, hi))
        seed = int(rng.integers(2**31 - 1))
        for _ in range(self.max_tries):
            dims = rng.uniform(self.room_dims_min, self.room_dims_max)
            c = self.wall_clearance
            mic = np.array([rng.uniform(c, dims[0] - c), rng.uniform(c, dims[1] - c),
                            rng.uniform(*self.mic_height_range)])  # fmt: skip
            dist = rng.uniform(*self.distance_range)
            z = rng.uniform(*self.source_height_range)
            horiz2 = dist**2 - (z - mic[2]) ** 2
            if horiz2 <= 0:
                continue
            az = rng.uniform(0, 2 * np.pi)
            src = mic + np.array([math.sqrt(horiz2) * math.cos(az), math.sqrt(horiz2) * math.sin(az), 0])
            src[2] = z
            if c <= src[0] <= dims[0] - c and c <= src[1] <= dims[1] - c:
                lo, hi = self.hf_absorption_range  # drawn last and only when it varies: flat rooms stay as they were
                hf = float(rng.uniform(lo, hi)) if hi > lo else lo
                return RoomSpec(_vec3(dims), t60, _vec3(src), _vec3(mic), seed, hf)
        raise RirError(
            f"RoomSampler: no placement with distance in {self.distance_range} m fits rooms "
            f"{self.room_dims_min}..{self.room_dims_max} m with wall_clearance {self.wall_clearance} m "
            f"after {self.max_tries} tries; shorten distance_range or enlarge the rooms"
        )


# --------------------------------------------------------------------------- simulation


def simulate_rir(
    spec: RoomSpec, sample_rate: int = 16000, max_order: int | None = None, use_rays: bool = False,
    air_absorption: bool = False, max_length_s: float | None = None, calibrate: int = 0,
) -> np.ndarray:
    """Simulate one shoebox RIR with pyroomacoustics (walls: Sabine absorption) -> float32 ``(L,)``.

    Args:
        max_order: cap on the image-source order (``None``: what ``inverse_sabine`` asks); a cap
            cuts the decay short (docs/rir.md: cost and T60 of each setting).
        use_rays: hybrid mode: image sources up to ``max_order`` (default 3), then the ray
            tracer for the tail, seeded by ``spec.seed`` (it sets pyroomacoustics' global RNG).
        air_absorption: frequency-dependent air absorption.
        max_length_s: truncate the RIR to this many seconds.
        calibrate: passes that measure T30 and scale the absorption by measured / requested
            (Sabine overshoots the requested T60).
    """
    import pyroomacoustics as pra

    if sample_rate <= 0:
        raise RirError(f"simulate_rir: sample_rate must be positive, got {sample_rate}")
    if max_order is not None and max_order < 0:
        raise RirError(f"simulate_rir: max_order must be >= 0 or None, got {max_order}")
    if calibrate < 0:
        raise RirError(f"simulate_rir: calibrate must be >= 0 passes, got {calibrate}")
    try:
        absorption, sabine_order = pra.inverse_sabine(spec.t60, spec.dims)
    except ValueError as exc:
        raise RirError(f"simulate_rir: T60 {spec.t60} s is too short for a {spec.dims} m room") from exc
    if use_rays:
        order = RAYS_ISM_ORDER if max_order is None else max_order
    else:
        order = sabine_order if max_order is None else min(max_order, sabine_order)
    rir = _shoebox_rir(spec, absorption, order, sample_rate, use_rays, air_absorption)
    for _ in range(calibrate):
        ratio = estimate_t60(rir, sample_rate) / spec.t60
        if abs(ratio - 1) < 0.02:
            break
        absorption = float(np.clip(absorption * ratio, 1e-3, 0.999))
        rir = _shoebox_rir(spec, absorption, order, sample_rate, use_rays, air_absorption)
    if max_length_s is not None:
        rir = rir[: max(1, int(round(max_length_s * sample_rate)))]
    return rir


def wall_material(absorption: float, hf_absorption: float = 1.0):
    """The walls' ``pra.Material``: energy ``absorption`` at 1 kHz and below, rising geometrically
    per octave to ``hf_absorption`` times it at 8 kHz (capped at 0.99); 1: one broadband coefficient."""
    import pyroomacoustics as pra

    if hf_absorption == 1.0:
        return pra.Material(absorption)
    octaves = np.log2(np.array(OCTAVE_BANDS_HZ) / 1000).clip(0) / 3  # 0 up to 1 kHz, 1 at 8 kHz
    coeffs = np.minimum(absorption * hf_absorption**octaves, 0.99)
    return pra.Material({"coeffs": coeffs.tolist(), "center_freqs": list(OCTAVE_BANDS_HZ)})


def _shoebox_rir(spec: RoomSpec, absorption: float, order: int, sr: int, rays: bool, air: bool) -> np.ndarray:
    import pyroomacoustics as pra

    room = pra.ShoeBox(list(spec.dims), fs=sr, materials=wall_material(absorption, spec.hf_absorption),
                       max_order=order, air_absorption=air, ray_tracing=rays)  # fmt: skip
    if rays:
        room.set_ray_tracing()
        pra.random.seed(numpy=spec.seed, libroom=spec.seed)
    room.add_source(list(spec.source))
    room.add_microphone(list(spec.mic))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    # Drop the fractional-delay filters' lead-in so index 0 is the emission time.
    rir = rir[pra.constants.get("frac_delay_length") // 2 :]
    return (rir * spec.distance).astype(np.float32)  # pra's direct path has amplitude 1 / distance


# --------------------------------------------------------------------------- measures


def direct_path_index(rir: np.ndarray, threshold_db: float = 6.0, refine: int = 16) -> int:
    """Index of the direct path in ``rir (L,)``: the first sample within ``threshold_db`` of the
    global peak, moved to the largest ``|rir|`` in the next ``refine`` samples.

    Taking the *first* near-peak sample (rather than the arg-max) stays on the direct sound when a
    reflection is as strong; noise before the onset is far below the threshold, so it is ignored.
    """
    a = np.abs(np.asarray(rir, dtype=np.float64).reshape(-1))
    if a.size == 0 or not np.any(a > 0):
        raise RirError("direct_path_index: the RIR is empty or all zeros")
    first = int(np.argmax(a >= a.max() * 10 ** (-threshold_db / 20)))
    return first + int(np.argmax(a[first : first + refine]))


def drr(rir: np.ndarray, sr: int, direct_index: int, window_ms: float = DIRECT_WINDOW_MS) -> float:
    """Direct-to-reverberant ratio in dB of ``rir (L,)``.

    Direct = energy within ``±window_ms`` of ``direct_index``; reverberant = everything after that
    window (samples before it, e.g. pre-onset noise, are ignored). ``inf`` without a tail.
    """
    e = np.asarray(rir, dtype=np.float64).reshape(-1) ** 2
    w = int(round(window_ms * 1e-3 * sr))
    d = int(direct_index)
    direct = e[max(0, d - w) : d + w + 1].sum()
    reverb = e[d + w + 1 :].sum()
    if direct <= 0:
        raise RirError(f"drr: no energy around direct_index={d}; pass direct_path_index(rir)")
    return float("inf") if reverb <= 0 else float(10 * np.log10(direct / reverb))


def scale_tail(rir: np.ndarray, sr: int, direct_index: int, gain: float,
               window_ms: float = DIRECT_WINDOW_MS) -> np.ndarray:
    """``rir (L,)`` with everything after :func:`drr`'s direct window times ``gain``: the direct
    sound and the tail's decay (T60) stay, their balance moves by ``-20 log10(gain)`` dB of DRR.
    Drawing it per training item is DRR augmentation (Bryan, ICASSP 2020): real rooms pair any
    T60 with any DRR, a shoebox of a few metres only with a narrow band of them."""
    out = np.array(rir, dtype=np.float32, copy=True).reshape(-1)
    out[int(direct_index) + int(round(window_ms * 1e-3 * sr)) + 1 :] *= gain
    return out


NOISE_HEADROOM_DB = 10.0  # ISO 3382: the fit range ends >= 10 dB above the noise floor


def _decay_analysis(e: np.ndarray, sr: int) -> tuple[float, int, float]:
    """``(noise power, usable length, dynamic range dB)`` of energy ``e (L,)`` from the onset.

    A tail (last 10 %) of stationary (halves within 3 dB) and dense (kurtosis < 6) energy is a
    noise floor: the decay is used until its 10-ms envelope is 3 dB above it. Otherwise (a
    simulated RIR) no noise, all samples, unlimited range.
    """
    n = e.size
    k = max(1, int(0.01 * sr))
    env = np.convolve(e, np.ones(k) / k, mode="same")
    peak = int(np.argmax(env))
    tail = e[-max(n // 10, 2) :]
    p1, p2 = tail[: tail.size // 2].mean(), tail[tail.size // 2 :].mean()
    kurtosis = float(np.mean(tail**2) / max(tail.mean() ** 2, 1e-300))  # e = x^2: E[x^4]/E[x^2]^2
    if p1 <= 0 or p2 <= 0 or abs(10 * np.log10(p1 / p2)) > 3.0 or kurtosis > 6.0:
        return 0.0, n, float("inf")
    noise = float(tail.mean())
    below = np.nonzero(env[peak:] <= 2.0 * noise)[0]
    cut = peak + int(below[0]) if below.size else n
    return noise, max(cut, 1), float(10 * np.log10(env[peak] / noise))


def estimate_t60(
    rir: np.ndarray,
    sr: int,
    decay_db: float = 30.0,
    start_db: float = -5.0,
    min_decay_db: float = 20.0,
) -> float:
    """T60 in seconds of ``rir (L,)``: a line fitted to the Schroeder decay curve (from the
    direct path, noise floor cut and subtracted) from ``start_db`` down ``decay_db`` (T30),
    extrapolated to -60 dB. The fit ends ``NOISE_HEADROOM_DB`` above a noise floor, shrinking
    to ``min_decay_db`` (T20); below that :class:`RirError`.
    """
    x = np.asarray(rir, dtype=np.float64).reshape(-1)
    e = x[direct_path_index(x) :] ** 2
    noise, cut, range_db = _decay_analysis(e, sr)
    edc = np.cumsum((e[:cut] - noise)[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(np.maximum(edc, 0) / edc[0])
    span = min(decay_db, range_db + start_db - NOISE_HEADROOM_DB)
    if span < min_decay_db:
        raise RirError(
            f"estimate_t60: the RIR's decay spans only {range_db:.0f} dB above its noise floor; "
            f"T{min_decay_db:.0f} needs {min_decay_db - start_db + NOISE_HEADROOM_DB:.0f} dB "
            "(a longer or cleaner RIR)"
        )
    lo, hi = start_db - span, start_db
    i0 = int(np.argmax(db <= hi))
    i1 = int(np.argmax(db <= lo))
    if i1 - i0 < 3:  # a near-instant decay (anechoic): go by the crossing times
        return float((i1 - i0) / sr * 60.0 / span)
    t = np.arange(i0, i1 + 1) / sr
    slope = np.polyfit(t, db[i0 : i1 + 1], 1)[0]
    return float(-60.0 / slope) if slope < 0 else float("inf")

