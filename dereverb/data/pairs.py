"""Reverberant/clean pairs: :func:`make_pair`, :class:`ReverbPairDataset`, :class:`EpochSampler`.

Workers crop speech and FFT-convolve it with a RIR (or leave that to :func:`make_pairs_torch` on
the training device). No global RNG is read: val/test item ``i`` comes from
``default_rng([seed, split, i])``; training item ``i`` of epoch ``e`` (the sampler hands out
``e * n + i``) from ``default_rng([seed, split, e, i])``, fresh every epoch and the same
whatever ``num_workers`` is. The Lightning DataModule is :mod:`dereverb.data.datamodule`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
import torchaudio.functional as AF
from scipy.signal import fftconvolve
from torch.utils.data import Dataset, Sampler

from dereverb.data.noise import coloured_noise, noise_scale
from dereverb.data.rir_bank import SPLITS, RirBank, Split
from dereverb.data.rooms import DIRECT_WINDOW_MS, scale_tail
from dereverb.data.speech import SpeechSource

EARLY_MS = 50.0  # the ``early`` target: the RIR up to this long after the direct path


@dataclass
class PairItem:
    """One example (numpy, CPU side). Waveforms are ``(L,)`` float32."""

    reverb: np.ndarray
    clean: np.ndarray
    dry: np.ndarray
    rir_index: int
    t60: float
    drr: float
    snr_db: float = float("inf")


class Draw(NamedTuple):
    """The random choices of one item: dry speech ``(preroll + L,)``, RIR index, gain (dB),
    unit-RMS noise ``(L,)`` and its SNR (dB, ``inf``: none), the RIR tail's gain and its DRR (dB)."""

    dry: np.ndarray
    rir: int
    gain_db: float
    noise: np.ndarray
    snr_db: float
    tail_gain: float
    drr_db: float


def make_pair(
    dry: np.ndarray, rir: np.ndarray, direct_index: int, sample_rate: int,
    target: Literal["dry", "early"] = "dry", gain_db: float = 0.0, peak_limit: float = 0.99,
    preroll: int = 0, noise: np.ndarray | None = None, snr_db: float = float("inf"),
) -> tuple[np.ndarray, np.ndarray]:
    """Reverberant and aligned clean segments ``(L,)`` from dry speech ``(preroll + L,)``.

    The ``preroll`` samples before the segment are convolved too, so their reverberant tail
    reaches into it as in a window of a recording. Targets: ``dry`` = the dry speech delayed to
    the direct path (RirBank RIRs carry it at the dry level), ``early`` = dry convolved with the
    RIR up to ``EARLY_MS`` after it. Unit-RMS ``noise (L,)`` is added ``snr_db`` below the
    reverberant power; one gain for both, lowered so neither exceeds ``peak_limit``.
    """
    length = dry.shape[-1] - preroll
    d = int(direct_index)
    reverb = fftconvolve(dry, rir)[preroll : preroll + length]
    if target == "dry":
        src = np.arange(length) + preroll - d
        clean = np.where(src >= 0, dry[np.clip(src, 0, None)], 0.0)
    elif target == "early":
        early = rir[: d + int(EARLY_MS * 1e-3 * sample_rate) + 1]
        clean = fftconvolve(dry, early)[preroll : preroll + length]
    else:
        raise ValueError(f"target must be 'dry' or 'early', got {target!r}")
    if noise is not None and np.isfinite(snr_db):
        reverb = reverb + noise * noise_scale(np.mean(reverb**2), snr_db)
    gain = 10.0 ** (gain_db / 20.0)
    peak = max(np.abs(reverb).max(), np.abs(clean).max()) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (reverb * gain).astype(np.float32), (clean * gain).astype(np.float32)


def make_pairs_torch(
    dry: torch.Tensor, rirs: torch.Tensor, direct_index: torch.Tensor, gain_db: torch.Tensor,
    sample_rate: int, target: Literal["dry", "early"] = "dry", peak_limit: float = 0.99,
    preroll: int = 0, noise: torch.Tensor | None = None, snr_db: torch.Tensor | None = None,
    tail_gain: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched, on-device twin of :func:`make_pair` (same result within float32 round-off).

    ``dry (B, preroll + L)``, ``rirs (B, Lr)`` zero-padded, ``direct_index (B,)`` long,
    ``gain_db (B,)``, ``noise (B, L)``, ``snr_db (B,)`` (``inf``: none), ``tail_gain (B,)`` (the
    RIRs' tails scaled as :func:`~dereverb.data.rooms.scale_tail` does) -> ``reverb (B, L)``,
    ``clean (B, L)``. FFT convolution with ``torchaudio.functional.fftconvolve``.
    """
    with torch.autocast(device_type=dry.device.type, enabled=False):
        dry, rirs = dry.float(), rirs.float()
        length = dry.shape[-1] - preroll
        d = direct_index.long().view(-1, 1)
        if tail_gain is not None:
            taps = torch.arange(rirs.shape[-1], device=dry.device).view(1, -1)
            tail = taps > d + int(round(DIRECT_WINDOW_MS * 1e-3 * sample_rate))
            rirs = torch.where(tail, rirs * tail_gain.float().view(-1, 1), rirs)
        reverb = AF.fftconvolve(dry, rirs)[..., preroll : preroll + length]
        if target == "dry":
            src = torch.arange(length, device=dry.device).view(1, -1) + preroll - d
            clean = torch.where(src >= 0, dry.gather(1, src.clamp_min(0)), torch.zeros_like(reverb))
        elif target == "early":
            taps = torch.arange(rirs.shape[-1], device=dry.device).view(1, -1)
            early = rirs * (taps <= d + int(EARLY_MS * 1e-3 * sample_rate)).float()
            clean = AF.fftconvolve(dry, early)[..., preroll : preroll + length]
        else:
            raise ValueError(f"target must be 'dry' or 'early', got {target!r}")
        if noise is not None and snr_db is not None:
            power = reverb.pow(2).mean(-1, keepdim=True)
            scale = power.sqrt() * 10.0 ** (-snr_db.float().view(-1, 1) / 20.0)  # 0 for inf
            reverb = reverb + noise.float() * scale
        gain = 10.0 ** (gain_db.float().view(-1, 1) / 20.0)
        peak = torch.maximum(reverb.abs().amax(-1, keepdim=True), clean.abs().amax(-1, keepdim=True)) * gain
        gain = torch.where(peak > peak_limit, gain * peak_limit / peak.clamp_min(1e-12), gain)
        return reverb * gain, clean * gain


class EpochSampler(Sampler[int]):
    """Yields ``epoch * n + i`` for a (shuffled) permutation of ``range(n)``.

    Lightning calls :meth:`set_epoch` before each epoch; without it every new iteration
    counts as the next epoch. :meth:`resume` makes the next iteration of an epoch start part
    way through its permutation (``len`` stays ``n``: the loader's length is the epoch's).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch = 0
        self._epoch_set = False
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._epoch_set = int(epoch), True

    def resume(self, epoch: int, start: int) -> None:
        """The next iteration of ``epoch`` yields its permutation from position ``start``."""
        if not 0 <= start <= self.n:
            raise ValueError(f"resume start must be in [0, {self.n}], got {start}")
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(start))

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        if not self._epoch_set:
            self.epoch += 1
        self._epoch_set = False
        start = 0
        if self._resume is not None:
            if self._resume[0] == epoch:
                start = self._resume[1]
            self._resume = None
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        yield from (epoch * self.n + int(i) for i in order[start:])


class ReverbPairDataset(Dataset):
    """Map-style dataset of reverberant/clean pairs, ``num_items`` per epoch.

    ``deterministic`` (default: val/test) makes item ``i`` a function of ``(seed, split, i)``;
    otherwise the index from :class:`EpochSampler` also encodes the epoch. Items are dicts of
    tensors ``reverb (L,)``, ``clean (L,)``, ``dry (L,)``, ``t60 ()``, ``drr ()``, ``snr_db ()``,
    ``rir_index ()``; with ``convolve=False`` (the device path) ``dry (preroll + L,)``,
    ``noise (L,)``, ``gain_db ()`` and ``tail_gain ()`` instead of ``reverb``/``clean``.
    ``preroll`` defaults to the bank's longest RIR; ``noise_prob`` of the items get coloured noise
    (exponent and SNR uniform in their ranges); with ``drr_db_range`` each item's RIR tail is
    rescaled (:func:`~dereverb.data.rooms.scale_tail`) to a DRR uniform in that range (dB), if
    the RIR's T60 is at least ``drr_min_t60`` (s).
    """

    def __init__(
        self, speech: SpeechSource, rirs: RirBank, num_items: int, segment_samples: int,
        sample_rate: int = 16000, target: Literal["dry", "early"] = "dry",
        gain_db_range: tuple[float, float] = (-6.0, 0.0), split: Split = "train", seed: int = 0,
        deterministic: bool | None = None, convolve: bool = True, rir_offset: int = 0,
        preroll: int | None = None, noise_prob: float = 0.0,
        noise_snr_db_range: tuple[float, float] = (5.0, 40.0),
        noise_exponent_range: tuple[float, float] = (0.0, 2.0),
        drr_db_range: tuple[float, float] | None = None,
        drr_min_t60: float = 0.0,
    ) -> None:
        if len(rirs) == 0:
            raise ValueError(f"the {split} RIR bank is empty")
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if not 0.0 <= noise_prob <= 1.0:
            raise ValueError(f"data.noise_prob must be in [0, 1], got {noise_prob}")
        self.speech, self.rirs = speech, rirs
        self.num_items, self.segment_samples = num_items, segment_samples
        self.sample_rate, self.target = sample_rate, target
        self.gain_db_range = gain_db_range
        self.split, self.seed = split, seed
        self.deterministic = split != "train" if deterministic is None else deterministic
        self.convolve = convolve
        self.rir_offset = rir_offset  # index of this bank's first RIR in the device-side table
        self.preroll = max(len(r.rir) for r in rirs) if preroll is None else int(preroll)
        self.noise_prob = noise_prob
        self.noise_snr_db_range, self.noise_exponent_range = noise_snr_db_range, noise_exponent_range
        self.drr_db_range, self.drr_min_t60 = drr_db_range, drr_min_t60

    def __len__(self) -> int:
        return self.num_items

    def draw(self, index: int) -> Draw:
        """The random choices of item ``index`` (the same in the workers' and the device path)."""
        L = self.segment_samples
        if self.deterministic:
            i = index % self.num_items
            rng = np.random.default_rng([self.seed, SPLITS.index(self.split), i])
            dry = self.speech.item(i, L, self.preroll)
        else:
            epoch, i = divmod(index, self.num_items)
            rng = np.random.default_rng([self.seed, SPLITS.index(self.split), epoch, i])
            dry = self.speech.sample(rng, L, self.preroll)
        r = int(rng.integers(len(self.rirs)))
        gain_db = float(rng.uniform(*self.gain_db_range))
        snr_db, noise = float("inf"), np.zeros(L, dtype=np.float32)
        if rng.uniform() < self.noise_prob:
            snr_db = float(rng.uniform(*self.noise_snr_db_range))
            noise = coloured_noise(rng, L, float(rng.uniform(*self.noise_exponent_range)))
        tail_gain, drr_db = 1.0, float(self.rirs[r].drr)
        tied = self.drr_min_t60 <= 0.0 or self.rirs[r].t60 >= self.drr_min_t60  # no cut: every RIR, NaN T60 too
        if self.drr_db_range is not None and np.isfinite(drr_db) and tied:  # drawn last: items without it stay the same
            target = float(rng.uniform(*self.drr_db_range))
            tail_gain, drr_db = 10.0 ** ((drr_db - target) / 20.0), target
        return Draw(dry.astype(np.float32), r, gain_db, noise, snr_db, tail_gain, drr_db)

    def item(self, index: int) -> PairItem:
        d = self.draw(index)
        rir = self.rirs[d.rir]
        taps = rir.rir if d.tail_gain == 1.0 else scale_tail(rir.rir, self.sample_rate, rir.direct_index, d.tail_gain)
        reverb, clean = make_pair(
            d.dry, taps, rir.direct_index, self.sample_rate, self.target, d.gain_db,
            preroll=self.preroll, noise=d.noise, snr_db=d.snr_db,
        )
        return PairItem(reverb, clean, d.dry[self.preroll :], d.rir, float(rir.t60), d.drr_db, d.snr_db)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.convolve:
            it = self.item(int(index))
            out = dict(reverb=it.reverb, clean=it.clean, dry=it.dry, rir_index=it.rir_index,
                       snr_db=it.snr_db, t60=it.t60, drr=it.drr)  # fmt: skip
        else:
            d = self.draw(int(index))
            out = dict(dry=d.dry, noise=d.noise, rir_index=self.rir_offset + d.rir, snr_db=d.snr_db,
                       gain_db=d.gain_db, tail_gain=d.tail_gain, t60=self.rirs[d.rir].t60, drr=d.drr_db)  # fmt: skip
        return {k: torch.from_numpy(v) if isinstance(v, np.ndarray)
                else torch.tensor(v, dtype=torch.int64 if k == "rir_index" else torch.float32)
                for k, v in out.items()}  # fmt: skip
