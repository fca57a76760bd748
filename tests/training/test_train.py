"""Training CLI end to end on tiny models: every config, resume, print_config, checkpoints, the
pluggable network (bad class paths, the dilated U-Net through prediction)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dereverb.inference import dereverberate, load_model
from dereverb.training.callbacks import CONFIG_KEY
from dereverb.training.checks import ConfigError
from dereverb.training.module import DereverbModule
from dereverb.training.run import run
from tests.conftest import tiny_train_args

ROOT = Path(__file__).resolve().parents[2]
# training configs: the ones with model, data or trainer keys (not the study's or the rooms' lists)
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml")
                 if {"model", "data", "trainer"} & set(yaml.safe_load(p.read_text()) or {}))


def tiny_args(tmp: Path, cache: Path) -> list[str]:
    """The shared tiny settings (tests/conftest.py) with 4 training items and no workers."""
    return tiny_train_args(tmp, cache, **{"data.train_items": "4", "data.num_workers": "0"})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("rircache")


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_fast_dev_run_every_config(config, tmp_path, cache):
    args = ["--config", str(ROOT / "configs" / config), *tiny_args(tmp_path, cache), "--trainer.fast_dev_run", "1"]
    speech = (yaml.safe_load((ROOT / "configs" / config).read_text()).get("data") or {}).get("speech", "synthetic")
    if config == "librispeech.yaml":
        speech = str(ROOT.parent / "shared" / "data" / "speech" / "librispeech-train-clean-100")
        args += ["--data.speech", speech, "--data.min_duration", "1.0"]
    missing = [f for f in (speech if isinstance(speech, list) else [speech]) if f != "synthetic" and not (ROOT / f).exists()]
    if missing:
        pytest.skip(f"the config's speech folder {missing[0]} is absent (shared data)")
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
    assert m.hparams.net["init_args"]["base_channels"] == 4  # later --model.* beats the configs
    assert m.model.net.in_channels == 3 and m.model.net.out_channels == 3  # RGB in, RGB out


def test_print_config(tmp_path, cache, capsys):
    with pytest.raises(SystemExit) as e:
        run(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.lr", "0.0123", "--print_config"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lr: 0.0123" in out and "representation: log_magnitude" in out and "sample_rate: 16000" in out


def test_sample_rate_is_linked_from_data_to_model(tmp_path, cache):
    cli = run([*tiny_args(tmp_path, cache), "--data.sample_rate", "8000", "--trainer.fast_dev_run", "1"])
    assert cli.model.hparams.sample_rate == 8000 and cli.model.model.stft_cfg.sample_rate == 8000


def test_unknown_key_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.not_a_key", "1"])
    assert e.value.code == 2
    assert "not_a_key" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_continues_at_saved_step_and_checkpoint_is_weights_only(tmp_path, cache):
    base = ["--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny_args(tmp_path, cache), "--trainer.logger.init_args.name", "resume"]
    cli = run([*base, "--trainer.max_epochs", "1"])
    last = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    assert last.exists()
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain hyperparameters only
    steps_per_epoch = 2  # train_items 4 / batch 2
    assert ckpt["global_step"] == steps_per_epoch
    assert "representation: log_magnitude" in ckpt[CONFIG_KEY]
    model = DereverbModule.load_from_checkpoint(last, map_location="cpu", weights_only=True)
    assert model.hparams.net == {
        "class_path": "dereverb.models.unet.UNet",
        "init_args": {"base_channels": 4, "depth": 2, "norm": "batch", "activation": "relu", "input_expansion": None},
    }
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


@pytest.mark.slow
def test_short_training_lowers_val_loss_and_beats_reverberant_stoi(tmp_path, cache):
    """A short deterministic training on synthetic speech must measurably dereverberate."""
    cli = run([
        "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.max_epochs", "4", "--trainer.num_sanity_val_steps", "0",
        "--data.segment_seconds", "1.0", "--data.batch_size", "8", "--data.train_items", "96",
        "--data.val_items", "8", "--data.rir_bank_sizes", "[24, 4, 4]", "--data.rir_cache_dir", str(cache),
        "--data.room.t60_range", "[0.4, 0.8]", "--data.rir_max_order", "40", "--data.rir_calibrate", "1",
        "--model.net.init_args.base_channels", "8", "--model.net.init_args.depth", "3", "--model.lr", "0.003",
        "--model.phase", "reverberant", "--model.val_metric_batches", "1", "--model.n_media_examples", "1",
    ])
    s = _scalars(Path(cli.trainer.logger.log_dir))
    assert len(s["val/loss"]) == 4
    assert s["val/loss"][-1] < 0.85 * s["val/loss"][0]
    assert s["val/stoi"][-1] > s["val_input/stoi"][-1] + 0.02
    assert "train/loss" in s and any(k.startswith("lr-") for k in s)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_16_mixed_with_grad_scaler_end_to_end(tmp_path, cache, monkeypatch):
    """float16 autocast + GradScaler through training and validation: the U-Net computes in
    float16, the STFT and the inverse path stay float32, losses and metrics are finite."""
    from dereverb.models.dereverber import Dereverber
    from dereverb.models.unet import UNet

    seen: dict[str, set] = {"unet": set(), "analyse": set()}
    unet_forward, analyse = UNet.forward, Dereverber.analyse

    def spy_unet(self, x):
        y = unet_forward(self, x)
        seen["unet"].add(y.dtype)
        return y

    def spy_analyse(self, wave):
        spec, mag = analyse(self, wave)
        seen["analyse"].add(mag.dtype)
        return spec, mag

    monkeypatch.setattr(UNet, "forward", spy_unet)
    monkeypatch.setattr(Dereverber, "analyse", spy_analyse)
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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------- networks
def _main(args: list[str], capsys) -> tuple[int, str]:
    from dereverb.train import main

    try:
        rc = main(args)
    except SystemExit as exc:  # parse errors leave through SystemExit, as with argparse
        rc = exc.code
    return rc, capsys.readouterr().err


def test_print_config_shows_the_network(capsys):
    with pytest.raises(SystemExit):
        run(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(ROOT / "configs" / "dilated_unet.yaml"),
             "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    net = cfg["model"]["net"]
    assert net["class_path"].endswith("DilatedUNet")
    # the quickstart's U-Net size is kept, the network config only changes the class
    assert net["init_args"]["base_channels"] == 8 and net["init_args"]["dilations"] == [1, 2, 4, 8]


def test_network_arguments_at_the_model_level_are_unknown_keys(tmp_path, capsys):
    rc, err = _main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--model.depth", "2"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "unrecognized arguments: --model.depth 2" in err
    cfg = tmp_path / "flat.yaml"
    cfg.write_text("model:\n  depth: 2\n")
    rc, err = _main(["--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(cfg)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "depth" in err


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--model.net", "torch.nn.NotThere"], ["model.net", "has no attribute 'NotThere'"]),
        (["--model.net", "no_such_package.nets.Net"], ["model.net", "No module named 'no_such_package'"]),
        (["--model.net", "collections.OrderedDict"], ["model.net", "'collections.OrderedDict' to be a subclass"]),
        (["--model.net", "torch.nn.LayerNorm"], ["model.net.init_args", "unexpected keyword argument 'in_channels'"]),
        (["--model.net.init_args.widht", "3"], ["model.net", "Option 'widht' is not accepted"]),
        (["--model.net.init_args.depth", "x"], ["model.net", "depth", "Got value: x"]),
        (["--model.net.init_args.depth", "0"], ["model.net.init_args: UNet: depth must be an integer >= 1, got 0"]),
    ],
)
def test_bad_network_is_one_clear_line(args, mentions, capsys):
    rc, err = _main(["--config", str(ROOT / "configs" / "quickstart.yaml"), *args], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert all(m in err for m in mentions), err


@pytest.mark.slow
def test_dilated_unet_trains_predicts_and_chunks_like_the_unet(tmp_path, cache):
    """The second network end to end: train (fast_dev_run) from its config, save, load with the
    lean inference loader, dereverberate. Chunked equals unchunked within the U-Net test's
    tolerance (1e-5 of the peak) given a context that covers the dilated bottleneck's reach
    (±~80 frames, 0.64 s, at depth 2: 0.75 s here; at the U-Net test's 0.25 s it is ~2e-5)."""
    cli = run(["--config", str(ROOT / "configs" / "dilated_unet.yaml"), *tiny_args(tmp_path, cache),
               "--trainer.fast_dev_run", "2"])
    assert type(cli.model.model.net).__name__ == "DilatedUNet" and cli.model.model.net.depth == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    ckpt = tmp_path / "dilated.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    hp = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["net"]["class_path"] == "dereverb.models.dilated_unet.DilatedUNet"
    assert hp["net"]["init_args"]["dilations"] == [1, 2, 4, 8]

    model = load_model(ckpt)
    assert type(model.net).__name__ == "DilatedUNet" and model.pooling_frames == 4
    x = (0.1 * np.random.default_rng(0).standard_normal((2, int(4.0 * 16000)))).astype(np.float32)
    whole = dereverberate(x, 16000, model, phase="reverberant", chunk_seconds=None)
    assert whole.shape == x.shape and np.isfinite(whole).all() and np.abs(whole - x).max() > 1e-3
    chunked = dereverberate(x, 16000, model, phase="reverberant", chunk_seconds=1.0, context_seconds=0.75, batch_size=2)
    peak = np.abs(whole).max()
    assert np.abs(whole - chunked).max() <= 1e-5 * peak
    no_context = dereverberate(x, 16000, model, phase="reverberant", chunk_seconds=1.0, context_seconds=0.0)
    assert np.abs(whole - no_context).max() > 1e-4 * peak


def test_init_weights_starts_a_new_run_from_a_checkpoints_or_bundles_weights(tmp_path, cache):
    from dereverb.models.checkpoints import write_model_folder
    from dereverb.training.checks import load_init_weights
    from tests.conftest import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "w.ckpt", seed=3, phase="griffinlim-warm", griffin_lim_iters=2)
    bundle = write_model_folder(ckpt, tmp_path / "w")
    source = torch.load(ckpt, weights_only=True)["state_dict"]
    for weights in (ckpt, bundle):
        torch.manual_seed(0)
        m = DereverbModule(net={"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}})
        load_init_weights(str(weights), m)
        own = m.state_dict()
        tol = 0 if weights == ckpt else 1e-3  # the bundle is float16
        assert all(torch.allclose(own[k].float(), v.float(), atol=tol) for k, v in source.items())
    # a run starts from them (step 0, fresh optimizer) and trains
    cli = run([*tiny_args(tmp_path, cache), "--init_weights", str(bundle), "--trainer.fast_dev_run", "1"])
    assert cli.trainer.state.finished and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    # weights of another size: one line naming the difference
    with pytest.raises(ConfigError, match=r"--init_weights weights do not fit .*base_channels=4 there, 2 here"):
        run([*tiny_args(tmp_path, cache), "--init_weights", str(ckpt), "--model.net.init_args.base_channels", "2"])
    # ... except a wider U-Net, which they fill by widening (Net2Net: the same function to start)
    wide = DereverbModule(net={"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 6, "depth": 2}})
    load_init_weights(str(ckpt), wide)
    narrow = DereverbModule(net={"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}})
    load_init_weights(str(ckpt), narrow)
    wide.eval(), narrow.eval()
    mag = torch.rand(1, 256, 40) + 0.01
    with torch.no_grad():
        out_wide, out_narrow = wide.model(mag)[0], narrow.model(mag)[0]
    assert (out_wide - out_narrow).abs().mean() < 0.01 * out_narrow.abs().mean()  # a fresh wide net: ~0.6
    # ... but not across representations: other input channels are still a misfit, in one line
    rgb = DereverbModule(representation="colormap", target="same",
                         net={"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 6, "depth": 2}})
    with pytest.raises(ConfigError, match=r"do not fit .*representation='log_magnitude' there, 'colormap' here"):
        load_init_weights(str(ckpt), rgb)
    with pytest.raises(ConfigError, match="not both"):
        run([*tiny_args(tmp_path, cache), "--init_weights", str(ckpt), "--ckpt_path", str(ckpt)])
    # a U-Net's weights grow a DilatedUNet of the same arguments (its stack starts near the identity)
    torch.manual_seed(0)
    m = DereverbModule(net={"class_path": "dereverb.models.dilated_unet.DilatedUNet", "init_args": {"base_channels": 4, "depth": 2}})
    load_init_weights(str(ckpt), m)
    own = m.state_dict()
    assert all(torch.equal(own[k.replace("net.bottleneck.", "net.bottleneck.0.")], v) for k, v in source.items())
    assert torch.all(own["model.net.bottleneck.1.layers.0.1.weight"] == 0.01)


def test_training_without_a_logger(tmp_path, cache):
    # the always-on learning-rate monitor must not refuse a run with logging turned off
    cli = run([*tiny_args(tmp_path, cache), "--trainer.logger", "false", "--trainer.max_epochs", "1",
               "--checkpoint.dirpath", str(tmp_path / "ckpt")])
    assert cli.trainer.state.finished and cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    assert not (tmp_path / "runs").exists()  # nothing logged
