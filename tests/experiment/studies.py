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


def micro_config(folder: Path, cache: Path, large: bool = False, **train_over) -> Path:
    """A micro study on synthetic speech, sized to train in seconds: 2 arms x 2 seeds at the
    ``tiny`` capacity (4 runs), and with ``large`` also log_magnitude x 2 seeds at the ``large``
    capacity (6 runs); 3 training steps, evaluated after step 1 and step 3. One arm points at a
    representation config (as configs/study.yaml does), one is given inline."""
    cfg = {
        "default_profile": "micro",
        "reference": "log_magnitude@log_magnitude",
        "seeds": [0, 1],
        "capacities": {
            "tiny": {"base_channels": 4, "depth": 2},
            "large": {"base_channels": 6, "depth": 2},
        },
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
                    "max_steps": 3,
                    "enable_progress_bar": False,
                    "enable_model_summary": False,
                    "num_sanity_val_steps": 0,
                    "log_every_n_steps": 1,
                },
                "model": {
                    "net": {"init_args": {"norm": "batch"}},
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
            "at_steps": [1],
            "sim_items": 4,
            "measured_rirs": str(MEASURED) if MEASURED.is_dir() else None,
            "measured_items": 2,
            "baselines": "reverberant",
            "n_boot": 200,
        },
        "profiles": {
            "micro": {
                "jobs": 1,
                "threads": 1,
                "runs": [
                    {
                        "conditions": ["log_magnitude", "rgb_turbo@same"],
                        "capacities": ["tiny"],
                        "seeds": [0, 1],
                    },
                ]
                + (
                    [{"conditions": ["log_magnitude"], "capacities": ["large"], "seeds": [0, 1]}]
                    if large
                    else []
                ),
            }
        },
    }
    path = folder / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _arm_spec(arm: str) -> dict:
    """study.json's entry of an arm, its representation guessed from the name."""
    if arm.endswith("_jpeg"):
        rep = {"representation": "image_codec", "representation_kwargs": {"base": "colormap", "format": "jpeg"}}
    elif arm.startswith("rgb_") or arm == "gray_rgb":
        rep = {"representation": "colormap", "representation_kwargs": {"cmap": arm.removeprefix("rgb_")}}
    else:
        rep = {"representation": arm}
    return {**rep, "targets": []}


def fake_study(
    folder: Path,
    offsets: dict[str, float],
    seed_noise: float,
    n_items: int = 30,
    seeds: tuple[int, ...] = (0, 1, 2),
    missing_metric: dict[str, str] | None = None,
    item_noise: float = 0.0,
    noisy_seeds: dict[str, float] | None = None,
) -> Path:
    """A study folder of one capacity (``tiny``) and one step (5) whose condition c scores
    ``base_i + offsets[c] + seed_noise * z_seed + item_noise * e_i,seed`` per item on every
    metric (STOI and ESTOI scaled by 0.3); ``noisy_seeds`` ``{condition: sd}``: that condition's
    seeds scatter that much more; ``missing_metric`` ``{condition: metric}``: never scored."""
    rng = np.random.default_rng(0)
    base = rng.uniform(1.5, 2.5, n_items)
    missing_metric, noisy_seeds = missing_metric or {}, noisy_seeds or {}
    arms: dict[str, dict] = {}
    plan = []
    for cond, off in offsets.items():
        arm, target = cond.split("@")
        arms.setdefault(arm, _arm_spec(arm))["targets"].append(target)
        for k, s in enumerate(seeds):
            z = (k - (len(seeds) - 1) / 2) * seed_noise + (noisy_seeds.get(cond, 0.0) * (-1) ** k)
            noise = rng.normal(0.0, 1.0, n_items) * item_noise
            rows = [
                {"id": f"test-{i:05d}", "band": "<=0.4", "t60": 0.3,
                 **{m: None if missing_metric.get(cond) == m else float(base[i] + off + z + noise[i])
                    * (0.3 if m in ("stoi", "estoi") else 1.0) for m in METRICS}}
                for i in range(n_items)
            ]
            run_id = f"{arm}__{target}__tiny__seed{s}"
            res = {"run_id": run_id, "condition": cond, "arm": arm, "target": target, "seed": s,
                   "capacity": "tiny", "rows": {"sim": rows}, "steps": [{"step": 5, "rows": {"sim": rows}}],
                   "train_seconds": 1.0, "eval_seconds": 1.0, "cpu_seconds": 2.0, "parameters": 10,
                   "global_step": 5, "study_version": 3}
            plan.append({"run_id": run_id, "condition": cond, "capacity": "tiny", "seed": s})
            (folder / "runs" / run_id).mkdir(parents=True)
            (folder / "runs" / run_id / "result.json").write_text(json.dumps(res))
    meta = {"profile": "fake", "config_path": "fake.yaml", "arms": arms, "reference": next(iter(offsets)),
            "capacities": {"tiny": {"base_channels": 4, "depth": 2}}, "plan": plan,
            "train": {"data": {"batch_size": 2, "segment_seconds": 0.5}}, "sessions": []}
    (folder / "study.json").write_text(json.dumps(meta))
    return folder
