"""Interrupts: SIGINT or SIGTERM while a cell runs stops the grid cleanly (the running cell's
process ended, one line saying how to resume, exit 130 / 143, the invocation run KILLED, nothing
half-written); rerunning the same command completes the grid with no cell computed twice and no
duplicate record or MLflow run. Also: a clean grid with parallel cells leaves no leaked
semaphore behind (multiprocessing's resource tracker would warn on stderr)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import synthetic as syn

from bench.run.records import read_records
from bench.run.tracking import default_uri, record_id

REPO = Path(__file__).resolve().parents[2]
METHODS = "bicubic,mean,sleepy"


def _driver(tmp: Path) -> Path:
    """A script running ``bench run`` as the CLI does, with the test's stub registered."""
    script = tmp / "driver.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
        "from methods.registry import register\n"
        "register('sleepy', 'stub_methods', 'Sleepy')\n"
        "register('reporting', 'stub_methods', 'Reporting')\n"
        "from bench import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    return script


def _split(tmp: Path, env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "bench", "split", "--datasets", "synth_st"]
    subprocess.run([*argv, "--data-dir", str(tmp / "data")], cwd=REPO, env=env, check=True)


def _argv(tmp: Path, methods: str = METHODS) -> list[str]:
    return [
        sys.executable, str(_driver(tmp)), "run", "--methods", methods,
        "--datasets", "synth_st", "--data-dir", str(tmp / "data"), "--jobs", "2",
        "--results-dir", str(tmp / "results"), "--leaderboard", str(tmp / "LB.md"),
        "--no-progress",
    ]  # fmt: skip


def _runs(results: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    return client.search_runs([exp.experiment_id], max_results=1000)


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "STSR_DATASETS_DIR": str(tmp / "cards"),
        "STSR_CACHE_DIR": str(tmp / "cache"),
        "STSR_PID_FILE": str(tmp / "cell.pid"),
        "STSR_HOLD_FILE": str(tmp / "hold"),
    }


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
    syn.legacy_st(tmp_path / "cards", tmp_path / "data")
    env, results = _env(tmp_path), tmp_path / "results"
    _split(tmp_path, env)
    (tmp_path / "hold").touch()
    driver = subprocess.Popen(
        _argv(tmp_path), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pid_file = tmp_path / "cell.pid"
    deadline = time.monotonic() + 180
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        time.sleep(0.1)
    cell = int(pid_file.read_text())
    driver.send_signal(signum)
    _, err = driver.communicate(timeout=60)

    assert driver.returncode == 128 + signum, err[-2000:]
    lines = [x for x in err.splitlines() if x.strip() and " INFO mlflow." not in x]
    assert len(lines) == 1, err  # one line (beside MLflow's store set-up), no traceback
    assert lines[0].startswith(f"bench: interrupted by {signal.Signals(signum).name}")
    assert "run the same command again to resume" in lines[0]
    assert _gone(cell), "the running cell's process outlived the interrupted grid"
    before = {r.method: r.finished_ms for r in read_records(results) if r.method != "ceiling"}
    assert "sleepy" not in before  # the interrupted cell left no record
    assert not list(results.rglob("*.tmp*")) and not list(results.rglob("*.work"))
    runs = _runs(results)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if "record_id" not in r.data.tags]
    assert [r.info.status for r in parents] == ["KILLED"]

    (tmp_path / "hold").unlink()
    rerun = subprocess.run(_argv(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = [r for r in read_records(results) if r.method != "ceiling"]
    assert sorted(r.method for r in records) == sorted(METHODS.split(","))  # each once
    for r in records:  # cells finished before the interrupt were not computed again
        if r.method in before:
            assert r.finished_ms == before[r.method], r.method
    children = [r for r in _runs(results) if "record_id" in r.data.tags]
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(map(record_id, records))
    assert all(r.info.status == "FINISHED" for r in children)


def test_parallel_cells_leak_no_semaphore(tmp_path: Path) -> None:
    syn.legacy_st(tmp_path / "cards", tmp_path / "data")
    _split(tmp_path, _env(tmp_path))
    run = subprocess.run(
        _argv(tmp_path, "reporting,mean,nearest,bicubic"), cwd=tmp_path, env=_env(tmp_path),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "leaked semaphore" not in run.stderr and "resource_tracker" not in run.stderr
