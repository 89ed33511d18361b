"""The library entry point: ``run_grid(RunConfig(...)) -> GridResult``, behind
``python -m bench run`` and what benchmarks and notebooks call instead of shelling out.

A run is five stages, each a function with a typed input and output:

1. plan (:mod:`.plan`): ``RunConfig -> Plan``; every input and output checked, every split read
   and verified, before anything is written (a bad input: :class:`bench.errors.BenchError`,
   the CLI's exit status 2);
2. open (:mod:`.session`): ``Plan -> Session``; MLflow invocation run, Ray, shared files;
3. claim (:mod:`.cells`): ``Plan -> Claims``; cell locks, records an earlier run left reused;
4. execute (:mod:`.cells`): ``Claims -> Record`` per cell, each saved, tracked and unlocked
   (interrupted: running cells ended, the invocation run closed as KILLED, finished ones kept);
5. publish (:mod:`.session`): the page rewritten, the invocation run closed.
"""

from __future__ import annotations

import sys

from bench.errors import Interrupted, redact
from bench.grid.cells import claim, execute, wait_for_others
from bench.grid.config import (
    DEFAULT_DATASETS,
    DEFAULT_LEADERBOARD,
    GridResult,
    RunConfig,
    auto_jobs,
    cpu_count,
)
from bench.grid.plan import Cell, Plan, check_outputs, make_plan
from bench.grid.session import Session, abandon, open_session, publish

__all__ = [
    "DEFAULT_DATASETS",
    "DEFAULT_LEADERBOARD",
    "Cell",
    "GridResult",
    "Plan",
    "RunConfig",
    "Session",
    "auto_jobs",
    "check_outputs",
    "cpu_count",
    "run_grid",
]


def run_grid(config: RunConfig) -> GridResult:
    """Run the grid of ``config`` and rewrite its leaderboard (the stages above)."""
    from tqdm import tqdm

    plan = make_plan(config)
    session = open_session(plan)
    claims = claim(plan, session)
    result = GridResult(
        records=list(claims.reused),
        reused=len(claims.reused),
        results_dir=plan.results,
        leaderboard=plan.board,
        tracking_uri=session.tracker.uri,
    )
    bar = tqdm(
        total=len(plan.cells),
        initial=result.reused,
        unit="cell",
        disable=not plan.progress,
        file=sys.stderr,
    )
    try:
        for record in execute(plan, session, claims, claims.todo):
            result.add(record)
            bar.set_description(f"{record.dataset}/{record.method} seed {record.seed}")
            bar.update()
        waited, left = wait_for_others(plan, claims)
        result.records += waited
        result.reused += len(waited)
        bar.update(len(waited))
        for record in execute(plan, session, claims, left):
            result.add(record)
            bar.update()
    except (KeyboardInterrupt, Interrupted):  # SIGINT, SIGTERM: finished cells are kept
        abandon(session)
        raise
    finally:
        bar.close()
    result.leaderboard = publish(plan, session, result.failed)
    result.records.sort(key=lambda r: (r.dataset, r.method, r.seed))
    print(f"{len(plan.cells)} cell(s), {result.failed} failed; records in {plan.results}")
    print(f"leaderboard: {result.leaderboard}")
    shown = redact(session.tracker.uri)
    print(f"MLflow store: {shown}")
    print(
        f"  browse: mlflow ui --backend-store-uri {shown} --host 127.0.0.1 --workers 1, then "
        f"open http://127.0.0.1:5000/#/experiments/{session.tracker.experiment_id}/runs"
        "?workflowType=machine_learning (the model-training view; cells under the invocation)"
    )
    return result
