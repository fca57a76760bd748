"""One-line error reporting shared by the command-line entry points.

A problem is printed as one line on stderr, ``error: <file or key>: <what is wrong>; <fix>``,
with the traceback only under ``--debug``. Exit codes: 0 success, 1 an unexpected internal
error (a bug), 2 bad input or usage, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
#: The study finished but some runs failed (their logs say why); it never returns EXIT_INTERNAL.
EXIT_FAILED_RUNS = 1


def one_line(text: str) -> str:
    """A (possibly multi-line) message as one line."""
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` anywhere in ``argv`` (checked before parsing, so parse errors honour it)."""
    return any(a == "--debug" or a.lower() in ("--debug=1", "--debug=true", "--debug=yes") for a in argv)


def report(message: str, exc: BaseException | None = None, *, debug: bool = False, stream: TextIO | None = None) -> None:
    """Print ``error: <message>`` as one line; with ``debug`` the traceback of ``exc`` first."""
    stream = stream or sys.stderr
    if debug and exc is not None:
        traceback.print_exception(exc, file=stream)
    print(f"error: {one_line(message)}", file=stream, flush=True)


def unexpected(exc: BaseException) -> str:
    """The one-line text for an exception nobody anticipated."""
    return f"unexpected {type(exc).__name__}: {one_line(str(exc)) or '(no message)'} (re-run with --debug for the traceback)"


def parse_one_line(parser: Any, argv: Sequence[str] | None) -> Any:
    """``parser.parse_args(argv)`` for a jsonargparse parser built with ``exit_on_error=False``: a
    usage error exits 2 with jsonargparse's own message on one line (:func:`usage_error`)."""
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(list(argv) if argv is not None else None)
    except ArgumentError as exc:
        usage_error(parser.prog, str(exc))


def usage_error(prog: str, message: str) -> NoReturn:
    """Print ``error: <message> (see <prog> --help)`` on one line and exit 2."""
    print(f"error: {one_line(message)} (see {prog} --help)", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` (need not exist yet) cannot be created and written into, or None.
    Creates nothing: it looks at the nearest existing ancestor."""
    base = Path(folder).expanduser().absolute()
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        return f"{base} is a file, not a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not writable"
    return None


def read_yaml_mapping(
    path: str | os.PathLike, *, option: str, example: str, expected: str, error: type[Exception]
) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is ``{}``); a missing file, invalid YAML
    or another top-level type raises ``error``, one line naming ``option`` and the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"{option} {p}: file not found; pass {example}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{option} {p}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise error(f"{option} {p}: expected {expected}")
    return data
