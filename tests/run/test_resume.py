"""Resume: a grid killed with SIGKILL at a random moment completes on rerun, with one record and
one finished MLflow child run per cell, and no run left RUNNING."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.run.records import Record
from bench.run.records import read_records as all_records
from bench.run.tracking import Tracker, default_uri, record_id

REPO = Path(__file__).resolve().parents[2]
METHODS = "nearest,bilinear,bicubic,mean,tesla,linear_probe,shuffled,truth,istar"


def read_records(results: Path) -> list[Record]:
    """The grid's records (every run also writes the noise-ceiling control, no cell of it)."""
    return [r for r in all_records(results) if r.method != "ceiling"]


def _store(results: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_sigkill_at_a_random_moment_then_rerun_completes(root, tmp_path):
    results = tmp_path / "results"
    argv = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--methods",
        METHODS,
        "--datasets",
        "her2st",
        "--folds",
        "none",
        "--preset",
        "quick",
    ]
    argv += ["--data-dir", str(root), "--results-dir", str(results), "--no-progress"]
    argv += ["--leaderboard", str(tmp_path / "LB.md")]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    # seeded, so a failure names a delay that reproduces it ($STSR_KILL_SEED picks another)
    delay = random.Random(int(os.environ.get("STSR_KILL_SEED", "17"))).uniform(3.0, 12.0)
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    done_before = {r.method: r.finished_ms for r in read_records(results)}
    rerun = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, f"killed after {delay:.1f} s; {rerun.stderr[-2000:]}"
    records = read_records(results)
    assert sorted(r.method for r in records) == sorted(METHODS.split(","))
    assert all(r.status == "ok" for r in records)
    for r in records:  # finished cells were not recomputed
        if r.method in done_before:
            assert r.finished_ms == done_before[r.method], r.method
    _, runs = _store(results)
    assert not [r for r in runs if r.info.status == "RUNNING"], f"killed after {delay:.1f} s"
    children = [r for r in runs if "record_id" in r.data.tags]
    ids = sorted(r.data.tags["record_id"] for r in children)
    assert ids == sorted(record_id(r) for r in records), f"killed after {delay:.1f} s"
    assert all(r.info.status == "FINISHED" for r in children)


def test_reconcile_closes_dead_runs_and_logs_missing_cells(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer exists
    tracker = Tracker(default_uri(results), results)
    tags = {"host": socket.gethostname(), "pid": str(dead.pid)}
    parent = tracker.client.create_run(tracker.experiment_id, run_name="old", tags=tags)
    half = tracker.client.create_run(
        tracker.experiment_id, run_name="half", tags={**tags, "record_id": "d/m/0/1"}
    )
    alive = tracker.client.create_run(  # a concurrent invocation: left alone
        tracker.experiment_id, run_name="live", tags={"host": tags["host"], "pid": "1"}
    )
    record = Record.from_json(
        {
            "dataset": "d",
            "method": "m",
            "seed": 0,
            "status": "ok",
            "params": {"preset": "quick"},
            "split": {"fingerprint": "f", "k": 2, "genes": ["a"], "test": ["x"]},
            "code_version": "v",
            "device": "cpu",
            "metrics": {"pcc": 0.5},
            "timings": {"fit_s": 0.0, "predict_s": 0.0, "score_s": 0.0},
            "peak_memory_mb": 1.0,
            "finished_ms": 1,
        }
    )
    assert tracker.reconcile([(record, [])]) == {"killed": 1, "deleted": 1, "logged": 1}
    client, runs = _store(results)
    assert client.get_run(parent.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert half.info.run_id not in {r.info.run_id for r in runs}  # deleted
    logged = [r for r in runs if r.data.tags.get("record_id") == "d/m/0/1"]
    assert len(logged) == 1 and logged[0].info.status == "FINISHED"
    assert tracker.reconcile([(record, [])]) == {"killed": 0, "deleted": 0, "logged": 0}


def test_two_concurrent_runs_share_results_and_store(root, tmp_path):
    """Two invocations on one results dir and one SQLite store, started together: both finish
    with every record and every child run present, and the store still opens."""
    results = tmp_path / "results"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = []
    for methods in ("nearest,bicubic,tesla,mean", "bilinear,linear_probe,truth,shuffled"):
        argv = [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--methods",
            methods,
            "--datasets",
            "her2st",
            "--folds",
            "none",
            "--preset",
            "quick",
        ]
        argv += ["--data-dir", str(root), "--results-dir", str(results), "--no-progress"]
        argv += ["--leaderboard", str(tmp_path / "LB.md")]
        pipe = subprocess.PIPE
        procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=pipe, stderr=pipe))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    records = read_records(results)
    assert len(records) == 8 and all(r.status == "ok" for r in records)
    _, runs = _store(results)
    parents = [r for r in runs if "record_id" not in r.data.tags]
    children = [r for r in runs if "record_id" in r.data.tags]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(
        record_id(r) for r in records
    )
    assert "| " in (tmp_path / "LB.md").read_text()


def test_a_resumed_fit_is_recorded_whole(her2st, register_method):
    """fit_s counts the training seconds of the interrupted run the checkpoint came from."""
    from bench.run import cell as runner

    register_method("resumed", "stub_methods", "Resumed")
    opts = runner.RunOptions(preset="quick")
    record, _ = runner.run_cell(her2st, "resumed", 0, opts)
    assert record.status == "ok" and record.timings["fit_resumed_s"] == 5.0
    assert 5.0 <= record.timings["fit_s"] < 5.0 + 30
    fresh, _ = runner.run_cell(her2st, "bicubic", 0, opts)
    assert "fit_resumed_s" not in fresh.timings and fresh.timings["fit_s"] < 5.0
