"""Running a study: a micro study end to end, incremental reruns, one job per run, and the
command's errors and exit codes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from dereverb import study
from dereverb.cli_errors import EXIT_FAILED_RUNS, EXIT_OK, EXIT_USAGE
from dereverb.experiment import runner
from dereverb.experiment.config import StudyError, load_config
from dereverb.experiment.figures import FIGURES
from tests.experiment.studies import MEASURED, eval_sets, micro_config

RUN_IDS = {
    "log_magnitude__log_magnitude__seed0",
    "log_magnitude__log_magnitude__seed1",
    "rgb_turbo__same__seed0",
    "rgb_turbo__same__seed1",
}


def test_micro_study_runs_end_to_end(micro):
    config, out = micro
    assert {p.name for p in (out / "runs").iterdir()} == RUN_IDS
    models = {}
    for rid in RUN_IDS:
        d = out / "runs" / rid
        res = json.loads((d / "result.json").read_text())
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert cfg["seed_everything"] == res["seed"] and rid.endswith(f"seed{res['seed']}")
        assert (
            cfg["model"]["target"] == res["target"]
            and cfg["data"] == yaml.safe_load(config.read_text())["train"]["data"]
        )
        models[rid] = {
            k: v
            for k, v in cfg["model"].items()
            if k not in ("representation", "representation_kwargs", "target")
        }
        assert (d / "final.ckpt").is_file() and res[
            "global_step"
        ] == 2  # the weights after the last step
        assert (d / "tb" / "version_0" / "config.yaml").is_file()
        assert sorted(res["rows"]) == sorted(eval_sets())
        sim = res["rows"]["sim"]
        assert len(sim) == 4 and len({r["id"] for r in sim}) == 4
        pesq = [r["pesq"] for r in sim if r["pesq"] is not None]
        assert pesq and all(1.0 <= v <= 4.65 for v in pesq)
        assert all(0.0 <= r["stoi"] <= 1.0 for r in sim if r["stoi"] is not None)
        assert not list(d.glob(".*.tmp"))
    # Same architecture and optimiser settings for every arm: only the representation differs.
    assert len({json.dumps(m, sort_keys=True) for m in models.values()}) == 1
    meta = json.loads((out / "study.json").read_text())
    assert (
        sorted(meta["sessions"][-1]["trained"]) == sorted(RUN_IDS)
        and meta["sessions"][-1]["complete"]
    )
    assert meta["arms"]["log_magnitude"]["config"].endswith("log_magnitude.yaml")
    baselines = json.loads((out / "baselines.json").read_text())
    assert set(baselines["rows"]) == set(eval_sets())
    for name in (
        "REPORT.md",
        "report.json",
        *(f for f in FIGURES if "measured" not in f or MEASURED.is_dir()),
    ):
        assert (out / "report" / name).is_file(), name


def test_second_invocation_trains_nothing(micro_copy, monkeypatch):
    config, out = micro_copy

    def no_training(path):
        raise AssertionError(f"a finished run was retrained: {path}")

    monkeypatch.setattr(runner, "train_model", no_training)
    assert study.main(["--config", str(config), "--out", str(out), "--no-report"]) == EXIT_OK
    last = json.loads((out / "study.json").read_text())["sessions"][-1]
    assert last["trained"] == [] and len(last["skipped"]) == 4 and not last["failed"]


def test_unfinished_run_is_retrained_alone(micro_copy, monkeypatch):
    config, copy = micro_copy
    victim = copy / "runs" / "rgb_turbo__same__seed1"
    (victim / "result.json").unlink()
    (victim / "leftover.txt").write_text("from a killed run")
    calls = []
    original = runner.train_model
    monkeypatch.setattr(
        runner, "train_model", lambda path: calls.append(Path(path).parent.name) or original(path)
    )
    assert study.main(["--config", str(config), "--out", str(copy), "--no-report"]) == EXIT_OK
    assert calls == ["rgb_turbo__same__seed1"]
    assert (victim / "result.json").is_file() and not (victim / "leftover.txt").exists()


def test_failed_runs_exit_1_and_are_recorded(micro_copy, monkeypatch, capsys):
    config, copy = micro_copy
    (copy / "runs" / "rgb_turbo__same__seed0" / "result.json").unlink()

    def broken(path):
        raise RuntimeError("out of memory (pretend)")

    monkeypatch.setattr(runner, "train_model", broken)
    code = study.main(["--config", str(config), "--out", str(copy), "--no-report"])
    assert code == EXIT_FAILED_RUNS == 1
    assert "1 run(s) failed: rgb_turbo__same__seed0" in capsys.readouterr().err
    last = json.loads((copy / "study.json").read_text())["sessions"][-1]
    assert "out of memory (pretend)" in last["failed"]["rgb_turbo__same__seed0"]
    assert not last["complete"]


def test_changed_settings_need_force(micro, tmp_path, monkeypatch, capsys):
    _, out = micro
    changed = micro_config(tmp_path, tmp_path / "cache", model={"lr": 0.01})
    monkeypatch.setattr(runner, "train_model", lambda path: pytest.fail("must not train"))
    assert study.main(["--config", str(changed), "--out", str(out), "--no-report"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "other settings" in err and "--force" in err


def test_bad_inputs_are_one_clear_error(micro, tmp_path, capsys):
    config, out = micro
    assert study.main(["--config", str(config), "--out", str(out), "--arms", "rgb_nope"]) == 2
    assert "rgb_nope" in capsys.readouterr().err
    assert study.main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = yaml.safe_load(config.read_text())
    bad["arms"]["rgb_turbo"]["representation_kwargs"] = {"cmap": "turbo", "colour": 1}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(StudyError, match="rgb_turbo.*colour"):
        load_config(tmp_path / "bad.yaml")
    assert study.main(["--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "colour" in err and len(err.strip().splitlines()) == 1
    speech = ["--speech", str(tmp_path / "nowhere")]
    assert study.main(["--config", str(config), "--out", str(tmp_path / "o"), *speech]) == 2
    assert "data.speech" in capsys.readouterr().err
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "REPORT.md").write_text("keep me")
    report_only = ["--report-only", "--report-dir", str(tmp_path / "rep")]
    assert study.main(["--config", str(config), "--out", str(out), *report_only]) == 2
    assert (
        "--force" in capsys.readouterr().err
        and (tmp_path / "rep" / "REPORT.md").read_text() == "keep me"
    )
    for argv, message in (
        (["--config", str(config), "--seeds", "a,b"], "--seeds 'a,b'"),
    ):
        assert study.main(argv) == 2
        assert message in capsys.readouterr().err


def test_usage_errors_exit_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        study.main(["--profile", "quick"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--config" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        study.main(["--config", "x.yaml", "--jobs", "0"])
    assert exc.value.code == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: argument --jobs: must be > 0, got 0 (see python -m dereverb.study --help)"
    with pytest.raises(SystemExit) as exc:
        study.main(["--help"])
    assert exc.value.code == 0 and "--report-only" in capsys.readouterr().out


def test_list_shows_status(micro, capsys):
    config, out = micro
    assert study.main(["--config", str(config), "--out", str(out), "--list"]) == 0
    text = capsys.readouterr().out
    assert text.count("done  ") == 4 and "4 finished, 0 to run" in text


def test_one_job_per_run_is_a_picklable_unit_of_work(micro, tmp_path):
    """What a cluster launcher needs: jobs that pickle and run on their own."""
    config, out = micro
    cfg = load_config(config)
    done, todo = runner.plan(cfg, cfg.specs(), out)
    assert len(done) == 4 and todo == []
    jobs = runner.make_jobs(cfg, cfg.specs(seeds=[0]), tmp_path / "elsewhere")
    assert [j.spec.run_id for j in jobs] == [
        "log_magnitude__log_magnitude__seed0",
        "rgb_turbo__same__seed0",
    ]
    clone = pickle.loads(pickle.dumps(jobs[0]))
    assert clone.spec == jobs[0].spec and clone.items is None and clone.threads == cfg.threads
