"""Model folders (:mod:`dereverb.models.checkpoints`): written from a checkpoint, loaded by
``load_model``, the name ``pretrained`` and huggingface_hub, refused with one line when they are of
another format or damaged; used by predict (no ``--ckpt``), evaluate and export. Every test but the
last points ``PRETRAINED_DIR`` at a tiny folder in ``tmp_path``, so none depends on the real
weights; the last ones check the folder the package ships."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import soundfile as sf
import torch

from dereverb import evaluate, export, predict
from dereverb.data.pairs import make_pair
from dereverb.data.speech import SyntheticSpeech
from dereverb.evaluation.systems import checkpoint_names
from dereverb.inference import dereverberate, load_model
from dereverb.models import checkpoints
from dereverb.models.checkpoints import (
    CONFIG_FILE,
    FORMAT_VERSION,
    PRETRAINED_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    read_model,
    write_model_folder,
)
from dereverb.models.dereverber import Dereverber
from dereverb.signals.audio import write_audio
from tests.conftest import noise, toy_rir, write_tiny_checkpoint, write_wav

SR = 16000
#: The float16 bound: magnitude estimates (and reverberant-phase waveforms) of a folder and its
#: checkpoint differ by at most 1e-3 of the checkpoint's peak.
REL_TOL = 1e-3
SHIPPED = PRETRAINED_DIR  # the real folder, captured before any test points the name elsewhere


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def folder(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_folder(ckpt, tmp_path_factory.mktemp("folder") / "tiny", meta={"note": "test"})


@pytest.fixture
def installed(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``pretrained`` now means the tiny folder."""
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", folder)
    return folder


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


def _copy(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


# ---------------------------------------------------------------------------- the folder
def test_folder_matches_its_checkpoint_within_float16_tolerance(ckpt: Path, folder: Path) -> None:
    x = noise((SR,), seed=1)
    ref_model, got_model = load_model(ckpt), load_model(folder)
    ref, got = _magnitude(ref_model, x), _magnitude(got_model, x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= REL_TOL * float(ref.abs().max())
    assert not torch.equal(got, ref)  # the weights really went through float16
    a = dereverberate(x, SR, ref_model, phase="reverberant")
    b = dereverberate(x, SR, got_model, phase="reverberant")
    assert b.shape == a.shape == x.shape
    assert np.abs(a - b).max() <= REL_TOL * np.abs(a).max()
    assert all(p.dtype == torch.float32 for p in got_model.parameters())  # cast back on load


def test_folder_holds_config_json_and_float16_safetensors(ckpt: Path, folder: Path) -> None:
    assert sorted(f.name for f in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((folder / CONFIG_FILE).read_text())
    src = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert config == {"format_version": FORMAT_VERSION, "hparams": json.loads(json.dumps(dict(src["hyper_parameters"]))),
                      "meta": {"note": "test"}}
    weights = safetensors.torch.load_file(folder / WEIGHTS_FILE)
    floats = [v for v in weights.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert set(weights) == {k.removeprefix("model.") for k in src["state_dict"] if k.startswith("model.")}
    assert (folder / WEIGHTS_FILE).stat().st_size < ckpt.stat().st_size


def test_new_hyperparameters_flow_through_to_the_folder(tmp_path: Path) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "t.ckpt", griffin_lim_iters=3)
    raw = torch.load(ckpt, weights_only=True)
    raw["hyper_parameters"]["some_future_key"] = {"a": [1, 2]}  # stored as given, ignored by the model
    torch.save(raw, ckpt)
    out = write_model_folder(ckpt, tmp_path / "m")
    assert read_model(out).hparams["some_future_key"] == {"a": [1, 2]}
    assert read_model(out).meta == {"source": "t.ckpt"} and load_model(out).griffin_lim_iters == 3


def test_folder_of_a_folder_has_the_same_weights_and_meta(folder: Path, tmp_path: Path) -> None:
    again = write_model_folder(folder, tmp_path / "again")
    a, b = read_model(folder), read_model(again)
    assert a.weights.keys() == b.weights.keys() and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert a.meta == b.meta == {"note": "test"} and a.hparams == b.hparams


def test_a_folder_over_the_size_limit_is_refused_and_not_written(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "MAX_BYTES", 1000)
    dest = tmp_path / "big"
    with pytest.raises(CheckpointError) as exc:
        write_model_folder(ckpt, dest)
    line = _one_line(str(exc.value))
    assert str(dest) in line and "MiB" in line and "base_channels 24" in line
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary file


def _with_config(folder: Path, dest: Path, **change) -> Path:
    out = _copy(folder, dest)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (out / CONFIG_FILE).write_text(json.dumps({**config, **change}))
    return out


@pytest.mark.parametrize(
    "make, mention",
    [
        (lambda f, d: _with_config(f, d, format_version=FORMAT_VERSION + 1), "format_version 2"),
        (lambda f, d: _with_config(f, d, format_version=None), "format_version None"),
        (lambda f, d: _with_config(f, d, hparams={"lr": 1}), "lacks representation"),
        (lambda f, d: (_copy(f, d) / CONFIG_FILE).write_text("{not json") and d, "JSONDecodeError"),
        (lambda f, d: (_copy(f, d) / WEIGHTS_FILE).write_bytes(b"12345678garbage") and d, "SafetensorError"),
        (lambda f, d: (_copy(f, d) / WEIGHTS_FILE).unlink() or d, "without model.safetensors"),
        (lambda f, d: d.mkdir() or d, "without config.json"),
    ],
    ids=["newer_version", "no_version", "not_dereverb", "bad_json", "bad_weights", "no_weights", "empty_folder"],
)
def test_a_bad_model_folder_is_one_line(folder: Path, tmp_path: Path, make, mention: str) -> None:
    bad = make(folder, tmp_path / "bad")
    with pytest.raises(CheckpointError) as exc:
        load_model(bad)
    line = _one_line(str(exc.value))
    assert str(bad) in line and mention in line and "dereverb.export" in line


def test_weights_that_do_not_fit_their_config_are_one_line(folder: Path, ckpt: Path, tmp_path: Path) -> None:
    wide = write_model_folder(write_tiny_checkpoint(tmp_path / "w.ckpt", net={
        "class_path": "dereverb.models.unet.UNet", "init_args": {"base_channels": 8, "depth": 2}}), tmp_path / "wide")
    bad = _copy(folder, tmp_path / "bad")
    (bad / WEIGHTS_FILE).write_bytes((wide / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="weights do not fit") as exc:
        load_model(bad)
    assert str(bad) in _one_line(str(exc.value))


def test_the_old_pt_bundle_is_refused_with_what_to_do(folder: Path, tmp_path: Path) -> None:
    old = read_model(folder)
    torch.save({"format": "dereverb-pretrained/1", "hyper_parameters": old.hparams, "state_dict": old.weights,
                "meta": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "old.pt")
    line = _one_line(str(exc.value))
    assert "old.pt" in line and "no longer reads" in line and "--pretrained -o FOLDER" in line


def test_a_checkpoint_of_the_first_layout_is_refused(ckpt: Path, tmp_path: Path) -> None:
    """Checkpoints written before the spectral path became ``Dereverber`` name the network ``net.*``."""
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["state_dict"] = {k.removeprefix("model."): v for k, v in raw["state_dict"].items()}
    torch.save(raw, tmp_path / "old_layout.ckpt")
    with pytest.raises(CheckpointError, match="older dereverb, which this version no longer reads"):
        load_model(tmp_path / "old_layout.ckpt")


def test_huggingface_hub_mixin_loads_and_saves_the_same_model(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    from dereverb.inference.hub import DereverberHub

    x = noise((SR // 2,), seed=6)
    hub = DereverberHub.from_pretrained(folder, strict=True)
    assert not hub.training and hub.meta == {"note": "test"}
    # load_model folds the batch norms: equal up to float rounding
    torch.testing.assert_close(_magnitude(hub, x), _magnitude(load_model(folder), x), rtol=1e-5, atol=1e-6)
    hub.save_pretrained(tmp_path / "saved")  # the mixin's own writer: load_model reads what it writes
    assert json.loads((tmp_path / "saved" / CONFIG_FILE).read_text())["format_version"] == FORMAT_VERSION
    torch.testing.assert_close(_magnitude(load_model(tmp_path / "saved"), x), _magnitude(hub, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="format_version 9"):
        DereverberHub.from_pretrained(_with_config(folder, tmp_path / "future", format_version=9))


# ---------------------------------------------------------------------------- the name
def test_the_name_pretrained_loads_the_installed_folder(installed: Path) -> None:
    x = noise((SR // 2,), seed=2)
    by_name, by_path = load_model("pretrained"), load_model(installed)
    assert torch.equal(_magnitude(by_name, x), _magnitude(by_path, x))
    assert not by_name.training
    assert read_model("pretrained").meta == {"note": "test"}


def test_a_missing_pretrained_folder_is_one_line_naming_path_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "pretrained" / "librispeech_unet"
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", gone)
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
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path / "gone")
    src = write_wav(tmp_path / "in" / "my.wav", noise((SR,)))
    assert predict.main(["-o", str(tmp_path / "out"), str(src)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error:") and "gone" in line and "--ckpt" in line
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
    other = write_model_folder(write_tiny_checkpoint(tmp_path / "other.ckpt", seed=1), tmp_path / "other")
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", other)
    assert stats() == {"computed": 2, "cached": 2, "skipped": 0}


def test_evaluate_ckpt_pretrained_missing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path / "gone")
    assert evaluate.main(["-o", str(tmp_path / "eval"), "--ckpt", "pretrained", "--baselines", "none"]) == 2
    assert "gone" in _one_line(capsys.readouterr().err)


def test_checkpoint_names_calls_the_shipped_model_pretrained() -> None:
    names = checkpoint_names(["pretrained", "runs/gray/version_0/checkpoints/last.ckpt"], taken=["reverberant"])
    assert names == ["pretrained", "gray"]


def test_export_pretrained_writes_a_loadable_folder(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dest = tmp_path / "pretrained" / "model"
    assert export.main(["--ckpt", str(ckpt), "--pretrained", "-o", str(dest)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_model(dest).meta == {"source": "tiny.ckpt"}
    x = noise((SR // 2,), seed=4)
    ref = _magnitude(load_model(ckpt), x)
    assert float((_magnitude(load_model(dest), x) - ref).abs().max()) <= REL_TOL * float(ref.abs().max())
    # predict takes the folder as --ckpt
    src = write_wav(tmp_path / "in" / "a.wav", noise((SR // 2,), seed=5))
    assert predict.main(["--ckpt", str(dest), "-o", str(tmp_path / "out"), str(src), "--iters", "2"]) == 0
    assert sf.read(tmp_path / "out" / "a.wav")[0].shape == (SR // 2,)


@pytest.mark.parametrize(
    "argv, mention",
    [
        (["--pretrained", "-o", "{tmp}/model.pt"], "name a folder"),
        (["-o", "{tmp}/model"], "--pretrained"),
    ],
)
def test_export_output_name_errors_are_one_line(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], mention: str
) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert export.main(["--ckpt", str(ckpt), *argv]) == 2
    assert mention in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_export_pretrained_onto_a_file_is_one_line(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "afile").write_text("x")
    assert export.main(["--ckpt", str(ckpt), "--pretrained", "-o", str(tmp_path / "afile")]) == 2
    assert "is a file" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "afile").read_text() == "x"


def test_export_of_several_models_writes_the_mean_of_their_weights(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    other = write_tiny_checkpoint(tmp_path / "other.ckpt", seed=1)
    third = write_model_folder(write_tiny_checkpoint(tmp_path / "third.ckpt", seed=2), tmp_path / "third")
    dest = tmp_path / "mean"
    assert export.main(["--ckpt", str(ckpt), str(other), str(third), "--pretrained", "-o", str(dest)]) == 0
    assert "wrote" in capsys.readouterr().out
    sources = [read_model(ckpt).weights, read_model(other).weights, read_model(third).weights]
    got = read_model(dest)
    for k, v in got.weights.items():
        if v.is_floating_point():  # the float32 mean of the three, stored as float16
            want = sum(w[k].float() for w in sources) / 3
            torch.testing.assert_close(v.float(), want.half().float(), rtol=0, atol=0)
        else:
            assert torch.equal(v, sources[0][k])
    assert not torch.equal(got.weights["net.head.weight"].float(), sources[0]["net.head.weight"].half().float())
    assert got.meta == {"mean_of": [str(ckpt), str(other), str(third)]}
    assert got.hparams == json.loads(json.dumps(read_model(ckpt).hparams))
    x = noise((SR // 2,), seed=6)
    assert dereverberate(x, SR, load_model(dest), phase="reverberant").shape == x.shape


def test_a_mean_of_different_models_or_to_onnx_is_one_line(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wide = write_tiny_checkpoint(tmp_path / "wide.ckpt", net={"class_path": "dereverb.models.unet.UNet",
                                                              "init_args": {"base_channels": 8, "depth": 2}})
    assert export.main(["--ckpt", str(ckpt), str(wide), "--pretrained", "-o", str(tmp_path / "m")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "wide.ckpt: net=" in line and "one configuration" in line
    gray = write_tiny_checkpoint(tmp_path / "gray.ckpt", representation="grayscale")
    assert export.main(["--ckpt", str(ckpt), str(gray), "--pretrained", "-o", str(tmp_path / "m")]) == 2
    assert "gray.ckpt: representation='grayscale'" in _one_line(capsys.readouterr().err)
    assert export.main(["--ckpt", str(ckpt), str(gray), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "add --pretrained" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.ckpt", "wide.ckpt"]  # nothing written


# ---------------------------------------------------------------------------- the shipped folder
def test_pyproject_ships_the_pretrained_folder_as_package_data() -> None:
    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dereverb"]
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        rel = (SHIPPED / name).relative_to(root / "dereverb")
        assert any(rel.match(g) for g in globs), f"{rel} is not package data in pyproject.toml"


def test_the_shipped_pretrained_model_loads_and_dereverberates() -> None:
    """The real ``dereverb/pretrained/librispeech_unet/`` (placed by the lead before release)."""
    assert (SHIPPED / CONFIG_FILE).is_file(), f"{SHIPPED}: the pretrained model is missing; write it with python -m dereverb.export --pretrained"
    assert (SHIPPED / WEIGHTS_FILE).stat().st_size <= checkpoints.MAX_BYTES
    assert checkpoints.PRETRAINED_DIR == SHIPPED
    model = load_model("pretrained")
    x = noise((model.sample_rate,), seed=5)
    y = dereverberate(x, model.sample_rate, model)
    assert y.shape == x.shape and np.isfinite(y).all()
