"""Scoring: every (item, system) row, the per-item score cache, items without a reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dereverb.evaluation import scoring
from dereverb.evaluation.report import t60_band
from dereverb.evaluation.scoring import evaluate_systems
from dereverb.evaluation.systems import Wpe, build_baselines
from tests.evaluation.conftest import SR, Counting


def test_rows_hold_every_item_system_and_metric(rows: list[dict], items: list[dict]) -> None:
    assert len(rows) == len(items) * 3
    assert {r["system"] for r in rows} == {"reverberant", "wpe", "oracle_gl"}
    for r in rows:
        assert r["band"] == t60_band(r["t60"])
        for m in ("pesq", "stoi", "estoi", "si_sdr"):
            assert math.isfinite(r[m]), (r["id"], r["system"], m)
        assert math.isnan(r["srmr"])  # srmr="none"
        assert r["rir"].startswith("toy")
    assert list(rows[0]) == [
        "id",
        "system",
        "band",
        "t60",
        "rir",
        "pesq",
        "stoi",
        "estoi",
        "si_sdr",
        "srmr",
        "seconds",
    ]
    by = {(r["id"], r["system"]): r for r in rows}
    for it in items:  # the oracle is far above the input on every item
        assert by[(it["id"], "oracle_gl")]["stoi"] > by[(it["id"], "reverberant")]["stoi"] + 0.2


def test_cache_is_reused_and_keyed_by_settings_and_content(
    items: list[dict], tmp_path: Path
) -> None:
    items = items[:2]
    wpe = Counting(Wpe(iterations=1), "wpe-1")
    rev = Counting(build_baselines("reverberant")["reverberant"], "rev")
    stats: dict[str, int] = {}
    systems = {"wpe": wpe, "reverberant": rev}
    first = evaluate_systems(items, systems, SR, tmp_path, srmr="none", progress=False, stats=stats)
    assert (wpe.calls, rev.calls, stats["computed"], stats["cached"]) == (2, 2, 4, 0)
    second = evaluate_systems(
        items, systems, SR, tmp_path, srmr="none", progress=False, stats=stats
    )
    assert (wpe.calls, rev.calls, stats["computed"], stats["cached"]) == (2, 2, 0, 4)
    keys = ("id", "system", "pesq", "stoi", "estoi", "si_sdr")
    assert [[r[k] for k in keys] for r in second] == [[r[k] for k in keys] for r in first]
    # Other settings (fingerprint) -> recomputed; changed audio under the same id -> recomputed.
    wpe2 = Counting(Wpe(iterations=2), "wpe-2")
    evaluate_systems(items, {"wpe": wpe2}, SR, tmp_path, srmr="none", progress=False)
    assert wpe2.calls == 2
    changed = [dict(items[0], reverb=items[0]["reverb"] * 0.5)]
    evaluate_systems(changed, {"wpe": wpe}, SR, tmp_path, srmr="none", progress=False)
    assert wpe.calls == 3


def test_an_interrupted_run_keeps_the_scores_it_finished(
    items: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle: a re-run computes only the (item, system) pairs not yet scored;
    another SRMR mode is another set of metrics, so it is scored anew."""
    rev = Counting(build_baselines("reverberant")["reverberant"], "rev")
    real, calls = scoring.score_item, []

    def interrupting(*args):
        calls.append(args[3])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(scoring, "score_item", interrupting)
    with pytest.raises(KeyboardInterrupt):
        evaluate_systems(items[:3], {"reverberant": rev}, SR, tmp_path, srmr="none", progress=False)
    monkeypatch.setattr(scoring, "score_item", real)
    stats: dict[str, int] = {}
    rows = evaluate_systems(items[:3], {"reverberant": rev}, SR, tmp_path, srmr="none", progress=False,
                            stats=stats)
    assert (stats["cached"], stats["computed"], rev.calls) == (2, 1, 4)
    assert all(math.isfinite(r["pesq"]) and math.isnan(r["srmr"]) for r in rows)
    rows = evaluate_systems(items[:1], {"reverberant": rev}, SR, tmp_path, srmr="fast", progress=False,
                            stats=stats)
    assert stats["computed"] == 1 and math.isfinite(rows[0]["srmr"]) and math.isfinite(rows[0]["pesq"])


def test_oracles_are_skipped_without_a_reference(items: list[dict]) -> None:
    unpaired = [{"id": "u", "reverb": items[0]["reverb"][:8000], "clean": None, "t60": None}]
    stats: dict[str, int] = {}
    rows = evaluate_systems(
        unpaired,
        build_baselines("reverberant,oracle_gl"),
        SR,
        None,
        srmr="fast",
        progress=False,
        stats=stats,
    )
    assert [r["system"] for r in rows] == ["reverberant"] and stats["skipped"] == 1
    assert (
        math.isnan(rows[0]["pesq"]) and math.isfinite(rows[0]["srmr"]) and rows[0]["band"] == "all"
    )


def test_bad_arguments_are_value_errors(items: list[dict]) -> None:
    with pytest.raises(ValueError, match="srmr must be one of"):
        evaluate_systems(items[:1], build_baselines("reverberant"), SR, srmr="slow", progress=False)
    with pytest.raises(ValueError, match="no systems"):
        evaluate_systems(items[:1], {}, SR, progress=False)
