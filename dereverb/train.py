"""``python -m dereverb.train --config configs/<x>.yaml``: train a dereverberation network.

LightningCLI builds the model (its network from ``model.net: {class_path, init_args}``) and the
data from YAML: ``--config`` files compose, dotted overrides work (``--model.net.init_args.depth
3``), ``--print_config`` shows the result, ``--ckpt_path runs/.../last.ckpt`` resumes. Bad input is
one ``error:`` line, exit 2 (docs/reliability.md); the work is :func:`dereverb.training.run.run`.
"""

from __future__ import annotations

import sys

from dereverb.cli_errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    debug_requested,
    report,
    unexpected,
)
from dereverb.data.rooms import RirError
from dereverb.data.speech import CorpusError
from dereverb.models.checkpoints import CheckpointError
from dereverb.signals.audio import AudioError
from dereverb.training.checks import ConfigError
from dereverb.training.run import TrainingInterrupted, run


def main(args: list[str] | None = None) -> int:
    """CLI entry point: exit 0 done, 2 bad configuration/input, 1 unexpected error, 143 SIGTERM,
    130 Ctrl-C; every error is one ``error:`` line on stderr (tracebacks with ``--debug``)."""
    debug = debug_requested(sys.argv[1:] if args is None else args)
    try:
        run(args)
    except TrainingInterrupted as exc:
        report(str(exc), exc, debug=debug)
        return exc.exit_code
    except (ConfigError, CheckpointError, CorpusError, RirError, AudioError) as exc:
        report(str(exc), exc, debug=debug)
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        report(f"{where}{exc.strerror or exc}; check the path, free space and permissions", exc, debug=debug)
        return EXIT_USAGE
    except Exception as exc:
        report(unexpected(exc), exc, debug=debug)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
