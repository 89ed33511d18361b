"""Where the grid's cells run: in this process (``local``) or as Ray tasks (``ray``).

Both executors call the same :func:`bench.run.cell.run_cell` with the same split, seed and options,
so a cell's record is identical whichever ran it (timings and the recorded device aside). Only the
driver writes: it saves each returned record and logs it to MLflow, so the results directory and
the store see one writer per invocation, as with the local executor.

Ray: ``address=None`` starts a local Ray on demand (the CPUs of this machine, no dashboard);
otherwise it connects to ``address`` (e.g. ``ray://head:10001`` or ``auto``) and ships this
repository as the tasks' working directory. Each task asks for one CPU, and one GPU when the
cluster has GPUs. ray is imported only here, and only when chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.data.splits import Split
from bench.errors import BenchError, first_line, one_line
from bench.run.cell import RunOptions, failed_record, run_cell
from bench.run.records import Record

REPO = Path(__file__).resolve().parents[2]
Cell = tuple[str, str, int, Path]  # dataset, method, seed, workdir
Result = tuple[Cell, Record, dict[str, Any]]  # cell, record, extras


def local(cells: list[Cell], splits: dict[str, Split], opts: RunOptions) -> Iterator[Result]:
    """Run the cells one after another in this process, yielding each as it finishes."""
    for cell in cells:
        dataset, method, seed, workdir = cell
        record, extras = run_cell(splits[dataset], method, seed, opts, workdir)
        yield cell, record, extras


def _ray_cell(split: Split, method: str, seed: int, opts: RunOptions, workdir: str) -> tuple:
    return run_cell(split, method, seed, opts, Path(workdir))


def start_ray(address: str | None = None) -> bool:
    """Start a local Ray (``address`` None) or connect to a cluster; True when started here.

    Called before anything is written, so an unreachable cluster is bad input (exit 2).
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
    try:
        if address is None:
            ray_lib.init(
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=256 * 2**20,
                runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
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
            f"cannot start or reach Ray at {address or 'a local instance'} "
            f"({first_line(err)[:200]}); "
            "check --ray-address"
        ) from None
    return True


def stop_ray() -> None:
    import ray as ray_lib

    ray_lib.shutdown()


def ray(cells: list[Cell], splits: dict[str, Split], opts: RunOptions) -> Iterator[Result]:
    """Run the cells as Ray tasks (Ray already started), yielding each as it finishes."""
    import ray as ray_lib

    gpus = 1 if ray_lib.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray_lib.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(_ray_cell)
    by_name = {name: ray_lib.put(split) for name, split in splits.items()}
    pending = {task.remote(by_name[d], m, s, opts, str(w)): (d, m, s, w) for d, m, s, w in cells}
    while pending:
        done, _ = ray_lib.wait(list(pending), num_returns=1)
        cell = pending.pop(done[0])
        try:
            record, extras = ray_lib.get(done[0])
        except ray_lib.exceptions.RayError as err:  # the worker died (e.g. killed for memory)
            d, m, s, _ = cell
            record = failed_record(splits[d], m, s, opts, one_line(err))
            extras = {"traceback": str(err)}
        yield cell, record, extras
