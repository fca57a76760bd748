"""The ``python -m dereverb.evaluate`` command: flags, one-line errors and exit codes, end to end."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dereverb import evaluate
from dereverb.evaluate import main
from dereverb.signals.audio import write_audio
from tests.conftest import shared_path, toy_rir
from tests.evaluation.conftest import SR

FAST = ["--srmr", "none", "--no-progress", "--bootstrap", "50"]


def _run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _usage_error(capsys: pytest.CaptureFixture, *argv: object) -> str:
    """A usage error: exit 2 (SystemExit) and exactly one line on stderr."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _paired_folder(root: Path, items: list[dict]) -> Path:
    for it in items:
        write_audio(root / "reverb" / f"{it['id']}.wav", it["reverb"], SR)
        write_audio(root / "clean" / f"{it['id']}.wav", it["clean"][: len(it["clean"]) - 100], SR)
    write_audio(root / "reverb" / "orphan.wav", items[0]["reverb"], SR)
    return root


def _rir_folder(root: Path) -> Path:
    """Two toy rooms of one and two RIRs (measured-RIR layout: first-level subfolders = rooms)."""
    write_audio(root / "roomA" / "a0.wav", toy_rir(0.3, SR, 0), SR)
    write_audio(root / "roomB" / "b0.wav", toy_rir(0.6, SR, 1), SR)
    write_audio(root / "roomB" / "b1.wav", toy_rir(0.6, SR, 2), SR)
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
        "--clean-target",
        "griffinlim-warm",  # --phase choices come from dereverb.signals.dsp.PHASE_METHODS
    ):
        assert flag in out
    assert "<class" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--n-items", "x"], "Parser key \"n_items\": Not of type PositiveInt"),
        (["--n-items", "0"], "0 does not conform to restriction v>0"),
        (["--segment-seconds", "-1"], "does not conform to restriction v>0"),
        (["--wpe-delay", "-1"], "Parser key \"wpe_delay\": Not of type NonNegativeInt"),
        (["--phase", "magic"], "argument --phase: invalid choice: 'magic'"),
        (["--clean-target", "wet"], "argument --clean-target: invalid choice: 'wet'"),
        (["--paired", "a", "--unpaired", "b"], "not allowed with argument --paired"),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, argv: list[str], message: str
) -> None:
    line = _usage_error(capsys, "-o", tmp_path / "out", *argv)
    assert line.startswith("error: ") and line.endswith("(see python -m dereverb.evaluate --help)")
    assert message in line


def test_missing_output_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert "required: output" in _usage_error(capsys, "--baselines", "reverberant")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ckpt", "missing.ckpt"], "--ckpt missing.ckpt: checkpoint not found"),
        (["--unpaired", "no/such/folder"], "--unpaired no/such/folder: folder not found"),
        (["--rirs", "no/such/rirs"], "--rirs no/such/rirs: not found"),
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
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    items: list[dict],
    tiny_checkpoint: Callable[[Path], Path],
) -> None:
    folder = _paired_folder(tmp_path / "pairs", items[:2])
    ckpt = tiny_checkpoint(tmp_path / "runs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt")
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
        *FAST,
    ]
    code, stdout, err = _run(capsys, *argv)
    assert code == 0, err
    assert "| tiny | 2 |" in stdout
    for f in evaluate.OUTPUT_FILES:
        assert (out / f).stat().st_size > 0, f
    res = json.loads((out / "results.json").read_text())
    assert res["systems"] == ["reverberant", "tiny", "oracle_reverb_phase"]  # refs, models, oracles
    assert res["bands"] == ["all"] and res["meta"]["stats"]["computed"] == 6
    assert res["meta"]["checkpoints"] == {"tiny": str(ckpt)}
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


def test_clean_target_early_reaches_the_measured_source(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    rirs = _rir_folder(tmp_path / "rirs")
    scores = {}
    for target in ("dry", "early"):
        out = tmp_path / target
        argv = [
            "-o",
            out,
            "--rirs",
            rirs,
            "--n-items",
            2,
            "--segment-seconds",
            1,
            "--clean-target",
            target,
        ]
        code, _, err = _run(capsys, *argv, "--baselines", "reverberant", *FAST)
        assert code == 0, err
        res = json.loads((out / "results.json").read_text())
        assert f"target={target}" in res["meta"]["source"]
        scores[target] = next(e["si_sdr"] for e in res["table"] if e["band"] == "all")
    # Against early reflections the reverberant input is closer to its reference than against dry.
    assert scores["early"] > scores["dry"]


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
        "error: unexpected RuntimeError: boom second line (re-run with --debug for the traceback)"
    ]
    code, _, err = _run(capsys, "-o", tmp_path / "out", "--debug")
    assert code == 1 and "Traceback" in err
