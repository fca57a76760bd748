"""The notebooks run top to bottom on tiny inputs, and are committed without outputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dereverb import study
from dereverb.experiment.config import load_config
from tests.experiment.studies import micro_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01_representations.ipynb", "02_study_results.ipynb")


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[str]:
    """Texts of one output kind: ``stream``, ``text/markdown`` or ``image/png``."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.get("output_type") == "stream":
                found.append(out["text"])
            elif kind in out.get("data", {}):
                found.append(out["data"][kind])
    return found


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_without_outputs(name):
    texts = [(NOTEBOOKS / name).read_text()]
    rel = f"notebooks/{name}"
    tracked = (
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", rel], cwd=ROOT, capture_output=True
        ).returncode
        == 0
    )
    if tracked:  # git's copy, not only the working tree's
        texts.append(
            subprocess.run(
                ["git", "show", f"HEAD:{rel}"], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout
        )
    for text in texts:
        nb = nbformat.reads(text, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, name
        assert all(c.outputs == [] and c.execution_count is None for c in code), (
            f"{name} has stored outputs"
        )
        assert (
            "os.environ" in code[0].source
        )  # parameters come from the environment, in the first cell


@pytest.mark.slow
def test_representations_notebook_runs(monkeypatch):
    monkeypatch.setenv("DEREVERB_NB_SECONDS", "1.0")
    monkeypatch.delenv("DEREVERB_NB_AUDIO", raising=False)
    nb = execute(NAMES[0])
    table = "\n".join(outputs(nb, "text/markdown"))
    arms = load_config(ROOT / "configs" / "study.yaml", "quick").arms
    assert all(f"`{a}`" in table for a in arms)
    assert "| `magnitude` | 1 | 0 |" in table  # lossless arms invert exactly
    assert len(outputs(nb, "image/png")) == 2


@pytest.mark.slow
def test_study_results_notebook_runs(tmp_path, monkeypatch):
    out = tmp_path / "study"
    config = micro_config(tmp_path, tmp_path / "rirs")
    assert study.main(["--config", str(config), "--out", str(out), "--no-report", "--launcher", "debug"]) == 0
    monkeypatch.setenv("DEREVERB_STUDY_DIR", str(out))
    nb = execute(NAMES[1])
    n = len(load_config(config).specs())
    assert f"{n} finished runs of {n}" in "".join(outputs(nb, "stream"))
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert markdown.startswith("**") and "| rgb_turbo@same | log_magnitude@log_magnitude | tiny |" in markdown
    assert len(outputs(nb, "image/png")) == 4  # the headline figure and a curve per metric


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "docs" / "study" / "core" / "study.json").is_file(), reason="no committed study")
def test_study_results_notebook_reads_the_committed_core_study_by_default(monkeypatch):
    """With no STUDY_DIR set, notebook 02 opens the committed core study (docs/study/core),
    the results behind docs/study/REPORT.md, and shows the answer report.json holds."""
    monkeypatch.delenv("DEREVERB_STUDY_DIR", raising=False)
    nb = execute(NAMES[1])
    n = len(list((ROOT / "docs" / "study" / "core" / "runs").glob("*/result.json")))
    assert f"docs/study/core: {n} finished runs of " in "".join(outputs(nb, "stream"))
    markdown = "\n".join(outputs(nb, "text/markdown"))
    assert json.loads((ROOT / "docs" / "study" / "report.json").read_text())["answer"] in markdown
    assert len(outputs(nb, "image/png")) == 4
