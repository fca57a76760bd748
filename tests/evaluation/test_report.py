"""Reports: T60 bands, means by band, intervals against the references, Markdown digits."""

from __future__ import annotations

import numpy as np
import pytest

from dereverb.evaluation.report import BANDS, summarize, t60_band, to_markdown


def test_t60_bands() -> None:
    assert [t60_band(t) for t in (0.2, 0.4, 0.41, 0.7, 0.9, 1.0, 1.5)] == [
        "<=0.4",
        "<=0.4",
        "0.4-0.7",
        "0.4-0.7",
        "0.7-1.0",
        "0.7-1.0",
        ">1.0",
    ]
    assert t60_band(None) is None and t60_band(float("nan")) is None


def test_table_lists_every_system_and_band(rows: list[dict]) -> None:
    s = summarize(rows, n_boot=200)
    assert s["systems"] == ["reverberant", "wpe", "oracle_gl"]
    assert s["bands"] == [*BANDS, "all"]
    cells = {(e["system"], e["band"]): e for e in s["table"]}
    assert set(cells) == {(sy, b) for sy in s["systems"] for b in s["bands"]}
    for sy in s["systems"]:
        assert cells[(sy, "all")]["n"] == 4 and all(cells[(sy, b)]["n"] == 1 for b in BANDS)
        mean_stoi = np.mean([r["stoi"] for r in rows if r["system"] == sy])
        assert cells[(sy, "all")]["stoi"] == pytest.approx(mean_stoi)
    # Reverberation hurts: the input's STOI falls from the shortest to the longest T60 band.
    assert cells[("reverberant", "<=0.4")]["stoi"] > cells[("reverberant", ">1.0")]["stoi"]
    md = to_markdown(s, "t")
    for name in s["systems"]:
        assert f"| {name} |" in md
    for b in BANDS:
        assert f"T60 {b} s (n=1)" in md
    assert "## Difference to reverberant" in md and "## Difference to wpe" in md
    # Intervals: every non-reference system against both references, per band and metric.
    refs = {(c["system"], c["reference"]) for c in s["ci"]}
    assert refs == {("wpe", "reverberant"), ("oracle_gl", "reverberant"), ("oracle_gl", "wpe")}
    ci = next(
        c
        for c in s["ci"]
        if c["system"] == "oracle_gl"
        and c["reference"] == "reverberant"
        and c["band"] == "all"
        and c["metric"] == "stoi"
    )
    assert ci["n"] == 4 and 0 < ci["lo"] <= ci["mean"] <= ci["hi"]


def test_markdown_prints_the_registry_digits_and_labels() -> None:
    rows = [
        {
            "id": str(i),
            "system": s,
            "t60": float("nan"),
            "pesq": 1.23456 + k,
            "stoi": 0.5,
            "si_sdr": -3.21,
        }
        for i in range(3)
        for k, s in enumerate(("reverberant", "model"))
    ]
    md = to_markdown(summarize(rows, n_boot=20), "t")
    assert "| system | n | PESQ-WB | STOI | SI-SDR (dB) |" in md
    assert "| reverberant | 3 | 1.235 | 0.5000 | -3.21 |" in md
    assert "+1.000 [+1.000, +1.000]" in md  # a constant difference: a degenerate interval


def test_items_without_t60_or_reference() -> None:
    rows = [
        {"id": "a", "system": "x", "t60": float("nan"), "srmr": 3.0, "pesq": float("nan")},
        {"id": "a", "system": "y", "t60": float("nan"), "srmr": 4.0, "pesq": float("nan")},
    ]
    s = summarize(rows, n_boot=50)
    assert s["bands"] == ["all"] and s["metrics"] == ["srmr"]
    assert [e["srmr"] for e in s["table"]] == [3.0, 4.0]
