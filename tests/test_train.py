"""Training CLI end to end on tiny models: every config, resume, print_config, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dereverb.train import CONFIG_KEY, run
from dereverb.training.module import DereverbModule

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p.name != "study.yaml")


def tiny_args(tmp: Path, cache: Path) -> list[str]:
    return [
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp / "runs"),
        "--data.segment_seconds", "0.5",
        "--data.batch_size", "2",
        "--data.train_items", "4",
        "--data.val_items", "2",
        "--data.test_items", "2",
        "--data.num_workers", "0",
        "--data.rir_bank_sizes", "[4, 2, 2]",
        "--data.rir_cache_dir", str(cache),
        "--data.room.t60_range", "[0.3, 0.5]",
        "--data.rir_max_order", "10",
        "--data.rir_calibrate", "0",
        "--data.synthetic_speakers", "30",
        "--model.base_channels", "4",
        "--model.depth", "2",
        "--model.griffin_lim_iters", "2",
        "--model.val_metric_batches", "1",
        "--model.n_media_examples", "1",
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("rircache")


@pytest.mark.parametrize("config", CONFIGS)
def test_fast_dev_run_every_config(config, tmp_path, cache):
    args = ["--config", str(ROOT / "configs" / config), *tiny_args(tmp_path, cache), "--trainer.fast_dev_run", "1"]
    if config == "librispeech.yaml":
        speech = ROOT.parent / "shared" / "data" / "speech" / "librispeech-train-clean-100"
        if not speech.exists():
            pytest.skip("LibriSpeech sample in ../shared/data is absent")
        args += ["--data.speech", str(speech), "--data.min_duration", "1.0"]
    cli = run(args)
    assert cli.trainer.state.finished
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


def test_composed_configs_and_dotted_overrides(tmp_path, cache):
    cli = run([
        "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(ROOT / "configs" / "rgb_turbo.yaml"),
        *tiny_args(tmp_path, cache), "--trainer.fast_dev_run", "1", "--model.target", "same",
    ])
    m = cli.model
    assert m.hparams.representation == "colormap" and m.hparams.representation_kwargs["cmap"] == "turbo"
    assert m.hparams.base_channels == 4  # later --model.* beats the configs
    assert m.net.in_channels == 3 and m.net.out_channels == 3  # RGB in, RGB out


def test_print_config(tmp_path, cache, capsys):
    with pytest.raises(SystemExit) as e:
        run(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.lr", "0.0123", "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lr: 0.0123" in out and "representation: log_magnitude" in out and "sample_rate: 16000" in out


def test_sample_rate_is_linked_from_data_to_model(tmp_path, cache):
    cli = run([*tiny_args(tmp_path, cache), "--data.sample_rate", "8000", "--trainer.fast_dev_run", "1"])
    assert cli.model.hparams.sample_rate == 8000 and cli.model.stft_cfg.sample_rate == 8000


def test_unknown_key_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.not_a_key", "1"])
    assert e.value.code == 2
    assert "not_a_key" in capsys.readouterr().err


def test_resume_continues_at_saved_step_and_checkpoint_is_weights_only(tmp_path, cache):
    base = ["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache), "--trainer.logger.init_args.name", "resume"]
    cli = run([*base, "--trainer.max_epochs", "1"])
    last = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert last.name == "last.ckpt" and last.exists()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain hyperparameters only
    steps_per_epoch = 2  # train_items 4 / batch 2
    assert ckpt["global_step"] == steps_per_epoch
    assert "representation: log_magnitude" in ckpt[CONFIG_KEY]
    model = DereverbModule.load_from_checkpoint(last, map_location="cpu", weights_only=True)
    assert model.hparams.base_channels == 4
    assert (last.parent / next(p.name for p in last.parent.iterdir() if p.name.startswith("best"))).exists()

    cli2 = run([*base, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    assert cli2.trainer.global_step == 2 * steps_per_epoch  # continued, not restarted
    assert cli2.trainer.current_epoch == 2
    assert Path(cli2.trainer.logger.log_dir) == last.parent.parent  # same TensorBoard run


def _scalars(log_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir))
    ea.Reload()
    return {t: [e.value for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_short_training_lowers_val_loss_and_beats_reverberant_stoi(tmp_path, cache):
    """A short deterministic training on synthetic speech must measurably dereverberate."""
    cli = run([
        "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.max_epochs", "3", "--trainer.num_sanity_val_steps", "0",
        "--data.segment_seconds", "1.0", "--data.batch_size", "8", "--data.train_items", "96",
        "--data.val_items", "8", "--data.rir_bank_sizes", "[24, 4, 4]", "--data.rir_cache_dir", str(cache),
        "--data.room.t60_range", "[0.4, 0.8]", "--data.rir_max_order", "40", "--data.rir_calibrate", "1",
        "--model.base_channels", "8", "--model.depth", "3", "--model.lr", "0.003",
        "--model.phase", "reverberant", "--model.val_metric_batches", "1", "--model.n_media_examples", "1",
    ])
    s = _scalars(Path(cli.trainer.logger.log_dir))
    assert len(s["val/loss"]) == 3
    assert s["val/loss"][-1] < 0.85 * s["val/loss"][0]
    assert s["val/stoi"][-1] > s["val_input/stoi"][-1] + 0.02
    assert "train/loss" in s and any(k.startswith("lr-") for k in s)


def test_ddp_two_cpu_processes_fast_dev_run(tmp_path, cache):
    """trainer.strategy ddp on gloo with 2 processes: the distributed sampler gives each rank
    its own half of the epoch's items (together exactly the single-process epoch), sync_dist
    metrics, rank-zero media."""
    import os
    import subprocess
    import sys

    from tests.ddp_probe import BatchProbe

    items = ["--data.train_items", "8", "--trainer.fast_dev_run", "2"]  # 2 ranks x 2 batches x 2
    probe = json.dumps([{"class_path": "tests.ddp_probe.BatchProbe", "init_args": {"out_dir": str(tmp_path / "ddp")}}])
    args = [sys.executable, "-m", "dereverb.train", "--config", str(ROOT / "configs" / "quickstart.yaml"),
            *tiny_args(tmp_path, cache), *items, "--trainer.callbacks", probe,
            "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "MEMBER: 2/2" in out and "distributed_backend=gloo" in out
    assert "`Trainer.fit` stopped" in out
    rank0, rank1 = (json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 4
    assert not set(rank0) & set(rank1)  # no item trained twice in the epoch

    single = BatchProbe(str(tmp_path / "single"))
    run(["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache),
         "--data.train_items", "8", "--trainer.fast_dev_run", "4"], callbacks=[single])
    assert sorted(rank0 + rank1) == sorted(single.seen)


def test_bf16_mixed_precision_end_to_end(tmp_path, cache):
    """bf16-mixed through training and validation (full inverse path): DSP stays float32."""
    cli = run(["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache),
               "--trainer.fast_dev_run", "2", "--trainer.precision", "bf16-mixed"])
    assert cli.trainer.precision == "bf16-mixed"
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])


def _fp16_plugin(init_scale: float = 2.0**16) -> str:
    """Lightning's ``16-mixed`` precision with a real GradScaler, forced onto the CPU.

    ``--trainer.precision 16-mixed`` on a CPU makes Lightning fall back to bf16; passing the
    plugin itself runs float16 autocast + dynamic loss scaling, the GPU code path, here.
    """
    return json.dumps({
        "class_path": "lightning.pytorch.plugins.precision.MixedPrecision",
        "init_args": {"precision": "16-mixed", "device": "cpu", "scaler": {
            "class_path": "torch.amp.GradScaler",
            "init_args": {"device": "cpu", "init_scale": init_scale, "growth_interval": 1000}}},
    })


def test_16_mixed_with_grad_scaler_end_to_end(tmp_path, cache, monkeypatch):
    """float16 autocast + GradScaler through training and validation: the U-Net computes in
    float16, the STFT and the inverse path stay float32, losses and metrics are finite."""
    from dereverb.models.unet import UNet

    seen: dict[str, set] = {"unet": set(), "analyse": set()}
    unet_forward, analyse = UNet.forward, DereverbModule.analyse

    def spy_unet(self, x):
        y = unet_forward(self, x)
        seen["unet"].add(y.dtype)
        return y

    def spy_analyse(self, wave):
        spec, mag = analyse(self, wave)
        seen["analyse"].add(mag.dtype)
        return spec, mag

    monkeypatch.setattr(UNet, "forward", spy_unet)
    monkeypatch.setattr(DereverbModule, "analyse", spy_analyse)
    cli = run(["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache),
               "--trainer.fast_dev_run", "2", "--trainer.precision", "null",
               "--trainer.plugins", _fp16_plugin()])
    plugin = cli.trainer.precision_plugin
    assert plugin.precision == "16-mixed" and isinstance(plugin.scaler, torch.amp.GradScaler)
    assert seen["unet"] == {torch.float16}
    assert seen["analyse"] == {torch.float32}
    metrics = cli.trainer.callback_metrics
    for key in ("train/loss", "val/loss", "val/stoi"):
        assert torch.isfinite(metrics[key]), key


def test_16_mixed_overflow_halves_the_scale_and_the_guard_counts_the_skipped_steps(tmp_path, cache):
    """A loss scale far too large overflows float16 gradients: GradScaler skips those steps and
    halves the scale each time, the NaN/Inf guard counts exactly those steps, the weights stay
    finite, and once the scale fits training goes on updating the weights."""
    init_scale = 2.0**22
    cli = run(["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache),
               "--trainer.max_steps", "10", "--trainer.max_epochs", "5", "--trainer.limit_val_batches", "0",
               "--trainer.precision", "null", "--trainer.plugins", _fp16_plugin(init_scale)])
    model, scaler = cli.model, cli.trainer.precision_plugin.scaler
    halvings = round(math.log2(init_scale / scaler.get_scale()))
    assert 1 <= model.skipped_steps < 10, model.skipped_steps
    assert halvings == model.skipped_steps  # growth_interval is 1000: the scale only fell
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # AdamW counts only the steps it took.
    steps = {int(s["step"]) for s in cli.trainer.optimizers[0].state.values()}
    assert steps == {10 - model.skipped_steps}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("reverb_on_device", [False, True])
def test_cuda_training_fast_dev_run(tmp_path, cache, precision, reverb_on_device):
    """On a GPU: each precision (16-mixed with Lightning's GradScaler), with the reverberation
    built on the CPU or on the device, trains and validates to finite numbers."""
    cli = run(["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache),
               "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.fast_dev_run", "2",
               "--trainer.precision", precision, "--data.reverb_on_device", str(reverb_on_device).lower()])
    assert cli.model.device.type == "cuda"
    assert (getattr(cli.trainer.precision_plugin, "scaler", None) is not None) == (precision == "16-mixed")
    for key in ("train/loss", "val/loss", "val/stoi"):
        assert torch.isfinite(cli.trainer.callback_metrics[key]), key
