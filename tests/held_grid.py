"""A grid run as a user runs it (a child process) with a cell that can be held mid-fit: for tests
that interrupt a grid or kill one of its workers (``tests/run/test_interrupt.py``,
``tests/run/test_ray_lost_worker.py``).

:func:`prepare` makes a small synthetic legacy-ST dataset and its split under ``tmp``;
:func:`argv` is a ``bench run`` command on it, through a driver script that registers the stubs
``sleepy`` (:class:`stub_methods.Sleepy`: writes its pid to ``tmp/cell.pid``, then waits while
``tmp/hold`` exists) and ``reporting``; :func:`held_pid` waits for the held cell to start;
:func:`ended` waits for the driver to exit and shows its threads' stacks when it does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import synthetic as syn

REPO = Path(__file__).resolve().parent.parent


def prepare(tmp: Path) -> dict[str, str]:
    """Dataset ``synth_st`` and its split under ``tmp``; returns the environment to run in."""
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "STSR_DATASETS_DIR": str(tmp / "cards"),
        "STSR_CACHE_DIR": str(tmp / "cache"),
        "STSR_PID_FILE": str(tmp / "cell.pid"),
        "STSR_HOLD_FILE": str(tmp / "hold"),
    }
    syn.legacy_st(tmp / "cards", tmp / "data")
    split = [sys.executable, "-m", "bench", "split", "--datasets", "synth_st"]
    subprocess.run([*split, "--data-dir", str(tmp / "data")], cwd=REPO, env=env, check=True)
    return env


def argv(tmp: Path, *options: str) -> list[str]:
    """``bench run`` on ``synth_st`` with ``options`` (methods, jobs, executor), results and
    page under ``tmp``."""
    script = tmp / "driver.py"
    script.write_text(
        "import faulthandler, signal, sys\n"
        "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
        # a terminal's foreground job takes Ctrl-C; a shell's background job (`make test &`, as
        # a CI script may run) starts with SIGINT ignored, and the driver would inherit that
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n"
        "from methods.registry import register\n"
        "register('sleepy', 'stub_methods', 'Sleepy')\n"
        "register('reporting', 'stub_methods', 'Reporting')\n"
        "from bench import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    return [
        sys.executable, str(script), "run", "--datasets", "synth_st",
        "--data-dir", str(tmp / "data"), "--results-dir", str(tmp / "results"),
        "--leaderboard", str(tmp / "LB.md"), "--no-progress", *options,
    ]  # fmt: skip


def held_pid(tmp: Path, driver: subprocess.Popen, seconds: float = 240) -> int:
    """The pid of the held cell's process, once it runs (the driver must not have ended)."""
    pid_file = tmp / "cell.pid"
    deadline = time.monotonic() + seconds
    while not (pid_file.exists() and pid_file.read_text()):
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the held cell never started"
        time.sleep(0.1)
    return int(pid_file.read_text())


def ended(driver: subprocess.Popen, seconds: float) -> str:
    """The driver's stderr once it exits within ``seconds``; else a test failure that shows
    where every thread of the driver was (the driver script dumps them on SIGUSR1)."""
    try:
        return driver.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        driver.send_signal(signal.SIGUSR1)
        time.sleep(2)
        driver.kill()
        err = driver.communicate()[1]
        raise AssertionError(
            f"the driver had not exited after {seconds} s:\n{err[-6000:]}"
        ) from None


def runs(results: Path) -> list:
    """Every MLflow run of the grid's store (none left RUNNING is the caller's check)."""
    import mlflow

    from bench.run.tracking import default_uri

    client = mlflow.MlflowClient(tracking_uri=default_uri(results))
    exp = client.get_experiment_by_name("stsr-bench")
    return client.search_runs([exp.experiment_id], max_results=1000)
