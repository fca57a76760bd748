"""Study configs: the arm x target x seed matrix, arms read from representation configs, the
shared settings every arm trains with, and fingerprints that follow the resolved settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dereverb.experiment import config as sc
from tests.experiment.studies import ROOT, micro_config

STUDY = ROOT / "configs" / "study.yaml"


@pytest.fixture(autouse=True)
def _at_the_repository_root(monkeypatch):
    """study.yaml's paths (arm configs, data) are relative to the repository root."""
    monkeypatch.chdir(ROOT)


def test_study_config_matrix():
    cfg = sc.load_config(STUDY, "quick")
    specs = cfg.specs()
    conditions = {s.condition for s in specs}
    assert len(conditions) == 17 and len(specs) == 17 * 3
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
    full = sc.load_config(STUDY, "full")
    assert full.train["model"]["net"]["init_args"] == {"norm": "batch", "base_channels": 32, "depth": 4}
    assert cfg.specs(["rgb_jet@same"], [1]) == [
        s for s in specs if s.condition == "rgb_jet@same" and s.seed == 1
    ]


@pytest.mark.parametrize("name", ["rgb_turbo", "rgb_turbo_jpeg", "stacked", "grayscale", "magnitude"])
def test_arms_take_their_representation_from_the_config(name):
    """Each arm's representation is its config's: the study does not repeat it."""
    cfg = sc.load_config(STUDY, "quick")
    arm = cfg.arms[name]
    model = yaml.safe_load((ROOT / arm.config).read_text())["model"]
    assert arm.representation == model["representation"]
    assert model.get("representation_kwargs", {}).items() <= arm.representation_kwargs.items()


def _write(path: Path, arms: dict, train_model: dict | None = None) -> Path:
    raw = yaml.safe_load((STUDY).read_text())
    raw["arms"] = arms
    if train_model is not None:
        raw["train"]["model"] = train_model
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_equal_runs_have_equal_fingerprints_however_spelled(tmp_path):
    """An arm by config file or inline, the U-Net's arguments flat or under model.net: the same
    resolved run, the same fingerprint (so finished runs are reused)."""
    turbo = str(ROOT / "configs" / "rgb_turbo.yaml")
    by_file = sc.load_config(_write(tmp_path / "a.yaml", {"log_magnitude": {"config": turbo}}))
    inline = {"representation": "colormap", "representation_kwargs": {"cmap": "turbo", "levels": 256}}
    base = yaml.safe_load(STUDY.read_text())["train"]["model"]
    flat = {k: v for k, v in base.items() if k != "net"} | {"norm": "batch"}
    by_hand = sc.load_config(_write(tmp_path / "b.yaml", {"log_magnitude": inline}, flat))
    assert flat.get("net") is None and by_file.train["model"] != by_hand.train["model"]
    a, b = by_file.specs()[0], by_hand.specs()[0]
    assert sc.run_fingerprint(by_file, a) == sc.run_fingerprint(by_hand, b)
    assert sc.run_config(by_file, a, Path("r")) == sc.run_config(by_hand, b, Path("r"))
    other = sc.load_config(
        _write(tmp_path / "c.yaml", {"log_magnitude": {"config": turbo, "representation_kwargs": {"levels": 16}}})
    )
    assert other.arms["log_magnitude"].representation_kwargs == {"cmap": "turbo", "levels": 16}
    assert sc.run_fingerprint(other, other.specs()[0]) != sc.run_fingerprint(by_file, a)


def test_arm_config_with_the_new_net_form_merges_under_the_study(tmp_path):
    """A representation config may carry a model.net: the study's settings win, and an arm
    whose config would change the shared network is refused."""
    rep = tmp_path / "rep.yaml"
    rep.write_text(yaml.safe_dump({"model": {
        "representation": "grayscale",
        "net": {"class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 32, "depth": 4}},
    }}))
    cfg = sc.load_config(_write(tmp_path / "s.yaml", {
        "log_magnitude": {"config": str(ROOT / "configs" / "log_magnitude.yaml")},
        "gray": {"config": str(rep)},
    }), "quick")
    nets = {s.arm.name: sc.run_config(cfg, s, None)["model"]["net"] for s in cfg.specs(seeds=[0])}
    assert nets["gray"] == nets["log_magnitude"]
    assert nets["gray"]["init_args"] == {"norm": "batch", "base_channels": 8, "depth": 3}
    rep.write_text(yaml.safe_dump({"model": {"representation": "grayscale", "lr": 0.1}}))
    cfg = sc.load_config(tmp_path / "s.yaml", "quick")  # the study's lr wins
    assert {sc.run_config(cfg, s, None)["model"]["lr"] for s in cfg.specs()} == {0.003}
    rep.write_text(yaml.safe_dump({"model": {
        "representation": "grayscale",
        "net": {"init_args": {"activation": "gelu"}},
    }}))
    with pytest.raises(sc.StudyError, match=r"arm 'gray' .*rep\.yaml.* changes model\.net\.init_args\.activation"):
        sc.load_config(tmp_path / "s.yaml", "quick")


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
            "both config and representation")
    refused({"config": str(ROOT / "configs" / "rgb_turbo.yaml"), "targets": ["image"]},
            "targets must be distinct values")
    refused({"config": str(ROOT / "configs" / "study.yaml")}, "no model.representation")
    refused({"cmap": "turbo"}, "needs a mapping with 'config'")


def test_arm_config_paths_are_found_next_to_the_study_config(tmp_path, monkeypatch):
    """A relative config path: from the working directory, else next to the study config."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "turbo.yaml").write_text((ROOT / "configs" / "rgb_turbo.yaml").read_text())
    raw = yaml.safe_load(STUDY.read_text())
    raw["arms"] = {"log_magnitude": {"config": "turbo.yaml"}}
    (folder / "study.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    arm = sc.load_config(folder / "study.yaml").arms["log_magnitude"]
    assert arm.representation_kwargs["cmap"] == "turbo" and arm.config == "turbo.yaml"
    raw["arms"] = {"log_magnitude": {"config": "configs/turbo.yaml"}}  # from the working directory
    (folder / "study.yaml").write_text(yaml.safe_dump(raw))
    assert sc.load_config(folder / "study.yaml").arms["log_magnitude"].representation == "colormap"


def test_input_expansion_in_an_arm_config_is_the_arms(tmp_path):
    rep = tmp_path / "rep.yaml"
    rep.write_text(yaml.safe_dump({"model": {
        "representation": "grayscale", "net": {"init_args": {"input_expansion": 3}},
    }}))
    log_mag = {"config": str(ROOT / "configs" / "log_magnitude.yaml")}
    cfg = sc.load_config(_write(tmp_path / "s.yaml", {"log_magnitude": log_mag, "gray": {"config": str(rep)}}))
    assert cfg.arms["gray"].input_expansion == 3
    spec = cfg.specs(["gray"], [0])[0]
    assert sc.run_config(cfg, spec, None)["model"]["net"]["init_args"]["input_expansion"] == 3
    other = sc.load_config(_write(tmp_path / "t.yaml", {
        "log_magnitude": log_mag, "gray": {"config": str(rep), "input_expansion": None},
    }))
    assert other.arms["gray"].input_expansion is None
    assert sc.run_fingerprint(other, other.specs(["gray"], [0])[0]) != sc.run_fingerprint(cfg, spec)
