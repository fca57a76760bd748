"""Speech quality metrics and their registry: PESQ wide-band, STOI, ESTOI, SI-SDR, SRMR.

:data:`REGISTRY` is the one list of metrics: for each its name, function, table label, digits,
whether it needs the clean reference, and whether higher is better. Everything that lists
metrics (validation logging, evaluation scoring and tables, the study report) reads it; adding a
metric is one :class:`Metric` entry here.

A metric that cannot be computed for a signal (PESQ finds no utterance, a silent or
non-finite reference, too little active speech for STOI) is NaN, never an exception, so a
bad validation item cannot crash training; ``score_batch`` counts the PESQ NaNs so the
LightningModule can log ``val/pesq_failures``. Wrong *shapes* are programming errors and
raise ``ValueError``. All functions run on the CPU, sequentially.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

PESQ_SAMPLE_RATE = 16000

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(x: ArrayLike | Sequence[float]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _check_pair(ref: ArrayLike, est: ArrayLike, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 ``(L,)`` numpy arrays of equal length, or a ValueError naming the fix."""
    ref_np, est_np = _as_numpy(ref), _as_numpy(est)
    if ref_np.ndim != 1 or est_np.ndim != 1:
        raise ValueError(
            f"{fn}: ref and est must be 1-D waveforms (L,), got shapes {ref_np.shape} and "
            f"{est_np.shape}; use score_batch for (B, L)"
        )
    if ref_np.shape != est_np.shape:
        raise ValueError(
            f"{fn}: ref and est must have the same length, got {ref_np.shape[0]} and "
            f"{est_np.shape[0]}; trim or pad the estimate to the reference length"
        )
    if ref_np.shape[0] == 0:
        raise ValueError(f"{fn}: ref and est are empty")
    return ref_np, est_np


def _check_sample_rate(sample_rate: int, fn: str) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise ValueError(f"{fn}: sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    return int(sample_rate)


def _undefined(ref: np.ndarray, est: np.ndarray) -> bool:
    """True when no metric is meaningful: non-finite samples or an all-zero reference."""
    return not (np.isfinite(ref).all() and np.isfinite(est).all()) or not np.any(ref)


def _resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    import torchaudio.functional as AF  # local: torchaudio import is slow and only PESQ needs it

    return AF.resample(torch.from_numpy(x), orig_sr, new_sr).numpy()


def pesq_wb(ref: ArrayLike, est: ArrayLike, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, about 1.04..4.64) of ``est`` against ``ref``.

    Args:
        ref: clean reference waveform ``(L,)``.
        est: estimate ``(L,)``, same length.
        sample_rate: of both signals; anything but 16 kHz is resampled to 16 kHz first.

    Returns NaN when PESQ cannot score the pair (no utterance detected, too short, silent or
    non-finite input). Raises ValueError for mismatched shapes or a bad sample rate.
    """
    import pesq as pesq_lib

    ref_np, est_np = _check_pair(ref, est, "pesq_wb")
    sample_rate = _check_sample_rate(sample_rate, "pesq_wb")
    if _undefined(ref_np, est_np):
        return math.nan
    if sample_rate != PESQ_SAMPLE_RATE:
        ref_np = _resample(ref_np, sample_rate, PESQ_SAMPLE_RATE)
        est_np = _resample(est_np, sample_rate, PESQ_SAMPLE_RATE)
    try:
        return float(pesq_lib.pesq(PESQ_SAMPLE_RATE, ref_np, est_np, "wb"))
    except pesq_lib.PesqError:  # NoUtterancesError, BufferTooShortError, ...
        return math.nan


def stoi(ref: ArrayLike, est: ArrayLike, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI if ``extended``) of ``est`` against ``ref``, ``(L,)`` each, via pystoi.

    pystoi resamples to 10 kHz itself. Returns NaN when the reference is silent / non-finite
    or has too little active speech (pystoi would return a misleading 1e-5 there).
    """
    from pystoi import stoi as pystoi_stoi

    fn = "estoi" if extended else "stoi"
    ref_np, est_np = _check_pair(ref, est, fn)
    sample_rate = _check_sample_rate(sample_rate, fn)
    if _undefined(ref_np, est_np):
        return math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(ref_np, est_np, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return value


def si_sdr(ref: ArrayLike, est: ArrayLike) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019, no mean removal), ``(L,)`` each.

    Uses torchmetrics in float64. NaN for a silent or non-finite reference.
    """
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    ref_np, est_np = _check_pair(ref, est, "si_sdr")
    if _undefined(ref_np, est_np):
        return math.nan
    return float(scale_invariant_signal_distortion_ratio(torch.from_numpy(est_np), torch.from_numpy(ref_np),
                                                         zero_mean=False))


def srmr(est: ArrayLike, sample_rate: int, fast: bool = False) -> float:
    """SRMR (speech-to-reverberation modulation energy ratio, Falk et al. 2010) of ``est (L,)``.

    Non-intrusive (no reference); higher = less reverberant. Via torchmetrics; ``fast`` uses the
    FFT gammatone approximation (about 10x faster, values on a different scale: never compare
    the two). NaN if the signal is silent, non-finite or shorter than a quarter second.
    """
    from torchmetrics.functional.audio.srmr import speech_reverberation_modulation_energy_ratio

    x = _as_numpy(est)
    if x.ndim != 1 or x.size < sample_rate // 4 or not np.isfinite(x).all() or not np.any(x):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the fast mode's accuracy
        try:
            v = speech_reverberation_modulation_energy_ratio(torch.from_numpy(x), int(sample_rate), fast=fast)
        except (RuntimeError, ValueError):
            return math.nan
    v = float(v.reshape(-1)[0])
    return v if math.isfinite(v) else math.nan


@dataclass(frozen=True)
class Metric:
    """One metric of the registry.

    ``fn`` is ``fn(ref (L,), est (L,), sample_rate) -> float`` when ``needs_reference``, else
    ``fn(est (L,), sample_rate) -> float``. ``label`` heads table columns, ``digits`` is the
    number of decimals every table prints (means and differences alike).
    """

    name: str
    fn: Callable[..., float]
    label: str
    digits: int
    needs_reference: bool = True
    higher_is_better: bool = True


def _estoi(ref: ArrayLike, est: ArrayLike, sample_rate: int) -> float:
    return stoi(ref, est, sample_rate, extended=True)


def _si_sdr(ref: ArrayLike, est: ArrayLike, sample_rate: int) -> float:
    return si_sdr(ref, est)


#: name -> :class:`Metric`, in table order. Digits: the study report's (finer) set, so that
#: differences between close conditions stay visible; SRMR gets 3.
REGISTRY: Mapping[str, Metric] = MappingProxyType({m.name: m for m in (
    Metric("pesq", pesq_wb, "PESQ-WB", 3),
    Metric("stoi", stoi, "STOI", 4),
    Metric("estoi", _estoi, "ESTOI", 4),
    Metric("si_sdr", _si_sdr, "SI-SDR (dB)", 2),
    Metric("srmr", srmr, "SRMR", 3, needs_reference=False),
)})
#: Every metric name, in table order.
ALL_METRICS: tuple[str, ...] = tuple(REGISTRY)
#: The metrics scored against the clean reference (``score``, ``score_batch``, validation).
METRICS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.needs_reference)
#: Table labels and printed decimals by metric name (views of the registry).
LABELS: Mapping[str, str] = MappingProxyType({n: m.label for n, m in REGISTRY.items()})
DIGITS: Mapping[str, int] = MappingProxyType({n: m.digits for n, m in REGISTRY.items()})


def _check_metrics(metrics: Iterable[str], fn: str) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"{fn}: metrics must be a non-empty subset of {METRICS}, got {metrics}")
    return metrics


def _score_one(ref: np.ndarray, est: np.ndarray, sample_rate: int, metrics: tuple[str, ...]) -> dict[str, float]:
    return {m: REGISTRY[m].fn(ref, est, sample_rate) for m in metrics}


def score(ref: ArrayLike, est: ArrayLike, sample_rate: int, metrics: Iterable[str] = METRICS) -> dict[str, float]:
    """All requested metrics for one pair ``ref (L,)``, ``est (L,)`` -> ``{name: float}``."""
    metrics = _check_metrics(metrics, "score")
    ref_np, est_np = _check_pair(ref, est, "score")
    sample_rate = _check_sample_rate(sample_rate, "score")
    return _score_one(ref_np, est_np, sample_rate, metrics)


def score_batch(ref: ArrayLike, est: ArrayLike, sample_rate: int,
                metrics: Iterable[str] = METRICS) -> dict[str, np.ndarray | int]:
    """Metrics for each row of ``ref (B, L)`` and ``est (B, L)`` (torch or numpy).

    Returns ``{name: np.ndarray (B,) float64}`` for each requested metric, plus
    ``"pesq_failed": int`` (how many PESQ values are NaN) when PESQ was requested.
    """
    metrics = _check_metrics(metrics, "score_batch")
    sample_rate = _check_sample_rate(sample_rate, "score_batch")
    ref_np, est_np = _as_numpy(ref), _as_numpy(est)
    if ref_np.ndim != 2 or ref_np.shape != est_np.shape:
        raise ValueError(f"score_batch: ref and est must both be (B, L) with the same shape, got "
                         f"{ref_np.shape} and {est_np.shape}")
    rows = [_score_one(r, e, sample_rate, metrics) for r, e in zip(ref_np, est_np, strict=True)]
    out: dict[str, np.ndarray | int] = {m: np.array([row[m] for row in rows], dtype=np.float64) for m in metrics}
    if "pesq" in metrics:
        out["pesq_failed"] = int(np.isnan(out["pesq"]).sum())  # type: ignore[arg-type]
    return out

