"""The benchmark scripts run and print their tables (tiny sizes; speed is not asserted here:
numbers belong to docs/performance.md), and the GPU utilisation sampler degrades on a CPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
NUMBER = r"[0-9][0-9,]*\.?[0-9]*"


def bench(tmp_path: Path, script: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` from an empty folder (no reliance on the repo as cwd)."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def rows(out: str, first: str) -> list[list[str]]:
    """Table rows (cells split on ``|``) whose first cell is ``first``."""
    found = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first:
            found.append(cells)
    return found


def positive(cell: str) -> float:
    assert re.fullmatch(NUMBER, cell), cell
    value = float(cell.replace(",", ""))
    assert value > 0, cell
    return value


@pytest.mark.slow
def test_train_benchmark_synthetic_steps_and_fit(tmp_path):
    out = bench(tmp_path, "train.py", "--steps", "1", "--warmup", "1", "--precision", "32", "bf16",
                "--batch-size", "2")
    for prec in ("32", "bf16"):
        [row] = rows(out, prec)
        positive(row[1])
        positive(row[2])
        assert row[4] == "-"  # no GPU utilisation on a CPU

    out = bench(tmp_path, "train.py", "--fit", "--steps", "2", "--warmup", "1", "--precision", "32",
                "--", "--data.batch_size", "2", "--data.train_items", "8", "--data.segment_seconds", "0.5",
                "--data.rir_bank_sizes", "[4, 2, 2]", "--data.rir_cache_dir", str(tmp_path / "cache"),
                "--data.rir_max_order", "10", "--data.rir_calibrate", "0",
                "--model.net.init_args.base_channels", "4", "--model.net.init_args.depth", "2")
    [row] = rows(out, "32-true")
    samples_per_s, ms_per_step = positive(row[1]), positive(row[2])
    assert samples_per_s == pytest.approx(2 / ms_per_step * 1e3, rel=0.02, abs=0.05)  # printed to 0.1
    assert re.fullmatch(r"\d+%", row[3])  # data wait share
    assert row[4] == "-"
    assert not (tmp_path / "runs").exists()  # the fit benchmark logs into a temporary folder


@pytest.mark.slow
def test_data_benchmark_cpu_and_device_paths(tmp_path):
    out = bench(tmp_path, "data.py", "--batches", "2", "--batch-size", "4", "--bank", "4",
                "--seconds", "0.5", "--workers", "0", "--device", "cpu")
    positive(rows(out, "cpu")[0][2])
    positive(rows(out, "device:cpu")[0][2])


@pytest.mark.slow
def test_predict_benchmark(tmp_path):
    out = bench(tmp_path, "predict.py", "--files", "2", "--seconds", "2", "--iters", "2")
    for system in ("model, reverberant phase", "model, Griffin-Lim warm x2", "WPE (10 taps, 5 iterations)"):
        [row] = rows(out, system)  # the model and WPE side by side, on the same files
        assert all(re.fullmatch(r"\d+\.\d{4}", c) and float(c) > 0 for c in row[1:3])


@pytest.mark.slow
def test_rir_benchmark(tmp_path):
    out = bench(tmp_path, "rir.py", "--rooms", "1", "--t60s", "0.3", "--bank-size", "2", "--workers", "1")
    [calibrated] = rows(out, "0.3")[4:5]
    assert calibrated[1] == "image, order <= 40, calibrate 2"
    measured = float(calibrated[3].split()[0])
    assert 0.25 <= measured <= 0.36  # calibration lands near the 0.3 s asked


@pytest.mark.slow
def test_representations_benchmark(tmp_path):
    out = bench(tmp_path, "representations.py", "--quick", "--repeats", "1", "--skip-inversion")
    for name in ("magnitude", "log_magnitude", "grayscale 8-bit", "colormap turbo"):
        [row] = rows(out, name)
        positive(row[1])
        positive(row[2])


def test_gpu_utilisation_sampler_on_cpu_reports_nothing():
    sys.path.insert(0, str(BENCH))
    try:
        from gpu_utilisation import GpuUtilisation
    finally:
        sys.path.remove(str(BENCH))
    with GpuUtilisation("cpu", interval=0.01) as util:
        torch.randn(256, 256) @ torch.randn(256, 256)
    assert util.mean is None and util.samples == []
    assert f"{util:>4}" == "   -"


@pytest.mark.slow
def test_startup_benchmark_prints_ratios(tmp_path):
    out = bench(tmp_path, "startup.py", "--repeats", "1", "--seconds", "3")
    for name in ("import torch", "predict --help", "import dereverb.predict"):
        [row] = rows(out, name)
        positive(row[1])
        positive(row[4])  # peak RSS MB
    assert re.search(r"start-up ratio predict --help / import torch: \d+\.\d+ \(goal <= 1\.3\) (PASS|FAIL)", out)
    assert re.search(r"peak RSS of predict over import torch: \+-?\d+ MB \(goal <= \+250 MB\) (PASS|FAIL)", out)


@pytest.mark.slow
def test_speech_benchmark(tmp_path):
    out = bench(tmp_path, "speech.py", "--seconds", "1", "--repeats", "1")
    [row] = rows(out, "1")
    positive(row[1])
    positive(row[2])


@pytest.mark.slow
@pytest.mark.slow
def test_gpu_run_dry_run_exercises_every_step(tmp_path):
    """benchmarks/gpu_run.py --dry-run: every step on the CPU at tiny sizes, results under --out,
    a float16 weights file, and summary.json naming each step's status."""
    out = tmp_path / "gpu"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_run.py"), "--out", str(out), "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    for name in ("env", "cuda_tests", "bench_train", "bench_data", "bench_predict", "train", "weights", "eval_sim"):
        assert steps[name]["status"] == "ok", (name, steps[name], proc.stdout[-2000:])
    assert 0 < steps["weights"]["bytes"] <= 10 * 2**20
    import safetensors.torch
    import torch

    from dereverb.inference import load_model

    bundle = out / "weights" / "librispeech_unet"
    weights = safetensors.torch.load_file(bundle / "model.safetensors")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    assert load_model(bundle).net.in_channels == 1  # the format --ckpt pretrained loads
    assert "| gpu |" in (out / "eval_sim" / "results.md").read_text()
    # the study ran beside the training (the smoke profile in a dry run, each run a submitit job)
    # and came back as results only
    from dereverb.experiment.config import load_config

    smoke = len(load_config(ROOT / "configs" / "study.yaml", "smoke").specs())
    assert steps["study"]["status"] == "ok" and steps["study"]["finished_runs"] == smoke, steps["study"]
    session = json.loads((out / "study" / "study.json").read_text())["sessions"][-1]
    assert session["launcher"] == "local" and not list((out / "study").rglob("*.ckpt"))
    assert not (out / "study" / "jobs").exists()  # submitit's logs stay behind
    assert proc.returncode == (0 if all(s["status"] == "ok" for s in steps.values()) else 1)


@pytest.mark.slow
def test_gpu_run_continues_a_committed_study_and_brings_back_results_only(tmp_path):
    """The GPU run's study starts from the committed results of a study folder (so the study
    reuses them) and, when stopped, keeps only what a study folder commits."""
    gpu_run = _bench("gpu_run")
    src = ROOT / "docs" / "study" / "core"
    if not (src / "study.json").is_file():
        pytest.skip("no committed study")
    n = sum(1 for _ in src.glob("runs/*/result.json"))
    assert gpu_run.copy_study_results(src, tmp_path / "study") == n > 0
    run = tmp_path / "study" / "runs" / "log_magnitude__log_magnitude__tiny__seed0"
    (run / "steps").mkdir()
    (run / "steps" / "step=60.ckpt").write_bytes(b"weights")
    (run / "train.log").write_text("log")
    (tmp_path / "study" / "baseline_cache").mkdir()
    gpu_run.prune_study(tmp_path / "study")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "result.json"]
    assert not (tmp_path / "study" / "baseline_cache").exists()
    assert gpu_run.finished_runs(tmp_path / "study") == n


def _bench(name: str):
    """``benchmarks/<name>.py`` as a module (the folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipe():
    return _bench("recipe")


@pytest.mark.slow
def test_recipe_speed_prints_cost_per_setting(tmp_path):
    out = bench(tmp_path, "recipe.py", "speed", "--steps", "1", "--warmup", "0", "--batch", "1",
                "--seconds", "0.5", "--rows", "4")
    assert "native bf16:" in out
    [ref] = rows(out, "fp32, base 32, depth 4")
    [narrow] = rows(out, "base 16")
    assert positive(ref[1]) > 0 and ref[3] == "1.00x"
    # base 16 has a quarter of base 32's multiply-adds: its step must be cheaper
    assert positive(narrow[1]) < positive(ref[1])


@pytest.mark.slow
def test_recipe_cpu_budget_stops_training_and_variants_compose(tmp_path):
    from dereverb.training.run import run
    from tests.conftest import tiny_train_args

    recipe = _recipe()
    cli = run([*tiny_train_args(tmp_path, tmp_path / "cache", **{"trainer.max_epochs": "50", "data.num_workers": "0"})],
              callbacks=[recipe.CpuBudget(0.0)])
    assert cli.trainer.global_step == 1  # the budget was spent after the first step
    args = recipe.train_args("dilated", tmp_path)
    # the variant's overrides come after the base config, so they win
    assert args[:2] == ["--config", str(recipe.BASE_CONFIG)]
    assert args[args.index("--model.net") + 1] == "dereverb.models.dilated_unet.DilatedUNet"
    assert args[args.index("--model.net.init_args.base_channels") + 1] == "16"
    assert "--trainer.limit_val_batches" in args and args[args.index("--data.num_workers") + 1] == "0"
    assert recipe.VARIANTS["baseline"][1] == []  # the baseline is configs/recipe.yaml unchanged


@pytest.mark.slow
def test_recipe_every_variant_builds_with_its_overrides(tmp_path):
    from dereverb.training.cli import build_cli
    from tests.conftest import shared_path

    shared_path("speech", "speechocean762")  # the variants read ../shared/data
    recipe = _recipe()
    for name in recipe.VARIANTS:  # a misspelt key or value in any variant fails here, not after its budget
        cli = build_cli(recipe.train_args(name, tmp_path))
        assert cli.trainer.logger.version == name
    hot = build_cli(recipe.train_args("annealed_hot", tmp_path))
    assert hot.model.hparams.lr == 0.004 and hot.trainer.max_steps == 360
    noisier = build_cli(recipe.train_args("annealed_noisier", tmp_path))
    assert noisier.datamodule.noise["noise_prob"] == 0.9 and noisier.datamodule.noise["noise_snr_db_range"] == (0.0, 30.0)
    assert noisier.trainer.max_steps == 360


def test_recipe_paired_table_against_the_reference():
    recipe = _recipe()
    rng = np.random.default_rng(0)
    base = rng.normal(1.5, 0.3, 40)
    better = base + 0.2 + rng.normal(0, 0.02, 40)
    by_system = {
        "ref": {str(i): {"pesq": f"{v}", "stoi": "0.5", "si_sdr": "nan"} for i, v in enumerate(base)},
        "new": {str(i): {"pesq": f"{v}", "stoi": "0.6", "si_sdr": "1.0"} for i, v in enumerate(better)},
    }
    by_system["new"].pop("0")  # an item only the reference scored is left out of the pairing
    table = recipe.paired_table(by_system, {"baseline": "ref", "small": "new"}, reference="baseline")
    e = table["small"]["pesq"]
    assert e["n"] == 39 and e["diff"] == pytest.approx(float(np.mean(better[1:] - base[1:])))
    assert e["lo"] < e["diff"] < e["hi"] and e["hi"] - e["lo"] < 0.03  # sd 0.02 over 39 pairs
    assert table["small"]["stoi"]["diff"] == pytest.approx(0.1)
    assert table["baseline"]["pesq"]["diff"] == 0.0
    assert table["small"]["si_sdr"]["n"] == 0  # no finite reference score: nothing paired


def test_model_card_tables_from_evaluate_outputs(tmp_path):
    import csv

    card = _bench("model_card")
    fields = ["id", "system", "band", "t60", "drr", "rir", "room", "pesq", "stoi", "estoi", "si_sdr", "srmr", "seconds"]
    with open(tmp_path / "per_item.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, band in enumerate(["<=0.4", "<=0.4", "0.4-0.7"]):
            for system, pesq in (("reverberant", 1.5), ("wpe", 1.6), ("pretrained", 1.9 + 0.1 * i)):
                w.writerow({"id": i, "system": system, "band": band, "pesq": pesq, "stoi": 0.8, "estoi": 0.6,
                            "si_sdr": "nan" if system == "pretrained" and i == 0 else -10, "srmr": "", "seconds": 1})
    with open(tmp_path / "results_ci.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "reference", "band", "metric", "n", "mean", "lo", "hi"])
        w.writerow(["pretrained", "reverberant", "<=0.4", "pesq", 2, 0.45, 0.4, 0.5])
        w.writerow(["pretrained", "reverberant", "0.7-1.0", "pesq", 0, "nan", "nan", "nan"])
        w.writerow(["pretrained", "reverberant", "all", "pesq", 3, 0.5, 0.4, 0.6])
    text = card.card_tables(tmp_path, model="pretrained")
    assert "| pretrained | 3 | 2.000 | 0.800 | 0.600 | -10.00 |" in text  # the NaN SI-SDR is left out of its mean
    assert "| wpe | 3 | 1.600 |" in text
    assert "| pretrained | 1.950 / 0.800 | 2.100 / 0.800 |" in text  # by band
    assert "| <=0.4 s | 2 | +0.450 [+0.400, +0.500] | – | – | – |" in text
    assert "| all | 3 | +0.500 [+0.400, +0.600] |" in text
    assert "0.7-1.0 s" not in text  # a band without items is not listed
    assert "minus `wpe`" not in text  # no rows against WPE in this file
    # the new bundle against the previous one (here: 'wpe' stands in for it), paired over the items
    line = card.previous_diff(tmp_path, "pretrained", "wpe")
    assert line.startswith("`pretrained` minus the previous bundle (`wpe`), paired over items: PESQ-WB +0.400 [")
    assert "STOI +0.000 [+0.000, +0.000] (n = 3)" in line
    rows = (tmp_path / "per_item.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",1.5,", ",,")  # reverberant item 0: PESQ failed, an empty cell
    (tmp_path / "per_item.csv").write_text("\n".join(rows) + "\n")
    line = card.previous_diff(tmp_path, "pretrained", "reverberant")
    assert "PESQ-WB +0.550 [" in line and "] (n = 2)" in line  # item 0 left out


def test_model_card_level_table_pairs_each_condition_with_the_items_as_built(tmp_path):
    import csv

    card = _bench("model_card")

    def write(folder, n_items, model_pesq, input_pesq):
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "per_item.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "system", "band", "pesq", "stoi", "si_sdr"])
            w.writeheader()
            for i in range(n_items):
                for system, pesq in (("reverberant", input_pesq), ("wpe", input_pesq + 0.1),
                                     ("old", model_pesq - 0.05), ("pretrained", model_pesq + 0.01 * (i % 2))):
                    w.writerow({"id": i, "system": system, "band": "all", "pesq": pesq, "stoi": 0.8, "si_sdr": -10})

    write("test_measured_rooms", 8, 2.0, 1.5)  # as built: twice the sweep's items
    for name, model, noisy in (("input_peak_-20_dBFS", 2.0, 1.5), ("input_peak_-40_dBFS", 2.0, 1.5),
                               ("pink_noise_20_dB_SNR", 1.9, 1.4), ("pink_noise_10_dB_SNR", 1.7, 1.2)):
        write(f"test_measured_rooms_{name}", 4, model, noisy)
    table = card.level_table(tmp_path, "pretrained", "old").splitlines()
    assert len(table) == 2 + 5 and table[0].count("|") == 9
    # as built: only the sweep's 4 items, no difference to itself
    assert table[2].startswith("| as built (peaks −6…0 dBFS) | 1.500 / 0.800 | 1.600 / 0.800 | 1.950 / 0.800 | 2.005 / 0.800 | – | +0.505 [")
    assert table[2].count("[") == 3  # minus its input: PESQ-WB only; minus the previous: both
    assert "| peak −40 dBFS |" in table[4] and "| +0.000 [+0.000, +0.000] / +0.000 [+0.000, +0.000] |" in table[4]
    assert table[6].startswith("| pink noise, 10 dB SNR | 1.200 / 0.800 |")
    assert "| −0.300 [" in table[6].replace("-", "−")  # minus itself as built
    assert table[6].endswith("| +0.055 [+0.050, +0.060] / +0.000 [+0.000, +0.000] |")  # minus the previous bundle


@pytest.mark.slow
def test_gpu_run_background_step_is_stopped_with_sigint_and_recorded(tmp_path):
    """The study beside the training is interrupted when the training ends: SIGINT to its
    process group (the study keeps its finished runs on Ctrl-C), recorded in summary.json."""
    gpu_run = _bench("gpu_run")
    run = gpu_run.Run(tmp_path, budget=60, dry_run=True)
    script = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(130)); print('up', flush=True); time.sleep(60)"
    bg = gpu_run.Background(run, "study", [sys.executable, "-c", script])
    assert json.loads((tmp_path / "summary.json").read_text())["steps"]["study"]["status"] == "running"
    import time

    time.sleep(1.0)
    assert bg.stop(0, finished_runs=3) == "stopped at the time limit"
    assert bg.proc.returncode == 130
    step = json.loads((tmp_path / "summary.json").read_text())["steps"]["study"]
    assert step["status"] == "stopped at the time limit" and step["finished_runs"] == 3
    assert "up" in (tmp_path / "study.txt").read_text()
