"""Stages 2 and 5: open the run (MLflow invocation run, Ray, the files every cell shares) and
publish it (the leaderboard page, its figures in MLflow, the invocation run closed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import redact, writable_dir
from bench.grid.plan import Plan

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
    for split in plan.splits.values():
        outputs.save_test_maps(plan.results, split)
        write_ceiling(plan.results, split, plan.opts)  # a control row of the page
    print(f"device: {device_name()}; MLflow store: {redact(tracker.uri)}", flush=True)
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
    return Session(tracker, ray_here)


def publish(plan: Plan, session: Session, failed: int) -> Path:
    """Stop Ray if this run started it, rewrite the page from every record in the results
    folder, log its figures, and close the invocation run (last: a run killed before it stays
    RUNNING); returns the page's path."""
    from bench.board import page
    from bench.run import executors

    if session.ray_here:
        executors.stop_ray()
    path, drawn = page.write(plan.results, plan.board, plan.command)
    session.tracker.log_files(drawn, "figures")
    session.tracker.finish(failed=bool(failed))
    return path
