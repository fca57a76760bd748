"""How the strength knob mixes: PESQ-WB / STOI / SRMR against the strength S for each mixing domain.

    python benchmarks/strength.py [--ckpt pretrained] [--n-items 40] [--strengths 0,0.25,0.5,0.75,1]

Items: LibriSpeech test speakers x the measured rooms of ``../shared/data/rirs``, 4 s each (the
model card's measured set, its first ``--n-items``). For each item the model runs once; its
magnitude estimate ``|Y|`` is then mixed with the reverberant ``|X|`` in each domain and the phase
recovered as the model does (warm Griffin-Lim):

- ``log``: ``|X|**(1-S) * |Y|**S`` (the suppression in dB scaled by S);
- ``floor``: ``max(|Y|, (1-S) |X|)`` (the suppression limited to ``20 log10(1-S)`` dB);
- ``wave``: ``(1-S) x + S y``, the waveforms mixed after phase recovery.

S = 0 is the input itself (``dereverberate`` returns it unchanged). ``change`` is the log-spectral
distance of the output from the input as a share of the full model output's (how far along the
knob the sound has moved: an even knob reads 0.25 / 0.5 / 0.75); ``level`` the output's RMS re the
input's in dB. The shipped domain is :func:`dereverb.models.dereverber.apply_strength`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dereverb.evaluation.sources import measured_items
from dereverb.inference import load_model
from dereverb.models.dereverber import apply_strength
from dereverb.signals import dsp
from dereverb.signals.metrics import pesq_wb, srmr, stoi

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEECH = SHARED / "speech" / "librispeech-train-clean-100"
MEASURED = SHARED / "rirs"


def mix_log(est: torch.Tensor, rev: torch.Tensor, s: float) -> torch.Tensor:
    return rev.clamp_min(1e-12) ** (1 - s) * est.clamp_min(1e-12) ** s


def mix_floor(est: torch.Tensor, rev: torch.Tensor, s: float) -> torch.Tensor:
    return torch.maximum(est, (1 - s) * rev)


#: magnitude-domain candidates; ``wave`` mixes waveforms after phase recovery.
MAG_MIXERS = {"log": mix_log, "floor": mix_floor}


def log_spectral_distance(a: np.ndarray, b: np.ndarray, cfg: dsp.StftConfig) -> float:
    """RMS difference in dB of two waveforms' magnitudes ``(L,)``, over frames within 40 dB of b's loudest."""
    ma, mb = (dsp.magnitude(dsp.stft(torch.from_numpy(x)[None], cfg))[0] for x in (a, b))
    da, db = (20 * torch.log10(m.clamp_min(1e-6)) for m in (ma, mb))
    energy = 10 * torch.log10(mb.pow(2).mean(0).clamp_min(1e-12))
    keep = energy > energy.max() - 40
    return float((da - db)[:, keep].pow(2).mean().sqrt())


def outputs(model, reverb: np.ndarray, strengths: list[float]) -> dict[tuple[str, float], np.ndarray]:
    """``{(domain, S): waveform (L,)}`` for every domain and S, from one model run on ``reverb (L,)``."""
    x = torch.from_numpy(reverb)[None]
    with torch.no_grad():
        spec, mag = model.analyse(x)
        y, ctx = model(mag, spec=spec)
        est = model.decode(y, ctx)
        full = model.waveform(y, ctx, spec, x.shape[-1])[0].numpy()
        out = {}
        for s in strengths:
            for name, mix in MAG_MIXERS.items():
                if s == 0:
                    out[name, s] = reverb
                elif s == 1:
                    out[name, s] = full
                else:
                    m = mix(est, mag, s)
                    out[name, s] = dsp.reconstruct(
                        m, model.stft_cfg, x.shape[-1], phase=model.phase, reverb_spec=spec, n_iter=model.griffin_lim_iters
                    )[0].numpy()
            out["wave", s] = reverb if s == 0 else full if s == 1 else (1 - s) * reverb + s * full
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="pretrained")
    ap.add_argument("--n-items", type=int, default=40)
    ap.add_argument("--strengths", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    if not SPEECH.is_dir() or not MEASURED.is_dir():
        raise SystemExit(f"error: {SPEECH} or {MEASURED} is absent; the table is measured on them")
    strengths = [float(s) for s in args.strengths.split(",")]
    t0 = time.time()
    model = load_model(args.ckpt, "cpu")
    sr = model.sample_rate
    # the shipped knob is one of the candidates: check which, so the table names it
    probe = torch.rand(1, 4, 5), torch.rand(1, 4, 5)
    shipped = [n for n, f in MAG_MIXERS.items() if torch.allclose(f(*probe, 0.5), apply_strength(*probe, 0.5))]
    loaders, desc = measured_items(MEASURED, SPEECH, n_items=args.n_items, segment_seconds=4.0, speech_split="test")
    rows: dict[tuple[str, float], list[list[float]]] = {}
    for load in loaders:
        item = load()
        clean, reverb = item["clean"], item["reverb"]
        outs = outputs(model, reverb, strengths)
        full_lsd = log_spectral_distance(outs["log", 1.0], reverb, model.stft_cfg) if 1.0 in strengths else np.nan
        cache: dict[int, list[float]] = {}
        for key, wav in outs.items():
            if id(wav) not in cache:  # S = 0 and S = 1 are the same signal in every domain
                level = 20 * np.log10(np.sqrt(np.mean(wav**2)) / np.sqrt(np.mean(reverb**2)))
                change = log_spectral_distance(wav, reverb, model.stft_cfg) / full_lsd
                cache[id(wav)] = [pesq_wb(clean, wav, sr), stoi(clean, wav, sr), srmr(wav, sr), change, level]
            rows.setdefault(key, []).append(cache[id(wav)])
    elapsed = time.time() - t0
    print(f"{desc}\nmodel {args.ckpt}; machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU; "
          f"{elapsed:.0f} s\n")
    print("| domain | S | PESQ-WB | STOI | SRMR | change | level dB |\n|---|---:|---:|---:|---:|---:|---:|")
    for name in [*MAG_MIXERS, "wave"]:
        label = f"{name} (shipped)" if name in shipped else name
        for s in strengths:
            v = np.nanmean(np.array(rows[name, s]), axis=0)
            print(f"| {label} | {s:g} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.2f} | {v[3]:.2f} | {v[4]:+.2f} |")


if __name__ == "__main__":
    main()
