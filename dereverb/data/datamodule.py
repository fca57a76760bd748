"""The Lightning :class:`DereverbDataModule`: speech source + RIR banks -> train/val/test loaders
(pairs and their seeding: :mod:`dereverb.data.pairs`). Its ``state_dict``, in every checkpoint,
lets a resumed run continue an epoch from the batch where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from dereverb.data.pairs import EpochSampler, ReverbPairDataset, make_pairs_torch
from dereverb.data.rir_bank import SPLITS, RirBank, Split
from dereverb.data.rooms import RoomSampler
from dereverb.data.speech import SpeechCorpus, SpeechMix, SpeechSource, SyntheticSpeech


class DereverbDataModule(L.LightningDataModule):
    """Train/val/test pairs from a speech source and RIR banks, built from typed arguments.

    Args:
        speech: folder of WAV/FLAC (recursive, speaker-disjoint splits), a list of such folders
            (each split by its own speakers, crops drawn in proportion to duration), or
            ``"synthetic"`` for the built-in procedural speech generator (no download).
        rirs: ``"simulated"`` (pyroomacoustics banks, cached, disjoint per split) or a folder
            of measured RIRs (split by room across train/val/test, a first-level subfolder per
            room, or all used for every split with ``measured_rir_split="all"``).
        sample_rate: Hz; linked to the model's STFT sample rate by the training CLI.
        segment_seconds: crop length of every training/validation item.
        clean_target: ``dry`` (direct-path-aligned dry speech) or ``early`` (+ first 50 ms);
            named apart from the model's ``target`` (its output domain).
        train_items / val_items / test_items: items per epoch / fixed val and test set sizes.
        rir_bank_sizes: simulated RIRs per split (train, val, test).
        room: distribution of simulated rooms (T60 range, dimensions, distances).
        rir_max_order / rir_calibrate / rir_use_rays / rir_air_absorption: simulation settings
            (docs/rir.md: cost and T60 accuracy of each; the default is the cheapest accurate).
        rir_cache_dir: where simulated banks are cached (keyed by their configuration).
        gain_db_range: the random gain shared by reverb and clean (lowered to avoid clipping).
        synthetic_speakers: speakers of the synthetic generator (split by id ranges).
        min_duration: minimum utterance length (s) for a speech folder.
        seed: the data seed: crops, rooms, noise and gains (independent of the model's initialisation
            seed). The speaker and measured-RIR splits do not move with it, so no seed trains on
            the val or test speakers of another.
        reverb_on_device: workers only read and crop speech; the RIR banks live on the training
            device and :meth:`on_after_batch_transfer` convolves the batch there (batched FFT).
            Same pairs as the CPU path for the same seed, within float32 round-off.
        noise_prob / noise_snr_db_range / noise_exponent_range: the share of items with
            background noise, its SNR (dB re the reverberant speech) and spectral exponent
            (0 white, 1 pink, 2 brown); validation items are drawn the same way.
        drr_db_range: training items only: each item's RIR tail rescaled to a DRR (dB) drawn
            uniformly in this range (DRR augmentation, docs/data.md); None keeps the RIR's own.
        drr_min_t60: only RIRs of at least this T60 (s) get the DRR augmentation: shoeboxes tie
            a long T60 to a low DRR, short rooms' DRRs already span real ones (docs/data.md).

    Every segment is convolved with the speech before it (as long as the longest RIR), so it
    carries the reverberant tail of earlier speech like a real recording.
    """

    def __init__(
        self,
        speech: str | list[str] = "synthetic",
        rirs: str = "simulated",
        sample_rate: int = 16000,
        segment_seconds: float = 2.0,
        clean_target: Literal["dry", "early"] = "dry",
        batch_size: int = 8,
        num_workers: int = 0,
        train_items: int = 1000,
        val_items: int = 32,
        test_items: int = 64,
        rir_bank_sizes: tuple[int, int, int] = (400, 50, 100),
        room: RoomSampler | None = None,
        rir_max_order: int | None = 40,
        rir_calibrate: int = 2,
        rir_use_rays: bool = False,
        rir_air_absorption: bool = False,
        rir_cache_dir: str = "data/cache/rirs",
        measured_rir_channel: int = 0,
        measured_rir_split: Literal["disjoint", "all"] = "disjoint",
        gain_db_range: tuple[float, float] = (-6.0, 0.0),
        synthetic_speakers: int = 200,
        min_duration: float = 1.0,
        seed: int = 0,
        reverb_on_device: bool = False,
        noise_prob: float = 0.75,
        noise_snr_db_range: tuple[float, float] = (5.0, 40.0),
        noise_exponent_range: tuple[float, float] = (0.0, 2.0),
        drr_db_range: tuple[float, float] | None = None,
        drr_min_t60: float = 0.0,
    ) -> None:
        super().__init__()
        if clean_target not in ("dry", "early"):
            raise ValueError(f"data.clean_target must be 'dry' or 'early', got {clean_target!r}")
        if segment_seconds <= 0:
            raise ValueError(f"data.segment_seconds must be > 0, got {segment_seconds}")
        for folder in [speech] if isinstance(speech, str) else speech:
            if folder != "synthetic" and not Path(folder).is_dir():
                raise ValueError(f"data.speech: {folder!r} is not a folder; give a folder of WAV/FLAC files "
                                 "(or a list of them) or 'synthetic'")  # fmt: skip
        if rirs != "simulated" and not Path(rirs).is_dir():
            raise ValueError(f"data.rirs: {rirs!r} is not a folder; give a folder of measured RIRs or 'simulated'")
        self.save_hyperparameters(ignore=["room"])
        self.room = room or RoomSampler()
        self.speech, self.rirs = speech, rirs
        self.sample_rate, self.segment_seconds, self.clean_target = sample_rate, segment_seconds, clean_target
        self.batch_size, self.num_workers = batch_size, num_workers
        self.items = {"train": train_items, "val": val_items, "test": test_items}
        self.rir_bank_sizes = dict(zip(SPLITS, rir_bank_sizes, strict=True))
        self.sim_kwargs = dict(max_order=rir_max_order, calibrate=rir_calibrate, use_rays=rir_use_rays,
                               air_absorption=rir_air_absorption)  # fmt: skip
        self.rir_cache_dir = rir_cache_dir
        self.measured_rir_channel, self.measured_rir_split = measured_rir_channel, measured_rir_split
        self.gain_db_range = tuple(gain_db_range)
        self.synthetic_speakers, self.min_duration = synthetic_speakers, min_duration
        self.seed = seed
        self.reverb_on_device = reverb_on_device
        self.noise = dict(noise_prob=noise_prob, noise_snr_db_range=tuple(noise_snr_db_range),
                          noise_exponent_range=tuple(noise_exponent_range))  # fmt: skip
        self.drr = dict(drr_db_range=None if drr_db_range is None else tuple(drr_db_range), drr_min_t60=drr_min_t60)
        self.datasets: dict[str, ReverbPairDataset] = {}
        self._banks: dict[str, RirBank] = {}
        self._rir_table: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._speech_source: SpeechSource | None = None
        self._resume: dict[str, int] | None = None  # from load_state_dict, used by the next train loader

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    def speech_source(self) -> SpeechSource:
        if self._speech_source is None:
            if self.speech == "synthetic":
                self._speech_source = SyntheticSpeech(
                    sample_rate=self.sample_rate, n_speakers=self.synthetic_speakers, seed=self.seed
                )
            else:
                corpora = [
                    SpeechCorpus(f, sample_rate=self.sample_rate, min_duration=self.min_duration, seed=self.seed)
                    for f in ([self.speech] if isinstance(self.speech, str) else self.speech)
                ]
                self._speech_source = corpora[0] if len(corpora) == 1 else SpeechMix(corpora)
        return self._speech_source

    def rir_bank(self, split: Split) -> RirBank:
        if split in self._banks:
            return self._banks[split]
        if self.rirs == "simulated":
            bank = RirBank.simulate(
                self.rir_bank_sizes[split], self.room, seed=self.seed, split=split, sample_rate=self.sample_rate,
                cache_dir=self.rir_cache_dir, workers=os.cpu_count() or 1, **self.sim_kwargs,
            )
        else:
            bank = RirBank.from_folder(self.rirs, sample_rate=self.sample_rate, channel=self.measured_rir_channel)
            bank = bank if self.measured_rir_split == "all" else bank.split(split)
        return self._banks.setdefault(split, bank)

    def build_dataset(self, split: Split) -> ReverbPairDataset:
        return ReverbPairDataset(
            self.speech_source().split(split),
            self.rir_bank(split),
            num_items=self.items[split],
            segment_samples=self.segment_samples,
            sample_rate=self.sample_rate,
            target=self.clean_target,
            gain_db_range=self.gain_db_range,
            split=split,
            seed=self.seed,
            convolve=not self.reverb_on_device,
            rir_offset=self._rir_offsets()[split],
            preroll=self.preroll,
            **self.noise,
            **(self.drr if split == "train" else {}),
        )

    @property
    def preroll(self) -> int:
        """Samples of speech convolved before every segment: the longest RIR of all splits."""
        return max(len(r.rir) for s in SPLITS for r in self.rir_bank(s))

    def _rir_offsets(self) -> dict[str, int]:
        """Where each split's bank starts in the device-side table (train, val, test in order)."""
        if not self.reverb_on_device:
            return {"train": 0, "val": 0, "test": 0}
        sizes = [len(self.rir_bank(s)) for s in SPLITS]
        return {"train": 0, "val": sizes[0], "test": sizes[0] + sizes[1]}

    def rir_table(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """All splits' RIRs zero-padded into ``(n_rirs, L_max)`` on ``device``, and their
        direct-path indices ``(n_rirs,)``; built once per device."""
        if device not in self._rir_table:
            rirs = [r for s in SPLITS for r in self.rir_bank(s)]
            table = torch.zeros(len(rirs), max(r.rir.shape[-1] for r in rirs))
            for i, r in enumerate(rirs):
                table[i, : r.rir.shape[-1]] = torch.from_numpy(np.asarray(r.rir, dtype=np.float32))
            direct = torch.tensor([int(r.direct_index) for r in rirs])
            self._rir_table[device] = (table.to(device), direct.to(device))
        return self._rir_table[device]

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Device path: build ``reverb``/``clean`` from ``dry`` + ``rir_index`` on the device."""
        if "reverb" in batch or "dry" not in batch:
            return batch
        table, direct = self.rir_table(batch["dry"].device)
        idx = batch["rir_index"].long()
        batch["reverb"], batch["clean"] = make_pairs_torch(
            batch["dry"], table[idx], direct[idx], batch["gain_db"], self.sample_rate, self.clean_target,
            preroll=self.preroll, noise=batch["noise"], snr_db=batch["snr_db"], tail_gain=batch["tail_gain"],
        )
        batch["dry"] = batch["dry"][..., self.preroll :]
        return batch

    def prepare_data(self) -> None:
        # Simulate (or load) the banks once in the main process so workers only read the cache.
        if self.rirs == "simulated":
            for split in SPLITS:
                self.rir_bank(split)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            self._dataset(split)

    def _dataset(self, split: Split) -> ReverbPairDataset:
        if split not in self.datasets:
            self.datasets[split] = self.build_dataset(split)
        return self.datasets[split]

    def _loader(self, split: Split) -> DataLoader:
        ds = self._dataset(split)
        sampler = EpochSampler(len(ds), seed=self.seed, shuffle=True) if split == "train" else None
        if sampler is not None and self._resume is not None:
            self._apply_resume(sampler, self._resume)
            self._resume = None
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=sampler, shuffle=False, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(), drop_last=split == "train",
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    # ------------------------------------------------------------------ mid-epoch resume
    def state_dict(self) -> dict[str, int]:
        """Where training is in its data (plain ints, stored in every checkpoint): the epoch and
        how many of its batches have been trained (Lightning's own counter, which is what a
        resumed run continues from). Empty outside a fit."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return {
            "epoch": int(trainer.current_epoch),
            "batches_done": done,
            "epoch_finished": int(done >= trainer.num_training_batches),
            "batch_size": int(self.batch_size),
            "train_items": int(self.items["train"]),
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Arm the next training loader to continue the saved epoch where it stopped."""
        self._resume = dict(state_dict) if state_dict else None

    def _apply_resume(self, sampler: EpochSampler, state: dict[str, int]) -> None:
        """Start ``sampler`` where training continues: the next epoch if the saved one had
        finished; its start under DDP (a DistributedSampler needs all indices) or with another
        batch size or epoch length; else after the trained batches."""
        epoch = int(state["epoch"])
        if state.get("epoch_finished"):
            return sampler.resume(epoch + 1, 0)
        if self.trainer is not None and self.trainer.world_size > 1:
            return sampler.resume(epoch, 0)
        if (state.get("batch_size"), state.get("train_items")) != (self.batch_size, self.items["train"]):
            rank_zero_warn(
                "resuming with a different data.batch_size or data.train_items than the checkpoint's: "
                f"epoch {epoch} restarts from its first batch"
            )
            return sampler.resume(epoch, 0)
        sampler.resume(epoch, min(int(state["batches_done"]) * self.batch_size, sampler.n))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
