"""One-line errors shared by the commands (``dereverb.cli_errors``)."""

from __future__ import annotations

import pytest
from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveFloat

from dereverb.cli_errors import EXIT_USAGE, parse_one_line, tidy_parse_error


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="prog", exit_on_error=False)
    p.add_argument("--iters", type=NonNegativeInt, default=None)
    p.add_argument("--chunk-seconds", type=PositiveFloat, default=1.0)
    p.add_argument("--phase", choices=("a", "b"), default=None)
    return p


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--iters", "many"], "error: argument --iters: expected an integer, got 'many' (see prog --help)"),
        (["--chunk-seconds", "-2"], "error: argument --chunk-seconds: must be > 0, got -2 (see prog --help)"),
        (["--bogus"], "error: unrecognized arguments: --bogus (see prog --help)"),
    ],
)
def test_parse_errors_are_one_line_exit_2(argv: list[str], line: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_one_line(_parser(), argv)
    assert exc.value.code == EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines() == [line]


def test_valid_arguments_parse() -> None:
    ns = parse_one_line(_parser(), ["--iters", "3", "--phase", "b"])
    assert (ns.iters, ns.phase, ns.chunk_seconds) == (3, "b", 1.0)


def test_union_errors_keep_the_key_and_drop_none() -> None:
    msg = (
        'Parser key "model.lr":\n  Does not validate against any of the Union subtypes\n'
        "  Subtypes: [<class 'float'>, <class 'NoneType'>]\n  Errors:\n    - Expected a float\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n  Given value: fast"
    )
    assert tidy_parse_error(msg) == "model.lr: Expected a float (got fast)"
