"""``python -m dereverb.study --config configs/study.yaml``: the representation study.

Can an RGB (colormapped) spectrogram beat the raw one as U-Net input? A matrix of conditions
(arm x target domain) x capacities x seeds is trained with one architecture per capacity, one data
set, step budget and optimiser, evaluated at several training lengths on the same simulated and
(when present) measured-room sets, and reported in ``REPORT.md`` / ``report.json`` (docs/study/).
Each run is one submitit job (``--launcher local``, ``slurm`` or ``debug``); finished runs with the
same settings are reused, so the same command continues a study cut short. The work is done in
:mod:`dereverb.experiment`; this module parses, calls, prints and exits.

Exit codes (:mod:`dereverb.cli_errors`): 0 done, 1 some runs failed (their ``train.log`` says
why), 2 bad input or usage (one line on stderr), 130 Ctrl-C (finished runs are kept).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from dereverb.cli_errors import (
    EXIT_FAILED_RUNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    parse_one_line,
    report,
)
from dereverb.experiment.config import StudyError, deep_merge, load_config
from dereverb.experiment.files import RESULT, STUDY_JSON, run_dir
from dereverb.experiment.runner import LAUNCHERS, plan, run_study

PROG = "python -m dereverb.study"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description=__doc__.splitlines()[0].split(": ", 1)[-1],
        epilog=f"Example: {PROG} --config configs/study.yaml --profile core\n"
        f"Report only: {PROG} --config configs/study.yaml --report-only "
        "--report-dir docs/study --force",
        exit_on_error=False,
        default_env=False,
    )
    p.add_argument("--config", required=True, help="study YAML (arms, shared training config, profiles)")
    p.add_argument("--profile", help="profile of the config (smoke | quick | core | full; default: the config's default_profile)")
    p.add_argument("--out", type=Path | None, help="study folder (default runs/study/<profile>)")
    p.add_argument("--arms", help="comma-separated arms or arm@target conditions (default: all)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: the profile's)")
    p.add_argument("--capacities", help="comma-separated capacities, e.g. tiny (default: the profile's)")
    p.add_argument("--jobs", type=PositiveInt | None, help="runs trained at a time by the local launcher (default: the profile's)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: a process per run on this machine (default); slurm: submit the runs to a SLURM "
                   "cluster (the config's slurm parameters); debug: one after another in this process")
    p.add_argument("--speech", help="override data.speech (a folder, or 'synthetic' for a trial run)")
    p.add_argument("--list", action="store_true", help="print the runs and whether they are finished, then exit")
    p.add_argument("--report-only", action="store_true", help="do not train; write the report from finished runs")
    p.add_argument("--no-report", action="store_true", help="do not write the report after training")
    p.add_argument("--report-dir", type=Path | None, help="where REPORT.md and the figures go (default <out>/report)")
    p.add_argument("--force", action="store_true",
                   help="retrain finished runs whose settings changed; overwrite a --report-dir report")
    return p


def _int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise StudyError(f"{what} {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not vals:
        raise StudyError(f"{what} is empty; give comma-separated integers, e.g. 0,1,2")
    return vals


def _run(args, command: str) -> int:
    cfg = load_config(args.config, args.profile)
    if args.speech:
        cfg.train = deep_merge(cfg.train, {"data": {"speech": args.speech}})
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else None
    caps = [c.strip() for c in args.capacities.split(",") if c.strip()] if args.capacities else None
    specs = cfg.specs(arms, seeds, caps)
    if not specs:
        raise StudyError("no runs selected; check --arms, --seeds and --capacities")
    out = args.out or Path("runs") / "study" / cfg.profile
    jobs = args.jobs if args.jobs is not None else cfg.jobs
    report_dir = args.report_dir or out / "report"
    if args.report_dir and (report_dir / "REPORT.md").exists() and not (args.force or args.list):
        raise StudyError(f"--report-dir {report_dir} already holds a REPORT.md; pass --force to overwrite it")
    if args.list:
        done, todo = plan(cfg, specs, out, force=True)
        finished = {s.run_id for s in done}
        other = {s.run_id for s in todo if (run_dir(out, s.run_id) / RESULT).is_file()}
        for s in specs:
            print(f"{'done' if s.run_id in finished else 'other' if s.run_id in other else 'todo'}  {s.run_id}")
        print(f"{len(done)} finished, {len(todo)} to run in {out}"
              + (f" ({len(other)} of them finished with other settings: --force retrains them)" if other else ""))
        return EXIT_OK
    status = EXIT_OK
    if not args.report_only:
        session = run_study(cfg, out, specs, jobs=max(jobs, 1), launcher=args.launcher, force=args.force, command=command)
        if session["failed"]:
            print(f"{len(session['failed'])} run(s) failed: {', '.join(session['failed'])}", file=sys.stderr)
            status = EXIT_FAILED_RUNS
        print(f"study session took {session['wall_seconds'] / 60:.1f} min")
    elif not (out / STUDY_JSON).exists():
        raise StudyError(f"--out {out}: no study.json; run the study first (without --report-only)")
    if not args.no_report:
        from dereverb.experiment.report import write_report

        print(f"report: {write_report(out, report_dir, report_command=command)}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (see the module docstring)."""
    args = parse_one_line(build_parser(), argv)
    command = f"{PROG} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        return _run(args, command)
    except StudyError as exc:
        report(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept, run the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
