"""The deadline (``--timeout``) cannot be swallowed: a cell runs in a process of its own that is
killed once its deadline has passed, and a cell that returns after its deadline is failed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run.cell import RunOptions
from bench.run.executors import GRACE_S, run_bounded

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stubs(register_method):
    for name, cls in [
        ("swallowing", "Swallowing"),
        ("late", "Late"),
        ("slow", "Slow"),
        ("greedy", "Greedy"),
    ]:
        register_method(name, "stub_methods", cls)


def test_a_method_that_catches_every_exception_is_killed_at_the_deadline(stubs, her2st):
    opts = RunOptions(preset="quick", timeout=1.0)
    start = time.monotonic()
    record, extras = run_bounded(her2st, "swallowing", 0, opts)
    took = time.monotonic() - start
    assert record.status == "failed" and "CellTimeout" in record.error
    assert "killed" in record.error and "--timeout 1 s" in record.error
    assert record.metrics == {} and "pred" not in extras and extras["traceback"]
    # one deadline plus the grace, plus a process start (torch imported once, then forked)
    assert took < 1.0 + GRACE_S + 30, took
    assert not multiprocessing.active_children()  # nothing of the cell left running


def test_a_cell_returning_after_its_deadline_is_failed_whatever_it_returns(stubs, her2st):
    record, extras = run_bounded(her2st, "late", 0, RunOptions(preset="quick", timeout=1.0))
    assert record.status == "failed", record.error
    assert "ran past --timeout 1 s" in record.error and record.metrics == {}
    assert "pred" not in extras


def test_within_the_deadline_the_cell_is_the_same_as_in_process(stubs, her2st):
    bounded, extras = run_bounded(her2st, "bicubic", 0, RunOptions(preset="quick", timeout=60))
    inline, _ = run_bounded(her2st, "bicubic", 0, RunOptions(preset="quick"))
    assert bounded.status == inline.status == "ok"
    assert bounded.metrics == inline.metrics and bounded.per_gene == inline.per_gene
    assert extras["pred"].shape[0] == len(her2st.test)


def test_cooperative_timeout_and_memory_errors_keep_their_reasons(stubs, her2st):
    opts = RunOptions(preset="quick", timeout=2.0)
    slow, extras = run_bounded(her2st, "slow", 0, opts)
    assert "CellTimeout: the cell ran past --timeout 2 s" in slow.error
    assert "Traceback" in extras["traceback"]  # stopped by its own alarm, with a traceback
    greedy, _ = run_bounded(her2st, "greedy", 0, opts)
    assert "MemoryError" in greedy.error


def test_a_script_without_a_main_guard_is_not_run_again(root, tmp_path):
    """A notebook or a plain script calling the runner: the cell's process must not re-run it."""
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}]\n"
        "print('main ran', flush=True)\n"
        "from bench.data import cache, cards\n"
        "from bench.run.cell import RunOptions\n"
        "from bench.run.executors import run_bounded\n"
        f"split = cache.load(cards.load_card('her2st'), cards.data_dir({str(root)!r}), 2)\n"
        "record, _ = run_bounded(split, 'bicubic', 0, RunOptions(preset='quick', timeout=60))\n"
        "print(record.status, flush=True)\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["main ran", "ok"], proc.stdout


def test_a_cell_process_dies_with_its_killed_invocation(root, tmp_path):
    """SIGKILL the driver while a deadline-bound cell runs: the cell's process goes too."""
    pid_file = tmp_path / "cell.pid"
    script = tmp_path / "driver.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
        "from methods.registry import register\n"
        "register('swallowing', 'stub_methods', 'Swallowing')\n"
        "from bench.data import cache, cards\n"
        "from bench.run.cell import RunOptions\n"
        "from bench.run.executors import run_bounded\n"
        f"split = cache.load(cards.load_card('her2st'), cards.data_dir({str(root)!r}), 2)\n"
        "run_bounded(split, 'swallowing', 0, RunOptions(preset='quick', timeout=600))\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "STSR_PID_FILE": str(pid_file)}
    driver = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env)
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    cell = int(pid_file.read_text())
    os.kill(cell, 0)  # running
    driver.kill()
    driver.wait()
    for _ in range(100):  # the forkserver sees its parent gone and exits; the cell follows
        try:
            os.kill(cell, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(cell, signal.SIGKILL)
        raise AssertionError("the cell's process outlived its killed invocation")
