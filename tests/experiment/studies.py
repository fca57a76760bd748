"""Study folders for the tests: a micro study config that trains in seconds, and study folders
built from constructed scores (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from dereverb.experiment.config import deep_merge
from dereverb.signals.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT.parent / "shared" / "data" / "rirs"


def eval_sets() -> list[str]:
    """The evaluation sets a micro study has here (measured only with the shared RIRs)."""
    return ["sim", "measured"] if MEASURED.is_dir() else ["sim"]


def micro_config(folder: Path, cache: Path, **train_over) -> Path:
    """A 2-arm x 2-seed study on synthetic speech, sized to train in seconds. One arm points at
    a representation config (as configs/study.yaml does), one is given inline."""
    cfg = {
        "default_profile": "micro",
        "reference": "log_magnitude@log_magnitude",
        "seeds": [0, 1],
        "arms": {
            "log_magnitude": {"config": str(ROOT / "configs" / "log_magnitude.yaml")},
            "rgb_turbo": {
                "representation": "colormap",
                "representation_kwargs": {"cmap": "turbo"},
                "targets": ["same"],
            },
        },
        "train": deep_merge(
            {
                "trainer": {
                    "max_epochs": -1,
                    "max_steps": 2,
                    "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "num_sanity_val_steps": 0,
                    "log_every_n_steps": 1,
                },
                "model": {
                    "net": {"init_args": {"base_channels": 4, "depth": 2}},
                    "griffin_lim_iters": 2,
                    "val_metric_batches": 1,
                    "n_media_examples": 1,
                    "lr": 0.003,
                },
                "data": {
                    "speech": "synthetic",
                    "synthetic_speakers": 30,
                    "segment_seconds": 0.5,
                    "batch_size": 2,
                    "train_items": 4,
                    "val_items": 2,
                    "rir_bank_sizes": [4, 2, 4],
                    "rir_cache_dir": str(cache),
                    "room": {"t60_range": [0.3, 0.8]},
                    "rir_max_order": 10,
                    "rir_calibrate": 0,
                },
            },
            train_over,
        ),
        "evaluation": {
            "sim_items": 4,
            "measured_rirs": str(MEASURED) if MEASURED.is_dir() else None,
            "measured_items": 2,
            "baselines": "reverberant",
            "n_boot": 200,
        },
        "profiles": {"micro": {"jobs": 1, "threads": 1}},
    }
    path = folder / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def fake_study(
    folder: Path,
    offsets: dict[str, float],
    seed_noise: float,
    n_items: int = 30,
    seeds: tuple[int, ...] = (0, 1, 2),
    missing_metric: dict[str, str] | None = None,
) -> Path:
    """A study folder whose condition c scores ``base_i + offsets[c] + seed_noise * z_seed`` per
    item; ``missing_metric`` ``{condition: metric}``: that condition never got that score."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.5, 2.5, n_items)
    missing_metric = missing_metric or {}
    arms: dict[str, dict] = {}
    for cond, off in offsets.items():
        arm, target = cond.split("@")
        arms.setdefault(arm, {"representation": "log_magnitude", "targets": []})["targets"].append(
            target
        )
        for k, s in enumerate(seeds):
            shift = off + seed_noise * (k - (len(seeds) - 1) / 2)
            rows = [
                {
                    "id": f"test-{i:05d}",
                    "band": "<=0.4" if i % 2 else "0.4-0.7",
                    "t60": 0.3 if i % 2 else 0.5,
                    **{
                        m: None
                        if missing_metric.get(cond) == m
                        else float(base[i] + shift) * (0.3 if m in ("stoi", "estoi") else 1.0)
                        for m in METRICS
                    },
                }
                for i in range(n_items)
            ]
            res = {
                "run_id": f"{arm}__{target}__seed{s}",
                "condition": cond,
                "arm": arm,
                "target": target,
                "seed": s,
                "rows": {"sim": rows},
                "train_seconds": 1.0,
                "eval_seconds": 1.0,
                "cpu_seconds": 2.0,
                "parameters": 10,
                "global_step": 5,
            }
            d = folder / "runs" / res["run_id"]
            d.mkdir(parents=True)
            (d / "result.json").write_text(json.dumps(res))
    (folder / "study.json").write_text(
        json.dumps(
            {
                "profile": "fake",
                "config_path": "fake.yaml",
                "seeds": list(seeds),
                "arms": arms,
                "reference": next(iter(offsets)),
                "train": {},
                "evaluation": {"n_boot": 500},
                "sessions": [],
            }
        )
    )
    return folder
