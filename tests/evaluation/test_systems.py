"""Systems: identity, WPE and the clean-magnitude oracles on short reverberant pairs; checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dereverb.data.pairs import make_pair
from dereverb.evaluation.sources import EvaluationError
from dereverb.evaluation.systems import (
    NAMES,
    ORACLES,
    CheckpointSystem,
    OracleMagnitude,
    Reverberant,
    Wpe,
    build_baselines,
    checkpoint_names,
    make_baseline,
    needs_clean,
    parse_names,
)
from dereverb.signals import metrics
from tests.conftest import toy_rir
from tests.evaluation.conftest import SR
from tests.evaluation.conftest import dry as _dry


def _pair(
    t60: float = 0.6, seed: int = 0, seconds: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reverberant pair ``(1, L)`` each: synthetic speech in a toy room, dry target."""
    reverb, clean = make_pair(_dry(seed, seconds), toy_rir(t60, SR, seed), 0, SR, "dry", -3.0)
    return torch.from_numpy(reverb)[None], torch.from_numpy(clean)[None]


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    return _pair()


@pytest.fixture(scope="module")
def scores(pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Every baseline's scores on the module's pair (computed once: Griffin-Lim is the cost)."""
    reverb, clean = pair
    out = {}
    for name, fn in build_baselines("all").items():
        est = fn(reverb, SR, clean)
        assert est.shape == reverb.shape and est.dtype == torch.float32, name
        assert torch.isfinite(est).all(), name
        out[name] = metrics.score(clean[0].numpy(), est[0].numpy(), SR)
    return out


def test_reverberant_is_identity_and_a_copy(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    reverb, _ = pair
    out = Reverberant()(reverb, SR)
    assert torch.equal(out, reverb)
    out += 1.0
    assert not torch.equal(out, reverb), (
        "the identity baseline must not hand back the caller's tensor"
    )


def test_wpe_improves_stoi_of_a_reverberant_utterance(scores: dict[str, dict[str, float]]) -> None:
    assert scores["wpe"]["stoi"] > scores["reverberant"]["stoi"] + 0.01
    assert scores["wpe"]["estoi"] > scores["reverberant"]["estoi"] + 0.01


def test_wpe_processes_batch_rows_independently_and_deterministically() -> None:
    a, _ = _pair(0.6, seed=0, seconds=1.0)
    b, _ = _pair(0.3, seed=1, seconds=1.0)
    wpe = Wpe(iterations=2)
    both = wpe(torch.cat([a, b]), SR)
    assert both.shape == (2, a.shape[-1])
    for row, single in ((both[:1], wpe(a, SR)), (both[1:], wpe(b, SR))):
        # Per-bin solves are ill-conditioned where speech has no energy, so batched BLAS
        # paths differ in round-off only: far below the signal, not exactly zero.
        err_db = 10 * torch.log10(((row - single) ** 2).sum() / (single**2).sum())
        assert err_db < -40, f"batch row differs from the single item by {err_db:.1f} dB"
    assert torch.equal(wpe(a, SR), wpe(a, SR)), "WPE is not deterministic"
    change_db = 10 * torch.log10(((both[:1] - a) ** 2).sum() / (a**2).sum())
    assert change_db > -30, "WPE left the input (nearly) unchanged"


def test_wpe_with_delay_beyond_the_utterance_is_identity() -> None:
    """A prediction delay longer than the utterance leaves nothing to predict: output == input."""
    a, _ = _pair(0.6, seconds=0.25)  # 32 frames
    out = Wpe(delay=200, taps=2, iterations=1)(a, SR)
    torch.testing.assert_close(out, a, rtol=1e-4, atol=1e-5)


def test_oracles_bound_the_magnitude_only_approach(scores: dict[str, dict[str, float]]) -> None:
    rev = scores["reverberant"]
    # Clean magnitude + Griffin-Lim (32 iterations) is near-transparent perceptually.
    for name in ("oracle_gl", "oracle_gl_warm"):
        assert scores[name]["stoi"] > 0.98, name
        assert scores[name]["pesq"] > rev["pesq"] + 2.0, name
    # Clean magnitude + the reverberant phase: far above the input, but the wrong phase costs
    # PESQ/STOI relative to a phase consistent with the clean magnitude.
    ora = scores["oracle_reverb_phase"]
    assert ora["stoi"] > 0.9 and ora["stoi"] > rev["stoi"] + 0.2
    assert ora["pesq"] > rev["pesq"] + 1.0
    assert scores["oracle_gl"]["pesq"] > ora["pesq"]
    assert scores["oracle_gl_warm"]["stoi"] > ora["stoi"]
    # And every oracle beats WPE, the blind baseline.
    for name in ORACLES:
        assert scores[name]["stoi"] > scores["wpe"]["stoi"], name


def test_oracles_need_the_clean_reference(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    reverb, clean = pair
    for name in ORACLES:
        fn = make_baseline(name, gl_iters=2)
        assert needs_clean(fn)
        with pytest.raises(ValueError, match="needs the clean reference"):
            fn(reverb, SR)
    with pytest.raises(ValueError, match="shape of reverb"):
        OracleMagnitude()(reverb, SR, clean[:, :-10])
    assert not needs_clean(Reverberant()) and not needs_clean(Wpe())


def test_bad_input_shape_is_a_clear_error(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    reverb, _ = pair
    for fn in (Reverberant(), Wpe()):
        with pytest.raises(ValueError, match=r"\(B, L\) tensor"):
            fn(reverb[0], SR)


def test_build_baselines_expands_groups_in_order() -> None:
    systems = build_baselines("reverberant,wpe,oracle")
    assert list(systems) == [
        "reverberant",
        "wpe",
        "oracle_reverb_phase",
        "oracle_gl",
        "oracle_gl_warm",
    ]
    assert [getattr(s, "phase", None) for s in systems.values()][2:] == [
        "reverberant",
        "griffinlim",
        "griffinlim-warm",
    ]
    assert parse_names("oracle_gl, oracle , wpe") == [
        "oracle_gl",
        "oracle_reverb_phase",
        "oracle_gl_warm",
        "wpe",
    ]
    assert parse_names("all") == list(NAMES)
    assert build_baselines("none") == {} and build_baselines("") == {}
    with pytest.raises(ValueError, match="unknown baseline 'wpee'.*reverberant, wpe"):
        build_baselines("reverberant,wpee")


def test_options_reach_the_baselines_and_their_fingerprints() -> None:
    s = build_baselines("wpe,oracle_gl", wpe_taps=7, wpe_iterations=2, gl_iters=5)
    assert s["wpe"].taps == 7 and s["wpe"].iterations == 2 and s["oracle_gl"].n_iter == 5
    assert Wpe().fingerprint == Wpe().fingerprint
    assert Wpe(taps=7).fingerprint != Wpe().fingerprint
    assert make_baseline("oracle_gl").fingerprint != make_baseline("oracle_gl_warm").fingerprint
    with pytest.raises(ValueError, match="taps must be >= 1"):
        Wpe(taps=0)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_names_are_readable_and_unique() -> None:
    paths = [
        "runs/rgb_turbo/version_0/checkpoints/last.ckpt",
        "runs/gray/version_0/checkpoints/last.ckpt",
        "runs/gray/version_1/checkpoints/last.ckpt",
        "runs/gray/version_1/checkpoints/best-epoch007-step80-stoi0.812.ckpt",
        "models/wpe.ckpt",
        "my_model.ckpt",
    ]
    assert checkpoint_names(paths, taken=["reverberant", "wpe"]) == [
        "rgb_turbo",
        "gray-version_0",
        "gray-version_1",
        "gray-best",
        "wpe-2",
        "my_model",
    ]


def test_checkpoint_system_runs_the_model(
    tmp_path: Path, pair: tuple[torch.Tensor, torch.Tensor], tiny_checkpoint: Callable[[Path], Path]
) -> None:
    ckpt = tiny_checkpoint(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt")
    system = CheckpointSystem.load(ckpt)
    x = pair[0]
    y = system(x, SR)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not needs_clean(system)
    assert len(system.sha256) == 64 and system.sha256 in system.fingerprint
    assert CheckpointSystem.load(ckpt, phase="griffinlim").fingerprint != system.fingerprint
    with pytest.raises(EvaluationError, match="checkpoint not found"):
        CheckpointSystem.load(tmp_path / "nope.ckpt")
