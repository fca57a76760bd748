"""One-line errors shared by the commands (``dereverb.cli_errors``)."""

from __future__ import annotations

import pytest
from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveFloat

from dereverb.cli_errors import EXIT_USAGE, one_line, parse_one_line


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="prog", exit_on_error=False)
    p.add_argument("--iters", type=NonNegativeInt, default=None)
    p.add_argument("--chunk-seconds", type=PositiveFloat, default=1.0)
    p.add_argument("--phase", choices=("a", "b"), default=None)
    return p


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["--iters", "many"], ["iters", "NonNegativeInt", "'many'"]),
        (["--chunk-seconds", "-2"], ["chunk_seconds", "PositiveFloat", "-2"]),
        (["--phase", "c"], ["--phase", "invalid choice: 'c'"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_parse_errors_are_one_line_exit_2(argv: list[str], mentions: list[str], capsys) -> None:
    """jsonargparse's own message (naming the key, the type and the value) on one line."""
    with pytest.raises(SystemExit) as exc:
        parse_one_line(_parser(), argv)
    assert exc.value.code == EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(" (see prog --help)")
    assert all(m in line for m in mentions), line


def test_valid_arguments_parse() -> None:
    ns = parse_one_line(_parser(), ["--iters", "3", "--phase", "b"])
    assert (ns.iters, ns.phase, ns.chunk_seconds) == (3, "b", 1.0)


def test_one_line_joins_a_multi_line_message() -> None:
    assert one_line('Parser key "model.lr":\n  Expected a float\n\n  Given value: fast\n') == (
        'Parser key "model.lr": Expected a float Given value: fast'
    )
