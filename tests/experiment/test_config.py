"""Study configs: the arm x target x capacity x seed plan of each profile, arms read from
representation configs, the shared settings every arm trains with, evaluation steps, and
fingerprints that follow the resolved settings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dereverb import representations
from dereverb.experiment import config as sc
from dereverb.models.unet import UNet
from tests.experiment.studies import ROOT, micro_config

STUDY = ROOT / "configs" / "study.yaml"
LEARNED = ("learned_power", "learned_pcen")
LM = "log_magnitude"


@pytest.fixture(autouse=True)
def _at_the_repository_root(monkeypatch):
    """study.yaml's paths (arm configs, data) are relative to the repository root."""
    monkeypatch.chdir(ROOT)


def test_quick_profile_is_the_first_study():
    """``quick`` still plans the first study (every arm but the learned frontends, tiny U-Net,
    3 seeds), so docs/study/first_90_steps/REPORT.md's command reproduces it."""
    cfg = sc.load_config(STUDY, "quick")
    specs = cfg.specs()
    conditions = {s.condition for s in specs}
    assert len(conditions) == 17 and len(specs) == 17 * 3
    assert {s.capacity for s in specs} == {"tiny"} and cfg.eval_steps == [90]
    assert not set(LEARNED) & set(cfg.arms)  # the quick profile does not read them
    assert (
        specs[0].seed == 0 and specs[-1].seed == 2 and [s.seed for s in specs[:17]] == [0] * 17
    )  # seed-major
    same = {c.split("@")[0] for c in conditions if c.endswith("@same")}
    assert same == {
        "gray_rgb",
        "rgb_turbo",
        "rgb_viridis",
        "rgb_jet",
        "rgb_turbo_jpeg",
        "rgb_turbo_resized",
    }
    configs = [sc.run_config(cfg, s, Path("r")) for s in specs]
    stripped = set()
    for c in configs:
        m = dict(c["model"])
        for k in ("representation", "representation_kwargs", "target"):
            m.pop(k)
        net_args = {k: v for k, v in m["net"]["init_args"].items() if k != "input_expansion"}
        m["net"] = {**m["net"], "init_args": net_args}
        stripped.add(
            json.dumps(
                {
                    **c,
                    "model": m,
                    "seed_everything": 0,
                    "trainer": {**c["trainer"], "logger": None, "default_root_dir": None},
                },
                sort_keys=True,
            )
        )
    assert len(stripped) == 1  # everything but the arm is shared
    exp = next(
        c
        for s, c in zip(specs, configs, strict=True)
        if s.arm.name == "grayscale_learned_expansion"
    )
    assert exp["model"]["net"]["init_args"]["input_expansion"] == 3
    assert exp["model"]["representation"] == "grayscale"
    assert all(c["model"]["residual"] is True for c in configs)
    assert {c["model"]["net"]["init_args"]["base_channels"] for c in configs} == {8}
    assert cfg.specs(["rgb_jet@same"], [1]) == [
        s for s in specs if s.condition == "rgb_jet@same" and s.seed == 1
    ]


needs_learned = pytest.mark.skipif(
    not set(LEARNED) <= set(representations.names()),
    reason="the learned representations are not registered yet",
)


@needs_learned
def test_core_profile_plan():
    """The core conditions at the planned capacities and seeds: 5 seeds for the headline arms
    (both capacities for target log_magnitude), 3 for the others, training lengths spanning
    16x."""
    cfg = sc.load_config(STUDY, "core")
    specs = cfg.specs()
    n = Counter((s.condition, s.capacity) for s in specs)
    headline = [f"{a}@{LM}" for a in ("log_magnitude", "grayscale", "gray_rgb", "rgb_turbo")]
    for c in headline:
        assert n[(c, "tiny")] == 5 and n[(c, "large")] == 5, c
    for c in ("gray_rgb@same", "rgb_turbo@same"):
        assert n[(c, "tiny")] == 5 and n[(c, "large")] == 0, c
    others = [f"{a}@{LM}" for a in ("magnitude", "rgb_viridis", "rgb_jet", "rgb_turbo_jpeg", *LEARNED)]
    for c in others:
        assert n[(c, "tiny")] == 3 and n[(c, "large")] == 0, c
    assert set(c for c, _ in n) == {*headline, "gray_rgb@same", "rgb_turbo@same", *others}
    assert len(specs) == 68 and len({s.run_id for s in specs}) == 68
    steps = cfg.eval_steps
    assert steps[-1] == cfg.max_steps and steps[-1] / steps[0] >= 16 and len(steps) >= 3
    assert cfg.arms["learned_power"].representation == "learned_power"
    large = sc.run_config(cfg, next(s for s in specs if s.capacity == "large"), None)
    assert large["model"]["net"]["init_args"] == {"norm": "batch", "base_channels": 16, "depth": 4}
    # seed-major: every condition's seed 0 comes before any seed 1
    first_1 = next(k for k, s in enumerate(specs) if s.seed == 1)
    assert {(s.condition, s.capacity) for s in specs[:first_1]} == set(n)


@needs_learned
def test_full_and_smoke_profiles():
    full = sc.load_config(STUDY, "full")
    specs = full.specs()
    assert full.capacities["large"] == {"base_channels": 32, "depth": 4}
    assert full.capacities["tiny"] == {"base_channels": 8, "depth": 3}
    assert {s.arm.name for s in specs} == set(yaml.safe_load(STUDY.read_text())["arms"])
    assert Counter(s.capacity for s in specs) == {"tiny": len(specs) // 2, "large": len(specs) // 2}
    assert {s.seed for s in specs} == {0, 1, 2, 3, 4}
    smoke = sc.load_config(STUDY, "smoke")
    assert smoke.train["data"]["speech"] == "synthetic" and smoke.eval_steps == [2, 4]
    assert {s.seed for s in smoke.specs()} == {0, 1} and len(smoke.specs()) == 8


@pytest.mark.parametrize("name", ["rgb_turbo", "rgb_turbo_jpeg", "stacked", "grayscale", "magnitude"])
def test_arms_take_their_representation_from_the_config(name):
    """Each arm's representation is its config's: the study does not repeat it."""
    cfg = sc.load_config(STUDY, "quick")
    arm = cfg.arms[name]
    model = yaml.safe_load((ROOT / arm.config).read_text())["model"]
    assert arm.representation == model["representation"]
    assert model.get("representation_kwargs", {}).items() <= arm.representation_kwargs.items()


def _write(path: Path, arms: dict, train_model: dict | None = None) -> Path:
    """configs/study.yaml with other arms, every profile running all of them at ``tiny``."""
    raw = yaml.safe_load((STUDY).read_text())
    raw["arms"] = arms
    for prof in raw["profiles"].values():
        prof["runs"] = [{"conditions": list(arms), "capacities": ["tiny"], "seeds": [0, 1, 2]}]
    if train_model is not None:
        raw["train"]["model"] = train_model
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_equal_runs_have_equal_fingerprints_however_spelled(tmp_path):
    """An arm by config file or inline: the same resolved run, the same fingerprint (so finished
    runs are reused); another representation argument, another fingerprint."""
    turbo = str(ROOT / "configs" / "rgb_turbo.yaml")
    by_file = sc.load_config(_write(tmp_path / "a.yaml", {"log_magnitude": {"config": turbo}}))
    inline = {"representation": "colormap", "representation_kwargs": {"cmap": "turbo", "levels": 256}}
    by_hand = sc.load_config(_write(tmp_path / "b.yaml", {"log_magnitude": inline}))
    a, b = by_file.specs()[0], by_hand.specs()[0]
    assert sc.run_fingerprint(by_file, a) == sc.run_fingerprint(by_hand, b)
    assert sc.run_config(by_file, a, Path("r")) == sc.run_config(by_hand, b, Path("r"))
    other = sc.load_config(
        _write(tmp_path / "c.yaml", {"log_magnitude": {"config": turbo, "representation_kwargs": {"levels": 16}}})
    )
    assert other.arms["log_magnitude"].representation_kwargs == {"cmap": "turbo", "levels": 16}
    assert sc.run_fingerprint(other, other.specs()[0]) != sc.run_fingerprint(by_file, a)


def test_an_arm_config_may_only_name_the_representation(tmp_path):
    """Every arm trains the same network the same way: a representation config that sets
    anything else under model is refused, naming the key."""
    rep = tmp_path / "rep.yaml"
    log_mag = {"config": str(ROOT / "configs" / "log_magnitude.yaml")}
    for extra, key in (({"lr": 0.1}, "lr"), ({"net": {"init_args": {"depth": 4}}}, "net")):
        rep.write_text(yaml.safe_dump({"model": {"representation": "grayscale", **extra}}))
        with pytest.raises(sc.StudyError, match=rf"arm 'gray' config .*rep\.yaml sets model\.{key}; every arm"):
            sc.load_config(_write(tmp_path / "s.yaml", {"log_magnitude": log_mag, "gray": {"config": str(rep)}}))


def test_input_expansion_is_the_arms(tmp_path):
    log_mag = {"config": str(ROOT / "configs" / "log_magnitude.yaml")}
    gray = {"config": str(ROOT / "configs" / "grayscale.yaml")}
    cfg = sc.load_config(_write(tmp_path / "s.yaml", {"log_magnitude": log_mag, "gray": {**gray, "input_expansion": 3}}))
    spec = cfg.specs(["gray"], [0])[0]
    assert sc.run_config(cfg, spec, None)["model"]["net"]["init_args"]["input_expansion"] == 3
    other = sc.load_config(_write(tmp_path / "t.yaml", {"log_magnitude": log_mag, "gray": gray}))
    assert other.arms["gray"].input_expansion is None
    assert "input_expansion" not in sc.run_config(other, other.specs(["gray"], [0])[0], None)["model"]["net"]["init_args"]
    assert sc.run_fingerprint(other, other.specs(["gray"], [0])[0]) != sc.run_fingerprint(cfg, spec)


def test_bad_arms_are_one_clear_error(tmp_path):
    config = micro_config(tmp_path, tmp_path / "cache")
    raw = yaml.safe_load(config.read_text())

    def refused(arm: dict, match: str) -> None:
        bad = {**raw, "arms": {**raw["arms"], "rgb_turbo": arm}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(sc.StudyError, match=match):
            sc.load_config(tmp_path / "bad.yaml")

    refused({"representation": "colormap", "representation_kwargs": {"cmap": "turbo", "colour": 1}},
            "rgb_turbo.*colour")
    refused({"config": "configs/nowhere.yaml"}, r"arm 'rgb_turbo' config configs/nowhere\.yaml: file not found")
    refused({"config": str(ROOT / "configs" / "rgb_turbo.yaml"), "representation": "colormap"},
            "needs either 'config'")
    refused({"config": str(ROOT / "configs" / "rgb_turbo.yaml"), "targets": ["image"]},
            "targets must be distinct values")
    refused({"config": str(ROOT / "configs" / "study.yaml")}, "no model.representation")
    refused({"cmap": "turbo"}, "needs either 'config'")


def test_arm_config_paths_are_found_next_to_the_study_config(tmp_path, monkeypatch):
    """A relative config path: from the working directory, else next to the study config."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "turbo.yaml").write_text((ROOT / "configs" / "rgb_turbo.yaml").read_text())
    raw = yaml.safe_load(STUDY.read_text())
    raw["arms"] = {"log_magnitude": {"config": "turbo.yaml"}}
    del raw["profiles"], raw["default_profile"]  # everything: the one arm
    (folder / "study.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    arm = sc.load_config(folder / "study.yaml").arms["log_magnitude"]
    assert arm.representation_kwargs["cmap"] == "turbo" and arm.config == "turbo.yaml"
    raw["arms"] = {"log_magnitude": {"config": "configs/turbo.yaml"}}  # from the working directory
    (folder / "study.yaml").write_text(yaml.safe_dump(raw))
    assert sc.load_config(folder / "study.yaml").arms["log_magnitude"].representation == "colormap"


def test_capacity_changes_the_network_and_the_fingerprint(tmp_path):
    """The same arm, target and seed at two capacities: other U-Net arguments (so another
    parameter count), another run id and another fingerprint."""
    cfg = sc.load_config(micro_config(tmp_path, tmp_path / "cache", large=True))
    tiny, large = (
        next(s for s in cfg.specs() if s.condition == f"{LM}@{LM}" and s.seed == 0 and s.capacity == c)
        for c in ("tiny", "large")
    )
    assert (tiny.run_id, large.run_id) == (
        "log_magnitude__log_magnitude__tiny__seed0",
        "log_magnitude__log_magnitude__large__seed0",
    )

    def parameters(spec: sc.RunSpec) -> int:
        args = sc.run_config(cfg, spec, None)["model"]["net"]["init_args"]
        return sum(p.numel() for p in UNet(1, 1, **args).parameters())

    assert parameters(tiny) < parameters(large)
    assert sc.run_fingerprint(cfg, tiny) != sc.run_fingerprint(cfg, large)
    # Only what the run computes is fingerprinted: the report's alpha is not, at_steps are.
    raw = yaml.safe_load(Path(cfg.path).read_text())
    raw["analysis"] = {"alpha": 0.1}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    other = sc.load_config(tmp_path / "m.yaml")
    assert sc.run_fingerprint(other, tiny) == sc.run_fingerprint(cfg, tiny) and other.analysis["alpha"] == 0.1
    raw["evaluation"]["at_steps"] = [2]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    steps = sc.load_config(tmp_path / "s.yaml")
    assert steps.eval_steps == [2, 3] and sc.run_fingerprint(steps, tiny) != sc.run_fingerprint(cfg, tiny)
    # --capacities picks runs
    assert {s.capacity for s in cfg.specs(capacities=["large"])} == {"large"}


def test_bad_plans_are_one_clear_error(tmp_path):
    raw = yaml.safe_load(micro_config(tmp_path, tmp_path / "cache").read_text())

    def refused(change, match: str) -> None:
        bad = json.loads(json.dumps(raw))
        change(bad)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
        with pytest.raises(sc.StudyError, match=match):
            sc.load_config(tmp_path / "bad.yaml")

    def group(**kw):
        return lambda r: r["profiles"]["micro"].__setitem__("runs", [{"conditions": ["log_magnitude"], "seeds": [0], **kw}])

    refused(group(capacities=["huge"]), r"runs\[0\]: unknown capacit\(ies\) huge; choose from tiny, large")
    refused(group(conditions=["nope"]), r"runs\[0\]: 'nope' is not an arm")
    refused(group(conditions=["log_magnitude@same"]), r"runs 'log_magnitude@same', but arm 'log_magnitude' has targets")
    refused(group(seeds=[0, 0]), r"seeds must be a non-empty list of distinct integers")
    refused(group(color=1), r"needs conditions and seeds \(capacities: optional\), nothing else")
    refused(lambda r: r["evaluation"].__setitem__("at_steps", [1, 9]), r"at_steps \[1, 9\] go past trainer.max_steps 3")
    refused(lambda r: r["evaluation"].__setitem__("at_steps", [0]), r"at_steps must be a list of positive")
    refused(lambda r: r["capacities"].__setitem__("tiny", 8), r"capacity 'tiny' needs a name .* and a mapping")
    refused(lambda r: r.__setitem__("capacities", {}), r"no capacities; name at least one")
