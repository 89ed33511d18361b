"""The Ray executor gives the same records and MLflow runs as the local one (a local Ray started
on demand, with this machine's CPUs)."""

from __future__ import annotations

import numpy as np

from bench import cli
from bench.run.records import read_records

METHODS = "bicubic,mean,tesla,linear_probe"


def _run(root, out, *extra):
    argv = [
        "run",
        "--methods",
        METHODS,
        "--datasets",
        "her2st",
        "--folds",
        "none",
        "--seeds",
        "0",
        "1",
        "--preset",
        "quick",
    ]
    argv += ["--data-dir", str(root), "--results-dir", str(out), "--no-progress"]
    argv += ["--leaderboard", str(out / "LB.md"), *extra]
    assert cli.main(argv) == 0
    return {(r.method, r.seed): r for r in read_records(out) if r.method != "ceiling"}


def test_ray_executor_matches_local(root, tmp_path):
    import mlflow

    from bench.run.tracking import default_uri

    local = _run(root, tmp_path / "local")
    remote = _run(root, tmp_path / "ray", "--executor", "ray")
    assert local.keys() == remote.keys() and len(local) == 8
    for key, rec in local.items():
        other = remote[key]
        assert other.status == rec.status == "ok"
        assert other.split == rec.split and other.params == rec.params
        assert other.per_gene.gene == rec.per_gene.gene
        for name, values in rec.per_gene.columns().items():
            if name not in ("region", "gene"):  # null (excluded pair) -> NaN, compared as equal
                got = np.array(
                    [np.nan if v is None else v for v in other.per_gene.columns()[name]]
                )
                want = np.array([np.nan if v is None else v for v in values])
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
    for out in (tmp_path / "local", tmp_path / "ray"):
        client = mlflow.MlflowClient(tracking_uri=default_uri(out))
        exp = client.get_experiment_by_name("stsr-bench")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        children = [r for r in runs if "record_id" in r.data.tags]  # the ceiling row has none
        assert len(children) == 8 and all(r.info.status == "FINISHED" for r in runs)


def test_the_grid_starts_the_longest_cells_first_each_group_in_its_given_order() -> None:
    """Longest cells first: the samplers' (stochastic), then the other trained methods', then
    the rest, each group kept in the order the plan built it, so workers end on short cells."""
    from bench.grid.plan import Cell, longest_first

    cells = [Cell("a", "bicubic", 0), Cell("a", "diffst", 0), Cell("b", "mean", 0)]
    cells += [Cell("b", "histogene", 0), Cell("b", "sr3", 0), Cell("a", "unet", 1)]
    assert longest_first(cells) == [
        Cell("a", "diffst", 0),
        Cell("b", "sr3", 0),
        Cell("b", "histogene", 0),
        Cell("a", "unet", 1),
        Cell("a", "bicubic", 0),
        Cell("b", "mean", 0),
    ]


def test_an_interrupt_delivered_to_a_worker_thread_stops_the_parallel_grid_at_once(monkeypatch):
    """The kernel may deliver a process-directed SIGINT to any thread; Python runs the handler
    in the main thread only, so a main thread blocked in an untimed wait for the cells would
    raise KeyboardInterrupt only when a cell ended. Here each cell sends SIGINT to its own worker
    thread once the main thread waits, then runs until it is killed (up to its own 30 s): the
    grid must raise within seconds, and end the cells."""
    import signal
    import threading
    import time

    import pytest

    from bench.run import executors
    from bench.run.cell import RunOptions

    killed = threading.Event()

    def cell(split, method, seed, opts, workdir, isolate=False):
        time.sleep(0.5)  # the main thread is waiting for the cells by now
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        killed.wait(30)
        return None, {}

    monkeypatch.setattr(executors, "run_bounded", cell)
    monkeypatch.setattr(executors, "kill_running", killed.set)
    # Ctrl-C as a terminal's foreground job takes it (a shell's background job, e.g. a CI script
    # run with `&`, starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            cells = [("d", "m", 0, "w"), ("d", "m", 1, "w")]
            list(executors.local(cells, {"d": None}, RunOptions(), 2))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 10 and killed.is_set()
