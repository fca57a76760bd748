"""Room sampling, simulation and RIR measures (small rooms, short T60s: this file runs in seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from dereverb.data.rooms import (
    SPEED_OF_SOUND,
    RirError,
    RoomSampler,
    RoomSpec,
    direct_path_index,
    drr,
    estimate_t60,
    scale_tail,
    simulate_rir,
)
from tests.data.conftest import FAST

SR = 16000
SMALL_ROOM = RoomSpec((4.0, 3.5, 2.7), 0.4, (1.0, 1.2, 1.5), (2.6, 2.2, 1.3), 0)


def decaying_noise(t60: float, seconds: float, seed: int = 0, floor_db: float | None = None):
    """Unit direct path after 20 ms of silence, then a -20 dB exponential tail of known T60."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    tail = 0.1 * rng.standard_normal(n) * np.exp(-3 * np.log(10) * np.arange(n) / SR / t60)
    x = np.concatenate([np.zeros(320), [1.0], tail])
    if floor_db is not None:  # stationary measurement noise, before the onset too
        x = x + 10 ** (floor_db / 20) * 0.1 * rng.standard_normal(x.size)
    return x


# --------------------------------------------------------------------------- sampler


def test_sampler_is_deterministic_and_inside_the_room():
    sampler = RoomSampler()
    a = [sampler.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [sampler.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(0)
    specs = [sampler.sample(rng) for _ in range(200)]
    assert len({s.source for s in specs}) == 200  # fresh draws differ
    for s in specs:
        assert 0.2 <= s.t60 <= 1.0
        assert 1.0 - 1e-6 <= s.distance <= 3.0 + 1e-6
        assert all(
            lo <= d <= hi for lo, d, hi in zip((4.0, 3.5, 2.5), s.dims, (10, 8, 3.5), strict=True)
        )
        for p, (hlo, hhi) in ((s.mic, (1.0, 1.6)), (s.source, (1.2, 1.8))):
            assert 0.5 - 1e-6 <= p[0] <= s.dims[0] - 0.5 + 1e-6
            assert 0.5 - 1e-6 <= p[1] <= s.dims[1] - 0.5 + 1e-6
            assert hlo <= p[2] <= hhi


def test_log_uniform_t60_keeps_short_rooms_and_the_rest_of_the_room():
    flat, log = RoomSampler(t60_range=(0.2, 2.0)), RoomSampler(t60_range=(0.2, 2.0), t60_log_uniform=True)
    t = np.array([log.sample(np.random.default_rng(i)).t60 for i in range(2000)])
    assert 0.2 <= t.min() and t.max() <= 2.0
    assert abs(np.mean(t < 0.4) - 0.30) < 0.04 and abs(np.mean(t > 1.0) - 0.30) < 0.04  # log(2)/log(10)
    a, b = flat.sample(np.random.default_rng(3)), log.sample(np.random.default_rng(3))
    assert a.t60 != b.t60 and (a.dims, a.source, a.mic) == (b.dims, b.source, b.mic)


def test_sampler_lists_and_tuples_are_the_same_config():
    assert RoomSampler(t60_range=[0.3, 1]) == RoomSampler(t60_range=(0.3, 1.0))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(t60_range=(0.8, 0.2)), "t60_range"),
        (dict(t60_range=(0.05, 0.3), room_dims_max=(12.0, 10.0, 4.0)), "raise t60_range[0]"),
        (dict(mic_height_range=(1.0, 3.0)), "ceiling"),
        (dict(wall_clearance=2.0), "wall_clearance"),
        (dict(room_dims_min=(4.0, 3.5)), "three lengths"),
    ],
)
def test_sampler_rejects_bad_config(kwargs, words):
    with pytest.raises(RirError, match=words.replace("[", r"\[").replace("]", r"\]")):
        RoomSampler(**kwargs)


def test_sampler_says_when_distance_cannot_fit():
    sampler = RoomSampler(
        room_dims_min=(3.0, 3.0, 2.5),
        room_dims_max=(3.0, 3.0, 2.5),
        distance_range=(5.0, 6.0),
        max_tries=50,
    )
    with pytest.raises(RirError, match="shorten distance_range"):
        sampler.sample(np.random.default_rng(0))


# --------------------------------------------------------------------------- simulation


def test_direct_path_sits_at_the_geometric_delay_with_unit_gain():
    rng = np.random.default_rng(3)
    sampler = RoomSampler(**FAST)
    for _ in range(4):
        spec = sampler.sample(rng)
        r = simulate_rir(spec, max_order=8)
        assert r.dtype == np.float32 and r.ndim == 1
        d = direct_path_index(r)
        assert abs(d - spec.distance / SPEED_OF_SOUND * SR) <= 1.0
        # unit-gain fractional delay: peak sample sinc(frac) in [0.64, 1], energy ~1
        assert 0.63 <= r[d] <= 1.0 + 1e-3
        assert 0.9 <= float(np.sum(r[d - 40 : d + 41] ** 2)) <= 1.1
        assert np.abs(r[: max(0, d - 40)]).max(initial=0) < 0.05  # nothing before it


def test_max_length_and_order_cap():
    full = simulate_rir(SMALL_ROOM)
    capped = simulate_rir(SMALL_ROOM, max_order=5)
    assert capped.size < full.size  # the cap ends the response earlier
    assert simulate_rir(SMALL_ROOM, max_length_s=0.1).size == 1600
    with pytest.raises(RirError, match="max_order"):
        simulate_rir(SMALL_ROOM, max_order=-2)


def test_measured_t60_tracks_the_requested_one():
    # Observed in this 4 x 3.5 x 2.7 m room (full image order): 0.2 -> 0.177, 0.4 -> 0.413,
    # 0.6 -> 0.643 s (-12 %..+7 %). Elongated rooms overshoot more (docs/rir.md): up to +80 %.
    measured = []
    for t60 in (0.2, 0.4, 0.6):
        spec = RoomSpec(SMALL_ROOM.dims, t60, SMALL_ROOM.source, SMALL_ROOM.mic, 0)
        m = estimate_t60(simulate_rir(spec), SR)
        assert abs(m / t60 - 1) <= 0.2, (t60, m)
        measured.append(m)
    assert measured == sorted(measured)


def test_hybrid_ray_tracing_is_seeded_and_gives_a_similar_t60():
    spec = RoomSpec(SMALL_ROOM.dims, 0.5, SMALL_ROOM.source, SMALL_ROOM.mic, seed=11)
    a, b = simulate_rir(spec, use_rays=True), simulate_rir(spec, use_rays=True)
    np.testing.assert_array_equal(a, b)
    assert abs(direct_path_index(a) - spec.distance / SPEED_OF_SOUND * SR) <= 1.0
    # observed 0.521 (rays) vs 0.525 s (image sources) for the requested 0.5 s
    assert abs(estimate_t60(a, SR) / estimate_t60(simulate_rir(spec), SR) - 1) <= 0.15


def test_calibration_brings_an_elongated_room_to_the_requested_t60():
    spec = RoomSpec((9.9, 3.7, 3.3), 0.5, (2.0, 1.5, 1.6), (4.5, 2.4, 1.3), seed=3)
    plain = estimate_t60(simulate_rir(spec, use_rays=True), SR)
    calibrated = estimate_t60(simulate_rir(spec, use_rays=True, calibrate=2), SR)
    assert plain / 0.5 > 1.2  # observed 0.70 s: Sabine absorption overshoots here
    assert calibrated == pytest.approx(0.5, rel=0.06)  # observed 0.499 s
    with pytest.raises(RirError, match="calibrate"):
        simulate_rir(spec, calibrate=-1)


def test_high_frequency_absorption_shortens_the_treble_decay_only():
    import dataclasses

    from scipy.signal import butter, sosfilt

    def band_t60(rir, lo, hi):
        return estimate_t60(sosfilt(butter(4, [lo, hi], btype="band", fs=SR, output="sos"), rir), SR)

    spec = RoomSpec(SMALL_ROOM.dims, 0.8, SMALL_ROOM.source, SMALL_ROOM.mic, 0)
    flat, treble = simulate_rir(spec), simulate_rir(dataclasses.replace(spec, hf_absorption=3.0))
    # observed: 4-6 kHz band 0.86 -> 0.37 s; 350-700 Hz band 0.86 -> 0.86 s
    assert band_t60(treble, 4000, 6000) < 0.75 * band_t60(flat, 4000, 6000)
    assert band_t60(treble, 350, 700) == pytest.approx(band_t60(flat, 350, 700), rel=0.1)
    assert abs(direct_path_index(treble) - direct_path_index(flat)) <= 1


def test_sampler_draws_the_high_frequency_absorption_and_leaves_flat_rooms_as_they_were():
    flat = RoomSampler().sample(np.random.default_rng(3))
    tilted = RoomSampler(hf_absorption_range=(1.5, 3.0)).sample(np.random.default_rng(3))
    assert flat.hf_absorption == 1.0 and 1.5 <= tilted.hf_absorption <= 3.0
    assert (tilted.dims, tilted.source, tilted.mic, tilted.t60) == (flat.dims, flat.source, flat.mic, flat.t60)
    with pytest.raises(RirError, match="hf_absorption_range"):
        RoomSampler(hf_absorption_range=(2.0, 1.0))


# --------------------------------------------------------------------------- measures


@pytest.mark.parametrize("t60", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("floor_db", [None, -40.0])
def test_estimate_t60_on_known_decays(t60, floor_db):
    # observed worst case 1.7 % (T60 0.9 s, noise 40 dB under the tail)
    x = decaying_noise(t60, 1.5, floor_db=floor_db)
    assert estimate_t60(x, SR) == pytest.approx(t60, rel=0.04)
    assert estimate_t60(x, SR, decay_db=20) == pytest.approx(t60, rel=0.04)


def test_estimate_t60_refuses_a_rir_without_decay():
    noise = np.random.default_rng(0).standard_normal(SR)
    with pytest.raises(RirError, match="spans only"):
        estimate_t60(noise, SR)


def test_direct_path_index_ignores_noise_before_the_onset():
    x = decaying_noise(0.4, 0.5, floor_db=-30)
    x[325] = 0.9  # a reflection almost as strong, 5 samples later
    assert direct_path_index(x) == 320
    x[330] = 1.5  # a stronger arrival within the refine window still wins there
    assert direct_path_index(x) == 330
    with pytest.raises(RirError, match="all zeros"):
        direct_path_index(np.zeros(10))


def test_drr_splits_direct_and_tail_energy():
    x = np.zeros(SR)
    x[100] = 1.0
    x[100 + 41 :] = 0.01  # tail starts right after the 2.5 ms (40-sample) window
    tail_energy = (SR - 141) * 1e-4
    assert drr(x, SR, 100) == pytest.approx(-10 * np.log10(tail_energy), abs=1e-6)
    x[59] = 5.0  # just before the window: ignored (pre-onset noise)
    assert drr(x, SR, 100) == pytest.approx(-10 * np.log10(tail_energy), abs=1e-6)
    assert drr(np.eye(1, 50, 10).ravel(), SR, 10) == float("inf")


def test_scale_tail_sets_the_drr_and_keeps_the_direct_sound_and_the_decay():
    rng = np.random.default_rng(0)
    n = np.arange(SR)
    rir = np.where(n > 120, rng.standard_normal(SR) * np.exp(-n / (0.5 * SR / 6.9)), 0.0) * 0.3
    rir[100] = 1.0
    before = drr(rir, SR, 100)
    for target in (-15.0, 0.0, 10.0):
        out = scale_tail(rir, SR, 100, 10 ** ((before - target) / 20))
        assert out.shape == rir.shape and out.dtype == np.float32
        assert drr(out, SR, 100) == pytest.approx(target, abs=1e-3)
        np.testing.assert_array_equal(out[: 100 + 41], rir[: 100 + 41].astype(np.float32))  # direct window
        assert estimate_t60(out, SR) == pytest.approx(estimate_t60(rir, SR), rel=0.02)  # the decay's slope
    assert rir[100] == 1.0 and drr(rir, SR, 100) == before  # the input is not modified
