"""DereverbModule: shapes per representation/target, residual start, non-finite guard."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from dereverb.training.module import DereverbModule


def tiny(**kw):
    args = dict(base_channels=4, depth=2, griffin_lim_iters=2, val_metric_batches=0)
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
    assert m.net.in_channels == cin and m.net.out_channels == cout
    x = torch.randn(2, 4000) * 0.1
    y = m.enhance(x, phase="reverberant")
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_residual_model_starts_near_identity():
    """With the last layer zeroed, the residual model returns its input's magnitude."""
    m = tiny(representation="log_magnitude").eval()
    last = [mod for mod in m.net.modules() if isinstance(mod, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.randn(1, 8000) * 0.1
    y = m.enhance(x, phase="reverberant")
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
    first = next(m.net.parameters())
    first.register_hook(lambda g: g * float("inf"))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)
    w0 = first.detach().clone()
    trainer.fit(m, _loader(2))
    assert m.skipped_steps == 2 and torch.equal(w0, first.detach())


def test_finite_steps_update_weights():
    m = tiny()
    first = next(m.net.parameters())
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
    assert m.enhance(x, phase="reverberant").shape == (1, 160)
