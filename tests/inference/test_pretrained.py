"""The pretrained bundle (:mod:`dereverb.inference.pretrained`): written from a checkpoint, loaded
by ``load_model`` and the name ``pretrained``, used by predict (no ``--ckpt``), evaluate and
export. Every test but the last points ``PRETRAINED_FILE`` at a tiny bundle in ``tmp_path``, so
none depends on the real weights; the last one checks the file the package ships."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dereverb import evaluate, export, predict
from dereverb.data.pairs import make_pair
from dereverb.data.speech import SyntheticSpeech
from dereverb.evaluation.systems import checkpoint_names
from dereverb.inference import dereverberate, pretrained
from dereverb.inference.checkpoint import (
    BUNDLE_FORMAT,
    CheckpointError,
    load_model,
    read_checkpoint,
)
from dereverb.inference.pretrained import PRETRAINED_FILE, write_pretrained
from dereverb.models.dereverber import Dereverber
from dereverb.signals.audio import write_audio
from tests.conftest import noise, toy_rir, write_tiny_checkpoint, write_wav

SR = 16000
#: The float16 bound: magnitude estimates (and reverberant-phase waveforms) of a bundle and its
#: checkpoint differ by at most 1e-3 of the checkpoint's peak. Measured: 6e-6 for the tiny model
#: here, 4e-5 for a trained quickstart U-Net (width 8, depth 4) on reverberant speech.
REL_TOL = 1e-3
SHIPPED = PRETRAINED_FILE  # the real file, captured before any test points the name elsewhere


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def bundle(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pretrained(ckpt, tmp_path_factory.mktemp("bundle") / "tiny.pt", meta={"note": "test"})


@pytest.fixture
def installed(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``pretrained`` now means the tiny bundle."""
    monkeypatch.setattr(pretrained, "PRETRAINED_FILE", bundle)
    return bundle


def _magnitude(model: Dereverber, x: np.ndarray) -> torch.Tensor:
    """The model's magnitude estimate ``(1, F, N)`` of waveform ``x`` ``(L,)``."""
    with torch.no_grad():
        _, mag = model.analyse(torch.from_numpy(x)[None])
        y, ctx = model(mag)
        return model.decode(y, ctx)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------------------- the bundle
def test_bundle_matches_its_checkpoint_within_float16_tolerance(ckpt: Path, bundle: Path) -> None:
    x = noise((SR,), seed=1)
    ref_model, got_model = load_model(ckpt), load_model(bundle)
    ref, got = _magnitude(ref_model, x), _magnitude(got_model, x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= REL_TOL * float(ref.abs().max())
    assert not torch.equal(got, ref)  # the weights really went through float16
    a = dereverberate(x, SR, ref_model, phase="reverberant")
    b = dereverberate(x, SR, got_model, phase="reverberant")
    assert b.shape == a.shape == x.shape
    assert np.abs(a - b).max() <= REL_TOL * np.abs(a).max()
    assert all(p.dtype == torch.float32 for p in got_model.parameters())  # cast back on load


def test_bundle_holds_float16_weights_plain_hparams_and_is_smaller(ckpt: Path, bundle: Path) -> None:
    raw = torch.load(bundle, map_location="cpu", weights_only=True)
    assert set(raw) == {"format", "hyper_parameters", "state_dict", "meta"}
    assert raw["format"] == BUNDLE_FORMAT and raw["meta"] == {"note": "test"}
    src = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"] == dict(src["hyper_parameters"])
    floats = [v for v in raw["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert set(raw["state_dict"]) == {k.removeprefix("model.") for k in src["state_dict"] if k.startswith("model.")}
    assert bundle.stat().st_size < ckpt.stat().st_size
    assert read_checkpoint(bundle)["format"] == BUNDLE_FORMAT  # read_checkpoint takes both layouts


def test_bundle_of_a_bundle_has_the_same_weights(bundle: Path, tmp_path: Path) -> None:
    again = write_pretrained(bundle, tmp_path / "again.pt")
    a = torch.load(bundle, weights_only=True)["state_dict"]
    b = torch.load(again, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_bundle_over_the_size_limit_is_refused_and_not_written(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pretrained, "MAX_BYTES", 1000)
    dest = tmp_path / "big.pt"
    with pytest.raises(CheckpointError) as exc:
        write_pretrained(ckpt, dest)
    line = _one_line(str(exc.value))
    assert str(dest) in line and "MiB" in line and "base_channels 24" in line
    assert list(tmp_path.iterdir()) == []  # no file, no temporary file


def test_unknown_bundle_format_is_one_line(bundle: Path, tmp_path: Path) -> None:
    raw = torch.load(bundle, weights_only=True)
    torch.save({**raw, "format": "dereverb-pretrained/9"}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="upgrade dereverb") as exc:
        load_model(tmp_path / "future.pt")
    assert "future.pt" in _one_line(str(exc.value))


# ---------------------------------------------------------------------------- the name
def test_the_name_pretrained_loads_the_installed_bundle(installed: Path) -> None:
    x = noise((SR // 2,), seed=2)
    by_name, by_path = load_model("pretrained"), load_model(installed)
    assert torch.equal(_magnitude(by_name, x), _magnitude(by_path, x))
    assert not by_name.training
    assert read_checkpoint("pretrained")["meta"] == {"note": "test"}


def test_a_missing_pretrained_file_is_one_line_naming_path_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "pretrained" / "librispeech_unet.pt"
    monkeypatch.setattr(pretrained, "PRETRAINED_FILE", gone)
    with pytest.raises(CheckpointError) as exc:
        load_model("pretrained")
    line = _one_line(str(exc.value))
    assert str(gone) in line and "reinstall" in line and "--ckpt" in line


# ---------------------------------------------------------------------------- the commands
def test_predict_without_ckpt_uses_the_pretrained_model(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    src = write_wav(tmp_path / "in" / "my.wav", noise((SR + 123,), seed=3))
    rc = predict.main(["-o", str(tmp_path / "out"), str(src), "--device", "cpu", "--iters", "2"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    y, sr = sf.read(tmp_path / "out" / "my.wav", dtype="float32")
    assert sr == SR and y.shape == (SR + 123,) and np.isfinite(y).all()


def test_predict_without_ckpt_or_pretrained_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(pretrained, "PRETRAINED_FILE", tmp_path / "gone.pt")
    src = write_wav(tmp_path / "in" / "my.wav", noise((SR,)))
    assert predict.main(["-o", str(tmp_path / "out"), str(src)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error:") and "gone.pt" in line and "--ckpt" in line
    assert not (tmp_path / "out").exists()


def test_predict_help_names_the_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        predict.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "`pretrained` (default)" in out and "docs/pretrained.md" in out


def _paired(root: Path, n: int = 2) -> Path:
    speech = SyntheticSpeech(sample_rate=SR, seed=0)
    for i in range(n):
        reverb, clean = make_pair(speech.utterance(i, 1.0), toy_rir(0.4, SR, i), 0, SR, "dry", -3.0)
        write_audio(root / "reverb" / f"it{i}.wav", reverb, SR)
        write_audio(root / "clean" / f"it{i}.wav", clean, SR)
    return root


def test_evaluate_ckpt_pretrained_names_the_system_and_caches_by_file_content(
    installed: Path, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "eval"
    argv = ["-o", str(out), "--paired", str(_paired(tmp_path / "pairs")), "--ckpt", "pretrained",
            "--baselines", "reverberant", "--srmr", "none", "--no-progress", "--bootstrap", "20"]
    assert evaluate.main(argv) == 0, capsys.readouterr().err
    assert "| pretrained | 2 |" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["systems"] == ["reverberant", "pretrained"]
    assert res["meta"]["checkpoints"] == {"pretrained": str(installed)}

    def stats() -> dict:
        assert evaluate.main([*argv, "--force"]) == 0, capsys.readouterr().err
        capsys.readouterr()
        return json.loads((out / "results.json").read_text())["meta"]["stats"]

    assert stats() == {"computed": 0, "cached": 4, "skipped": 0}
    # Other weights behind the same name: the fingerprint is the file's SHA-256, so they are rescored.
    other = write_pretrained(write_tiny_checkpoint(tmp_path / "other.ckpt", seed=1), tmp_path / "other.pt")
    monkeypatch.setattr(pretrained, "PRETRAINED_FILE", other)
    assert stats() == {"computed": 2, "cached": 2, "skipped": 0}


def test_evaluate_ckpt_pretrained_missing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(pretrained, "PRETRAINED_FILE", tmp_path / "gone.pt")
    assert evaluate.main(["-o", str(tmp_path / "eval"), "--ckpt", "pretrained", "--baselines", "none"]) == 2
    assert "gone.pt" in _one_line(capsys.readouterr().err)


def test_checkpoint_names_calls_the_shipped_model_pretrained() -> None:
    names = checkpoint_names(["pretrained", "runs/gray/version_0/checkpoints/last.ckpt"], taken=["reverberant"])
    assert names == ["pretrained", "gray"]


def test_export_pretrained_writes_a_loadable_bundle(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dest = tmp_path / "pretrained" / "model.pt"
    assert export.main(["--ckpt", str(ckpt), "--pretrained", "-o", str(dest)]) == 0
    assert "wrote" in capsys.readouterr().out
    raw = read_checkpoint(dest)
    assert raw["format"] == BUNDLE_FORMAT and raw["meta"]["source"] == "tiny.ckpt"
    x = noise((SR // 2,), seed=4)
    ref = _magnitude(load_model(ckpt), x)
    assert float((_magnitude(load_model(dest), x) - ref).abs().max()) <= REL_TOL * float(ref.abs().max())


@pytest.mark.parametrize(
    "argv, mention",
    [
        (["--pretrained", "-o", "{tmp}/model.onnx"], "*.pt"),
        (["-o", "{tmp}/model.pt"], "--pretrained"),
    ],
)
def test_export_output_suffix_errors_are_one_line(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], mention: str
) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert export.main(["--ckpt", str(ckpt), *argv]) == 2
    assert mention in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the shipped file
def test_pyproject_ships_the_pretrained_file_as_package_data() -> None:
    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dereverb"]
    rel = SHIPPED.relative_to(root / "dereverb")
    assert any(rel.match(g) for g in globs), f"{rel} is not package data in pyproject.toml"


def test_the_shipped_pretrained_model_loads_and_dereverberates() -> None:
    """The real ``dereverb/pretrained/librispeech_unet.pt`` (placed by the lead before release)."""
    assert SHIPPED.is_file(), f"{SHIPPED}: the pretrained model is missing; write it with python -m dereverb.export --pretrained"
    assert SHIPPED.stat().st_size <= pretrained.MAX_BYTES
    assert pretrained.PRETRAINED_FILE == SHIPPED
    model = load_model("pretrained")
    x = noise((model.sample_rate,), seed=5)
    y = dereverberate(x, model.sample_rate, model)
    assert y.shape == x.shape and np.isfinite(y).all()
