"""Disk space and read-only destinations (issue 28).

Before the grid, its outputs' size is checked against the free space (too little: one line, exit
2, nothing written); during it, the first full disk stops the grid with one line naming the path,
the space free and the space needed (exit 2), the records already written intact, no half file,
no lock left, the MLflow invocation run closed as FAILED. A read-only destination is refused
before anything is written, tested on a real read-only mount (root ignores permission bits).
Mounting needs root: CI runs as root; elsewhere those tests skip saying so.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import multiprocessing
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cli
from bench.grid import plan as plan_stage
from bench.run import outputs
from bench.run.records import read_record, record_path
from bench.run.tracking import default_uri


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` with ``options`` (e.g. ``ro,size=1m``), unmounted on exit."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grid(root: Path, results: Path, board: Path, *extra: str) -> list[str]:
    return [
        "run", "--datasets", "her2st", "--folds", "none", "--preset", "quick",
        "--data-dir", str(root),
        "--results-dir", str(results), "--leaderboard", str(board), "--no-progress", *extra,
    ]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
    }


def one_line(err: str) -> str:
    """The error line, the only one on stderr but MLflow's own log of a store it creates."""
    lines = [line for line in err.splitlines() if " INFO mlflow." not in line]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("bench: error: ") and "Traceback" not in lines[0], lines[0]
    return lines[0]


def leftovers(results: Path) -> list[Path]:
    """Locks and temporary files (half-written) under ``results``."""
    return [p for p in results.rglob("*") if p.suffix == ".lock" or ".tmp" in p.name]


def invocation_status(results: Path) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.info.run_name.startswith("invocation")]
    return parent.info.status


# ---------------------------------------------------------------- before the grid


def test_too_little_free_space_is_refused_before_anything_is_written(
    root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(plan_stage, "free_bytes", lambda path: 3 * 2**20)
    before = snapshot(tmp_path)
    argv = grid(root, tmp_path / "results", tmp_path / "board" / "LB.md", "--methods", "bicubic")
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert "not enough free space for the grid's outputs in " in line
    assert "3 MiB free" in line and " needed (1 cell(s) to run)" in line
    assert out == "" and snapshot(tmp_path) == before


def test_a_full_tmpfs_is_refused_before_the_grid(root, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        before = snapshot(tmp_path)
        argv = grid(root, disk / "results", tmp_path / "board" / "LB.md", "--methods", "bicubic")
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        line = one_line(err)
        assert f"not enough free space for the grid's outputs in {disk}" in line, line
        assert " free, " in line and " needed " in line
        print(f"pre-check message: {line}")
        assert out == "" and snapshot(tmp_path) == before


def test_the_estimate_covers_what_a_cell_writes(her2st, tmp_path):
    from bench.run.cell import RunOptions, run_cell

    record, extras = run_cell(her2st, "bicubic", 0, RunOptions(preset="quick"))
    _, files = outputs.save_or_fail(tmp_path, her2st, record, extras)
    path = record_path(tmp_path, record.dataset, "bicubic", 0)
    written = path.stat().st_size + sum(p.stat().st_size for p in files)
    assert written <= outputs.cell_bytes(her2st, stochastic=False)


# ---------------------------------------------------------------- during the grid


def _full_for(monkeypatch, method: str) -> None:
    """Every write of ``method``'s outputs fails as on a full disk."""
    real = outputs.atomic_write

    def write(path, writer):
        if f"/{method}/" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, writer)

    monkeypatch.setattr(outputs, "atomic_write", write)


def test_the_first_full_disk_stops_the_grid_with_one_line(root, tmp_path, monkeypatch, capsys):
    results, board = tmp_path / "results", tmp_path / "board" / "LB.md"
    _full_for(monkeypatch, "mean")
    argv = grid(root, results, board, "--methods", "bicubic,mean,nearest", "--jobs", "1")
    assert cli.main(argv) == 2
    _, err = capsys.readouterr()
    line = one_line(err)
    print(f"disk-full message: {line}")
    assert line.startswith("bench: error: disk full writing ")
    assert "/mean/seed-0.per_gene.csv: " in line and " free, " in line and " needed; " in line
    assert "the grid stopped" in line
    label = next(p.name for p in results.iterdir() if p.is_dir() and p.name.startswith("her2st"))
    done = read_record(record_path(results, label, "bicubic", 0))
    assert done is not None and done.ok  # written before: intact
    assert read_record(record_path(results, label, "mean", 0)) is None
    assert not (results / label / "nearest").exists() or not any(
        (results / label / "nearest").glob("seed-0.*")
    )  # never ran
    assert not list((results / label / "mean").glob("seed-0.*"))  # no side file of it left
    assert leftovers(results) == []
    assert invocation_status(results) == "FAILED"
    monkeypatch.undo()  # space again: the same command resumes
    assert cli.main(argv) == 0, capsys.readouterr().err
    again = read_record(record_path(results, label, "bicubic", 0))
    assert again.started == done.started  # reused, not recomputed


def test_a_full_disk_ends_the_cells_still_running(
    root, tmp_path, monkeypatch, register_method, capsys
):
    register_method("slow", "stub_methods", "Slow")  # trains for ever
    _full_for(monkeypatch, "mean")
    start = time.monotonic()
    argv = grid(root, tmp_path / "r", tmp_path / "LB.md", "--methods", "mean,slow", "--jobs", "2")
    assert cli.main(argv) == 2
    one_line(capsys.readouterr().err)
    assert time.monotonic() - start < 120
    assert not multiprocessing.active_children()
    assert leftovers(tmp_path / "r") == []


def test_a_disk_filled_mid_grid_stops_it(root, tmp_path, register_method, capsys):
    """A real tmpfs as the results folder: the first cell fits, then another program (the
    ``filling`` stub) takes the rest of the space and the next cell's outputs do not fit."""
    register_method("filling", "stub_methods", "Filling")
    board = tmp_path / "board" / "LB.md"
    with tmpfs(tmp_path / "disk", "size=64m") as disk:
        results = disk / "results"
        argv = grid(root, results, board, "--methods", "bicubic,filling,mean", "--jobs", "1")
        assert cli.main(argv) == 2
        _, err = capsys.readouterr()
        line = one_line(err)
        print(f"disk-full message (tmpfs): {line}")
        assert line.startswith(f"bench: error: disk full writing {results}/")
        assert "/filling/seed-0." in line and "0 KiB free, " in line
        label = next(p.name for p in results.iterdir() if p.name.startswith("her2st"))
        done = read_record(record_path(results, label, "bicubic", 0))
        assert done is not None and done.ok
        assert read_record(record_path(results, label, "filling", 0)) is None
        assert read_record(record_path(results, label, "mean", 0)) is None
        assert leftovers(results) == []
        next(results.rglob("ballast")).unlink()  # the space is back
        resumed = grid(root, results, board, "--methods", "bicubic,mean", "--jobs", "1")
        assert cli.main(resumed) == 0, capsys.readouterr().err
        assert read_record(record_path(results, label, "bicubic", 0)).started == done.started
        assert read_record(record_path(results, label, "mean", 0)).ok


# ---------------------------------------------------------------- read-only destinations


@pytest.mark.parametrize(
    "option,value,what",
    [
        ("--results-dir", "{ro}/results", "results dir"),
        ("--results-dir", "{ro}", "results dir"),
        ("--leaderboard", "{ro}/LB.md", "leaderboard file"),
        ("--tracking-uri", "sqlite:///{ro}/mlflow.db", "SQLite store"),
    ],
)
def test_a_read_only_mount_is_refused(option, value, what, root, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        argv = grid(root, tmp_path / "results", tmp_path / "board" / "LB.md", "--methods", "mean")
        argv += [option, value.format(ro=ro)]  # the last one given wins
        before = snapshot(tmp_path)
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        line = one_line(err)
        assert f"{what} {ro}" in line and "read-only file system" in line, line
        assert out == "" and snapshot(tmp_path) == before
        assert not (tmp_path / "results").exists() and not (tmp_path / "board").exists()
