"""What a run records about where and how it ran: device, code version, time and peak memory."""

from __future__ import annotations

import resource
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]


def device() -> str:
    """``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name() -> str:
    """Human-readable device, e.g. ``"cpu (2 threads)"`` or ``"cuda:NVIDIA H100 80GB HBM3"``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu ({torch.get_num_threads()} threads)"


def code_version() -> str:
    """``git describe --always --dirty`` of the checkout, else the installed package version."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"stsr-bench {version('stsr-bench')}"
        except PackageNotFoundError:
            return "unknown"


def rss_bytes() -> int:
    """This process's resident set size now, in bytes (``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: the process's lifetime peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager measuring peak memory of a block, in MiB.

    CPU: peak resident set size of the process while the block runs, sampled every
    ``interval`` seconds (Linux ``/proc/self/statm``). GPU (if CUDA is initialised): torch's
    peak allocated device memory, reset on entry. ``cpu_mb`` and ``gpu_mb`` hold the results.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.cpu_mb = 0.0
        self.gpu_mb: float | None = None
        self._stop = threading.Event()

    def _watch(self) -> None:
        peak = rss_bytes()
        while not self._stop.wait(self.interval):
            peak = max(peak, rss_bytes())
        self._peak = max(peak, rss_bytes())

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        import torch

        self._stop.set()
        self._thread.join()
        self.cpu_mb = self._peak / 2**20
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.gpu_mb = torch.cuda.max_memory_allocated() / 2**20


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
