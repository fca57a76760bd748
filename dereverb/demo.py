"""``python -m dereverb.demo [--ckpt X] [--host 127.0.0.1] [--port 7860] [--max-seconds 60]``:
a local web page to hear and see what the model does (needs ``pip install -e ".[demo]"``).

Upload or record a file, set the strength, and get the reverberant and the dereverberated audio
side by side with their spectrograms on one dB scale. Files go through the same path as
``python -m dereverb.predict`` (:func:`dereverb.inference.files.process_file`: any rate and channel
count). The examples are the project's own synthetic speech in simulated rooms, made on the first
start. The page is served on 127.0.0.1 only unless ``--host`` says otherwise; nothing is fetched
from the network (Gradio's analytics off, no share link). :func:`enhance_file` is the page's
whole processing, callable without a server.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveFloat
from matplotlib.figure import Figure

from dereverb.cli_errors import EXIT_USAGE, parse_one_line
from dereverb.inference import PRETRAINED, CheckpointError, load_model
from dereverb.inference.checkpoint import DeviceError, resolve_device
from dereverb.inference.enhance import check_strength
from dereverb.inference.files import process_file
from dereverb.models.dereverber import Dereverber
from dereverb.signals import dsp
from dereverb.signals.audio import AudioError, open_audio, read_audio, write_audio
from dereverb.training.media import spectrogram_row

#: (name, T60 s, synthetic utterance index) of the bundled examples.
EXAMPLES = (("synthetic_t60_0.4s", 0.4, 0), ("synthetic_t60_0.7s", 0.7, 1), ("synthetic_t60_1.1s", 1.1, 2))


class DemoInputError(ValueError):
    """A file the page cannot take (none, unreadable, too long); the message says what to do."""


def spectrogram_figure(waves: dict[str, np.ndarray], sample_rate: int) -> Figure:
    """Spectrograms of ``{title: (C, L)}`` (the channels' mean; 512-point STFT at 16 kHz, scaled
    with the rate) in one row on one dB scale, as in TensorBoard's validation picture."""
    n_fft = 512 * max(1, round(sample_rate / 16000))
    cfg = dsp.StftConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4)
    mags = {title: dsp.magnitude(dsp.stft(torch.from_numpy(w.mean(axis=0))[None], cfg))[0].numpy()
            for title, w in waves.items()}
    return spectrogram_row(mags, sample_rate=sample_rate, hop_length=cfg.hop_length)[0]


def enhance_file(path: str | None, strength: float, *, model: Dereverber, max_seconds: float,
                 out_dir: str | os.PathLike) -> tuple[str, Figure]:
    """Dereverberate one audio file as predict does -> (output float32 WAV path, spectrogram figure).

    The output keeps the input's rate, channels and length. Raises :class:`DemoInputError` for no
    file, an unreadable one or one longer than ``max_seconds``; ``ValueError`` for a strength outside [0, 1]."""
    if not path:
        raise DemoInputError("no audio: upload or record a file, or pick an example")
    check_strength(strength)
    src = Path(path)
    try:
        with open_audio(src) as f:
            seconds = f.frames / f.samplerate
        if seconds > max_seconds:
            raise DemoInputError(f"{src.name}: {seconds:.1f} s is longer than this page's {max_seconds:g} s limit; "
                                 "cut it, use python -m dereverb.predict (no limit) or restart with --max-seconds")
        dst = Path(out_dir) / uuid.uuid4().hex[:12] / f"{src.stem}_dereverberated.wav"
        process_file(src, dst, model, strength=strength)
        reverb, sr = read_audio(src)
        clean, _ = read_audio(dst)
    except AudioError as exc:
        raise DemoInputError(str(exc).replace(str(src), src.name)) from exc
    return str(dst), spectrogram_figure({"reverberant": reverb, f"dereverberated (strength {strength:g})": clean}, sr)


def make_examples(folder: str | os.PathLike, seconds: float = 4.0, sample_rate: int = 16000) -> list[Path]:
    """The example clips (synthetic speech x simulated shoebox rooms, :data:`EXAMPLES`) in ``folder``,
    simulated only when missing -> their paths."""
    from dereverb.data.pairs import make_pair
    from dereverb.data.rooms import RoomSpec, direct_path_index, simulate_rir
    from dereverb.data.synthetic_speech import SyntheticSpeech

    paths = [Path(folder) / f"{name}.wav" for name, _, _ in EXAMPLES]
    speech = SyntheticSpeech(sample_rate=sample_rate, seed=0)
    for p, (_, t60, index) in zip(paths, EXAMPLES, strict=True):
        if not p.is_file():
            spec = RoomSpec(dims=(6.0, 4.5, 3.0), t60=t60, source=(1.5, 1.5, 1.6), mic=(4.2, 3.0, 1.2))
            rir = simulate_rir(spec, sample_rate)
            dry = speech.item(index, int(seconds * sample_rate))
            reverb, _ = make_pair(dry, rir, direct_path_index(rir), sample_rate, gain_db=-3.0)
            write_audio(p, reverb, sample_rate)
    return paths


def build_app(model: Dereverber, max_seconds: float, examples: Sequence[Path], out_dir: str | os.PathLike):
    """The page as a ``gradio.Blocks`` (not launched); its API name for the processing is ``/dereverberate``."""
    import gradio as gr

    def run(path: str | None, strength: float) -> tuple[str, Figure]:
        try:
            return enhance_file(path, strength, model=model, max_seconds=max_seconds, out_dir=out_dir)
        except (DemoInputError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc

    with gr.Blocks(title="dereverb", analytics_enabled=False) as app:
        gr.Markdown("## dereverb: remove the room from speech\nUpload or record speech (any rate or channel count, "
                    f"at most {max_seconds:g} s), set the strength, press **Dereverberate**.")
        with gr.Row():
            reverberant = gr.Audio(sources=["upload", "microphone"], type="filepath", label="reverberant",
                                   buttons=["download"], elem_id="reverberant")
            dereverberated = gr.Audio(type="filepath", label="dereverberated", interactive=False,
                                      buttons=["download"], elem_id="dereverberated")
        strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="strength (0: the input, 1: all the model removes)")
        button = gr.Button("Dereverberate", variant="primary", elem_id="run")
        spectrograms = gr.Plot(label="spectrograms (one dB scale)", elem_id="spectrograms")
        gr.Examples([[str(p)] for p in examples], inputs=[reverberant], label="examples: synthetic speech, simulated rooms")
        button.click(run, [reverberant, strength], [dereverberated, spectrograms], api_name="dereverberate")
    return app


def local_theme():
    """Gradio's default theme with system fonts: the default loads web fonts from the network."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m dereverb.demo", exit_on_error=False, default_env=False,
                       description="A local web page: dereverberate a recording and compare it with the input.")
    p.add_argument("--ckpt", default=PRETRAINED, help="checkpoint, model folder or `pretrained`: the shipped model")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on; 127.0.0.1: this machine only")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--max-seconds", type=PositiveFloat, default=60.0, help="longest input accepted, in seconds")
    p.add_argument("--examples-dir", default=None, help="where the example clips are made; null: ~/.cache/dereverb/demo")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    return p


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_one_line(build_parser(), argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        return _fail('the demo needs Gradio: pip install -e ".[demo]"')
    with socket.socket() as s:
        try:
            s.bind((args.host, args.port))
        except OSError as exc:
            return _fail(f"--host {args.host} --port {args.port}: cannot serve there ({exc.strerror}); pass another --port")
    try:
        model = load_model(args.ckpt, resolve_device(args.device))
    except (CheckpointError, DeviceError) as exc:
        return _fail(str(exc))
    cache = Path(args.examples_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dereverb" / "demo")
    examples = make_examples(cache)
    app = build_app(model, args.max_seconds, examples, tempfile.mkdtemp(prefix="dereverb-demo-"))
    app.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, share=False,
                                                  allowed_paths=[str(cache)], footer_links=[], theme=local_theme())
    return 0


if __name__ == "__main__":
    sys.exit(main())
