"""GPU utilisation sampled in a background thread while a benchmark runs.

    with GpuUtilisation(device) as util:  # or util.start() ... util.stop()
        ...  # the timed work
    print(util.mean)  # percent of the time a kernel ran, or None (no GPU / no reader)

Reads ``torch.cuda.utilization`` (NVML through nvidia-ml-py) and falls back to polling
``nvidia-smi``; on a CPU device, or where neither is available, ``mean`` is None and benchmarks
print "-".
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import torch


def _reader(device: torch.device):
    """A zero-argument function returning the device's utilisation in percent, or None."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        torch.cuda.utilization(index)
        return lambda: float(torch.cuda.utilization(index))
    except Exception:  # no nvidia-ml-py: ask nvidia-smi instead
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    cmd = [smi, f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]

    def read() -> float:
        return float(subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout.split()[0])

    try:
        read()
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return read


class GpuUtilisation:
    """Context manager sampling GPU utilisation every ``interval`` seconds (NVML itself averages
    over its last sample period, ~1/6 to 1 s); ``mean`` and ``samples`` after exit."""

    def __init__(self, device: torch.device | str, interval: float = 0.1) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.samples: list[float] = []
        self._read = _reader(self.device)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self._read())
            except Exception:  # a failed read is a missing sample, not a failed benchmark
                pass

    def start(self) -> None:
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> GpuUtilisation:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def __format__(self, spec: str) -> str:
        """``f"{util:>5}"``: the mean as ``NN%`` or ``-``."""
        text = "-" if self.mean is None else f"{self.mean:.0f}%"
        return format(text, spec)
