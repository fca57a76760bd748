"""Evaluation: per-item scoring with a cache, T60-band tables, paired bootstrap, the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dereverb import evaluate
from dereverb.data.datamodule import make_pair
from dereverb.evaluate import (
    CheckpointSystem,
    checkpoint_names,
    evaluate_systems,
    main,
    summarize,
)
from dereverb.evaluation.baselines import Wpe, build_baselines
from dereverb.evaluation.bootstrap import bootstrap_diff
from dereverb.evaluation.report import BANDS, t60_band, to_markdown
from dereverb.signal.audio import write_audio
from tests.conftest import shared_path, toy_rir

SR = 16000
T60S = (0.3, 0.55, 0.85, 1.2)  # one item per T60 band


def _dry(seed: int, seconds: float) -> np.ndarray:
    from dereverb.data.speech import SyntheticSpeech

    return SyntheticSpeech(sample_rate=SR, seed=0).utterance(seed, seconds)


def _items(n: int = 4, seconds: float = 1.5) -> list[dict]:
    items = []
    for i in range(n):
        t60 = T60S[i % len(T60S)]
        reverb, clean = make_pair(_dry(i, seconds), toy_rir(t60, SR, i), 0, SR, "dry", -3.0)
        items.append(
            {"id": f"it{i}", "reverb": reverb, "clean": clean, "t60": t60, "rir": f"toy{i}"}
        )
    return items


class Counting:
    """Wraps a system and counts its calls (cache reuse is asserted by calls, not time)."""

    def __init__(self, inner, fingerprint: str) -> None:
        self.inner, self.fingerprint, self.calls = inner, fingerprint, 0
        self.needs_clean = getattr(inner, "needs_clean", False)

    def __call__(self, reverb, sample_rate, clean=None):
        self.calls += 1
        return self.inner(reverb, sample_rate, clean)


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return _items()


@pytest.fixture(scope="module")
def rows(items: list[dict], tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    systems = build_baselines("reverberant,wpe,oracle_gl", gl_iters=16)
    return evaluate_systems(
        items, systems, SR, tmp_path_factory.mktemp("cache"), srmr="none", progress=False
    )


def _tiny_checkpoint(path: Path) -> Path:
    """A DereverbModule checkpoint (untrained, tiny) in the layout dereverb.train writes."""
    from dereverb.training.module import DereverbModule

    torch.manual_seed(0)
    model = DereverbModule(base_channels=4, depth=2, phase="reverberant", val_metric_batches=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


# ----------------------------------------------------------------------------- scoring + table
def test_rows_hold_every_item_system_and_metric(rows: list[dict], items: list[dict]) -> None:
    assert len(rows) == len(items) * 3
    assert {r["system"] for r in rows} == {"reverberant", "wpe", "oracle_gl"}
    for r in rows:
        assert r["band"] == t60_band(r["t60"])
        for m in ("pesq", "stoi", "estoi", "si_sdr"):
            assert math.isfinite(r[m]), (r["id"], r["system"], m)
        assert math.isnan(r["srmr"])  # srmr="none"
        assert r["rir"].startswith("toy")
    by = {(r["id"], r["system"]): r for r in rows}
    for it in items:  # the oracle is far above the input on every item
        assert by[(it["id"], "oracle_gl")]["stoi"] > by[(it["id"], "reverberant")]["stoi"] + 0.2


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


def test_items_without_t60_or_reference() -> None:
    rows = [
        {"id": "a", "system": "x", "t60": float("nan"), "srmr": 3.0, "pesq": float("nan")},
        {"id": "a", "system": "y", "t60": float("nan"), "srmr": 4.0, "pesq": float("nan")},
    ]
    s = summarize(rows, n_boot=50)
    assert s["bands"] == ["all"] and s["metrics"] == ["srmr"]
    assert [e["srmr"] for e in s["table"]] == [3.0, 4.0]


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_items() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (10, 40, 400):
        b = rng.normal(2.0, 0.5, n)
        a = b + rng.normal(0.1, 0.3, n)  # a is better by 0.1 on average, with item noise
        mean, lo, hi = bootstrap_diff(a, b, n=2000, seed=0)
        assert mean == pytest.approx(float(np.mean(a - b)))
        assert lo < mean < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.1  # 400 items pin a 0.1 difference down: the interval excludes 0
    assert bootstrap_diff(a, b, n=500, seed=3) == bootstrap_diff(a, b, n=500, seed=3)
    assert bootstrap_diff(a, b, n=500, seed=3) != bootstrap_diff(a, b, n=500, seed=4)


def test_bootstrap_drops_nan_pairs_and_handles_degenerate_input() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.0, 1.0, 5.0, np.nan])
    assert bootstrap_diff(a, b, n=100) == (1.0, 1.0, 1.0)  # two usable pairs, both differ by 1
    assert all(math.isnan(v) for v in bootstrap_diff([np.nan], [1.0]))
    with pytest.raises(ValueError, match="same items"):
        bootstrap_diff([1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- cache
def test_cache_is_reused_and_keyed_by_settings_and_content(
    items: list[dict], tmp_path: Path
) -> None:
    items = items[:2]
    wpe = Counting(Wpe(iterations=1), "wpe-1")
    rev = Counting(build_baselines("reverberant")["reverberant"], "rev")
    stats: dict[str, int] = {}
    first = evaluate_systems(
        items,
        {"wpe": wpe, "reverberant": rev},
        SR,
        tmp_path,
        srmr="none",
        progress=False,
        stats=stats,
    )
    assert (wpe.calls, rev.calls, stats["computed"], stats["cached"]) == (2, 2, 4, 0)
    second = evaluate_systems(
        items,
        {"wpe": wpe, "reverberant": rev},
        SR,
        tmp_path,
        srmr="none",
        progress=False,
        stats=stats,
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


def test_cache_survives_a_truncated_line_and_adds_only_missing_metrics(
    items: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rev = Counting(build_baselines("reverberant")["reverberant"], "rev")
    evaluate_systems(items[:1], {"reverberant": rev}, SR, tmp_path, srmr="none", progress=False)
    (cache_file,) = tmp_path.glob("reverberant-*.jsonl")
    with open(cache_file, "a") as f:
        f.write('{"key": "it9|abc", "pesq": 1.')  # a run killed mid-write
    scored: list[tuple[str, ...]] = []
    real = evaluate.score_item
    monkeypatch.setattr(
        evaluate,
        "score_item",
        lambda est, clean, sr, keys: scored.append(tuple(keys)) or real(est, clean, sr, keys),
    )
    rows = evaluate_systems(
        items[:1], {"reverberant": rev}, SR, tmp_path, srmr="fast", progress=False
    )
    assert scored == [("srmr_fast",)], "only the new metric may be computed"
    assert math.isfinite(rows[0]["srmr"]) and math.isfinite(rows[0]["pesq"])
    rows = evaluate_systems(
        items[:1], {"reverberant": rev}, SR, tmp_path, srmr="fast", progress=False
    )
    assert len(scored) == 1 and rev.calls == 2


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


def test_checkpoint_system_runs_the_model(tmp_path: Path, items: list[dict]) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt")
    system = CheckpointSystem.load(ckpt)
    x = torch.from_numpy(items[0]["reverb"])[None]
    y = system(x, SR)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert len(system.sha256) == 64 and system.sha256 in system.fingerprint
    with pytest.raises(evaluate.EvaluationError, match="checkpoint not found"):
        CheckpointSystem.load(tmp_path / "nope.ckpt")


# ----------------------------------------------------------------------------- CLI
def _run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _paired_folder(root: Path, items: list[dict]) -> Path:
    for it in items:
        write_audio(root / "reverb" / f"{it['id']}.wav", it["reverb"], SR)
        write_audio(root / "clean" / f"{it['id']}.wav", it["clean"][: len(it["clean"]) - 100], SR)
    write_audio(root / "reverb" / "orphan.wav", items[0]["reverb"], SR)
    return root


def test_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--ckpt",
        "--baselines",
        "--datamodule-config",
        "--paired",
        "--unpaired",
        "--speech",
        "--rirs",
    ):
        assert flag in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ckpt", "missing.ckpt"], "--ckpt missing.ckpt: checkpoint not found"),
        (["--unpaired", "no/such/folder"], "--unpaired no/such/folder: folder not found"),
        (["--rirs", "no/such/rirs"], "--rirs no/such/rirs: folder not found"),
        (["--datamodule-config", "no.yaml"], "--datamodule-config no.yaml: file not found"),
        (["--baselines", "reverberant,magic"], "unknown baseline 'magic'"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "-o", tmp_path / "out", *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "results.md").exists()


def test_paired_folder_without_pairs_exits_2(
    capsys: pytest.CaptureFixture, tmp_path: Path, items: list[dict]
) -> None:
    write_audio(tmp_path / "p" / "reverb" / "a.wav", items[0]["reverb"], SR)
    write_audio(tmp_path / "p" / "clean" / "b.wav", items[0]["clean"], SR)
    code, _, err = _run(capsys, "-o", tmp_path / "out", "--paired", tmp_path / "p")
    assert code == 2 and "no file in reverb/ has a same-named file in clean/" in err
    (tmp_path / "q").mkdir()
    code, _, err = _run(capsys, "-o", tmp_path / "out", "--paired", tmp_path / "q")
    assert code == 2 and "needs subfolders reverb/ and clean/" in err


def test_cli_paired_with_checkpoint_end_to_end(
    capsys: pytest.CaptureFixture, tmp_path: Path, items: list[dict]
) -> None:
    folder = _paired_folder(tmp_path / "pairs", items[:2])
    ckpt = _tiny_checkpoint(tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt")
    out = tmp_path / "out"
    argv = [
        "-o",
        out,
        "--paired",
        folder,
        "--ckpt",
        ckpt,
        "--baselines",
        "reverberant,oracle_reverb_phase",
        "--srmr",
        "none",
        "--no-progress",
        "--bootstrap",
        "100",
    ]
    code, stdout, err = _run(capsys, *argv)
    assert code == 0, err
    assert "| tiny | 2 |" in stdout
    for f in evaluate.OUTPUT_FILES:
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    assert res["systems"] == ["reverberant", "tiny", "oracle_reverb_phase"]  # refs, models, oracles
    assert res["bands"] == ["all"] and res["meta"]["stats"]["computed"] == 6
    assert any("without a partner" in n for n in res["meta"]["notes"])
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["system"], r["band"]) for r in table} == {(s, "all") for s in res["systems"]}
    with open(out / "per_item.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    # An existing OUTDIR needs --force; the re-run then computes nothing new.
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "--force" in err
    code, _, err = _run(capsys, *argv, "--force")
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["meta"]["stats"] == {
        "computed": 0,
        "cached": 6,
        "skipped": 0,
    }


def test_cli_unpaired_scores_srmr_only(
    capsys: pytest.CaptureFixture, tmp_path: Path, items: list[dict]
) -> None:
    for it in items[:2]:
        write_audio(tmp_path / "rec" / f"{it['id']}.flac", it["reverb"], SR)
    code, stdout, err = _run(
        capsys,
        "-o",
        tmp_path / "out",
        "--unpaired",
        tmp_path / "rec",
        "--baselines",
        "reverberant,oracle",
        "--srmr",
        "fast",
        "--no-progress",
        "--bootstrap",
        "50",
    )
    assert code == 0, err
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["systems"] == ["reverberant"] and res["metrics"] == ["srmr"]
    assert any("oracles need a clean reference" in n for n in res["meta"]["notes"])
    assert (tmp_path / "out" / "pesq_stoi_vs_t60.png").stat().st_size > 0


def test_datamodule_source_matches_the_test_split(tmp_path: Path) -> None:
    import yaml

    from dereverb.data.datamodule import DereverbDataModule
    from dereverb.data.rir import RoomSampler

    data = {
        "speech": "synthetic",
        "rirs": "simulated",
        "segment_seconds": 1.0,
        "test_items": 2,
        "rir_bank_sizes": [1, 1, 2],
        "rir_max_order": 3,
        "rir_cache_dir": str(tmp_path / "rirs"),
        "room": {"t60_range": [0.3, 0.5]},
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"base_channels": 4}, "data": data}))
    kw = evaluate.load_datamodule_config(cfg)
    loaders, sr, desc = evaluate.datamodule_items(kw)
    assert sr == SR and len(loaders) == 2 and "test split" in desc
    ds = DereverbDataModule(**{**data, "room": RoomSampler(t60_range=(0.3, 0.5))}).build_dataset(
        "test"
    )
    for i, load in enumerate(loaders):
        it, ref = load(), ds.item(i)
        np.testing.assert_array_equal(it["reverb"], ref.reverb)
        np.testing.assert_array_equal(it["clean"], ref.clean)
        assert it["t60"] == pytest.approx(ref.t60) and it["id"] == f"test-{i:05d}"
    with pytest.raises(evaluate.EvaluationError, match="unknown DataModule argument"):
        evaluate.datamodule_items({**data, "speeech": "x"})


def test_measured_rooms_end_to_end(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Real measured RIRs x real speech (4 items of 2 s) through the CLI."""
    rirs = shared_path("rirs")
    speech = shared_path("speech", "vctk-p287")
    out = tmp_path / "out"
    code, _, err = _run(
        capsys,
        "-o",
        out,
        "--rirs",
        rirs,
        "--speech",
        speech,
        "--n-items",
        4,
        "--segment-seconds",
        2,
        "--baselines",
        "reverberant,wpe,oracle_reverb_phase",
        "--srmr",
        "none",
        "--no-progress",
        "--bootstrap",
        "200",
    )
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    cells = {(e["system"], e["band"]): e for e in res["table"]}
    # Rooms alternate: the clap room (T60 ~0.63 s) and Surrey room A (~0.3 s) both appear.
    assert cells[("reverberant", "0.4-0.7")]["n"] == 2 and cells[("reverberant", "<=0.4")]["n"] == 2
    with open(out / "per_item.csv") as f:
        rooms = {r["room"] for r in csv.DictReader(f)}
    assert rooms == {"clap-seminar-room", "surrey-room-a"}
    assert cells[("wpe", "all")]["stoi"] > cells[("reverberant", "all")]["stoi"]
    assert cells[("oracle_reverb_phase", "all")]["stoi"] > cells[("wpe", "all")]["stoi"] + 0.1


def test_internal_errors_exit_1_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(evaluate, "run", boom)
    code, _, err = _run(capsys, "-o", tmp_path / "out")
    assert code == 1
    assert err.strip().splitlines() == [
        "evaluate: internal error: RuntimeError: boom (re-run with --debug for the traceback)"
    ]
    code, _, err = _run(capsys, "-o", tmp_path / "out", "--debug")
    assert code == 1 and "Traceback" in err
