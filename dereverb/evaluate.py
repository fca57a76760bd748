"""``python -m dereverb.evaluate``: checkpoints and baselines on a test set, tables by T60 band.

Sources (one of; :mod:`dereverb.evaluation.sources`): a training config's ``data:`` section
(``--datamodule-config``, or nothing: the DataModule's test split; ``--speech`` / ``--rirs``
override it); ``--rirs FOLDER`` alone: speech x every measured RIR under the folder, pairs built as
in training; ``--paired FOLDER`` (``reverb/*`` and ``clean/*`` with the same names); ``--unpaired
FOLDER`` (real recordings: only the non-intrusive SRMR). Systems, scores with their cache and
tables: :mod:`dereverb.evaluation`. Outputs in ``-o OUTDIR``: :data:`OUTPUT_FILES`.

Exit codes (:mod:`dereverb.cli_errors`): 0 done, 2 bad input or usage (one line on stderr),
1 an internal error, 130 Ctrl-C (cached scores are kept).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser, DefaultHelpFormatter, Namespace
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt

from dereverb.cli_errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    parse_one_line,
    report,
    unexpected,
    unwritable_reason,
)
from dereverb.data.rooms import RirError
from dereverb.data.speech import CorpusError
from dereverb.evaluation.report import OUTPUT_FILES, summarize, write_outputs
from dereverb.evaluation.scoring import SRMR_MODES, evaluate_systems
from dereverb.evaluation.sources import (
    EvaluationError,
    LazyItems,
    datamodule_items,
    load_datamodule_config,
    measured_items,
    paired_items,
    unpaired_items,
)
from dereverb.evaluation.systems import CheckpointSystem, build_systems
from dereverb.inference.checkpoint import DeviceError
from dereverb.models.checkpoints import CheckpointError, resolve_checkpoint
from dereverb.signals.audio import AudioError
from dereverb.signals.dsp import PHASE_METHODS

__all__ = ["OUTPUT_FILES", "build_parser", "main", "run"]

PROG = "python -m dereverb.evaluate"
#: Exception types that mean bad input (a file, folder or setting), not a bug.
INPUT_ERRORS = (EvaluationError, AudioError, CheckpointError, DeviceError, CorpusError, RirError)


# ============================================================================ parser
class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help without the type (``<class 'Path'>``): each flag's metavar says what it takes."""

    def _get_type_str(self, action: Any) -> None:
        return None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Evaluate checkpoints and baselines (reverberant input, WPE, oracle magnitudes) on a "
        "test set; write tables by T60 band with paired-bootstrap confidence intervals.",
        formatter_class=_HelpFormatter,
        exit_on_error=False,
    )
    arg = p.add_argument
    arg("--ckpt", nargs="+", type=str, default=[], metavar="CKPT",
        help="checkpoint(s) to evaluate; `pretrained` is the model shipped with the package")
    arg("--baselines", type=str, metavar="LIST", default="reverberant,wpe,oracle",
        help="comma-separated: reverberant, wpe, oracle_reverb_phase, oracle_gl, oracle_gl_warm; "
        "'oracle' = the three oracles, 'all', or 'none'")
    arg("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="folder for tables and plot")
    src = p.add_argument_group("source (default: the DataModule's test split with its defaults)")
    ex = src.add_mutually_exclusive_group()
    ex.add_argument("--datamodule-config", type=Path, metavar="YAML",
                    help="training config whose data: section defines the test split")
    ex.add_argument("--paired", type=Path, metavar="FOLDER",
                    help="FOLDER/reverb/* and FOLDER/clean/* with the same names")
    ex.add_argument("--unpaired", type=Path, metavar="FOLDER", help="real reverberant recordings (SRMR only)")
    arg = src.add_argument
    arg("--speech", type=str, metavar="FOLDER",
        help="speech folder (or 'synthetic'); overrides data.speech, or pairs with --rirs FOLDER")
    arg("--rirs", type=str, metavar="FOLDER", help="measured-RIR folder, or comma-separated folders and files "
        "(speech x these RIRs, built as in training; configs/measured_rooms.yaml lists the dev and test rooms), "
        "or with --datamodule-config an override of data.rirs ('simulated' or a folder)")
    arg("--snr-db", type=float, metavar="DB",
        help="measured RIRs: add pink background noise at this SNR to the reverberant input")
    arg("--level-db", type=float, default=0.0, metavar="DB",
        help="measured RIRs: scale the reverberant input to this peak level (dBFS; 0: as built)")
    arg("--n-items", type=PositiveInt, metavar="N",
        help="items to evaluate (DataModule: test_items; measured: default 24)")
    arg("--segment-seconds", type=PositiveFloat, metavar="S",
        help="crop length (DataModule: segment_seconds; measured: default 4)")
    arg("--speech-split", choices=("all", "train", "val", "test"), default="all",
        help="measured source: use only this speaker-disjoint split of --speech (test = the speakers a model "
        "trained on that folder never saw); DataModule source: val scores its val split (the dev set) "
        "instead of its test split")
    arg("--clean-target", choices=("dry", "early"), default="dry", help="measured source: the clean reference "
        "(dry: direct-path-aligned dry speech; early: + the first 50 ms of the room)")
    arg("--rir-channel", type=int, default=0, metavar="C",
        help="measured source: channel of multi-channel RIR files")
    arg("--seed", type=int, default=0, metavar="N", help="measured source: item seed (and the speech split seed)")
    arg("--sample-rate", type=PositiveInt, default=16000, metavar="HZ",
        help="paired/unpaired/measured: rate audio is resampled to")
    arg = p.add_argument_group("systems and metrics").add_argument
    arg("--device", type=str, default="cpu", metavar="DEV",
        help="device for checkpoints: cpu, cuda, cuda:N or auto")
    arg("--phase", choices=PHASE_METHODS, help="override the checkpoints' phase recovery (null: each model's own)")
    arg("--model-gl-iters", type=NonNegativeInt, metavar="N",
        help="override the checkpoints' Griffin-Lim iterations")
    arg("--gl-iters", type=PositiveInt, default=32, metavar="N", help="Griffin-Lim iterations of the oracles")
    arg("--wpe-taps", type=PositiveInt, default=10, metavar="N", help="WPE prediction filter length (frames)")
    arg("--wpe-delay", type=NonNegativeInt, default=3, metavar="N", help="WPE prediction delay (frames)")
    arg("--wpe-iterations", type=PositiveInt, default=5, metavar="N", help="WPE iterations")
    arg("--srmr", choices=SRMR_MODES, default="full", help="SRMR: full (reference), fast (FFT gammatone "
        "approximation, faster, on another scale) or none")
    arg("--bootstrap", type=PositiveInt, default=2000, metavar="N", help="paired-bootstrap resamples")
    arg = p.add_argument
    arg("--cache-dir", type=Path, metavar="FOLDER", help="score cache (null: OUTDIR/cache)")
    arg("--force", action="store_true", help="rewrite the tables of an existing OUTDIR (cached scores are reused)")
    arg("--no-progress", action="store_true", help="no progress bar")
    arg("--debug", action="store_true", help="show tracebacks")
    return p


# ============================================================================ run
def _check_args(args: Namespace) -> None:
    """Every flag's file or folder, before any data is built or scored."""
    if (args.paired or args.unpaired) and (args.speech or args.rirs):
        raise EvaluationError("--speech/--rirs cannot be combined with --paired/--unpaired; pick one source")
    if args.speech == "simulated" or args.rirs == "synthetic":
        raise EvaluationError("--speech takes a folder or 'synthetic'; --rirs takes a folder or 'simulated'")
    for c in args.ckpt:  # "pretrained": the shipped bundle (a one-line CheckpointError when not installed)
        if not resolve_checkpoint(c).exists():
            raise EvaluationError(f"--ckpt {c}: checkpoint not found; pass a .ckpt file written by dereverb.train")
    for flag, folder in (("--paired", args.paired), ("--unpaired", args.unpaired)):
        if folder is not None and not folder.is_dir():
            raise EvaluationError(f"{flag} {folder}: folder not found")
    if args.speech and args.speech != "synthetic" and not Path(args.speech).is_dir():
        raise EvaluationError(f"--speech {args.speech}: folder not found")
    for v in (args.rirs or "").split(","):
        if v and v != "simulated" and not Path(v).exists():
            raise EvaluationError(f"--rirs {v}: not found; give a folder (or comma-separated folders and files) "
                                  "of measured RIRs")
    existing = [f for f in OUTPUT_FILES if (args.output / f).exists()]
    if existing and not args.force:
        raise EvaluationError(f"-o {args.output}: already holds {existing[0]}; pass --force to rewrite the tables "
                              "(cached scores are reused) or choose another folder")
    if args.output.exists() and not args.output.is_dir():
        raise EvaluationError(f"-o {args.output}: exists and is not a folder")
    for flag, folder in (("-o", args.output), ("--cache-dir", args.cache_dir)):
        if folder is not None and (reason := unwritable_reason(folder)) is not None:
            raise EvaluationError(f"{flag} {folder}: {reason}; choose a writable folder")


def _source(args: Namespace) -> tuple[LazyItems, int, str, list[str]]:
    """The items, their sample rate, a description and notes."""
    if args.paired is not None:
        loaders, desc, notes = paired_items(args.paired, args.sample_rate)
        return LazyItems(loaders), args.sample_rate, desc, notes
    if args.unpaired is not None:
        loaders, desc = unpaired_items(args.unpaired, args.sample_rate)
        return LazyItems(loaders), args.sample_rate, desc, []
    if args.datamodule_config is None and args.rirs not in (None, "simulated"):
        loaders, desc = measured_items(
            args.rirs.split(","), args.speech or "synthetic", n_items=args.n_items or 24,
            segment_seconds=args.segment_seconds or 4.0, sample_rate=args.sample_rate, seed=args.seed,
            target=args.clean_target, speech_split=args.speech_split, channel=args.rir_channel,
            snr_db=args.snr_db, level_db=args.level_db)
        return LazyItems(loaders), args.sample_rate, desc, []
    kw = load_datamodule_config(args.datamodule_config)
    overrides = {"speech": args.speech, "rirs": args.rirs, "test_items": args.n_items,
                 "segment_seconds": args.segment_seconds}
    kw.update({k: v for k, v in overrides.items() if v})
    loaders, sr, desc = datamodule_items(kw, split="val" if args.speech_split == "val" else "test")
    return LazyItems(loaders), sr, desc, []


def run(args: Namespace) -> int:
    """Evaluate as ``args`` say and write the tables; raises on bad input."""
    _check_args(args)
    # Systems first: a bad --baselines or checkpoint fails before any data is built.
    systems, sys_notes = build_systems(
        args.baselines, args.ckpt, device=args.device, phase=args.phase, n_iter=args.model_gl_iters,
        with_reference=args.unpaired is None, wpe_taps=args.wpe_taps, wpe_delay=args.wpe_delay,
        wpe_iterations=args.wpe_iterations, gl_iters=args.gl_iters)
    items, sample_rate, desc, notes = _source(args)
    if len(items) == 0:
        raise EvaluationError("the source has no items")
    out: Path = args.output
    cache_dir = args.cache_dir or out / "cache"
    t0 = time.perf_counter()
    stats: dict[str, int] = {}
    rows = evaluate_systems(items, systems, sample_rate, cache_dir, srmr=args.srmr, progress=not args.no_progress,
                            stats=stats)
    if not rows:
        raise EvaluationError("no scores: every system needs a clean reference these items lack")
    elapsed = time.perf_counter() - t0
    all_notes = [
        desc, *notes, *sys_notes,
        f"SRMR: {args.srmr}; T60 bands from each item's measured RIR T60; sample rate {sample_rate} Hz",
        f"{stats.get('computed', 0)} (item, system) scores computed, {stats.get('cached', 0)} reused "
        f"from {cache_dir}, {elapsed:.0f} s",
    ]
    meta = {
        "source": desc, "notes": all_notes, "systems": list(systems), "sample_rate": sample_rate,
        "srmr": args.srmr, "bootstrap": args.bootstrap, "stats": stats, "seconds": elapsed,
        "checkpoints": {n: str(s.path) for n, s in systems.items() if isinstance(s, CheckpointSystem)},
        "command": f"{PROG} " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("evaluate.py") else None,
    }
    summary = summarize(rows, n_boot=args.bootstrap, seed=0)
    md = write_outputs(out, rows, summary, meta, title="Dereverberation evaluation", notes=all_notes)
    print(md.split("## By T60 band")[0].rstrip())
    print(f"\nwrote {out}/" + ", ".join(OUTPUT_FILES))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (see the module docstring)."""
    args = parse_one_line(build_parser(), argv)
    try:
        return run(args)
    except KeyboardInterrupt as exc:
        report("interrupted; cached scores are kept, re-run to continue", exc)
        return EXIT_INTERRUPTED
    except INPUT_ERRORS as exc:
        report(str(exc), exc, debug=args.debug)
        return EXIT_USAGE
    except Exception as exc:
        report(unexpected(exc), exc, debug=args.debug)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
