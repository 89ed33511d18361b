"""A lost Ray worker: on a local two-worker Ray, the worker running a cell is SIGKILLed mid-cell;
the grid does not hang, the cell is recorded as failed naming the lost worker, the other cell is
ok, each cell has one record and one MLflow child run; the rerun recomputes only the lost cell."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import held_grid as grid
import psutil

from bench.run.records import read_records
from bench.run.tracking import record_id


def _ray_worker(pid: int) -> psutil.Process:
    """The Ray worker process running the cell whose process is ``pid`` (itself or an ancestor;
    Ray names its workers ``ray::...``)."""
    proc: psutil.Process | None = psutil.Process(pid)
    while proc is not None:
        if " ".join(proc.cmdline()).startswith("ray::"):
            return proc
        proc = proc.parent()
    raise AssertionError(f"process {pid} does not run inside a Ray worker")


def _children(results: Path) -> list:
    runs = grid.runs(results)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return [r for r in runs if "record_id" in r.data.tags]


def test_a_killed_ray_worker_fails_its_cell_and_the_grid_goes_on(tmp_path: Path) -> None:
    env, results = grid.prepare(tmp_path), tmp_path / "results"
    command = grid.argv(tmp_path, "--executor", "ray", "--methods", "bicubic,sleepy")
    (tmp_path / "hold").touch()
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    worker = _ray_worker(grid.held_pid(tmp_path, driver))
    worker.send_signal(signal.SIGKILL)
    (tmp_path / "hold").unlink()  # a retry (if Ray made one) would finish; none is expected
    err = grid.ended(driver, 240)  # no hang

    assert driver.returncode == 1, err[-2000:]  # one failed cell
    records = {r.method: r for r in read_records(results) if r.method != "ceiling"}
    assert sorted(records) == ["bicubic", "sleepy"]
    assert records["bicubic"].ok
    assert not records["sleepy"].ok and "Ray worker" in records["sleepy"].error
    children = _children(results)
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(
        map(record_id, records.values())
    )
    kept = records["bicubic"].finished_ms

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = {r.method: r for r in read_records(results) if r.method != "ceiling"}
    assert sorted(records) == ["bicubic", "sleepy"] and all(r.ok for r in records.values())
    assert records["bicubic"].finished_ms == kept  # only the lost cell was computed again
    children = _children(results)
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(
        map(record_id, records.values())
    )
