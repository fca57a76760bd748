"""The study's configuration: arms, profiles, the runs they make, and their fingerprints.

A study YAML (``configs/study.yaml``) names its *arms* (input representations) and the training
settings every arm shares (``train``: a LightningCLI config without the representation), the
evaluation settings and *profiles* (``quick``, ``full``) laid over both. An arm points at a
representation config and adds only what differs::

    arms:
      rgb_turbo: {config: configs/rgb_turbo.yaml, targets: [log_magnitude, same]}
      grayscale_learned_expansion: {config: configs/grayscale.yaml, input_expansion: 3}
      rgb_turbo_resized:                      # or inline, without a config file
        representation: image_codec
        representation_kwargs: {base: colormap, cmap: turbo, resize: [128, 128]}

From an arm's config only the ``model`` section is read (its trainer / data sections are not:
every arm shares ``train``); its ``target`` is not used either: ``targets`` (default
``[log_magnitude]``) lists the output domains trained for the arm. A relative ``config`` path is
looked up from the working directory, then next to the study YAML. The run's model section is
the arm config's model, the study's ``train.model`` over it, then the arm's representation,
target and ``input_expansion``; :func:`load_config` refuses arms whose configs would change
anything but the representation (every arm trains the same network the same way).

A run's *fingerprint* (:func:`run_fingerprint`) hashes its resolved settings, so a finished run
is reused exactly when the same run is asked for again, however the YAML spells it (an arm
inline or by config file, the U-Net's arguments flat or under ``model.net``).

Three more axes (study version 2):

- ``capacities``: named network sizes, each a set of U-Net arguments laid over
  ``train.model.net.init_args`` (``{tiny: {base_channels: 8, depth: 3}, large: {...}}``; a
  profile may override them). A run then has a capacity; its id
  (``<arm>__<target>__<capacity>__seed<k>``) and fingerprint name it. A study without
  ``capacities`` has runs without one (``<arm>__<target>__seed<k>``, as in version 1). List
  them smallest first: the report's capacity changes go from the first to the last.
- a profile's ``runs``: which conditions run at which capacities with which seeds, as groups::

      runs:
        - {conditions: [log_magnitude, rgb_turbo@log_magnitude], capacities: [tiny, large], seeds: [0, 1, 2, 3, 4]}
        - {conditions: [magnitude, rgb_jet], seeds: [0, 1, 2]}      # capacities: all of them

  A condition is an arm (all its ``targets``) or ``arm@target``. Without ``runs``: every arm and
  target, the profile's seeds, every capacity. Only the arms a profile runs are read (and
  checked), so a profile does not depend on representations it does not use.
- ``evaluation.at_steps``: the training steps whose weights are evaluated (a checkpoint is saved
  at each), besides the last step (``trainer.max_steps``, set to ``max(at_steps)`` when absent):
  one run gives the metric-vs-training-length curve.

``analysis`` (equivalence ``margins`` per metric, ``alpha``) only changes the report, so it is not
part of any fingerprint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dereverb.cli_errors import read_yaml_mapping
from dereverb.models.net_spec import DEFAULT_NET, upgrade_hparams

TARGETS: tuple[str, ...] = ("log_magnitude", "same")
PROFILES: tuple[str, ...] = ("smoke", "quick", "core", "full")
EVAL_SETS: tuple[str, ...] = ("sim", "measured")
#: Bump when a result would change for the same settings (training or evaluation code changes).
#: 2: results hold the scores at every ``evaluation.at_steps`` step (``steps``) and the run's
#: capacity; the network's parameter count is read from today's checkpoint layout.
STUDY_VERSION = 2
#: The model keys that make an arm: the rest of ``model`` is shared by every arm.
ARM_MODEL_KEYS: tuple[str, ...] = ("representation", "representation_kwargs", "target")
_ARM_KEYS = ("config", "representation", "representation_kwargs", "input_expansion", "targets")
_TOP_KEYS = (
    "description", "default_profile", "seeds", "reference", "arms", "train", "evaluation",
    "profiles", "jobs", "threads", "capacities", "analysis",
)
_PROFILE_KEYS = (
    "seeds", "train", "evaluation", "jobs", "threads", "description", "capacities", "runs",
    "analysis",
)
_GROUP_KEYS = ("conditions", "capacities", "seeds")
#: Equivalence margins (``analysis.margins``) when the study config gives none.
DEFAULT_MARGINS: dict[str, float] = {"pesq": 0.05, "stoi": 0.01, "estoi": 0.02, "si_sdr": 0.5}


class StudyError(Exception):
    """Bad study input; the message names the file / argument and the fix."""


# ============================================================================ arms and runs
@dataclass(frozen=True)
class Arm:
    """One input representation of the study (the network body is the same for every arm).

    ``config``: the representation config it was read from (None when given inline);
    ``model``: the rest of that config's ``model`` section (usually empty), the base the
    study's shared ``train.model`` is laid over."""

    name: str
    representation: str
    representation_kwargs: dict[str, Any] = field(default_factory=dict)
    input_expansion: int | None = None
    targets: tuple[str, ...] = ("log_magnitude",)
    config: str | None = None
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """One training run: an arm, its target domain, a seed and (when the study defines
    capacities) the network capacity."""

    arm: Arm
    target: str
    seed: int
    capacity: str | None = None

    @property
    def condition(self) -> str:
        """``<arm>@<target>``: what is compared (seeds are repeats of a condition; capacities
        are compared separately)."""
        return f"{self.arm.name}@{self.target}"

    @property
    def run_id(self) -> str:
        cap = f"__{self.capacity}" if self.capacity else ""
        return f"{self.arm.name}__{self.target}{cap}__seed{self.seed}"


@dataclass(frozen=True)
class RunGroup:
    """Part of a profile's plan: ``conditions`` (``arm@target``) x ``capacities`` x ``seeds``."""

    conditions: tuple[str, ...]
    capacities: tuple[str | None, ...]
    seeds: tuple[int, ...]


@dataclass
class StudyConfig:
    """A study config with one profile applied (``train`` / ``evaluation`` merged)."""

    path: str
    profile: str
    arms: dict[str, Arm]
    seeds: list[int]
    reference: str
    train: dict[str, Any]
    evaluation: dict[str, Any]
    jobs: int = 1
    threads: int = 1
    description: str = ""
    #: Named network sizes: U-Net arguments laid over ``train.model.net.init_args``.
    capacities: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The profile's plan; empty: every arm and target x ``seeds`` x every capacity.
    groups: list[RunGroup] = field(default_factory=list)
    #: Report settings (``margins``, ``alpha``): not part of any fingerprint.
    analysis: dict[str, Any] = field(default_factory=dict)

    def plan_groups(self) -> list[RunGroup]:
        """The profile's groups, or the one implicit group (everything)."""
        if self.groups:
            return list(self.groups)
        conds = tuple(f"{a.name}@{t}" for a in self.arms.values() for t in a.targets)
        return [RunGroup(conds, tuple(self.capacities) or (None,), tuple(self.seeds))]

    def specs(
        self,
        arms: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        capacities: Sequence[str] | None = None,
    ) -> list[RunSpec]:
        """The profile's runs in seed-major order (seed; then group, capacity, arm, target),
        filtered by ``arms`` (arm names or ``arm@target`` conditions), ``seeds`` and
        ``capacities``. ``seeds`` replaces every group's seeds."""
        wanted = list(arms) if arms else None
        if wanted:
            known = set(self.arms) | {
                f"{a.name}@{t}" for a in self.arms.values() for t in a.targets
            }
            bad = [w for w in wanted if w not in known]
            if bad:
                raise StudyError(
                    f"--arms: unknown arm(s) {', '.join(bad)}; choose from {', '.join(self.arms)} "
                    "(or arm@target, e.g. rgb_turbo@same)"
                )
        if capacities:
            bad = [c for c in capacities if c not in self.capacities]
            if bad:
                raise StudyError(
                    f"--capacities: unknown capacit(ies) {', '.join(bad)}; choose from "
                    f"{', '.join(self.capacities) or '(none defined in the study config)'}"
                )
        groups = self.plan_groups()
        all_seeds = sorted({s for g in groups for s in g.seeds}) if seeds is None else list(seeds)
        out: list[RunSpec] = []
        seen: set[str] = set()
        # Seed-major: every condition gets seed 0 before any gets seed 1, so a study cut short
        # still covers all conditions.
        for s in all_seeds:
            for g in groups:
                if seeds is None and s not in g.seeds:
                    continue
                for cap in g.capacities:
                    if capacities and cap not in capacities:
                        continue
                    for cond in g.conditions:
                        arm_name, target = cond.split("@")
                        if wanted and arm_name not in wanted and cond not in wanted:
                            continue
                        spec = RunSpec(self.arms[arm_name], target, int(s), cap)
                        if spec.run_id not in seen:
                            seen.add(spec.run_id)
                            out.append(spec)
        return out

    @property
    def max_steps(self) -> int:
        """``train.trainer.max_steps`` (the last training step)."""
        return int((self.train.get("trainer") or {}).get("max_steps", -1))

    @property
    def eval_steps(self) -> list[int]:
        """The steps whose weights are evaluated: ``evaluation.at_steps`` and the last step."""
        return sorted({*(int(s) for s in self.evaluation.get("at_steps") or ()), self.max_steps})

    @property
    def margins(self) -> dict[str, float]:
        """Equivalence margins per metric (``analysis.margins`` over :data:`DEFAULT_MARGINS`)."""
        return {**DEFAULT_MARGINS, **{k: float(v) for k, v in (self.analysis.get("margins") or {}).items()}}

    @property
    def sample_rate(self) -> int:
        return int(self.train.get("data", {}).get("sample_rate", 16000))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, recursively for mappings (lists and scalars replace)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ============================================================================ reading the YAML
def _find_config(text: str, study_path: Path) -> Path:
    p = Path(text)
    if p.is_absolute() or p.is_file():
        return p
    beside = study_path.parent / p
    return beside if beside.is_file() else p


def _arm_config_model(name: str, text: str, study_path: Path) -> tuple[str, dict[str, Any]]:
    """The ``model`` section of an arm's representation config: ``(path, model)``."""
    path = _find_config(text, study_path)
    raw = read_yaml_mapping(
        path,
        option=f"{study_path}: arm {name!r} config",
        example="a representation config such as configs/rgb_turbo.yaml (relative paths: from "
        "the working directory, then next to the study config)",
        expected="a training config with a model section",
        error=StudyError,
    )
    model = raw.get("model")
    if not isinstance(model, Mapping) or "representation" not in model:
        raise StudyError(
            f"{study_path}: arm {name!r} config {path}: no model.representation; point the arm "
            "at a representation config such as configs/rgb_turbo.yaml"
        )
    return str(text), dict(model)


def _parse_arm(name: str, raw: Any, study_path: Path) -> Arm:
    where = str(study_path)
    if not isinstance(raw, Mapping) or not ({"config", "representation"} & set(raw)):
        raise StudyError(
            f"{where}: arm {name!r} needs a mapping with 'config' (a representation config such "
            "as configs/rgb_turbo.yaml) or 'representation' (and optional representation_kwargs, "
            "input_expansion, targets)"
        )
    unknown = sorted(set(raw) - set(_ARM_KEYS))
    if unknown:
        raise StudyError(f"{where}: arm {name!r} has unknown key(s) {', '.join(unknown)}")
    if "config" in raw and "representation" in raw:
        raise StudyError(
            f"{where}: arm {name!r} gives both config and representation; the config names the "
            "representation (override only representation_kwargs / input_expansion / targets)"
        )
    if "__" in name or "@" in name or not name.replace("_", "").isalnum():
        raise StudyError(
            f"{where}: arm name {name!r} must be letters, digits and single underscores"
        )
    targets = tuple(raw.get("targets") or ("log_magnitude",))
    bad = [t for t in targets if t not in TARGETS]
    if bad or len(set(targets)) != len(targets):
        raise StudyError(
            f"{where}: arm {name!r} targets must be distinct values from {', '.join(TARGETS)}, "
            f"got {list(targets)}"
        )
    config, base = (None, {}) if "config" not in raw else _arm_config_model(
        name, str(raw["config"]), study_path
    )
    representation = str(raw.get("representation", base.get("representation")))
    kwargs = {**(base.get("representation_kwargs") or {}), **(raw.get("representation_kwargs") or {})}
    from dereverb import representations as reps

    try:  # fail now, not after an hour of other runs
        reps.build(representation, **kwargs)
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{where}: arm {name!r}: {exc}") from exc
    # input_expansion is the arm's (a U-Net argument): the config's (flat or under net), unless
    # the arm gives one.
    model = upgrade_hparams({k: v for k, v in base.items() if k not in ARM_MODEL_KEYS})
    init_args = dict((model.get("net") or {}).get("init_args") or {})
    exp = raw.get("input_expansion", init_args.pop("input_expansion", None))
    if "net" in model:
        model["net"] = {**model["net"], "init_args": init_args}
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int) or exp < 1):
        raise StudyError(
            f"{where}: arm {name!r} input_expansion must be a positive integer or null, got {exp!r}"
        )
    return Arm(name, representation, kwargs, exp, targets, config, model)


def _profile(raw: Mapping[str, Any], p: Path, profile: str | None) -> tuple[str, dict[str, Any]]:
    profiles = raw.get("profiles") or {}
    name = profile or raw.get("default_profile") or next(iter(profiles), None)
    if name is None:
        return "default", {}
    if name not in profiles:
        raise StudyError(
            f"--profile {name!r}: not in {p}; choose from {', '.join(profiles) or '(none defined)'}"
        )
    prof = profiles[name] or {}
    bad = sorted(set(prof) - set(_PROFILE_KEYS))
    if bad:
        raise StudyError(f"--config {p}: profile {name!r} has unknown key(s) {', '.join(bad)}")
    return str(name), prof


def load_config(path: str | os.PathLike, profile: str | None = None) -> StudyConfig:
    """Read a study YAML and apply ``profile`` (default: its ``default_profile``); raises
    :class:`StudyError` naming the file, key and fix."""
    p = Path(path)
    raw = read_yaml_mapping(
        p, option="--config", example="a study config such as configs/study.yaml",
        expected="a mapping with arms, train and profiles", error=StudyError,
    )
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise StudyError(f"--config {p}: unknown top-level key(s) {', '.join(unknown)}")
    name, prof = _profile(raw, p, profile)
    arms_raw = raw.get("arms") or {}
    if not arms_raw:
        raise StudyError(f"--config {p}: no arms defined")
    if not isinstance(arms_raw, Mapping):
        raise StudyError(f"--config {p}: arms must be a mapping of arm name -> arm")
    capacities = _capacities(raw, prof, p, name)
    seeds = _seeds(prof.get("seeds", raw.get("seeds", [0])), f"--config {p}: profile {name!r} seeds")
    groups = _groups(prof.get("runs"), arms_raw, capacities, p, name)
    # Only the arms this profile runs are read (a profile does not depend on the others).
    used = {c.split("@")[0] for g in groups for c in g.conditions} if groups else set(arms_raw)
    arms = {n: _parse_arm(n, a, p) for n, a in arms_raw.items() if n in used}
    for g in groups:
        for c in g.conditions:
            arm_name, target = c.split("@")
            if target not in arms[arm_name].targets:
                raise StudyError(
                    f"--config {p}: profile {name!r} runs {c!r}, but arm {arm_name!r} has targets "
                    f"{list(arms[arm_name].targets)}"
                )
    reference = str(raw.get("reference", "log_magnitude@log_magnitude"))
    if reference.split("@")[0] not in arms_raw:
        raise StudyError(
            f"--config {p}: reference {reference!r} is not an arm@target of this study"
        )
    desc = " ".join(str(x) for x in (raw.get("description", ""), prof.get("description", "")) if x)
    analysis = deep_merge(raw.get("analysis") or {}, prof.get("analysis") or {})
    if not isinstance(analysis.get("margins", {}), Mapping):
        raise StudyError(f"--config {p}: analysis.margins must map metric -> margin")
    if groups:  # the seeds the plan uses
        seeds = sorted({sd for g in groups for sd in g.seeds})
    cfg = StudyConfig(
        str(p),
        name,
        arms,
        seeds,
        reference,
        deep_merge(raw.get("train") or {}, prof.get("train") or {}),
        deep_merge(raw.get("evaluation") or {}, prof.get("evaluation") or {}),
        jobs=int(prof.get("jobs", raw.get("jobs", 1))),
        threads=int(prof.get("threads", raw.get("threads", 1))),
        description=desc,
        capacities=capacities,
        groups=groups,
        analysis=analysis,
    )
    _check_steps(cfg)
    check_shared_settings(cfg)
    return cfg


def _seeds(raw: Any, where: str) -> list[int]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw
    ):
        raise StudyError(f"{where} must be a non-empty list of integers >= 0, got {raw!r}")
    if len(set(raw)) != len(raw):
        raise StudyError(f"{where} repeats a seed: {list(raw)}")
    return [int(s) for s in raw]


def _capacities(
    raw: Mapping[str, Any], prof: Mapping[str, Any], p: Path, name: str
) -> dict[str, dict[str, Any]]:
    """The study's capacities with the profile's over them: ``{name: U-Net arguments}``."""
    caps = deep_merge(raw.get("capacities") or {}, prof.get("capacities") or {})
    for cap, args in caps.items():
        if not isinstance(args, Mapping) or not args:
            raise StudyError(
                f"--config {p}: capacity {cap!r} needs a mapping of U-Net arguments, e.g. "
                "{base_channels: 8, depth: 3}"
            )
        if "__" in str(cap) or "@" in str(cap) or not str(cap).replace("_", "").isalnum():
            raise StudyError(f"--config {p}: capacity name {cap!r} must be letters, digits and single underscores")
    return {str(k): dict(v) for k, v in caps.items()}


def _groups(
    raw: Any,
    arms_raw: Mapping[str, Any],
    capacities: Mapping[str, Any],
    p: Path,
    name: str,
) -> list[RunGroup]:
    """A profile's ``runs`` as :class:`RunGroup` s (empty: no ``runs``, everything runs)."""
    if raw is None:
        return []
    where = f"--config {p}: profile {name!r} runs"
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise StudyError(f"{where} must be a list of groups {{conditions, capacities, seeds}}")
    groups = []
    for k, g in enumerate(raw):
        if not isinstance(g, Mapping) or "conditions" not in g or "seeds" not in g:
            raise StudyError(f"{where}[{k}] needs conditions and seeds (capacities: optional)")
        bad = sorted(set(g) - set(_GROUP_KEYS))
        if bad:
            raise StudyError(f"{where}[{k}] has unknown key(s) {', '.join(bad)}")
        conds: list[str] = []
        for c in g["conditions"]:
            arm_name, _, target = str(c).partition("@")
            if arm_name not in arms_raw:
                raise StudyError(f"{where}[{k}]: {c!r} is not an arm of the study")
            if target:
                conds.append(f"{arm_name}@{target}")
            else:  # every target of the arm
                arm = arms_raw[arm_name] or {}
                targets = arm.get("targets") if isinstance(arm, Mapping) else None
                conds += [f"{arm_name}@{t}" for t in (targets or ("log_magnitude",))]
        caps = g.get("capacities")
        if caps is None:
            caps = list(capacities) or [None]
        elif not capacities:
            raise StudyError(f"{where}[{k}] names capacities, but the study defines none")
        bad = [c for c in caps if c is not None and c not in capacities]
        if bad or not caps:
            raise StudyError(
                f"{where}[{k}]: unknown capacit(ies) {', '.join(map(str, bad)) or '(none given)'}; "
                f"choose from {', '.join(capacities)}"
            )
        seeds = _seeds(g["seeds"], f"{where}[{k}] seeds")
        groups.append(RunGroup(tuple(dict.fromkeys(conds)), tuple(caps), tuple(seeds)))
    return groups


def _check_steps(cfg: StudyConfig) -> None:
    """``evaluation.at_steps``: positive integers up to ``trainer.max_steps`` (which defaults
    to their maximum)."""
    at = cfg.evaluation.get("at_steps")
    if at is None:
        return
    if (
        not isinstance(at, Sequence)
        or isinstance(at, str)
        or not at
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in at)
    ):
        raise StudyError(
            f"{cfg.path}: evaluation.at_steps must be a list of positive step numbers, e.g. "
            f"[60, 240, 960], got {at!r}"
        )
    cfg.evaluation["at_steps"] = sorted(set(at))
    trainer = cfg.train.setdefault("trainer", {})
    if int(trainer.get("max_steps") or -1) < 1:
        trainer["max_steps"] = max(at)
    if max(at) > cfg.max_steps:
        raise StudyError(
            f"{cfg.path}: evaluation.at_steps {sorted(at)} go past trainer.max_steps "
            f"{cfg.max_steps}; the last step is evaluated anyway"
        )


# ============================================================================ runs and fingerprints
def run_config(cfg: StudyConfig, spec: RunSpec, run_dir: Path | None) -> dict[str, Any]:
    """The LightningCLI config (``seed_everything``, ``trainer``, ``model``, ``data``) of one run;
    the model's network under ``model.net`` (the U-Net's flat arguments folded in). Without a
    ``run_dir`` the run's paths (root dir, logger) are left out."""
    c = copy.deepcopy(cfg.train)
    c["seed_everything"] = int(spec.seed)
    trainer = c.setdefault("trainer", {})
    if run_dir is not None:
        trainer["default_root_dir"] = str(run_dir)
        trainer["logger"] = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(run_dir), "name": "tb", "version": 0},
        }
    # The arm config's model, then the study's over it (its flat U-Net keys win over any net).
    model = deep_merge(upgrade_hparams(spec.arm.model), c.get("model") or {})
    model["representation"] = spec.arm.representation
    model["representation_kwargs"] = copy.deepcopy(spec.arm.representation_kwargs)
    model["target"] = spec.target
    model["input_expansion"] = spec.arm.input_expansion
    model = upgrade_hparams(model)
    if spec.capacity is not None:  # the capacity's network arguments win over the shared ones
        if spec.capacity not in cfg.capacities:
            raise StudyError(f"{cfg.path}: run {spec.run_id}: unknown capacity {spec.capacity!r}")
        net = dict(model.get("net") or {})
        net["init_args"] = {**(net.get("init_args") or {}), **cfg.capacities[spec.capacity]}
        model["net"] = net
    if isinstance(model.get("net"), Mapping):  # a net given by its init_args alone: the U-Net
        model["net"] = {"class_path": DEFAULT_NET, **model["net"]}
    c["model"] = model
    return c


def _split_run(cfg: StudyConfig, spec: RunSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's resolved config (:func:`run_config` without paths and seed) as ``(shared, arm)``:
    ``arm`` = representation, its kwargs and ``input_expansion``; ``shared`` = the rest, target
    left out, the network under ``model.net``."""
    c = run_config(cfg, spec, None)
    del c["seed_everything"]
    if not c["trainer"]:
        del c["trainer"]
    model = c.pop("model")
    arm = {k: model.pop(k) for k in ("representation", "representation_kwargs")}
    del model["target"]
    arm["input_expansion"] = None
    if isinstance(model.get("net"), Mapping):
        init_args = dict(model["net"].get("init_args") or {})
        arm["input_expansion"] = init_args.pop("input_expansion", None)
        model["net"] = {**model["net"], "init_args": init_args}
    if model:
        c["model"] = model
    return c, arm


def _canonical(shared: Mapping[str, Any]) -> dict[str, Any]:
    """Shared settings with the default U-Net's arguments written flat under ``model``: the
    form fingerprints have had since before ``model.net`` existed, kept so they do not change."""
    out = copy.deepcopy(dict(shared))
    model = out.get("model") or {}
    net = model.get("net")
    if isinstance(net, Mapping) and net.get("class_path", DEFAULT_NET) == DEFAULT_NET:
        del model["net"]
        model.update(net.get("init_args") or {})
    return out


def check_shared_settings(cfg: StudyConfig) -> None:
    """Every arm trains the same network the same way: raise :class:`StudyError` naming the
    first setting an arm's config changes."""
    first: tuple[str, dict[str, Any]] | None = None
    cap = next(iter(cfg.capacities), None)
    for arm in cfg.arms.values():
        shared = _split_run(cfg, RunSpec(arm, arm.targets[0], 0, cap))[0]
        if first is None:
            first = (arm.name, shared)
            continue
        if shared != first[1]:
            key = _first_difference(first[1], shared)
            raise StudyError(
                f"{cfg.path}: arm {arm.name!r} ({arm.config or 'inline'}) changes {key} against "
                f"arm {first[0]!r}; every arm trains with the same settings (set them under train "
                "in the study config, and only the representation in the arm's config)"
            )


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return prefix.rstrip(".") or "(the settings)"


def fingerprint(obj: Any) -> str:
    """Short sha256 of a JSON-able object (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(cfg: StudyConfig, spec: RunSpec) -> str:
    """What makes a finished run reusable: its resolved training settings (:func:`run_config`
    in canonical form, the capacity's network arguments included), the evaluation settings
    (``at_steps`` included), target, seed and capacity name."""
    shared, arm = _split_run(cfg, spec)
    what = {
        "v": STUDY_VERSION,
        "train": _canonical(shared),
        "evaluation": cfg.evaluation,
        "arm": {"name": spec.arm.name, **arm},
        "target": spec.target,
        "seed": spec.seed,
    }
    if spec.capacity is not None:
        what["capacity"] = spec.capacity
    return fingerprint(what)


def items_fingerprint(items: Sequence[Mapping[str, Any]]) -> str:
    """Short sha256 of evaluation items (ids and audio): the same items, the same fingerprint."""
    h = hashlib.sha256()
    for it in items:
        h.update(str(it["id"]).encode())
        h.update(np.ascontiguousarray(it["reverb"], dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(it["clean"], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
