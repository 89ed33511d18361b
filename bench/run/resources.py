"""What a run records about where and how it ran: device, code version, time and peak memory."""

from __future__ import annotations

import os
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


def machine_memory() -> int:
    """Bytes of memory this machine offers its processes: the physical memory, or this process's
    cgroup limit when that is lower (a container, a batch job's allocation)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (Linux ``/proc``; none elsewhere)."""
    pids = []
    try:
        entries = [e for e in Path("/proc").iterdir() if e.name.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[2] == str(pgid):
            pids.append(int(entry.name))
    return pids


def _held(pid: int) -> int:
    """Bytes process ``pid`` holds that the kernel cannot give back without killing it: its
    resident anonymous and shared-memory pages (``RssAnon + RssShmem`` of
    ``/proc/<pid>/status``, counters the kernel keeps, so reading them is cheap; else its
    resident set). ``smaps_rollup``'s proportional figures would count pages shared with the
    forkserver once, but reading them walks the page tables under the process's memory lock,
    which stalled the cells it watched (docs/decisions.md, "Folded page")."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        text = ""
    kb = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssShmem") and rest.split():
            kb[key] = int(rest.split()[0])
    if "RssAnon" in kb:
        return (kb["RssAnon"] + kb.get("RssShmem", 0)) * 1024
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def group_memory(pgid: int) -> int:
    """Bytes of memory held by the processes of process group ``pgid`` together (a cell and
    what it started; see :func:`_held`): the pages they map from files (libraries, shared with
    every process that loaded them) are left out, so the figure is what the cell costs the
    machine. 0 where ``/proc`` is missing (not Linux)."""
    return sum(_held(pid) for pid in _group_pids(pgid))


def raise_oom_score() -> None:
    """Make this process (and what it starts) the kernel OOM killer's first choice, so that
    when memory runs out a cell dies, not the grid's driver (raising needs no privilege)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:  # not Linux, or a sandbox that forbids it
        pass


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
