"""The study's configuration: arms, capacities, profiles, the runs they make and their fingerprints.

A study YAML (``configs/study.yaml``) names its *arms* (input representations), the training
settings every arm shares (``train``: a LightningCLI config without the representation), the
evaluation settings, named network *capacities* and *profiles* laid over all of them. An arm
points at a representation config (only its ``model.representation`` and
``representation_kwargs`` are read) or gives the representation inline, and may add
``input_expansion`` and ``targets`` (output domains, default ``[log_magnitude]``).

A profile's ``runs`` are groups ``{conditions, capacities, seeds}``; a condition is an arm (all
its targets) or ``arm@target``. Without ``runs``: every arm and target x the seeds x every
capacity. ``evaluation.at_steps`` are the training steps whose weights are scored besides the
last one. A run's fingerprint hashes its resolved settings, so a finished run is reused exactly
when the same run is asked for again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.cli_errors import read_yaml_mapping

TARGETS: tuple[str, ...] = ("log_magnitude", "same")
EVAL_SETS: tuple[str, ...] = ("sim", "measured")
DEFAULT_NET = "dereverb.models.unet.UNet"
#: Bump when a result would change for the same settings. 3: the evaluation and training pairs
#: carry the reverberant tail of earlier speech (dry pre-roll); results of version 2 are read
#: by the report but not reused for new runs.
STUDY_VERSION = 3
_TOP_KEYS = {
    "description", "default_profile", "seeds", "reference", "arms", "train", "evaluation",
    "profiles", "jobs", "threads", "capacities", "analysis", "slurm",
}
_PROFILE_KEYS = {
    "seeds", "train", "evaluation", "jobs", "threads", "description", "capacities", "runs",
    "analysis", "slurm",
}
_ARM_KEYS = {"config", "representation", "representation_kwargs", "input_expansion", "targets"}
_ARM_CONFIG_MODEL_KEYS = {"representation", "representation_kwargs", "target"}


class StudyError(Exception):
    """Bad study input; the message names the file / argument and the fix."""


@dataclass(frozen=True)
class Arm:
    """One input representation (the network body is the same for every arm)."""

    name: str
    representation: str
    representation_kwargs: dict[str, Any] = field(default_factory=dict)
    input_expansion: int | None = None
    targets: tuple[str, ...] = ("log_magnitude",)
    config: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """One training run: an arm, its target domain, a seed and a capacity (network size)."""

    arm: Arm
    target: str
    seed: int
    capacity: str

    @property
    def condition(self) -> str:
        """``<arm>@<target>``: what is compared (seeds repeat a condition)."""
        return f"{self.arm.name}@{self.target}"

    @property
    def run_id(self) -> str:
        return f"{self.arm.name}__{self.target}__{self.capacity}__seed{self.seed}"


@dataclass(frozen=True)
class RunGroup:
    """Part of a profile's plan: ``conditions`` (``arm@target``) x ``capacities`` x ``seeds``."""

    conditions: tuple[str, ...]
    capacities: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass
class StudyConfig:
    """A study config with one profile applied (``train`` / ``evaluation`` merged)."""

    path: str
    profile: str
    arms: dict[str, Arm]
    reference: str
    train: dict[str, Any]
    evaluation: dict[str, Any]
    capacities: dict[str, dict[str, Any]]
    groups: list[RunGroup]
    jobs: int = 1
    threads: int = 1
    description: str = ""
    analysis: dict[str, Any] = field(default_factory=dict)
    #: ``submitit`` parameters of the SLURM executor (``--launcher slurm``).
    slurm: dict[str, Any] = field(default_factory=dict)

    def specs(self, arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              capacities: Sequence[str] | None = None) -> list[RunSpec]:
        """The runs of the plan, seed-major (every condition gets seed 0 before any gets seed 1,
        so a study cut short covers every condition), filtered by arm or ``arm@target``, seed
        and capacity; raises :class:`StudyError` for names the study does not have."""
        known = {c for g in self.groups for c in g.conditions}
        for a in arms or ():
            if a not in self.arms and a not in known:
                raise StudyError(f"--arms: {a!r} is not an arm or condition of profile {self.profile}; "
                                 f"choose from {', '.join(self.arms)}")
        bad = [c for c in capacities or () if c not in self.capacities]
        if bad:
            raise StudyError(f"--capacities: unknown capacit(ies) {', '.join(bad)}; "
                             f"choose from {', '.join(self.capacities)}")
        all_seeds = sorted({s for g in self.groups for s in g.seeds})
        out: dict[str, RunSpec] = {}
        for s in all_seeds if seeds is None else seeds:
            for g in self.groups:
                if s not in g.seeds and seeds is None:
                    continue
                for cap in g.capacities:
                    for cond in g.conditions:
                        arm, target = cond.split("@")
                        if (capacities and cap not in capacities) or (arms and arm not in arms and cond not in arms):
                            continue
                        spec = RunSpec(self.arms[arm], target, int(s), cap)
                        out.setdefault(spec.run_id, spec)
        return list(out.values())

    @property
    def max_steps(self) -> int:
        return int((self.train.get("trainer") or {}).get("max_steps", -1))

    @property
    def eval_steps(self) -> list[int]:
        """The steps whose weights are evaluated: ``evaluation.at_steps`` and the last step."""
        return sorted({*(int(s) for s in self.evaluation.get("at_steps") or ()), self.max_steps})

    @property
    def sample_rate(self) -> int:
        return int((self.train.get("data") or {}).get("sample_rate", 16000))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursively for mappings (lists and scalars replace)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def _name_ok(name: str) -> bool:
    return "__" not in name and name.replace("_", "").isalnum()


def _seeds(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw
    ) or len(set(raw)) != len(raw):
        raise StudyError(f"{where} must be a non-empty list of distinct integers >= 0, got {raw!r}")
    return tuple(int(s) for s in raw)


def _arm(name: str, raw: Any, study_path: Path) -> Arm:
    where = f"{study_path}: arm {name!r}"
    if not isinstance(raw, Mapping) or len({"config", "representation"} & set(raw)) != 1:
        raise StudyError(f"{where} needs either 'config' (a representation config such as "
                         "configs/rgb_turbo.yaml) or 'representation' (with optional representation_kwargs)")
    unknown = sorted(set(raw) - _ARM_KEYS)
    if unknown:
        raise StudyError(f"{where} has unknown key(s) {', '.join(unknown)}")
    if not _name_ok(name):
        raise StudyError(f"{where}: the name must be letters, digits and single underscores")
    targets = tuple(raw.get("targets") or ("log_magnitude",))
    if any(t not in TARGETS for t in targets) or len(set(targets)) != len(targets):
        raise StudyError(f"{where} targets must be distinct values from {', '.join(TARGETS)}, got {list(targets)}")
    base: Mapping[str, Any] = {}
    if "config" in raw:  # from the working directory, else next to the study config
        path = Path(str(raw["config"]))
        if not path.is_absolute() and not path.is_file() and (study_path.parent / path).is_file():
            path = study_path.parent / path
        model = read_yaml_mapping(
            path, option=f"{where} config", example="a representation config such as configs/rgb_turbo.yaml",
            expected="a training config with a model section", error=StudyError,
        ).get("model")
        if not isinstance(model, Mapping) or "representation" not in model:
            raise StudyError(f"{where} config {path}: no model.representation; point the arm at a "
                             "representation config such as configs/rgb_turbo.yaml")
        extra = sorted(set(model) - _ARM_CONFIG_MODEL_KEYS)
        if extra:
            raise StudyError(f"{where} config {path} sets model.{extra[0]}; every arm trains with the same "
                             "settings (set them under train in the study config)")
        base = model
    representation = str(raw.get("representation", base.get("representation")))
    kwargs = {**(base.get("representation_kwargs") or {}), **(raw.get("representation_kwargs") or {})}
    from dereverb import representations as reps

    try:  # fail now, not after an hour of other runs
        reps.build(representation, **kwargs)
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{where}: {exc}") from exc
    exp = raw.get("input_expansion")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int) or exp < 1):
        raise StudyError(f"{where} input_expansion must be a positive integer or null, got {exp!r}")
    return Arm(name, representation, kwargs, exp, targets, str(raw["config"]) if "config" in raw else None)


def _groups(raw: Any, arm_of: Callable[[str], Arm | None], capacities: Sequence[str], where: str) -> list[RunGroup]:
    """A profile's ``runs`` as :class:`RunGroup` s; ``arm_of(name)``: the parsed arm (None: no such arm)."""
    if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
        raise StudyError(f"{where} must be a list of groups {{conditions, capacities, seeds}}")
    groups = []
    for k, g in enumerate(raw):
        if not isinstance(g, Mapping) or not {"conditions", "seeds"} <= set(g) or set(g) - {"conditions", "capacities", "seeds"}:
            raise StudyError(f"{where}[{k}] needs conditions and seeds (capacities: optional), nothing else")
        conds: list[str] = []
        for c in g["conditions"]:
            arm, _, target = str(c).partition("@")
            if (parsed := arm_of(arm)) is None:
                raise StudyError(f"{where}[{k}]: {c!r} is not an arm of the study")
            targets = parsed.targets
            if target and target not in targets:
                raise StudyError(f"{where}[{k}] runs {c!r}, but arm {arm!r} has targets {list(targets)}")
            conds += [f"{arm}@{t}" for t in ([target] if target else targets)]
        caps = g.get("capacities") or list(capacities)
        bad = [c for c in caps if c not in capacities]
        if bad:
            raise StudyError(f"{where}[{k}]: unknown capacit(ies) {', '.join(map(str, bad))}; "
                             f"choose from {', '.join(capacities)}")
        groups.append(RunGroup(tuple(dict.fromkeys(conds)), tuple(caps), _seeds(g["seeds"], f"{where}[{k}] seeds")))
    return groups


def load_config(path: str | os.PathLike, profile: str | None = None) -> StudyConfig:
    """Read a study YAML and apply ``profile`` (default: its ``default_profile``); raises
    :class:`StudyError` naming the file, key and fix."""
    p = Path(path)
    raw = read_yaml_mapping(p, option="--config", example="a study config such as configs/study.yaml",
                            expected="a mapping with arms, train and profiles", error=StudyError)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise StudyError(f"--config {p}: unknown top-level key(s) {', '.join(unknown)}")
    profiles = raw.get("profiles") or {"default": {}}
    name = profile or raw.get("default_profile") or next(iter(profiles))
    if name not in profiles:
        raise StudyError(f"--profile {name!r}: not in {p}; choose from {', '.join(profiles) or '(none defined)'}")
    prof = profiles[name] or {}
    bad = sorted(set(prof) - _PROFILE_KEYS)
    if bad:
        raise StudyError(f"--config {p}: profile {name!r} has unknown key(s) {', '.join(bad)}")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, Mapping) or not arms_raw:
        raise StudyError(f"--config {p}: arms must be a non-empty mapping of arm name -> arm")
    capacities = deep_merge(raw.get("capacities") or {}, prof.get("capacities") or {})
    for cap, args in capacities.items():
        if not isinstance(args, Mapping) or not args or not _name_ok(str(cap)):
            raise StudyError(f"--config {p}: capacity {cap!r} needs a name of letters, digits and single "
                             "underscores and a mapping of U-Net arguments, e.g. {base_channels: 8, depth: 3}")
    if not capacities:
        raise StudyError(f"--config {p}: no capacities; name at least one, e.g. capacities: {{tiny: {{depth: 3}}}}")
    arms: dict[str, Arm] = {}  # only the arms the profile runs are read

    def arm_of(n: str) -> Arm | None:
        if n in arms_raw and n not in arms:
            arms[n] = _arm(n, arms_raw[n], p)
        return arms.get(n)

    runs = prof.get("runs")
    if runs is None:  # every arm and target x the seeds x every capacity
        runs = [{"conditions": list(arms_raw), "seeds": prof.get("seeds", raw.get("seeds", [0]))}]
    groups = _groups(runs, arm_of, list(capacities), f"--config {p}: profile {name!r} runs")
    reference = str(raw.get("reference", "log_magnitude@log_magnitude"))
    if reference.split("@")[0] not in arms_raw:
        raise StudyError(f"--config {p}: reference {reference!r} is not an arm@target of this study")
    cfg = StudyConfig(
        str(p), str(name), arms, reference,
        deep_merge(raw.get("train") or {}, prof.get("train") or {}),
        deep_merge(raw.get("evaluation") or {}, prof.get("evaluation") or {}),
        {str(k): dict(v) for k, v in capacities.items()}, groups,
        jobs=int(prof.get("jobs", raw.get("jobs", 1))),
        threads=int(prof.get("threads", raw.get("threads", 1))),
        description=" ".join(str(x) for x in (raw.get("description"), prof.get("description")) if x),
        analysis=deep_merge(raw.get("analysis") or {}, prof.get("analysis") or {}),
        slurm=deep_merge(raw.get("slurm") or {}, prof.get("slurm") or {}),
    )
    _check_steps(cfg)
    return cfg


def _check_steps(cfg: StudyConfig) -> None:
    """``evaluation.at_steps``: positive integers up to ``trainer.max_steps`` (which defaults
    to their maximum)."""
    at = cfg.evaluation.get("at_steps")
    if at is None:
        return
    if isinstance(at, str) or not isinstance(at, Sequence) or not at or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in at
    ):
        raise StudyError(f"{cfg.path}: evaluation.at_steps must be a list of positive step numbers, "
                         f"e.g. [60, 240, 960], got {at!r}")
    cfg.evaluation["at_steps"] = sorted(set(at))
    trainer = cfg.train.setdefault("trainer", {})
    if int(trainer.get("max_steps") or -1) < 1:
        trainer["max_steps"] = max(at)
    if max(at) > cfg.max_steps:
        raise StudyError(f"{cfg.path}: evaluation.at_steps {sorted(at)} go past trainer.max_steps "
                         f"{cfg.max_steps}; the last step is evaluated anyway")


def run_config(cfg: StudyConfig, spec: RunSpec, run_dir: Path | None) -> dict[str, Any]:
    """The LightningCLI config of one run: the shared ``train``, the arm's representation, target
    and ``input_expansion``, the capacity's U-Net arguments under ``model.net.init_args``. Without
    a ``run_dir`` the run's paths (root dir, logger) are left out."""
    c = copy.deepcopy(cfg.train)
    c["seed_everything"] = int(spec.seed)
    trainer = c.setdefault("trainer", {})
    if run_dir is not None:
        trainer["default_root_dir"] = str(run_dir)
        trainer["logger"] = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(run_dir), "name": "tb", "version": 0},
        }
    model = c.setdefault("model", {})
    net = {"class_path": DEFAULT_NET, **(model.get("net") or {})}
    net["init_args"] = {**(net.get("init_args") or {}), **cfg.capacities[spec.capacity]}
    if spec.arm.input_expansion is not None:
        net["init_args"]["input_expansion"] = spec.arm.input_expansion
    model.update(
        net=net,
        representation=spec.arm.representation,
        representation_kwargs=copy.deepcopy(spec.arm.representation_kwargs),
        target=spec.target,
    )
    return c


def run_fingerprint(cfg: StudyConfig, spec: RunSpec) -> str:
    """What makes a finished run reusable (a short sha256): its resolved config, the evaluation
    settings and the study version."""
    what = {"v": STUDY_VERSION, "run": run_config(cfg, spec, None), "evaluation": cfg.evaluation}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def items_fingerprint(items: Sequence[Mapping[str, Any]]) -> str:
    """Short sha256 of evaluation items (ids and audio): the same items, the same fingerprint."""
    h = hashlib.sha256()
    for it in items:
        h.update(str(it["id"]).encode())
        h.update(np.ascontiguousarray(it["reverb"], dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(it["clean"], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
