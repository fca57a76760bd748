"""The representation study: a micro study end to end, incremental reruns, the report's numbers,
and the statistics / verdicts on constructed results."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from dereverb import study
from dereverb.experiment import report as sr

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT.parent / "shared" / "data" / "rirs"


def micro_config(folder: Path, cache: Path, **train_over) -> Path:
    """A 2-arm x 2-seed study on synthetic speech, sized to train in seconds."""
    cfg = {
        "default_profile": "micro",
        "reference": "log_magnitude@log_magnitude",
        "seeds": [0, 1],
        "arms": {
            "log_magnitude": {"representation": "log_magnitude"},
            "rgb_turbo": {
                "representation": "colormap",
                "representation_kwargs": {"cmap": "turbo"},
                "targets": ["same"],
            },
        },
        "train": study.deep_merge(
            {
                "trainer": {
                    "max_epochs": -1,
                    "max_steps": 2,
                    "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "num_sanity_val_steps": 0,
                    "log_every_n_steps": 1,
                },
                "model": {
                    "base_channels": 4,
                    "depth": 2,
                    "griffin_lim_iters": 2,
                    "val_metric_batches": 1,
                    "n_media_examples": 1,
                    "lr": 0.003,
                },
                "data": {
                    "speech": "synthetic",
                    "synthetic_speakers": 30,
                    "segment_seconds": 0.5,
                    "batch_size": 2,
                    "train_items": 4,
                    "val_items": 2,
                    "rir_bank_sizes": [4, 2, 4],
                    "rir_cache_dir": str(cache),
                    "room": {"t60_range": [0.3, 0.8]},
                    "rir_max_order": 10,
                    "rir_calibrate": 0,
                },
            },
            train_over,
        ),
        "evaluation": {
            "sim_items": 4,
            "measured_rirs": str(MEASURED) if MEASURED.is_dir() else None,
            "measured_items": 2,
            "baselines": "reverberant",
            "n_boot": 200,
        },
        "profiles": {"micro": {"jobs": 1, "threads": 1}},
    }
    path = folder / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = micro_config(tmp, tmp / "rircache")
    out = tmp / "out"
    code = study.main(["--config", str(config), "--out", str(out)])
    assert code == 0
    return config, out


def _sets() -> list[str]:
    return ["sim", "measured"] if MEASURED.is_dir() else ["sim"]


def test_micro_study_runs_end_to_end(micro):
    config, out = micro
    run_ids = {
        "log_magnitude__log_magnitude__seed0",
        "log_magnitude__log_magnitude__seed1",
        "rgb_turbo__same__seed0",
        "rgb_turbo__same__seed1",
    }
    assert {p.name for p in (out / "runs").iterdir()} == run_ids
    models = {}
    for rid in run_ids:
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
        assert sorted(res["rows"]) == sorted(_sets())
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
        sorted(meta["sessions"][-1]["trained"]) == sorted(run_ids)
        and meta["sessions"][-1]["complete"]
    )
    baselines = json.loads((out / "baselines.json").read_text())
    assert set(baselines["rows"]) == set(_sets())
    for name in (
        "REPORT.md",
        "report.json",
        *(f for f in sr.FIGURES if "measured" not in f or MEASURED.is_dir()),
    ):
        assert (out / "report" / name).is_file(), name


def test_second_invocation_trains_nothing(micro, monkeypatch):
    config, out = micro

    def no_training(path):
        raise AssertionError(f"a finished run was retrained: {path}")

    monkeypatch.setattr(study, "train_model", no_training)
    assert study.main(["--config", str(config), "--out", str(out), "--no-report"]) == 0
    last = json.loads((out / "study.json").read_text())["sessions"][-1]
    assert last["trained"] == [] and len(last["skipped"]) == 4 and not last["failed"]


def _expected_mean(out: Path, condition: str, eval_set: str, metric: str) -> float:
    """Mean over seeds of the per-seed item means, straight from the result files."""
    per_seed = []
    for p in (out / "runs").glob("*/result.json"):
        res = json.loads(p.read_text())
        if res["condition"] == condition:
            vals = [r[metric] for r in res["rows"][eval_set] if r[metric] is not None]
            per_seed.append(np.mean(vals))
    return float(np.mean(per_seed))


def test_report_numbers_match_result_files(micro):
    _, out = micro
    text = (out / "report" / "REPORT.md").read_text()
    data = json.loads((out / "report" / "report.json").read_text())
    for eval_set in _sets():
        title = sr.SET_TITLES[eval_set]
        section = text.split(f"## Results: {title}")[1].split("###")[0]
        table = sr.parse_summary_markdown(section)
        assert set(table) == {"log_magnitude@log_magnitude", "rgb_turbo@same"}
        for cond, values in table.items():
            for m in sr.METRICS:
                expected = _expected_mean(out, cond, eval_set, m)
                assert values[m] == pytest.approx(expected, abs=0.51 * 10 ** -sr.DIGITS[m]), (
                    eval_set,
                    cond,
                    m,
                )
        # The paired difference (seed-averaged per item) equals the difference of the means.
        diff = next(
            d
            for d in data["sets"][eval_set]["diffs"]
            if d["a"] == "rgb_turbo@same" and d["metric"] == "stoi"
        )
        expected = _expected_mean(out, "rgb_turbo@same", eval_set, "stoi") - _expected_mean(
            out, "log_magnitude@log_magnitude", eval_set, "stoi"
        )
        if math.isfinite(expected):
            assert diff["delta"] == pytest.approx(expected, abs=1e-9)
            assert diff["lo"] <= diff["delta"] <= diff["hi"]
    assert "python -m dereverb.study --config" in text and "-core CPU" in text and "no GPU" in text


def test_unfinished_run_is_retrained_alone(micro, tmp_path, monkeypatch):
    config, out = micro
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = copy / "runs" / "rgb_turbo__same__seed1"
    (victim / "result.json").unlink()
    (victim / "leftover.txt").write_text("from a killed run")
    calls = []
    original = study.train_model
    monkeypatch.setattr(
        study, "train_model", lambda path: calls.append(Path(path).parent.name) or original(path)
    )
    assert study.main(["--config", str(config), "--out", str(copy), "--no-report"]) == 0
    assert calls == ["rgb_turbo__same__seed1"]
    assert (victim / "result.json").is_file() and not (victim / "leftover.txt").exists()


def test_changed_settings_need_force(micro, tmp_path, monkeypatch, capsys):
    _, out = micro
    changed = micro_config(tmp_path, tmp_path / "cache", model={"lr": 0.01})
    monkeypatch.setattr(study, "train_model", lambda path: pytest.fail("must not train"))
    assert study.main(["--config", str(changed), "--out", str(out), "--no-report"]) == 2
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
    with pytest.raises(study.StudyError, match="rgb_turbo.*colour"):
        study.load_config(tmp_path / "bad.yaml")
    assert (
        study.main(
            [
                "--config",
                str(config),
                "--out",
                str(tmp_path / "o"),
                "--speech",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert "data.speech" in capsys.readouterr().err
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "REPORT.md").write_text("keep me")
    assert (
        study.main(
            [
                "--config",
                str(config),
                "--out",
                str(out),
                "--report-only",
                "--report-dir",
                str(tmp_path / "rep"),
            ]
        )
        == 2
    )
    assert (
        "--force" in capsys.readouterr().err
        and (tmp_path / "rep" / "REPORT.md").read_text() == "keep me"
    )


def test_list_shows_status(micro, capsys):
    config, out = micro
    assert study.main(["--config", str(config), "--out", str(out), "--list"]) == 0
    text = capsys.readouterr().out
    assert text.count("done  ") == 4 and "4 finished, 0 to run" in text


def test_study_config_matrix():
    cfg = study.load_config(ROOT / "configs" / "study.yaml", "quick")
    specs = cfg.specs()
    conditions = {s.condition for s in specs}
    assert len(conditions) == 17 and len(specs) == 17 * 3
    assert (
        specs[0].seed == 0 and specs[-1].seed == 2 and [s.seed for s in specs[:17]] == [0] * 17
    )  # seed-major
    same = {c.split("@")[0] for c in conditions if c.endswith("@same")}
    assert same == {
        "gray_rgb",
        "rgb_turbo",
        "rgb_viridis",
        "rgb_jet",
        "rgb_turbo_jpeg",
        "rgb_turbo_resized",
    }
    configs = [study.run_config(cfg, s, Path("r")) for s in specs]
    stripped = set()
    for c in configs:
        m = dict(c["model"])
        for k in ("representation", "representation_kwargs", "target", "input_expansion"):
            m.pop(k)
        stripped.add(
            json.dumps(
                {
                    **c,
                    "model": m,
                    "seed_everything": 0,
                    "trainer": {**c["trainer"], "logger": None, "default_root_dir": None},
                },
                sort_keys=True,
            )
        )
    assert len(stripped) == 1  # everything but the arm is shared
    exp = next(
        c
        for s, c in zip(specs, configs, strict=True)
        if s.arm.name == "grayscale_learned_expansion"
    )
    assert exp["model"]["input_expansion"] == 3 and exp["model"]["representation"] == "grayscale"
    assert all(c["model"]["residual"] is True for c in configs)
    full = study.load_config(ROOT / "configs" / "study.yaml", "full")
    assert full.train["model"]["base_channels"] == 32 and full.train["model"]["depth"] == 4
    assert cfg.specs(["rgb_jet@same"], [1]) == [
        s for s in specs if s.condition == "rgb_jet@same" and s.seed == 1
    ]


# ----------------------------------------------------------------------------- constructed results
def fake_study(
    folder: Path,
    offsets: dict[str, float],
    seed_noise: float,
    n_items: int = 30,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> Path:
    """A study folder whose condition c scores ``base_i + offsets[c] + seed_noise * z_seed`` per item."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.5, 2.5, n_items)
    arms = {}
    for cond, off in offsets.items():
        arm, target = cond.split("@")
        arms.setdefault(arm, {"representation": "log_magnitude", "targets": []})["targets"].append(
            target
        )
        for k, s in enumerate(seeds):
            shift = off + seed_noise * (k - (len(seeds) - 1) / 2)
            rows = [
                {
                    "id": f"test-{i:05d}",
                    "band": "<=0.4" if i % 2 else "0.4-0.7",
                    "t60": 0.3 if i % 2 else 0.5,
                    **{
                        m: float(base[i] + shift) * (0.3 if m in ("stoi", "estoi") else 1.0)
                        for m in sr.METRICS
                    },
                }
                for i in range(n_items)
            ]
            res = {
                "run_id": f"{arm}__{target}__seed{s}",
                "condition": cond,
                "arm": arm,
                "target": target,
                "seed": s,
                "rows": {"sim": rows},
                "train_seconds": 1.0,
                "eval_seconds": 1.0,
                "cpu_seconds": 2.0,
                "parameters": 10,
                "global_step": 5,
            }
            d = folder / "runs" / res["run_id"]
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps(res))
    (folder / "study.json").write_text(
        json.dumps(
            {
                "profile": "fake",
                "config_path": "fake.yaml",
                "seeds": list(seeds),
                "arms": arms,
                "reference": next(iter(offsets)),
                "train": {},
                "evaluation": {"n_boot": 500},
                "sessions": [],
            }
        )
    )
    return folder


def test_statistics_on_constructed_results(tmp_path):
    s = sr.load_study(
        fake_study(
            tmp_path / "a",
            {"log_magnitude@log_magnitude": 0.0, "grayscale@log_magnitude": 0.1},
            seed_noise=0.002,
        )
    )
    c = sr.compare(
        s, "sim", "grayscale@log_magnitude", "log_magnitude@log_magnitude", "pesq", n_boot=500
    )
    assert c["delta"] == pytest.approx(0.1) and c["n_items"] == 30 and c["seeds"] == [0, 1, 2]
    assert c["lo"] <= 0.1 <= c["hi"] and c["ci_excludes_zero"] and c["beyond_noise"] is True
    assert c["sd_a"] == pytest.approx(0.002) and c["se_seed"] == pytest.approx(
        math.sqrt(2 * 0.002**2 / 3)
    )
    # Welch: equal spreads, 3 seeds each -> df 4, threshold t(0.975, 4) * se.
    assert c["welch_df"] == pytest.approx(4.0)
    assert c["noise_threshold"] == pytest.approx(2.776445 * c["se_seed"], rel=1e-5)
    row = next(r for r in sr.summary_table(s, "sim") if r["condition"] == "grayscale@log_magnitude")
    mean, lo, hi, sd = sr.t_interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0) and hi - mean == pytest.approx(
        4.302653 / math.sqrt(3), rel=1e-5
    )
    assert row["pesq_sd"] == pytest.approx(0.002) and row["pesq_lo"] < row["pesq"] < row["pesq_hi"]
    # The same mean difference drowned in seed noise is not "beyond noise".
    noisy = sr.load_study(
        fake_study(
            tmp_path / "b",
            {"log_magnitude@log_magnitude": 0.0, "grayscale@log_magnitude": 0.1},
            seed_noise=0.2,
        )
    )
    c2 = sr.compare(
        noisy, "sim", "grayscale@log_magnitude", "log_magnitude@log_magnitude", "pesq", n_boot=500
    )
    assert c2["delta"] == pytest.approx(0.1) and c2["beyond_noise"] is False
    bands = {r["name"]: r for r in sr.band_table(s, "sim", "pesq")}
    assert bands["grayscale@log_magnitude"]["n_<=0.4"] == 15 and math.isnan(
        bands["grayscale@log_magnitude"][">1.0"]
    )


def test_verdicts_are_computed_from_the_numbers(tmp_path):
    conds = {
        "log_magnitude@log_magnitude": 0.0,
        "gray_rgb@same": 0.0,
        "rgb_viridis@same": 0.0,
        "rgb_jet@same": 0.3,
        "rgb_turbo@same": 0.0,
    }
    s = sr.load_study(fake_study(tmp_path / "a", conds, seed_noise=0.01))
    c = next(v for v in sr.verdicts(s, "sim", n_boot=300) if v["key"] == "c")
    outcomes = {(p["a"], p["b"]): p["outcome"] for p in c["results"]}
    assert outcomes[("rgb_jet@same", "gray_rgb@same")] == "better"
    assert outcomes[("rgb_turbo@same", "gray_rgb@same")] == "none"
    assert "rgb_jet@same" in c["headline"] and "2 of 4" in c["headline"]
    flat = sr.load_study(
        fake_study(tmp_path / "b", {**conds, "rgb_jet@same": 0.0}, seed_noise=0.01)
    )
    c_flat = next(v for v in sr.verdicts(flat, "sim", n_boot=300) if v["key"] == "c")
    assert c_flat["headline"].startswith("no effect detected")
    a = next(v for v in sr.verdicts(flat, "sim") if v["key"] == "a")
    assert a["headline"].startswith("not tested")
    path = sr.write_report(tmp_path / "a", tmp_path / "report")
    text = path.read_text()
    assert c["headline"] in text and (tmp_path / "report" / "summary_sim.png").stat().st_size > 1000
    assert "missing runs" not in text
