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
PROFILES: tuple[str, ...] = ("quick", "full")
EVAL_SETS: tuple[str, ...] = ("sim", "measured")
#: Bump when a result would change for the same settings (training or evaluation code changes).
STUDY_VERSION = 1
#: The model keys that make an arm: the rest of ``model`` is shared by every arm.
ARM_MODEL_KEYS: tuple[str, ...] = ("representation", "representation_kwargs", "target")
_ARM_KEYS = ("config", "representation", "representation_kwargs", "input_expansion", "targets")
_TOP_KEYS = (
    "description", "default_profile", "seeds", "reference", "arms", "train", "evaluation",
    "profiles", "jobs", "threads",
)
_PROFILE_KEYS = ("seeds", "train", "evaluation", "jobs", "threads", "description")


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
    """One training run: an arm, its target domain and a seed."""

    arm: Arm
    target: str
    seed: int

    @property
    def condition(self) -> str:
        """``<arm>@<target>``: what is compared (seeds are repeats of a condition)."""
        return f"{self.arm.name}@{self.target}"

    @property
    def run_id(self) -> str:
        return f"{self.arm.name}__{self.target}__seed{self.seed}"


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

    def specs(
        self, arms: Sequence[str] | None = None, seeds: Sequence[int] | None = None
    ) -> list[RunSpec]:
        """Runs in seed-major order (seed, arm, target), filtered by ``arms`` (arm names or
        ``arm@target`` conditions) and ``seeds``."""
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
        use_seeds = list(self.seeds if seeds is None else seeds)
        out = []
        # Seed-major: every condition gets seed 0 before any gets seed 1, so a study cut short
        # still covers all conditions.
        for s in use_seeds:
            for arm in self.arms.values():
                for target in arm.targets:
                    cond = f"{arm.name}@{target}"
                    if wanted and arm.name not in wanted and cond not in wanted:
                        continue
                    out.append(RunSpec(arm, target, int(s)))
        return out

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
    arms = {n: _parse_arm(n, a, p) for n, a in arms_raw.items()}
    reference = str(raw.get("reference", "log_magnitude@log_magnitude"))
    if reference.split("@")[0] not in arms:
        raise StudyError(
            f"--config {p}: reference {reference!r} is not an arm@target of this study"
        )
    desc = " ".join(str(x) for x in (raw.get("description", ""), prof.get("description", "")) if x)
    cfg = StudyConfig(
        str(p),
        name,
        arms,
        [int(s) for s in prof.get("seeds", raw.get("seeds", [0]))],
        reference,
        deep_merge(raw.get("train") or {}, prof.get("train") or {}),
        deep_merge(raw.get("evaluation") or {}, prof.get("evaluation") or {}),
        jobs=int(prof.get("jobs", raw.get("jobs", 1))),
        threads=int(prof.get("threads", raw.get("threads", 1))),
        description=desc,
    )
    check_shared_settings(cfg)
    return cfg


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
    for arm in cfg.arms.values():
        shared = _split_run(cfg, RunSpec(arm, arm.targets[0], 0))[0]
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
    in canonical form), the evaluation settings, target and seed."""
    shared, arm = _split_run(cfg, spec)
    return fingerprint(
        {
            "v": STUDY_VERSION,
            "train": _canonical(shared),
            "evaluation": cfg.evaluation,
            "arm": {"name": spec.arm.name, **arm},
            "target": spec.target,
            "seed": spec.seed,
        }
    )


def items_fingerprint(items: Sequence[Mapping[str, Any]]) -> str:
    """Short sha256 of evaluation items (ids and audio): the same items, the same fingerprint."""
    h = hashlib.sha256()
    for it in items:
        h.update(str(it["id"]).encode())
        h.update(np.ascontiguousarray(it["reverb"], dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(it["clean"], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
