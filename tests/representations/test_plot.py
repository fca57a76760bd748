"""The ``python -m dereverb.representations --plot`` demo CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dereverb import representations as R


def test_cli_help_and_bad_input(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "dereverb.representations", "--help"], capture_output=True,
                         text=True, cwd=root, timeout=120)
    assert res.returncode == 0 and "--plot" in res.stdout
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert R.main(["--plot", str(tmp_path / "o.png"), "--audio", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read --audio") and len(err.splitlines()) == 1
    assert R.main(["--plot", str(tmp_path / "o.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err
    assert R.main(["--plot", str(tmp_path / "missing" / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_plot(tmp_path, capsys):
    out = tmp_path / "r.png"
    assert R.main(["--plot", str(out), "--seconds", "0.5"]) == 0
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    stdout = capsys.readouterr().out
    assert "grayscale 8-bit" in stdout and "wrote" in stdout
    assert R.main(["--plot", str(out)]) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
