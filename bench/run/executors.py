"""Where the grid's cells run: in this process (``local``) or as Ray tasks (``ray``).

Both executors call the same :func:`bench.run.cell.run_cell` with the same split, seed and options,
so a cell's record is identical whichever ran it (timings and the recorded device aside). Only the
driver writes: it saves each returned record and logs it to MLflow, so the results directory and
the store see one writer per invocation, as with the local executor.

Deadline (``--timeout``): a cell with a deadline runs in a child process of its own
(:func:`run_bounded`), which is killed (with its process group) once the deadline has passed, so
no code of the method, however it catches exceptions, can outlive it; and a cell that returns
after its deadline is recorded as failed whatever it returns. Without a deadline or a memory cap
(below; the grid's local cells always have one) a cell runs in the executor's process.

Memory cap (``--max-memory``, ``RunOptions.max_memory``): a capped cell runs in a child process
too, and the driver reads the memory its process group holds every :data:`POLL_S` seconds
(:func:`bench.run.resources.group_memory`); past the cap the group is killed and the cell
recorded as failed with a ``MemoryCap`` reason, and the grid goes on. A cell's processes are
also the kernel OOM killer's first choice (``oom_score_adj`` 1000), so when memory runs out
regardless, a cell dies, not the driver.

Ray: ``address=None`` starts a local Ray on demand (the CPUs of this machine, no dashboard), bound
to 127.0.0.1; otherwise it connects to ``address`` (e.g. ``ray://head:10001`` or ``auto``), after
checking within :data:`RAY_CONNECT_S` seconds that something listens there, and ships this
repository as the tasks' working directory. Each task asks for one CPU, and one GPU when the
cluster has GPUs. ray is imported only here, and only when chosen.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.data.splits import Split
from bench.errors import BenchError, first_line, one_line, redact, size_text
from bench.run.cell import RunOptions, failed_record, run_cell
from bench.run.records import PerGene, Record
from bench.run.resources import group_memory, raise_oom_score

REPO = Path(__file__).resolve().parents[2]
Cell = tuple[str, str, int, Path]  # dataset, method, seed, workdir
Result = tuple[Cell, Record, dict[str, Any]]  # cell, record, extras

GRACE_S = 2.0  # after the deadline, the time a cell has to report its own timeout
START_S = 300.0  # the most a cell's process may take to start (import torch, unpickle the split)
RAY_CONNECT_S = 10.0  # the most start_ray waits for a cluster address to answer
POLL_S = 0.5  # how often the driver reads a capped cell's memory
_MAIN_LOCK = threading.Lock()
_LIVE: set[Any] = set()  # cell processes running now (run_bounded), for kill_running
_LIVE_LOCK = threading.Lock()


def kill_running() -> int:
    """Kill every cell process this driver is running (each with its process group); returns
    how many. Called when the grid is interrupted, so no cell outlives it."""
    with _LIVE_LOCK:
        running = list(_LIVE)
    for proc in running:
        _kill(proc, wait=0)
    return len(running)


def local(
    cells: list[Cell], splits: dict[str, Split], opts: RunOptions, jobs: int = 1
) -> Iterator[Result]:
    """Run the cells on this machine, yielding each as it finishes: one after another when
    ``jobs`` is 1 (in this process, or in a child under a deadline or a memory cap, as the
    grid's cells always are), else ``jobs`` at a time,
    each in a process of its own (:func:`run_bounded` with ``isolate``) with
    ``opts.threads`` torch threads, so small networks share the cores instead of contending
    inside one process."""
    if jobs <= 1:
        for cell in cells:
            dataset, method, seed, workdir = cell
            record, extras = run_bounded(splits[dataset], method, seed, opts, workdir)
            yield cell, record, extras
        return
    import dataclasses
    import queue
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    lines: queue.Queue[int] = queue.Queue()  # one progress line per running cell
    for line in range(1, jobs + 1):
        lines.put(line)

    def one(cell: Cell) -> tuple[Record, dict]:
        line = lines.get()
        try:
            mine = dataclasses.replace(opts, bar=line)
            return run_bounded(splits[cell[0]], cell[1], cell[2], mine, cell[3], True)
        finally:
            lines.put(line)

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell") as pool:
        futures: dict = {}
        try:  # from the first submit: an interrupt then ends the cells already started
            futures.update((pool.submit(one, c), c) for c in cells)
            # a timed wait, not as_completed's untimed one: a SIGINT that the kernel delivers to
            # a worker thread only sets Python's flag, and the main thread runs its handler
            # (KeyboardInterrupt) only once it wakes, which an untimed wait does when a cell ends
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    yield (futures[future], *future.result())
        except BaseException:  # interrupted (or closed early): end the cells, let threads go
            for future in futures:
                future.cancel()
            while not all(f.done() for f in futures):  # a cell still starting is ended too
                kill_running()
                wait(futures, timeout=POLL_S)
            raise


def _ray_cell(
    split: Split, method: str, seed: int, opts: RunOptions, workdir: str, entry: tuple
) -> tuple:
    """A Ray task: the method registered as in the driver (a plugin, a test's stub), then the
    cell under its deadline."""
    from methods.registry import register

    module, cls, fixed = entry
    register(method, module, cls, **fixed)
    return run_bounded(split, method, seed, opts, Path(workdir))


# ---------------------------------------------------------------- the deadline


def _die_with_driver(watch: Any) -> None:
    """Kill this process group when the driver goes (``watch``'s other end closes: the driver
    exited or was killed, SIGKILL included). A thread, so no code of the method can stop it.
    The cell's parent is multiprocessing's fork server, which outlives a killed driver while any
    cell runs, so a parent-death signal alone would not do."""

    def wait() -> None:
        with contextlib.suppress(EOFError, OSError):
            watch.recv()
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=wait, name="driver watch", daemon=True).start()


def _child(
    conn: Any, watch: Any, split: Split, method: str, seed: int, opts: RunOptions, workdir, entry
):
    """A cell's process: its own process group (killed as one) that dies with the driver, the
    method registered as in the driver (a plugin or a test's stub), then :func:`run_cell`; the
    result goes back on ``conn``."""
    from methods.registry import register

    os.setpgrp()
    raise_oom_score()
    _die_with_driver(watch)
    module, cls, fixed = entry
    register(method, module, cls, **fixed)
    conn.send(("started", time.time()))
    conn.send(("done", *run_cell(split, method, seed, opts, workdir)))
    conn.close()


def _timed_out(split: Split, method: str, seed: int, opts: RunOptions, why: str) -> Result:
    record = failed_record(split, method, seed, opts, f"CellTimeout: {why}")
    return record, {"traceback": f"CellTimeout: {why}\n"}


def _past_cap(split: Split, method: str, seed: int, opts: RunOptions, used: int) -> Result:
    cap = size_text(opts.max_memory or 0)
    why = (
        f"MemoryCap: the cell used {size_text(used)}, past --max-memory {cap}; its process was "
        "killed (raise --max-memory or lower --jobs)"
    )
    record = failed_record(split, method, seed, opts, why)
    record.peak_memory_mb = round(used / 2**20, 1)
    record.memory = {"cpu_rss_mb": round(used / 2**20, 1), "gpu_mb": None}
    return record, {"traceback": why + "\n"}


def _wait(receive: Any, pgid: int | None, seconds: float | None, cap: int | None) -> int:
    """Wait at most ``seconds`` (None: no limit) for the cell's next message, reading the memory
    of process group ``pgid`` every :data:`POLL_S` seconds when ``cap`` is set. Returns 0 when a
    message (or the end of the pipe) is there, -1 when the time ran out, else the bytes the group
    held past ``cap``."""
    if not cap or not pgid:
        return 0 if receive.poll(seconds) else -1
    end = None if seconds is None else time.monotonic() + seconds
    while True:
        step = POLL_S if end is None else max(0.0, min(POLL_S, end - time.monotonic()))
        if receive.poll(step):
            return 0
        used = group_memory(pgid)
        if used > cap:
            return used
        if end is not None and time.monotonic() >= end:
            return -1


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start processes without multiprocessing re-running the caller's main script in them (a
    notebook, stdin or a script without an ``if __name__ == "__main__"`` guard would run again,
    or fail): the cell's process needs nothing from ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _MAIN_LOCK:  # cells started from several threads: one hides and restores at a time
        saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def _context() -> Any:
    """A fresh-process start method: ``forkserver`` (torch imported once in the server; no
    inherited CUDA context, threads or open MLflow connections, which ``fork`` would copy).
    The server also imports what every cell's scoring imports on first use (``scipy.stats``),
    so a cell's process does not pay for it again."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "bench.run.cell", "scipy.stats"])
    return ctx


def run_bounded(
    split: Split,
    method: str,
    seed: int,
    opts: RunOptions,
    workdir: Path | None = None,
    isolate: bool = False,
) -> tuple[Record, dict]:
    """:func:`run_cell` under ``opts.timeout`` and ``opts.max_memory``, which the method cannot
    swallow.

    Without either the cell runs here, unless ``isolate`` (parallel cells) asks for a child
    process anyway. With one, it runs in a child process; the child's own alarm
    (:func:`bench.run.cell.deadline`) lets a cooperative method stop with a traceback, and
    :data:`GRACE_S` seconds after the deadline the child and its process group are killed; so are
    they when the group holds more than ``opts.max_memory`` bytes (a ``MemoryCap`` failure). A
    record that comes back ok but took longer than the timeout is turned into a failed one; a
    child that dies (killed for memory, a crash) gives a failed record naming its exit code.
    """
    if not opts.timeout and not opts.max_memory and not isolate:
        return run_cell(split, method, seed, opts, workdir)
    from methods.registry import entry

    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    watch, alive = ctx.Pipe(duplex=False)  # the driver holds ``alive``; never written
    args = (send, watch, split, method, seed, opts, workdir, entry(method))
    # not a daemon, so a method may start processes of its own (data loaders, joblib); it is
    # killed below whatever happens, and dies with this process (_die_with_driver)
    proc = ctx.Process(target=_child, args=args, name=f"cell {method} seed {seed}")
    try:
        with _main_not_rerun():
            proc.start()
    except OSError as err:  # no process could be started (out of memory, pids, ...)
        for end in (send, receive, watch, alive):
            end.close()
        why = f"the cell's process could not start ({one_line(err)})"
        return failed_record(split, method, seed, opts, why), {"traceback": why + "\n"}
    send.close()
    watch.close()
    with _LIVE_LOCK:
        _LIVE.add(proc)
    limit = f"--timeout {opts.timeout:g} s" if opts.timeout else "no deadline"
    wait = opts.timeout + GRACE_S if opts.timeout else None  # None: as long as the cell runs
    try:
        try:
            if not receive.poll(START_S):
                why = f"the cell's process did not start in {START_S:g} s"
                return _timed_out(split, method, seed, opts, why)
            receive.recv()
            used = _wait(receive, proc.pid, wait, opts.max_memory)
            if used > 0:
                return _past_cap(split, method, seed, opts, used)
            if used < 0:
                why = f"the cell ran past {limit}; its process was killed"
                return _timed_out(split, method, seed, opts, why)
            _, record, extras = receive.recv()
            proc.join(5)  # let it exit by itself: its locks and semaphores are released
        except (EOFError, OSError):
            proc.join(5)
            why = f"the cell's process died (exit code {proc.exitcode}), e.g. killed for memory"
            return failed_record(split, method, seed, opts, why), {"traceback": why + "\n"}
        took = record.finished - record.started  # the cell's own clock, not the transfer
        if record.ok and opts.timeout and took > opts.timeout:
            record.status = "failed"
            record.error = f"CellTimeout: the cell ran past {limit} ({took:.1f} s) and is failed"
            record.metrics, record.per_gene = {}, PerGene()
            extras = {"traceback": record.error + "\n"}
        return record, extras
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
        _kill(proc)
        receive.close()
        alive.close()


def _kill(proc: Any, wait: float = 10) -> None:
    """Kill a cell's process and everything it started (its process group), then reap it
    (waiting at most ``wait`` seconds)."""
    if proc.pid and proc.exitcode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.join(wait)
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren left in the group


# ---------------------------------------------------------------- Ray


def check_ray_address(address: str) -> None:
    """Give up with one line when ``address`` (``host:port`` or ``ray://host:port``) does not
    answer within :data:`RAY_CONNECT_S` seconds (Ray itself retries for minutes)."""
    if address == "auto":
        return  # the local node's file names the cluster; Ray fails fast when there is none
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BenchError(
            f"--ray-address {redact(address)!r} is not host:port, ray://host:port or auto"
        )
    try:
        with socket.create_connection((host, port), timeout=RAY_CONNECT_S):
            pass
    except OSError as err:
        raise BenchError(
            f"cannot start or reach Ray at {redact(address)} within {RAY_CONNECT_S:g} s "
            f"({err.strerror or type(err).__name__}); check --ray-address and that Ray runs there"
        ) from None


def start_ray(address: str | None = None) -> bool:
    """Start a local Ray (``address`` None) or connect to a cluster; True when started here.

    Called before anything is written, so an unreachable cluster is bad input (exit 2). The local
    Ray runs in Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: its node
    address is 127.0.0.1, so GCS, raylet, workers and agents listen on loopback only) and has no
    dashboard; Ray itself (2.60 here) turns on its token authentication by default.
    """
    try:
        import ray as ray_lib
    except ImportError:
        raise BenchError(
            "--executor ray needs the ray package; install it with "
            "'.venv/bin/pip install -e .[ray]'"
        ) from None
    if ray_lib.is_initialized():
        return False
    if address is not None:
        check_ray_address(address)
    from ray._private import ray_constants  # Ray reads its environment once, at import

    local = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    saved = {k: os.environ.get(k) for k in local}
    cluster = ray_constants.ENABLE_RAY_CLUSTER
    try:
        if address is None:  # Ray's single-machine mode: every server bound to 127.0.0.1
            os.environ.update({k: os.environ.get(k) or v for k, v in local.items()})
            ray_constants.ENABLE_RAY_CLUSTER = False  # this process's view; its children's: env
            ray_lib.init(
                include_dashboard=False,
                dashboard_host="127.0.0.1",
                log_to_driver=False,
                object_store_memory=256 * 2**20,
                runtime_env={"env_vars": {"PYTHONPATH": _driver_path()}},
            )
        else:
            excludes = [".venv", ".git", "results", "leaderboard"]
            ray_lib.init(
                address=address,
                log_to_driver=False,
                runtime_env={"working_dir": str(REPO), "excludes": excludes},
            )
    except Exception as err:  # noqa: BLE001 - any failure to start or connect is bad input
        raise BenchError(
            f"cannot start or reach Ray at {redact(address or 'a local instance')} "
            f"({redact(first_line(err))[:200]}); check --ray-address"
        ) from None
    finally:  # Ray's processes have their environment now; this process gets its own back
        ray_constants.ENABLE_RAY_CLUSTER = cluster
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def _driver_path() -> str:
    """PYTHONPATH for local Ray workers: this repository, then the driver's own import path (same
    machine), so a method registered from a module the driver imports (a plugin, a test's stub)
    imports in the workers too."""
    paths = [str(REPO), *(p for p in sys.path if p and Path(p).is_dir())]
    return os.pathsep.join(dict.fromkeys(paths))


def stop_ray() -> None:
    import ray as ray_lib

    ray_lib.shutdown()


def ray(cells: list[Cell], splits: dict[str, Split], opts: RunOptions) -> Iterator[Result]:
    """Run the cells as Ray tasks (Ray already started), yielding each as it finishes."""
    import ray as ray_lib

    gpus = 1 if ray_lib.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray_lib.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_cell)
    by_name = {name: ray_lib.put(split) for name, split in splits.items()}
    from methods.registry import entry

    pending = {
        task.remote(by_name[d], m, s, opts, str(w), entry(m)): (d, m, s, w) for d, m, s, w in cells
    }
    try:
        while pending:
            done, _ = ray_lib.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            try:
                record, extras = ray_lib.get(done[0])
            except ray_lib.exceptions.RayError as err:  # the worker died (killed, out of memory)
                d, m, s, _ = cell
                why = f"the Ray worker running the cell was lost ({one_line(err)[:300]})"
                record = failed_record(splits[d], m, s, opts, why)
                extras = {"traceback": str(err)}
            yield cell, record, extras
    except BaseException:  # interrupted (or closed early): no task outlives the grid
        for ref in pending:
            with contextlib.suppress(Exception):
                ray_lib.cancel(ref, force=True)
        raise
