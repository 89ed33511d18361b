"""A lost Ray worker: on a local two-worker Ray, the worker running a cell is SIGKILLed mid-cell;
the grid does not hang, the cell is recorded as failed naming the lost worker, the other cell is
ok, each cell has one record and one MLflow child run; the rerun recomputes only the lost cell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import synthetic as syn

from bench.run.records import read_records
from bench.run.tracking import default_uri, record_id

REPO = Path(__file__).resolve().parents[2]


def _split(tmp: Path, env: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "bench", "split", "--datasets", "synth_st"]
    subprocess.run([*argv, "--data-dir", str(tmp / "data")], cwd=REPO, env=env, check=True)


def _argv(tmp: Path) -> list[str]:
    script = tmp / "driver.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
        "from methods.registry import register\n"
        "register('sleepy', 'stub_methods', 'Sleepy')\n"
        "from bench import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    return [
        sys.executable, str(script), "run", "--executor", "ray", "--methods", "bicubic,sleepy",
        "--datasets", "synth_st", "--data-dir", str(tmp / "data"), "--no-progress",
        "--results-dir", str(tmp / "results"), "--leaderboard", str(tmp / "LB.md"),
    ]  # fmt: skip


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
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return [r for r in runs if "record_id" in r.data.tags]


def test_a_killed_ray_worker_fails_its_cell_and_the_grid_goes_on(tmp_path: Path) -> None:
    syn.legacy_st(tmp_path / "cards", tmp_path / "data")
    results = tmp_path / "results"
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "STSR_DATASETS_DIR": str(tmp_path / "cards"),
        "STSR_CACHE_DIR": str(tmp_path / "cache"),
        "STSR_PID_FILE": str(tmp_path / "cell.pid"),
        "STSR_HOLD_FILE": str(tmp_path / "hold"),
    }
    _split(tmp_path, env)
    (tmp_path / "hold").touch()
    driver = subprocess.Popen(
        _argv(tmp_path), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pid_file = tmp_path / "cell.pid"
    deadline = time.monotonic() + 240
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        time.sleep(0.2)
    worker = _ray_worker(int(pid_file.read_text()))
    worker.send_signal(signal.SIGKILL)
    (tmp_path / "hold").unlink()  # a retry (if Ray made one) would finish; none is expected
    _, err = driver.communicate(timeout=240)  # no hang

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

    rerun = subprocess.run(_argv(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = {r.method: r for r in read_records(results) if r.method != "ceiling"}
    assert sorted(records) == ["bicubic", "sleepy"] and all(r.ok for r in records.values())
    assert records["bicubic"].finished_ms == kept  # only the lost cell was computed again
    children = _children(results)
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(
        map(record_id, records.values())
    )
