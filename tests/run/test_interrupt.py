"""Interrupts: SIGINT or SIGTERM while a cell runs stops the grid cleanly (the running cell's
process ended, one line saying how to resume, exit 130 / 143, the invocation run KILLED, nothing
half-written); rerunning the same command completes the grid with no cell computed twice and no
duplicate record or MLflow run. Also: a clean grid with parallel cells leaves no leaked
semaphore behind (multiprocessing's resource tracker would warn on stderr)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import held_grid as grid
import pytest

from bench.run.records import read_records
from bench.run.tracking import record_id

METHODS = "bicubic,mean,sleepy"


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_cleanly_and_the_rerun_completes(tmp_path: Path, signum: int) -> None:
    env, results = grid.prepare(tmp_path), tmp_path / "results"
    command = grid.argv(tmp_path, "--methods", METHODS, "--jobs", "2")
    (tmp_path / "hold").touch()
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    cell = grid.held_pid(tmp_path, driver)
    driver.send_signal(signum)
    err = grid.ended(driver, 60)

    assert driver.returncode == 128 + signum, err[-2000:]
    lines = [x for x in err.splitlines() if x.strip() and " INFO mlflow." not in x]
    assert len(lines) == 1, err  # one line (beside MLflow's store set-up), no traceback
    assert lines[0].startswith(f"bench: interrupted by {signal.Signals(signum).name}")
    assert "run the same command again to resume" in lines[0]
    assert _gone(cell), "the running cell's process outlived the interrupted grid"
    before = {r.method: r.finished_ms for r in read_records(results) if r.method != "ceiling"}
    assert "sleepy" not in before  # the interrupted cell left no record
    assert not list(results.rglob("*.tmp*")) and not list(results.rglob("*.work"))
    runs = grid.runs(results)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if "record_id" not in r.data.tags]
    assert [r.info.status for r in parents] == ["KILLED"]

    (tmp_path / "hold").unlink()
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = [r for r in read_records(results) if r.method != "ceiling"]
    assert sorted(r.method for r in records) == sorted(METHODS.split(","))  # each once
    for r in records:  # cells finished before the interrupt were not computed again
        if r.method in before:
            assert r.finished_ms == before[r.method], r.method
    children = [r for r in grid.runs(results) if "record_id" in r.data.tags]
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(map(record_id, records))
    assert all(r.info.status == "FINISHED" for r in children)


def test_parallel_cells_leak_no_semaphore(tmp_path: Path) -> None:
    env = grid.prepare(tmp_path)
    command = grid.argv(tmp_path, "--methods", "reporting,mean,nearest,bicubic", "--jobs", "2")
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "leaked semaphore" not in run.stderr and "resource_tracker" not in run.stderr
