"""``DereverbModule``: the LightningModule that wraps STFT -> representation -> network -> loss.

The network is chosen by ``net: {class_path, init_args}`` (default the U-Net, see
:mod:`dereverb.models.net_spec`). Only the network runs under the trainer's precision
(``bf16-mixed`` / ``16-mixed``); STFT, representation encode/decode and phase recovery run in
float32 with autocast off.
Hyperparameters are plain values so checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from dereverb.models.dereverber import Dereverber, SpectralConfig, Target
from dereverb.models.net_spec import net_spec
from dereverb.signals import dsp, metrics

VAL_METRICS = metrics.METRICS  # the registry's reference-based metrics (pesq, stoi, estoi, si_sdr)


class DereverbModule(L.LightningModule):
    """Predict the clean magnitude of reverberant speech with a network on a spectrogram representation.

    Args:
        representation: input representation name (``magnitude``, ``log_magnitude``, ``grayscale``,
            ``colormap``, ``image_codec``, ``pcen``, ``stacked``), see :mod:`dereverb.representations`.
        representation_kwargs: its options, e.g. ``{cmap: turbo, levels: 256}``.
        target: ``same`` (predict the clean image in the input's own representation, decoded back
            to a magnitude) or ``log_magnitude`` (the output domain is fixed; isolates the input effect).
        net: the network, ``{class_path, init_args}`` (YAML ``model.net``); ``in_channels`` and
            ``out_channels`` come from the representation. Default: :class:`~dereverb.models.unet.UNet`
            with its defaults (base 32, depth 4). From the command line it arrives as jsonargparse's
            partial of the class; from Python pass the dict (or a class, or a ``functools.partial``
            of one). It is stored as the plain dict, every argument filled in.
        residual: the network predicts a correction to the input, expressed in the output domain
            (for ``target: log_magnitude``: log of the *decoded* input, so the skip carries only
            what the input representation kept). Starts training at "do nothing" instead of
            "output zeros", which makes short trainings useful.
        loss: ``l1`` or ``mse`` in the target domain.
        compressed_weight: weight of an extra L1 term between the decoded and the clean
            magnitude, both compressed as ``|X| ** 0.3`` (0: off). The log-domain loss weighs a
            quiet bin's error as much as a loud one's; the compressed term puts weight back on
            the loud, speech-carrying bins that PESQ and STOI listen to.
        lr / weight_decay / scheduler / warmup_steps: AdamW and its schedule.
        sample_rate / n_fft / hop_length: the STFT (linked to the DataModule's sample rate).
        phase / griffin_lim_iters: phase recovery for validation and prediction.
        input_level: scale every input to this speech level before the network and the output
            back (``Dereverber``): the model then ignores the recording's level (docs/data.md).
            ``None``: the raw level.
        filter_taps: 0 (default: the network predicts the clean log magnitude) or K: it predicts
            a K-frame complex filter over the reverberant spectrum instead (``Dereverber``).
        val_metric_batches: validation batches scored with the full inverse path each epoch.
        n_media_examples: validation examples whose spectrograms/audio go to TensorBoard.
    """

    def __init__(
        self,
        representation: str = SpectralConfig.representation,
        representation_kwargs: dict[str, Any] | None = None,
        target: Target = SpectralConfig.target,
        net: Callable[[int, int], nn.Module] | None = None,
        residual: bool = SpectralConfig.residual,
        loss: Literal["l1", "mse"] = "l1",
        compressed_weight: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine", "plateau"] = "cosine",
        warmup_steps: int = 0,
        sample_rate: int = SpectralConfig.sample_rate,
        n_fft: int = SpectralConfig.n_fft,
        hop_length: int = SpectralConfig.hop_length,
        phase: dsp.PhaseMethod = SpectralConfig.phase,
        griffin_lim_iters: int = SpectralConfig.griffin_lim_iters,
        input_level: float | None = SpectralConfig.input_level,
        filter_taps: int = SpectralConfig.filter_taps,
        val_metric_batches: int = 2,
        n_media_examples: int = 2,
    ) -> None:
        super().__init__()
        if loss not in ("l1", "mse"):
            raise ValueError(f"model.loss must be 'l1' or 'mse', got {loss!r}")
        if not compressed_weight >= 0:
            raise ValueError(f"model.compressed_weight must be >= 0, got {compressed_weight!r}")
        representation_kwargs = dict(representation_kwargs or {})
        net = net_spec(net)  # a plain, checked {class_path, init_args}
        # Explicit plain values (not LightningCLI's config dump with its jsonargparse
        # instantiator): the checkpoint rebuilds this module with a plain call.
        args = locals()
        self.save_hyperparameters({name: args[name] for name in _HPARAMS})
        # The whole spectral path (STFT, representation, network, decoding, phase) is a plain
        # nn.Module shared with inference, which loads it without Lightning.
        self.model = Dereverber.from_hparams(self.hparams)
        self._input_scores: dict[int, dict[str, np.ndarray]] = {}
        self._bad_loss = False  # this step's loss was NaN/Inf: skip its optimizer step
        self.skipped_steps = 0

    # ------------------------------------------------------------------ core path
    # The spectral path lives in ``self.model`` (:class:`Dereverber`: net, representations, STFT).
    def forward(self, mag: torch.Tensor, spec: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reverberant magnitude ``(B, F, N)`` (and complex spectrum ``(B, F+1, N)``, which a filter
        model needs) -> network output in the target domain ``(B, C_out, F, N)`` and the input's ctx."""
        return self.model(mag, spec=spec)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fn = F.l1_loss if self.hparams.loss == "l1" else F.mse_loss
        return fn(pred.float(), target.float())

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        spec, mag = self.model.analyse(batch["reverb"])
        _, clean_mag = self.model.analyse(batch["clean"])
        y, ctx = self(mag, spec)
        target = self.model.target_of(clean_mag, ctx)
        loss = self._loss(y, target)
        weight = float(self.hparams.get("compressed_weight", 0.0))
        if weight > 0:  # in the level-normalised domain, like the main term
            gain = ctx.get("level_gain", 1.0)
            loss = loss + weight * compressed_l1(self.model.decode(y, ctx) * gain, clean_mag * gain)
        return loss, {"spec": spec, "mag": mag, "clean_mag": clean_mag, "y": y, "ctx": ctx}

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # A non-finite input is caught before the forward pass, so it cannot poison the
        # normalisation layers' running statistics either.
        finite_input = bool(torch.isfinite(batch["reverb"]).all() and torch.isfinite(batch["clean"]).all())
        loss = self._step(batch)[0] if finite_input else None
        self._bad_loss = loss is None or not bool(torch.isfinite(loss))
        if self._bad_loss:
            # A loss that still backpropagates (zero gradients) keeps DDP ranks in step; the
            # optimizer step itself is skipped in on_before_optimizer_step.
            return sum(p.sum() for p in self.parameters()) * 0.0
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["reverb"].shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Guard against NaN/Inf: skip the update (weights and Adam moments untouched) when the
        loss or any gradient is non-finite, and count it in ``train/skipped_steps``."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        bad = self._bad_loss or any(not bool(torch.isfinite(g).all()) for g in grads)
        flag = torch.tensor(float(bad), device=self.device)
        if self.trainer.world_size > 1:  # every rank must take the same decision
            flag = self.trainer.strategy.reduce(flag, reduce_op="max")
        if flag.item() > 0:
            for p in self.parameters():
                p.grad = None  # AdamW skips parameters without gradients
            self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), reduce_fx="max")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, out = self._step(batch)
        bs = batch["reverb"].shape[0]
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=bs)
        if batch_idx >= self.hparams.val_metric_batches:
            return
        est = self._waveform(out, batch["reverb"].shape[-1])
        scores = self._score(batch["clean"], est)
        for name in VAL_METRICS:
            vals = scores[name]
            if np.isfinite(vals).any():
                self.log(f"val/{name}", float(np.nanmean(vals)), sync_dist=True, batch_size=bs)
        self.log("val/pesq_failures", float(scores.get("pesq_failed", 0)), reduce_fx="sum", sync_dist=True)
        # Scores of the unprocessed input on the same items: the line the model must beat.
        if batch_idx not in self._input_scores:
            self._input_scores[batch_idx] = self._score(batch["clean"], batch["reverb"])
        for name in VAL_METRICS:
            vals = self._input_scores[batch_idx][name]
            if np.isfinite(vals).any():
                self.log(f"val_input/{name}", float(np.nanmean(vals)), sync_dist=True, batch_size=bs)
        if batch_idx == 0:
            self._log_media(batch, out, est)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, out = self._step(batch)
        bs = batch["reverb"].shape[0]
        self.log("test/loss", loss, sync_dist=True, batch_size=bs)
        scores = self._score(batch["clean"], self._waveform(out, batch["reverb"].shape[-1]))
        for name in VAL_METRICS:
            if np.isfinite(scores[name]).any():
                self.log(f"test/{name}", float(np.nanmean(scores[name])), sync_dist=True, batch_size=bs)

    def _waveform(self, out: dict[str, Any], length: int) -> torch.Tensor:
        return self.model.waveform(out["y"], out["ctx"], out["spec"], length)

    def _score(self, ref: torch.Tensor, est: torch.Tensor) -> dict[str, np.ndarray]:
        return metrics.score_batch(
            ref.detach().float().cpu().numpy(), est.detach().float().cpu().numpy(),
            self.hparams.sample_rate, metrics=VAL_METRICS,
        )

    def configure_optimizers(self) -> Any:
        """AdamW; ``scheduler``: ``cosine`` (linear warm-up over ``warmup_steps``, then cosine to
        5% of ``lr`` at the last step and held there), ``none`` (the warm-up alone, if any) or
        ``plateau`` (halve on a ``val/loss`` plateau; no warm-up)."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched_name = self.hparams.scheduler
        warmup = max(int(self.hparams.warmup_steps), 0)
        if sched_name == "none" and warmup == 0:
            return opt
        if sched_name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val/loss"}}
        sched = lr_schedule(opt, sched_name, warmup, self._total_steps())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _total_steps(self) -> int:
        try:
            steps = int(self.trainer.estimated_stepping_batches)
        except Exception:  # no trainer attached (unit use): a long, flat-ish schedule
            steps = 100_000
        return steps if 0 < steps < 10**9 else 100_000

    # ------------------------------------------------------------------ TensorBoard media
    @rank_zero_only
    def _log_media(self, batch: dict[str, torch.Tensor], out: dict[str, Any], est: torch.Tensor) -> None:
        """One figure per example (``training/media.py``: spectrograms on one dB scale, T60 and
        PESQ-WB / STOI gains in the title) and the three waveforms as audio."""
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_figure"):
            return
        from dereverb.training.media import validation_figure

        n = min(self.hparams.n_media_examples, batch["reverb"].shape[0])
        step, sr = self.global_step, self.hparams.sample_rate
        with torch.no_grad():
            x_in, _ = self.model.input_repr.encode(out["mag"][:n].float())
            est_mag = self.model.decode(out["y"][:n], {k: _head(v, n) for k, v in out["ctx"].items()})
        gains = self._score(batch["clean"][:n], est[:n])
        before = self._input_scores.get(0) or self._score(batch["clean"][:n], batch["reverb"][:n])
        t60 = batch.get("t60", torch.full((n,), float("nan")))
        rgb = x_in.shape[1] == 3
        for i in range(n):
            fig = validation_figure(
                *(m[i].detach().float().cpu().numpy() for m in (out["mag"], est_mag, out["clean_mag"])),
                sample_rate=sr, hop_length=self.model.stft_cfg.hop_length, t60=float(t60[i]),
                pesq_gain=float(gains["pesq"][i] - before["pesq"][i]),
                stoi_gain=float(gains["stoi"][i] - before["stoi"][i]),
                net_input=x_in[i].detach().float().cpu().numpy() if rgb else None,
                input_label=f"network input ({self.hparams.representation})")
            exp.add_figure(f"val/spectrograms/{i}", fig, step)
            for name, wav in (("reverb", batch["reverb"][i]), ("output", est[i]), ("clean", batch["clean"][i])):
                w = wav.detach().float().cpu()
                w = w / max(float(w.abs().max()), 1e-6) * 0.9
                exp.add_audio(f"val/audio/{name}/{i}", w[None], step, sample_rate=sr)


def compressed_l1(est_mag: torch.Tensor, clean_mag: torch.Tensor, power: float = 0.3) -> torch.Tensor:
    """Mean ``| est**power - clean**power |`` of magnitudes ``(B, F, N)``, in float32.

    The small floor keeps the gradient of ``x**0.3`` finite at silent bins."""
    est = est_mag.float().clamp_min(1e-8) ** power
    ref = clean_mag.float().clamp_min(1e-8) ** power
    return F.l1_loss(est, ref)


def lr_schedule(
    opt: torch.optim.Optimizer, name: Literal["none", "cosine"], warmup: int, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step factor of ``lr``: ``(step + 1) / warmup`` during the warm-up, then for ``cosine``
    ``0.05 + 0.95 * (1 + cos(pi * progress)) / 2`` over the remaining ``total - warmup`` steps,
    held at 0.05 after them (a resumed run may train longer than it planned); 1 for ``none``."""
    sched = torch.optim.lr_scheduler
    phases: list[sched.LRScheduler] = []
    if warmup > 0:
        # (step + 1) / warmup: from 1 / warmup at step 0 to 1 at step warmup - 1.
        phases.append(sched.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1)))
    if name == "cosine":
        cosine_steps = max(total - warmup, 1)
        phases.append(sched.CosineAnnealingLR(opt, T_max=cosine_steps, eta_min=0.05 * opt.defaults["lr"]))
        phases.append(sched.ConstantLR(opt, factor=0.05, total_iters=2**62))
        milestones = [warmup, warmup + cosine_steps] if warmup > 0 else [cosine_steps]
    else:
        milestones = []
    if len(phases) == 1:
        return phases[0]
    return sched.SequentialLR(opt, phases, milestones=milestones)


def _head(v: Any, n: int) -> Any:
    return v[:n] if isinstance(v, torch.Tensor) and v.dim() > 0 else v


# The hyperparameters a checkpoint stores: the constructor's named arguments.
_HPARAMS = tuple(
    name
    for name, p in inspect.signature(DereverbModule.__init__).parameters.items()
    if name != "self" and p.kind is not p.VAR_KEYWORD
)
