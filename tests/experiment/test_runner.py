"""Running a study: a micro study end to end (capacities, checkpoints at chosen steps), the
smoke study through submitit's local executor, incremental reruns, one job per run, and the
command's errors and exit codes. The micro study runs in this process (``--launcher debug``), so
that a test can replace its training."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml

from dereverb import study
from dereverb.cli_errors import EXIT_FAILED_RUNS, EXIT_OK, EXIT_USAGE
from dereverb.experiment import runner
from dereverb.experiment.config import STUDY_VERSION, StudyError, load_config, run_config
from dereverb.experiment.files import JOBS
from dereverb.experiment.report import HEADLINE
from tests.experiment.studies import ROOT, eval_sets, micro_config

RUN_IDS = {
    "log_magnitude__log_magnitude__tiny__seed0",
    "log_magnitude__log_magnitude__tiny__seed1",
    "rgb_turbo__same__tiny__seed0",
    "rgb_turbo__same__tiny__seed1",
    "log_magnitude__log_magnitude__large__seed0",
    "log_magnitude__log_magnitude__large__seed1",
}


@pytest.mark.slow
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
        assert res["capacity"] in rid and res["study_version"] == STUDY_VERSION
        assert cfg["model"]["net"]["init_args"]["base_channels"] == {"tiny": 4, "large": 6}[res["capacity"]]
        models[rid] = {
            k: v
            for k, v in cfg["model"].items()
            if k not in ("representation", "representation_kwargs", "target")
        }
        assert (d / "final.ckpt").is_file() and res["global_step"] == 3  # the last step
        # Evaluated after step 1 (its own checkpoint) and after the last step (final.ckpt).
        assert [st["step"] for st in res["steps"]] == [1, 3]
        assert [st["checkpoint"] for st in res["steps"]] == ["steps/step=1.ckpt", "final.ckpt"]
        assert res["rows"] == res["steps"][-1]["rows"] and res["means"] == res["steps"][-1]["means"]
        assert (d / "steps" / "step=1.ckpt").is_file()
        assert (d / "tb" / "version_0" / "config.yaml").is_file()
        for st in res["steps"]:
            assert sorted(st["rows"]) == sorted(eval_sets())
            sim = st["rows"]["sim"]
            assert len(sim) == 4 and len({r["id"] for r in sim}) == 4
            pesq = [r["pesq"] for r in sim if r["pesq"] is not None]
            assert pesq and all(1.0 <= v <= 4.65 for v in pesq)
            assert all(0.0 <= r["stoi"] <= 1.0 for r in sim if r["stoi"] is not None)
        assert res["steps"][0]["rows"]["sim"] != res["steps"][1]["rows"]["sim"]  # other weights
        assert not list(d.glob(".*.tmp"))
    # Same architecture and optimiser settings for every arm of a capacity: only the
    # representation differs.
    for cap in ("tiny", "large"):
        assert len({json.dumps(m, sort_keys=True) for r, m in models.items() if f"__{cap}__" in r}) == 1
    meta = json.loads((out / "study.json").read_text())
    assert (
        sorted(meta["sessions"][-1]["trained"]) == sorted(RUN_IDS)
        and meta["sessions"][-1]["complete"]
    )
    assert sorted(p["run_id"] for p in meta["plan"]) == sorted(RUN_IDS)
    assert meta["eval_steps"] == [1, 3] and set(meta["capacities"]) == {"tiny", "large"}
    assert meta["arms"]["log_magnitude"]["config"].endswith("log_magnitude.yaml")
    baselines = json.loads((out / "baselines.json").read_text())
    assert set(baselines["rows"]) == set(eval_sets())
    for name in ("REPORT.md", "report.json", HEADLINE):
        assert (out / "report" / name).is_file(), name
    assert meta["sessions"][-1]["launcher"] == "debug"


@pytest.mark.slow
def test_the_smoke_study_runs_through_the_local_executor(tmp_path, monkeypatch):
    """Each run in its own process (submitit's LocalExecutor), two at a time; a second call
    reuses every finished run."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "smoke"
    argv = ["--config", "configs/study.yaml", "--profile", "smoke", "--out", str(out), "--jobs", "2"]
    assert study.main([*argv, "--launcher", "local"]) == EXIT_OK
    planned = [s.run_id for s in load_config(ROOT / "configs" / "study.yaml", "smoke").specs()]
    assert sorted(p.parent.name for p in (out / "runs").glob("*/result.json")) == sorted(planned)
    session = json.loads((out / "study.json").read_text())["sessions"][-1]
    assert session["launcher"] == "local" and sorted(session["trained"]) == sorted(planned) and session["complete"]
    # every run was a submitit job: its pickled result and logs are in jobs/, not the job itself
    assert len(list((out / JOBS).glob("*_result.pkl"))) == len(planned)
    assert not list((out / JOBS).glob("*_submitted.pkl"))
    assert (out / "report" / "REPORT.md").is_file()
    assert study.main([*argv, "--no-report"]) == EXIT_OK
    again = json.loads((out / "study.json").read_text())["sessions"][-1]
    assert again["trained"] == [] and sorted(again["skipped"]) == sorted(planned)


def test_the_slurm_launcher_takes_its_parameters_from_the_config(tmp_path, monkeypatch):
    """``--launcher slurm``: the same jobs for submitit's SLURM executor, with the study config's
    ``slurm`` parameters; a parameter submitit does not know, or a machine without SLURM, is one
    clear error."""
    raw = yaml.safe_load(micro_config(tmp_path, tmp_path / "cache").read_text())
    raw["slurm"] = {"slurm_partition": "gpu", "timeout_min": 90}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "s.yaml")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(StudyError, match="--launcher slurm: no srun on PATH"):
        runner.make_executor("slurm", tmp_path / "jobs", cfg)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    executor = runner.make_executor("slurm", tmp_path / "jobs", cfg)
    assert executor.cluster == "slurm"
    assert executor._executor.parameters["partition"] == "gpu" and executor._executor.parameters["time"] == 90
    cfg.slurm = {"slurm_colour": 1}
    with pytest.raises(StudyError, match=r"s\.yaml: slurm: .*colour"):
        runner.make_executor("slurm", tmp_path / "jobs", cfg)


@pytest.mark.slow
def test_second_invocation_trains_nothing(micro_copy, monkeypatch):
    config, out = micro_copy

    def no_training(path):
        raise AssertionError(f"a finished run was retrained: {path}")

    monkeypatch.setattr(runner, "train_model", no_training)
    assert study.main(["--config", str(config), "--out", str(out), "--no-report", "--launcher", "debug"]) == EXIT_OK
    last = json.loads((out / "study.json").read_text())["sessions"][-1]
    assert last["trained"] == [] and len(last["skipped"]) == 6 and not last["failed"]


@pytest.mark.slow
def test_unfinished_run_is_retrained_alone(micro_copy, monkeypatch):
    config, copy = micro_copy
    victim = copy / "runs" / "rgb_turbo__same__tiny__seed1"
    (victim / "result.json").unlink()
    (victim / "leftover.txt").write_text("from a killed run")
    calls = []
    original = runner.train_model
    monkeypatch.setattr(
        runner,
        "train_model",
        lambda path, steps: calls.append(Path(path).parent.name) or original(path, steps),
    )
    assert study.main(["--config", str(config), "--out", str(copy), "--no-report", "--launcher", "debug"]) == EXIT_OK
    assert calls == ["rgb_turbo__same__tiny__seed1"]
    assert (victim / "result.json").is_file() and not (victim / "leftover.txt").exists()


@pytest.mark.slow
def test_failed_runs_exit_1_and_are_recorded(micro_copy, monkeypatch, capsys):
    config, copy = micro_copy
    (copy / "runs" / "rgb_turbo__same__tiny__seed0" / "result.json").unlink()

    def broken(path, steps):
        raise RuntimeError("out of memory (pretend)")

    monkeypatch.setattr(runner, "train_model", broken)
    code = study.main(["--config", str(config), "--out", str(copy), "--no-report", "--launcher", "debug"])
    assert code == EXIT_FAILED_RUNS == 1
    assert "1 run(s) failed: rgb_turbo__same__tiny__seed0" in capsys.readouterr().err
    last = json.loads((copy / "study.json").read_text())["sessions"][-1]
    assert "out of memory (pretend)" in last["failed"]["rgb_turbo__same__tiny__seed0"]
    assert not last["complete"]


@pytest.mark.slow
def test_changed_settings_need_force(micro, tmp_path, monkeypatch, capsys):
    _, out = micro
    changed = micro_config(tmp_path, tmp_path / "cache", model={"lr": 0.01})
    monkeypatch.setattr(runner, "train_model", lambda path, steps: pytest.fail("must not train"))
    assert study.main(["--config", str(changed), "--out", str(out), "--no-report"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "other settings" in err and "--force" in err
    assert study.main(["--config", str(changed), "--out", str(out), "--list"]) == EXIT_OK
    listed = capsys.readouterr().out
    assert listed.count("other  ") == 4 and "(4 of them finished with other settings: --force retrains them)" in listed


@pytest.mark.slow
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
        (["--config", str(config), "--capacities", "huge"], "--capacities: unknown capacit(ies) huge"),
    ):
        assert study.main(argv) == 2
        assert message in capsys.readouterr().err


def test_usage_errors_exit_2_in_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        study.main(["--profile", "quick"])
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "required: config" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        study.main(["--config", "x.yaml", "--jobs", "0"])
    assert exc.value.code == EXIT_USAGE
    line = capsys.readouterr().err.strip()
    assert line.startswith('error: Parser key "jobs":') and line.endswith("(see python -m dereverb.study --help)")
    with pytest.raises(SystemExit) as exc:
        study.main(["--help"])
    assert exc.value.code == 0 and "--report-only" in capsys.readouterr().out


@pytest.mark.slow
def test_list_shows_status(micro, capsys):
    config, out = micro
    assert study.main(["--config", str(config), "--out", str(out), "--list"]) == 0
    text = capsys.readouterr().out
    assert text.count("done  ") == 6 and "6 finished, 0 to run" in text
    assert study.main(["--config", str(config), "--out", str(out), "--list", "--capacities", "large"]) == 0
    text = capsys.readouterr().out
    assert text.count("done  ") == 2 and all("__large__" in x for x in text.splitlines() if x.startswith("done"))


@pytest.mark.slow
def test_one_job_per_run_is_a_picklable_unit_of_work(micro, tmp_path):
    """What a cluster launcher needs: jobs that pickle and run on their own."""
    config, out = micro
    cfg = load_config(config)
    done, todo = runner.plan(cfg, cfg.specs(), out)
    assert len(done) == 6 and todo == []
    job = runner.RunJob(cfg, cfg.specs(seeds=[0])[0], tmp_path / "elsewhere", cfg.threads)
    clone = pickle.loads(pickle.dumps(job))
    assert clone.spec == job.spec and clone.items is None and clone.threads == cfg.threads


@pytest.mark.slow
def test_step_checkpoints_hold_the_weights_of_their_step(tmp_path):
    """Checkpoints are written after exactly the requested optimizer steps (with gradient
    accumulation too), and the checkpoint of step k holds the very weights (and BatchNorm
    statistics) that a run stopped after k steps ends with."""
    import torch

    config = micro_config(
        tmp_path, tmp_path / "cache", trainer={"accumulate_grad_batches": 2, "check_val_every_n_epoch": 10}
    )
    cfg = load_config(config)
    spec = cfg.specs(["log_magnitude"], [0])[0]

    def train(name: str, max_steps: int, at: list[int]) -> dict[int, Path]:
        folder = tmp_path / name
        folder.mkdir()
        c = run_config(cfg, spec, folder)
        c["trainer"]["max_steps"] = max_steps
        (folder / "config.yaml").write_text(yaml.safe_dump(c))
        return runner.train_model(folder / "config.yaml", at)

    long = train("long", 3, [1, 2])
    assert sorted(long) == [1, 2, 3] and long[3].name == "final.ckpt"
    assert [p.name for p in sorted((tmp_path / "long" / "steps").iterdir())] == [
        "step=1.ckpt",
        "step=2.ckpt",
    ]
    states = {s: torch.load(p, map_location="cpu", weights_only=True) for s, p in long.items()}
    assert {s: st["global_step"] for s, st in states.items()} == {1: 1, 2: 2, 3: 3}
    short = train("short", 1, [])
    assert sorted(short) == [1]
    alone = torch.load(short[1], map_location="cpu", weights_only=True)["state_dict"]
    at1 = states[1]["state_dict"]
    assert alone.keys() == at1.keys()
    assert all(torch.equal(alone[k], at1[k]) for k in alone)
    assert not all(torch.equal(at1[k], states[3]["state_dict"][k]) for k in at1)
