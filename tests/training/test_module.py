"""DereverbModule: shapes per representation/target, residual start, non-finite guard, the
pluggable network, the LR schedule."""

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from dereverb.models import DilatedUNet, UNet
from dereverb.training.module import DereverbModule, lr_schedule

TINY_NET = {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 4, "depth": 2}}


def tiny(**kw):
    args = dict(net=TINY_NET, griffin_lim_iters=2, val_metric_batches=0)
    args.update(kw)
    return DereverbModule(**args)


@pytest.mark.parametrize(
    "rep,kw,target,cin,cout",
    [
        ("log_magnitude", {}, "log_magnitude", 1, 1),
        ("magnitude", {}, "same", 1, 1),
        ("grayscale", {}, "same", 1, 1),
        ("colormap", {"cmap": "turbo"}, "same", 3, 3),
        ("colormap", {"cmap": "viridis"}, "log_magnitude", 3, 1),
        ("stacked", {}, "log_magnitude", 3, 1),
    ],
)
def test_channels_and_enhance_shapes(rep, kw, target, cin, cout):
    m = tiny(representation=rep, representation_kwargs=kw, target=target).eval()
    assert m.model.net.in_channels == cin and m.model.net.out_channels == cout
    x = torch.randn(2, 4000) * 0.1
    y = m.model.enhance(x, phase="reverberant")
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_residual_model_starts_near_identity():
    """With the last layer zeroed, the residual model returns its input's magnitude."""
    m = tiny(representation="log_magnitude").eval()
    last = [mod for mod in m.model.net.modules() if isinstance(mod, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.randn(1, 8000) * 0.1
    y = m.model.enhance(x, phase="reverberant")
    assert (y - x).abs().max() < 1e-3


def _loader(n=4, bad_at=None):
    items = []
    for i in range(n):
        r = torch.randn(4000) * 0.1
        if i == bad_at:
            r[100] = float("nan")
        items.append({"reverb": r, "clean": r * 0.5})
    return DataLoader(items, batch_size=1)


def test_nonfinite_loss_skips_the_step_and_counts_it():
    m = tiny()
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    trainer.fit(m, _loader(1, bad_at=0))
    after = m.state_dict()
    assert m.skipped_steps == 1
    assert all(torch.equal(before[k], after[k]) for k in before)  # norm statistics included
    assert trainer.callback_metrics["train/skipped_steps"] == 1


def test_nonfinite_gradient_skips_the_step():
    m = tiny()
    first = next(m.model.net.parameters())
    first.register_hook(lambda g: g * float("inf"))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    w0 = first.detach().clone()
    trainer.fit(m, _loader(2))
    assert m.skipped_steps == 2 and torch.equal(w0, first.detach())


def test_finite_steps_update_weights():
    m = tiny()
    first = next(m.model.net.parameters())
    w0 = first.detach().clone()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    trainer.fit(m, _loader(2))
    assert m.skipped_steps == 0 and not torch.equal(w0, first.detach())


def test_bad_hparams_raise_naming_the_key():
    with pytest.raises(ValueError, match="model.target"):
        tiny(target="rgb")
    with pytest.raises(ValueError, match="model.phase"):
        tiny(phase="magic")


def test_bf16_autocast_training_step_on_cpu():
    m = tiny()
    batch = {"reverb": torch.randn(2, 4000) * 0.1, "clean": torch.randn(2, 4000) * 0.05}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, out = m._step(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert out["spec"].dtype == torch.complex64  # STFT stayed in float32


def test_enhance_accepts_inputs_shorter_than_one_frame():
    m = tiny().eval()
    x = torch.randn(1, 160) * 0.1  # 10 ms
    assert m.model.enhance(x, phase="reverberant").shape == (1, 160)


# ---------------------------------------------------------------------------- the network
def test_net_is_chosen_by_class_path_and_stored_plain():
    dilated = {"class_path": "dereverb.models.dilated_unet.DilatedUNet", "init_args": {"base_channels": 4, "depth": 2}}
    m = tiny(representation="colormap", representation_kwargs={"cmap": "turbo"}, target="same", net=dilated).eval()
    assert isinstance(m.model.net, DilatedUNet) and (m.model.net.in_channels, m.model.net.out_channels) == (3, 3)
    assert m.model.pooling_frames == 4  # the network's downsampling factor
    assert m.hparams.net == {
        "class_path": "dereverb.models.dilated_unet.DilatedUNet",
        "init_args": {"base_channels": 4, "depth": 2, "norm": "batch", "activation": "relu",
                      "input_expansion": None, "dilations": [1, 2, 4, 8]},
    }
    x = torch.randn(1, 4000) * 0.1
    assert m.model.enhance(x, phase="reverberant").shape == x.shape


def test_default_net_is_the_default_unet():
    m = DereverbModule(val_metric_batches=0)
    assert type(m.model.net) is UNet and (m.model.net.base_channels, m.model.net.depth) == (32, 4)
    assert m.hparams.net["class_path"] == "dereverb.models.unet.UNet"


def test_network_arguments_belong_in_net():
    """The U-Net's arguments are ``net.init_args``; flat keywords are unknown arguments."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'base_channels'"):
        DereverbModule(base_channels=4)


# ---------------------------------------------------------------------------- LR schedule
def _old_factor(step: int, warmup: int, total: int, name: str) -> float:
    """The hand-written LambdaLR factor this schedule replaced."""
    if step < warmup:
        return (step + 1) / warmup
    if name == "none":
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize(("name", "warmup"), [("cosine", 0), ("cosine", 1), ("cosine", 7), ("cosine", 60), ("none", 5)])
def test_lr_schedule_is_the_old_warmup_cosine_curve(name, warmup, monkeypatch):
    total, lr = 50, 3e-3
    m = tiny(lr=lr, scheduler=name, warmup_steps=warmup)
    monkeypatch.setattr(DereverbModule, "_total_steps", lambda self: total)
    conf = m.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    assert isinstance(sched, (torch.optim.lr_scheduler.SequentialLR, torch.optim.lr_scheduler.LinearLR))
    for step in range(total + 20):  # past the planned end too (a resumed longer run)
        assert abs(opt.param_groups[0]["lr"] - lr * _old_factor(step, warmup, total, name)) <= 1e-6 * lr, step
        opt.step()
        sched.step()


def test_lr_schedule_spot_values():
    """Linear during the warm-up, 0.05 + 0.95 * (1 + cos(pi * progress)) / 2 after it."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = lr_schedule(opt, "cosine", warmup=4, total=104)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=1e-6)
    for step, progress in ((4, 0.0), (29, 0.25), (54, 0.5), (104, 1.0), (109, 1.0)):
        assert lrs[step] == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)), abs=1e-6)


def test_plateau_and_none_schedules_are_kept():
    conf = tiny(scheduler="plateau").configure_optimizers()
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert conf["lr_scheduler"]["monitor"] == "val/loss"
    assert isinstance(tiny(scheduler="none").configure_optimizers(), torch.optim.AdamW)


def test_compressed_magnitude_term_adds_its_weighted_l1_and_backpropagates():
    from dereverb.training.module import compressed_l1

    batch = {"reverb": torch.randn(2, 4000) * 0.1, "clean": torch.randn(2, 4000) * 0.05}
    torch.manual_seed(0)
    plain = tiny()
    torch.manual_seed(0)
    weighted = tiny(compressed_weight=2.0)
    loss0, out = plain._step(batch)
    loss2, _ = weighted._step(batch)
    gain = out["ctx"]["level_gain"]  # the term compares level-normalised magnitudes, like the main loss
    term = compressed_l1(plain.model.decode(out["y"], out["ctx"]) * gain, out["clean_mag"] * gain)
    assert term > 0
    torch.testing.assert_close(loss2, loss0 + 2.0 * term, rtol=1e-5, atol=1e-6)
    loss2.backward()
    grads = [p.grad for p in weighted.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # |x|**0.3 of equal magnitudes: no loss; exact zeros keep a finite gradient
    mag = torch.zeros(1, 5, 3, requires_grad=True)
    compressed_l1(mag, torch.zeros(1, 5, 3)).backward()
    assert torch.isfinite(mag.grad).all()
    with pytest.raises(ValueError, match="model.compressed_weight"):
        tiny(compressed_weight=-1.0)


def test_compile_callback_compiles_the_network_in_place_keeping_state_dict_keys():
    from dereverb.training.callbacks import CompileNetwork

    m = tiny()
    keys = list(m.state_dict())
    CompileNetwork(enabled=False).setup(None, m, "fit")
    assert getattr(m.model.net, "_compiled_call_impl", None) is None
    CompileNetwork(enabled=True).setup(None, m, "fit")
    assert m.model.net._compiled_call_impl is not None
    assert list(m.state_dict()) == keys  # checkpoints load without torch.compile
