"""``python -m dereverb.predict -o OUT [--ckpt X.ckpt] inputs...``: dereverberate audio files.

Without ``--ckpt`` it uses the model shipped with the package (docs/pretrained.md). Inputs are
files, folders (searched recursively) and globs (expanded here, for shells that do not); each
output is a float32 WAV with the input's rate, channel count and length, mirroring the input's
path below the folder it was found in, streamed in chunks (:mod:`dereverb.inference.files`).
Neither Lightning nor TensorBoard is imported: start-up is little more than ``import torch``.
From Python: :func:`dereverb.inference.load_model` and :func:`dereverb.inference.dereverberate`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from tqdm import tqdm

from dereverb.cli_errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    parse_one_line,
    unexpected,
    usage_error,
)
from dereverb.inference.checkpoint import DeviceError, compile_model, load_model, resolve_device
from dereverb.inference.enhance import (
    BATCH_SIZE_CPU,
    BATCH_SIZE_CUDA,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    check_strength,
    dereverberate,
)
from dereverb.inference.files import collect_inputs, plan_jobs, process_file
from dereverb.models.checkpoints import PRETRAINED, CheckpointError
from dereverb.signals import dsp
from dereverb.signals.audio import AudioError

# Re-exported: the Python API of this command's library.
__all__ = ["CheckpointError", "dereverberate", "load_model", "main"]


class UsageError(Exception):
    """A bad command-line combination (output path); the message says what to do."""


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m dereverb.predict",
        description="Dereverberate audio files with the pretrained model shipped with the package, or "
        "your own checkpoint (--ckpt). Outputs are float32 WAV at each input's sample rate, channel "
        "count and length.",
        epilog="Examples: python -m dereverb.predict -o enhanced/ recordings/ 'more/**/*.flac' (the "
        "pretrained model); python -m dereverb.predict --ckpt runs/dereverb/version_0/checkpoints/last.ckpt "
        "-o enhanced/ recordings/",
        exit_on_error=False,
        default_env=False,
    )
    p.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively for audio files: "
                   "WAV, FLAC, OGG, MP3, ...) or glob patterns")
    p.add_argument("--ckpt", default=PRETRAINED, help="checkpoint written by python -m dereverb.train, a model "
                   "folder (config.json + model.safetensors), or `pretrained` (default): the model shipped with "
                   "the package, see docs/pretrained.md")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors each input's path below the "
                   "folder it was found in), or a .wav file when there is exactly one input file")
    p.add_argument("--strength", type=float, default=1.0, help="how much of the estimated reverberation to "
                   "remove, 0 to 1: 0 writes the input unchanged, 1 (default) the full model output, in between "
                   "a mix (docs/predict.md)")
    p.add_argument("--phase", choices=dsp.PHASE_METHODS, default=None,
                   help="phase recovery (default: the checkpoint's, usually griffinlim-warm)")
    p.add_argument("--iters", type=NonNegativeInt, default=None, help="Griffin-Lim iterations (default: the checkpoint's)")
    p.add_argument("--chunk-seconds", type=PositiveFloat, default=DEFAULT_CHUNK_SECONDS, help="process long files "
                   f"in chunks of this length, rounded to the model's frame grid (default {DEFAULT_CHUNK_SECONDS:g})")
    p.add_argument("--context-seconds", type=NonNegativeFloat, default=DEFAULT_CONTEXT_SECONDS, help="context on "
                   f"each side of a chunk, half of it crossfaded (default {DEFAULT_CONTEXT_SECONDS:g})")
    p.add_argument("--batch-size", type=PositiveInt, default=None, help="chunks per model call, each with all its "
                   f"channels (default {BATCH_SIZE_CPU} on CPU, {BATCH_SIZE_CUDA} on CUDA); more is faster on a GPU "
                   "and costs memory")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net (the first chunk compiles; "
                   "then faster, see docs/performance.md): worth it for long files and archives")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs (never inputs)")
    p.add_argument("--debug", action="store_true", help="print tracebacks for errors")
    return p


class _Reporter:
    """Results on stdout; notes, warnings and errors on stderr, tracebacks only with --debug (all
    through ``tqdm.write``, which keeps progress bars intact)."""

    def __init__(self, debug: bool) -> None:
        self.debug, self.failed = debug, 0

    def say(self, text: str, kind: str = "") -> None:
        tqdm.write(f"{kind}: {text}" if kind else text, file=sys.stderr if kind else sys.stdout)

    def error(self, text: str, exc: BaseException | None = None) -> None:
        self.failed += 1
        if self.debug and exc is not None:
            traceback.print_exception(exc, file=sys.stderr)
        self.say(text, "error")


def _check_output_folder(folder: Path) -> None:
    """Create ``folder`` and prove it is writable, before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dereverb-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write to the output folder ({exc.strerror or exc}); "
                         "choose another -o") from exc


def return_freed_memory_to_the_os() -> None:
    """Make glibc serve every allocation of 4 MiB or more with its own mapping, returned to the OS
    when freed: by default glibc raises that threshold as large blocks are freed and keeps per-chunk
    tensors in its heap, so a long file's resident memory creeps up (docs/performance.md). A no-op
    where the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform == "linux" and name:
        with contextlib.suppress(OSError, AttributeError):  # musl and others: no mallopt
            ctypes.CDLL(name).mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD; a fixed value also stops its growth


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_one_line(parser, argv)
    try:
        check_strength(args.strength)
    except ValueError as exc:
        usage_error(parser.prog, f"--{exc}")
    return_freed_memory_to_the_os()
    rep = _Reporter(args.debug)
    try:
        _run(args, rep)
    except (UsageError, CheckpointError, DeviceError) as exc:
        rep.error(str(exc), exc)
    except Exception as exc:  # a bug: still one line unless --debug
        rep.error(unexpected(exc), exc)
    except KeyboardInterrupt:
        rep.error("interrupted; finished outputs are kept, re-run to continue")
        return EXIT_INTERRUPTED
    return EXIT_USAGE if rep.failed else EXIT_OK


def _file_error(exc: Exception, src: Path, dst: Path, device: str) -> str:
    """The one line for a file that failed; the run goes on with the next."""
    import torch

    if isinstance(exc, AudioError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{src}: cannot write {dst} ({exc.strerror or exc}); check the output folder"
    if isinstance(exc, torch.OutOfMemoryError):
        return f"{src}: out of {device.upper()} memory; lower --batch-size or --chunk-seconds"
    return f"{src}: {unexpected(exc)}"


def _run(args, rep: _Reporter) -> None:
    output = Path(args.output)
    wants_file = output.suffix.lower() == ".wav" and not output.is_dir()
    out_folder = output.parent if wants_file else output
    inputs, input_errors = collect_inputs(args.inputs, exclude=None if wants_file else out_folder.resolve())
    if wants_file and len(inputs) > 1:
        raise UsageError(f"-o {output}: names a .wav file but there are {len(inputs)} input files; "
                         "pass an output folder")
    for line in input_errors:
        rep.error(line)
    if not inputs:
        return
    jobs, plan_errors = plan_jobs(inputs, output, single_file_output=wants_file)
    for line in plan_errors:
        rep.error(line)
    todo = []
    for job in jobs:
        if job.dst.exists() and not args.force:
            rep.say(f"{job.dst}: exists, skipped (use --force to overwrite)", "note")
        else:
            todo.append(job)
    if not todo:
        if jobs:
            rep.say(f"done: nothing to do, {len(jobs)} output(s) exist (use --force to redo)")
        return
    device = resolve_device(args.device)
    model = load_model(args.ckpt, device)
    if args.compile:
        compile_model(model)
    folder_existed = out_folder.exists()
    _check_output_folder(out_folder)
    t_start, audio_seconds, done = time.perf_counter(), 0.0, 0
    for job in tqdm(todo, desc="files", unit="file", disable=None if len(todo) > 1 else True, file=sys.stderr):
        bars: list[tqdm] = []

        def chunk_bar(n: int, name: str = job.src.name, bars: list = bars):  # for files of several chunks
            bars.append(tqdm(total=n, desc=name, unit="chunk", leave=False, disable=None if n > 1 else True,
                             file=sys.stderr))
            return bars[-1].update

        try:
            res = process_file(job.src, job.dst, model, phase=args.phase, n_iter=args.iters,
                               chunk_seconds=args.chunk_seconds, context_seconds=args.context_seconds,
                               batch_size=args.batch_size, progress=chunk_bar, warn=lambda t: rep.say(t, "warning"),
                               strength=args.strength)
        except Exception as exc:  # one line, and on to the next file
            rep.error(_file_error(exc, job.src, job.dst, device.type), exc)
            continue
        finally:
            for bar in bars:
                bar.close()
        done += 1
        audio_seconds += res.frames / res.sample_rate
        if res.silent:
            rep.say(f"{job.src}: every sample is zero (silent); wrote silence to {job.dst}", "warning")
        rep.say(f"{job.src} -> {job.dst} ({res.frames / res.sample_rate:.2f} s of audio in {res.seconds:.2f} s)")
    elapsed = time.perf_counter() - t_start
    if not folder_existed and done == 0:
        with contextlib.suppress(OSError):  # nothing written: leave no empty output folder behind
            out_folder.rmdir()
    rtf = f", real-time factor {elapsed / audio_seconds:.3f}" if audio_seconds > 0 else ""
    rep.say(f"done: {done} written, {len(jobs) - len(todo)} skipped, {rep.failed} failed in {elapsed:.1f} s{rtf}")


if __name__ == "__main__":
    sys.exit(main())
