"""The local Ray started for ``--executor ray`` listens on loopback only and requires its token
authentication; an unreachable ``--ray-address`` fails in bounded time."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from bench.errors import BenchError
from bench.run import executors


def _listening(pids: set[int]) -> list[str]:
    """Local addresses that processes of ``pids`` listen on (TCP), from ``ss -ltnp``."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            found.append(line.split()[3])
    return found


def _ray_pids() -> set[int]:
    """This process and every process Ray started under our session (by their parent chain)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, seen = [os.getpid()], set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def test_local_ray_listens_on_loopback_only():
    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is running in this process")
    try:
        assert executors.start_ray(None)
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        addresses = _listening(_ray_pids())
        assert addresses, "no listening socket of Ray found"
        exposed = [a for a in addresses if not a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:"))]
        assert not exposed, f"Ray listens beyond loopback: {exposed}"
    finally:
        executors.stop_ray()
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # ours back as it was


def test_an_unreachable_ray_address_fails_fast():
    start = time.monotonic()
    with pytest.raises(BenchError, match="cannot start or reach Ray at ray://u:\\*\\*\\*@"):
        executors.start_ray("ray://u:secret@127.0.0.1:9")
    assert time.monotonic() - start < executors.RAY_CONNECT_S + 5
    with pytest.raises(BenchError, match="is not host:port"):
        executors.check_ray_address("no-port-here")


def test_the_deadline_holds_in_ray_tasks_and_stubs_reach_the_workers(
    root, tmp_path, register_method
):
    """A method registered in the driver runs in the Ray workers, and one that swallows the
    deadline's alarm is killed there as locally."""
    pytest.importorskip("ray")
    from bench import RunConfig, run_grid

    register_method("swallowing", "stub_methods", "Swallowing")
    start = time.monotonic()
    result = run_grid(
        RunConfig(
            datasets="her2st",
            folds="none",
            methods="bicubic,swallowing",
            executor="ray",
            timeout=15,  # room for a cold worker's imports and scoring on a loaded 2-core machine
            data_dir=root,
            results_dir=tmp_path / "r",
            leaderboard=tmp_path / "LB.md",
            progress=False,
        )
    )
    by = {r.method: r for r in result.records}
    assert by["bicubic"].ok
    assert by["swallowing"].status == "failed" and "killed" in by["swallowing"].error
    assert time.monotonic() - start < 120
