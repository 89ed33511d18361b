"""The per-cell memory cap (``--max-memory``): a cell whose processes hold more is killed by the
driver and recorded as failed with a ``MemoryCap`` reason, the grid goes on, the driver lives;
cells are the OOM killer's first choice."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from bench import cli
from bench.grid import RunConfig
from bench.grid.config import auto_max_memory
from bench.grid.plan import MIN_MEMORY, check_memory_cap
from bench.run.records import read_records
from bench.run.resources import group_memory, machine_memory


def _grid(root, out, *extra: str) -> list[str]:
    return [
        "run", "--datasets", "her2st", "--folds", "none", "--preset", "quick",
        "--data-dir", str(root),
        "--results-dir", str(out / "results"), "--leaderboard", str(out / "LB.md"),
        "--no-progress", *extra,
    ]  # fmt: skip


def test_a_cell_past_the_cap_is_killed_and_the_grid_goes_on(
    root, tmp_path, register_method, capsys
):
    register_method("unbounded", "stub_methods", "Unbounded")
    start = time.monotonic()
    argv = ["--methods", "unbounded,bicubic", "--max-memory", "300M", "--jobs", "1"]
    status = cli.main(_grid(root, tmp_path, *argv))
    took = time.monotonic() - start
    out, err = capsys.readouterr()
    assert status == 1, err  # a failed cell, not bad input
    records = {r.method: r for r in read_records(tmp_path / "results") if r.method != "ceiling"}
    hog, bicubic = records["unbounded"], records["bicubic"]
    assert bicubic.ok
    assert hog.status == "failed" and hog.metrics == {}
    assert hog.error.startswith("MemoryCap: the cell used "), hog.error
    assert hog.error.endswith(
        ", past --max-memory 300 MiB; its process was killed (raise --max-memory or lower --jobs)"
    ), hog.error
    assert hog.peak_memory_mb > 300
    print(f"memory-cap message: {hog.error}")  # shown with -s
    assert f"unbounded seed 0 failed: {hog.error}" in err
    assert "2 cell(s), 1 failed" in out
    assert not multiprocessing.active_children()  # nothing of the killed cell left
    oom = next((tmp_path / "results").rglob("seed-0.oom")).read_text()
    assert oom == "1000"  # the cell, not the driver, is the OOM killer's first choice
    assert took < 30, took


def test_default_cap_shares_the_machine_among_the_jobs():
    total = machine_memory()
    one = auto_max_memory(1)
    assert one == max(total // 2, total - max(2**30, total // 8))  # as --help states it
    assert auto_max_memory(4) == one // 4
    assert RunConfig().max_memory is None  # None: the default above


@pytest.mark.parametrize("bad", [0, -1, 10, MIN_MEMORY - 1, 1.5e9, "6G", True])
def test_a_bad_cap_from_python_is_one_line(bad):
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="--max-memory .* is not a memory size"):
        check_memory_cap(bad)


def test_group_memory_counts_what_a_group_holds():
    assert group_memory(os.getpgrp()) > 0
    assert group_memory(2**22 + 12345) == 0  # no such group
