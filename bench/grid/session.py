"""Stages 2 and 5: open the run (MLflow invocation run, Ray, the files every cell shares) and
publish it (the leaderboard page, its figures in MLflow, the invocation run closed)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import DiskFull, redact, writable_dir
from bench.files import stop_when_full
from bench.grid.plan import PAGE_BYTES, STORE_BYTES, Plan

if TYPE_CHECKING:
    from bench.run.tracking import Tracker


@dataclass
class Session:
    """A started run: its MLflow tracker (the invocation's parent run open) and whether this
    process started Ray (and so stops it)."""

    tracker: Tracker
    ray_here: bool


def open_session(plan: Plan) -> Session:
    """Start Ray if asked, make the MLflow store and open the invocation run, and write what
    every cell shares: each split's test maps (the page's figures) and its noise ceiling."""
    from bench.run import executors, outputs
    from bench.run.ceiling import write_ceiling
    from bench.run.resources import device_name
    from bench.run.tracking import Tracker, default_uri, run_name

    ray_here = plan.executor == "ray" and executors.start_ray(plan.ray_address)
    tracker = plan.server
    if plan.tracking_uri and tracker is None:  # an explicit SQLite store: made only now
        tracker = Tracker(plan.tracking_uri, plan.results)
    writable_dir(plan.results, "results dir")
    writable_dir(plan.board.parent, "leaderboard folder")
    tracker = tracker or Tracker(default_uri(plan.results), plan.results)
    shared = sum(outputs.split_bytes(split) for split in plan.splits.values())
    with stop_when_full(plan.results, shared):
        for split in plan.splits.values():
            outputs.save_test_maps(plan.results, split)
            write_ceiling(plan.results, split, plan.opts)  # a control row of the page
    print(f"device: {device_name()}; MLflow store: {redact(tracker.uri)}", flush=True)
    session = Session(tracker, ray_here)
    with store_writes(session):
        tracker.start(
            run_name("invocation", {"preset": plan.opts.preset}),
            params={
                "methods": ",".join(plan.methods),
                "datasets": ",".join(plan.datasets),
                "seeds": " ".join(map(str, plan.seeds)),
                "preset": plan.opts.preset,
                "command": plan.command,
            },
            tags={"code_version": plan.opts.code_version, "device": plan.opts.device},
        )
    return session


@contextlib.contextmanager
def store_writes(session: Session, needed: int = STORE_BYTES) -> Iterator[None]:
    """:func:`bench.files.stop_when_full` around writes to a local (SQLite) MLflow store and its
    artifacts, naming the store's file; a tracking server's errors pass unchanged."""
    uri = session.tracker.uri
    if not uri.startswith("sqlite:///"):
        yield
        return
    with _store_errors_unlogged(), stop_when_full(Path(uri[len("sqlite:///") :]), needed):
        yield


@contextlib.contextmanager
def _store_errors_unlogged() -> Iterator[None]:
    """MLflow logs an error of its SQL store (a traceback on stderr) before raising it; the
    raised one is what is reported (one line for a full disk), so the log is held back."""
    log = logging.getLogger("mlflow.store.db.utils")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def fail(session: Session) -> None:
    """After a full disk stopped the grid: close the invocation run as FAILED where the store
    can still be written (else the next run repairs it)."""
    with contextlib.suppress(Exception), _store_errors_unlogged():
        session.tracker.finish(failed=True)


def publish(plan: Plan, session: Session, failed: int) -> Path:
    """Stop Ray if this run started it, rewrite the page from every record in the results
    folder, log its figures, and close the invocation run (last: a run killed before it stays
    RUNNING); returns the page's path."""
    from bench.board import page
    from bench.run import executors

    if session.ray_here:
        executors.stop_ray()
    try:
        with stop_when_full(plan.board, PAGE_BYTES):
            path, drawn = page.write(plan.results, plan.board, plan.command)
        with store_writes(session, sum(p.stat().st_size for p in drawn)):
            session.tracker.log_files(drawn, "figures")
            session.tracker.finish(failed=bool(failed))
    except DiskFull:
        fail(session)
        raise
    return path


def abandon(session: Session) -> None:
    """After an interrupt: end every running cell (process groups, Ray tasks), stop a Ray this
    run started, and close the invocation run as KILLED. Finished cells keep their records; a
    rerun of the same command resumes from them."""
    from bench.run import executors

    executors.kill_running()
    if session.ray_here:
        executors.stop_ray()
    try:
        session.tracker.finish(failed=True, status="KILLED")
    except Exception:  # noqa: BLE001 - a store that cannot be reached now is repaired next run
        pass
