"""Evaluation item sources: the DataModule's test split, speech x measured RIRs, config reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dereverb.data.datamodule import DereverbDataModule
from dereverb.data.rooms import RoomSampler
from dereverb.evaluation.sources import (
    EvaluationError,
    LazyItems,
    build_datamodule,
    datamodule_items,
    load_datamodule_config,
    measured_items,
)
from dereverb.signals.audio import write_audio
from tests.conftest import toy_rir

SR = 16000


def _data(tmp_path: Path) -> dict:
    return {
        "speech": "synthetic",
        "rirs": "simulated",
        "segment_seconds": 1.0,
        "test_items": 2,
        "rir_bank_sizes": [1, 1, 2],
        "rir_max_order": 3,
        "rir_cache_dir": str(tmp_path / "rirs"),
        "room": {"t60_range": [0.3, 0.5]},
    }


def test_datamodule_source_matches_the_test_split(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"base_channels": 4}, "data": data}))
    kw = load_datamodule_config(cfg)
    loaders, sr, desc = datamodule_items(kw)
    assert sr == SR and len(loaders) == 2 and "test split" in desc
    ds = DereverbDataModule(**{**data, "room": RoomSampler(t60_range=(0.3, 0.5))}).build_dataset(
        "test"
    )
    items = list(LazyItems(loaders))
    for i, it in enumerate(items):
        ref = ds.item(i)
        np.testing.assert_array_equal(it["reverb"], ref.reverb)
        np.testing.assert_array_equal(it["clean"], ref.clean)
        assert it["t60"] == pytest.approx(ref.t60) and it["id"] == f"test-{i:05d}"
    with pytest.raises(EvaluationError, match="unknown DataModule argument"):
        datamodule_items({**data, "speeech": "x"})


def test_build_datamodule_reads_the_lightning_cli_layouts(tmp_path: Path) -> None:
    data = _data(tmp_path)
    plain = build_datamodule(data)
    room = {"class_path": "dereverb.data.rooms.RoomSampler", "init_args": {"t60_range": [0.3, 0.5]}}
    nested = build_datamodule({**data, "room": room, "rir_cache_dir": tmp_path / "rirs"})
    assert plain.room == nested.room == RoomSampler(t60_range=(0.3, 0.5))
    assert plain.hparams["rir_bank_sizes"] == (1, 1, 2)  # YAML lists become the typed tuples
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"class_path": "DereverbDataModule", "init_args": data}})
    )
    assert load_datamodule_config(cfg) == data


@pytest.mark.parametrize(
    "change, message",
    [
        ({"room": {"t60_range": [2, 1]}}, "data.room: RoomSampler.t60_range=(2.0, 1.0)"),
        ({"room": {"t60_rang": [2, 1]}}, "data.room: "),
        ({"segment_seconds": "abc"}, "data.segment_seconds"),
        ({"clean_target": "wet"}, "data.clean_target"),
        ({"segment_seconds": -1}, "data.segment_seconds must be > 0"),
    ],
)
def test_bad_datamodule_arguments_are_one_line_errors(
    tmp_path: Path, change: dict, message: str
) -> None:
    with pytest.raises(EvaluationError) as exc:
        build_datamodule({**_data(tmp_path), **change})
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_measured_items_are_deterministic_and_take_rooms_in_turn(tmp_path: Path) -> None:
    write_audio(tmp_path / "roomA" / "a0.wav", toy_rir(0.3, SR, 0), SR)
    write_audio(tmp_path / "roomB" / "b0.wav", toy_rir(0.6, SR, 1), SR)
    write_audio(tmp_path / "roomB" / "b1.wav", toy_rir(0.6, SR, 2), SR)
    loaders, desc = measured_items(tmp_path, n_items=4, segment_seconds=1.0)
    items = [load() for load in loaders]
    assert [it["room"] for it in items] == ["roomA", "roomB", "roomA", "roomB"]
    assert "target=dry" in desc and all(it["reverb"].shape == (SR,) for it in items)
    again = measured_items(tmp_path, n_items=4, segment_seconds=1.0)[0][1]()
    np.testing.assert_array_equal(again["reverb"], items[1]["reverb"])
    early = measured_items(tmp_path, n_items=4, segment_seconds=1.0, target="early")[0][1]()
    # The same input (up to the shared anti-clipping gain), against another reference.
    assert np.corrcoef(early["reverb"], items[1]["reverb"])[0, 1] > 0.9999
    assert not np.array_equal(early["clean"], items[1]["clean"])
    with pytest.raises(EvaluationError, match="--n-items must be >= 1"):
        measured_items(tmp_path, n_items=0)
    with pytest.raises(EvaluationError, match="--speech .*: not a folder"):
        measured_items(tmp_path, speech=tmp_path / "nowhere")
