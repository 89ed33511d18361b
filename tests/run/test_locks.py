"""Cell locks: a lock file beside each record, released however its holder ends (SIGKILL too);
two invocations of the same cells compute each cell once and leave one child run per record;
the store repair removes orphan child runs; seeds are deduplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.files import FileLock
from bench.run.records import Record, read_records
from bench.run.tracking import Tracker, default_uri, record_id

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
# the CLI with the test stub ``counting`` registered (a child process has no fixtures)
MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from methods.registry import register; register('counting', 'stub_methods', 'Counting'); "
    "from bench.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def test_lock_is_exclusive_released_and_stale_safe_after_sigkill(tmp_path):
    path = tmp_path / "d" / "m" / "seed-0.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.acquire() and not second.acquire()
    assert str(os.getpid()) in second.holder()
    first.release()
    assert not path.exists() and second.acquire()
    second.release()
    # a holder killed with SIGKILL: its file stays, its lock does not
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from bench.files import FileLock; "
        "assert FileLock(sys.argv[2]).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(REPO), str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    assert not FileLock(path).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists()  # stale file
    lock = FileLock(path)
    assert lock.acquire()
    lock.release()


def _store(results: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_two_invocations_of_the_same_cells_compute_each_once(root, tmp_path):
    results, count = tmp_path / "results", tmp_path / "count.txt"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "STSR_COUNT_FILE": str(count)}
    argv = [
        sys.executable,
        "-c",
        MAIN,
        str(TESTS),
        "run",
        "--methods",
        "counting,bicubic",
        "--datasets",
        "her2st",
        "--folds",
        "none",
    ]
    argv += ["--seeds", "0", "1", "2", "--data-dir", str(root), "--results-dir", str(results)]
    argv += ["--leaderboard", str(tmp_path / "LB.md"), "--no-progress"]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=pipe, stderr=pipe) for _ in "ab"]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
    fits = count.read_text().splitlines()
    assert sorted(line.split()[0] for line in fits) == ["0", "1", "2"], fits  # once per cell
    records = [r for r in read_records(results) if r.method in ("counting", "bicubic")]
    assert len(records) == 6 and all(r.ok for r in records)
    _, runs = _store(results)
    children = [r for r in runs if "record_id" in r.data.tags]
    assert sorted(r.data.tags["record_id"] for r in children) == sorted(map(record_id, records))
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not list(results.rglob("*.lock")) and not list(results.rglob(".*.tmp*"))


def _record(finished_ms: int) -> Record:
    return Record.from_json(
        {
            "dataset": "d",
            "method": "m",
            "seed": 0,
            "status": "ok",
            "params": {"preset": "quick"},
            "split": {"fingerprint": "f", "k": 2, "genes": ["a"], "test": ["x"]},
            "metrics": {"pcc": 0.5},
            "finished_ms": finished_ms,
        }
    )


def test_store_repair_removes_orphan_child_runs(tmp_path):
    """A cell logged twice (two invocations without a lock) and a record logged then
    overwritten: the repair keeps exactly the child run of the record on disk."""
    results = tmp_path / "results"
    results.mkdir()
    tracker = Tracker(default_uri(results), results)
    old, current = _record(1), _record(2)
    for rec in (old, current, current):
        tracker.log_cell(rec, [])
    done = tracker.reconcile([(current, [])], held=[current])
    assert done == {"killed": 0, "deleted": 2, "logged": 0}
    _, runs = _store(results)
    assert [r.data.tags["record_id"] for r in runs] == [record_id(current)]
    # and a new record replaces its predecessor's run at once
    newer = _record(3)
    tracker.log_cell(newer, [])
    assert tracker.drop_superseded(newer) == 1
    _, runs = _store(results)
    assert [r.data.tags["record_id"] for r in runs] == [record_id(newer)]


def test_repeated_seeds_are_one_cell(root, tmp_path):
    from bench import RunConfig, run_grid

    result = run_grid(
        RunConfig(
            datasets="her2st",
            folds="none",
            methods="bicubic",
            seeds=(0, 0, 1, 0),
            data_dir=root,
            results_dir=tmp_path / "r",
            leaderboard=tmp_path / "LB.md",
            progress=False,
        )
    )
    cells = [(r.method, r.seed) for r in result.records if r.method == "bicubic"]
    assert cells == [("bicubic", 0), ("bicubic", 1)]
    _, runs = _store(tmp_path / "r")
    assert len([r for r in runs if r.data.tags.get("method") == "bicubic"]) == 2
