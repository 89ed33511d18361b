"""Stages 3 and 4: claim the plan's cells, then execute them, recording and tracking each.

Each cell is computed under a lock file beside its record (``seed-<seed>.lock``, released on
exit however the process ends): a cell that another invocation is computing is waited for and
its record reused, so two invocations of the same cells compute each once. A cell whose record
an earlier (perhaps killed) invocation left is reused, not recomputed
(:func:`bench.run.cell.reusable` decides).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bench.errors import DiskFull
from bench.files import FileLock, uninterrupted
from bench.grid.plan import STORE_BYTES, Cell, Plan
from bench.grid.session import Session, fail, store_writes

if TYPE_CHECKING:
    from bench.run.records import Record


@dataclass
class Claims:
    """The cells this invocation holds the locks of: ``reused`` (their records are already
    written) and ``todo`` (to compute); ``busy`` are being computed by another invocation."""

    locks: dict[Cell, FileLock]
    reused: list[Record]
    todo: list[Cell]
    busy: list[Cell]


def _reusable(plan: Plan, cell: Cell) -> Record | None:
    from bench.run.cell import reusable

    return reusable(plan.results, plan.splits[cell.dataset], cell.method, cell.seed, plan.opts)


def claim(plan: Plan, session: Session) -> Claims:
    """Lock the plan's cells, find the records an earlier invocation left, and bring the MLflow
    store in line with them (runs a killed invocation left open are closed or removed)."""
    from bench.run import outputs
    from bench.run.records import record_path

    locks = {
        c: FileLock(
            record_path(plan.results, plan.splits[c.dataset].label, c.method, c.seed).with_suffix(
                ".lock"
            )
        )
        for c in plan.cells
    }
    busy = [c for c in plan.cells if not locks[c].acquire()]
    done = {c: _reusable(plan, c) for c in plan.cells if c not in busy}
    reused = [rec for rec in done.values() if rec]
    finished = [(rec, outputs.side_files(plan.results, rec)) for rec in reused]
    repaired = session.tracker.reconcile(finished, held=reused)
    if any(repaired.values()):
        print(
            f"MLflow store repaired after an interrupted run: {repaired['killed']} run(s) closed "
            f"as KILLED, {repaired['deleted']} half-logged or orphan run(s) removed, "
            f"{repaired['logged']} finished cell(s) logged",
            flush=True,
        )
    for c, rec in done.items():
        if rec:
            locks[c].release()
    return Claims(locks, reused, [c for c, rec in done.items() if rec is None], busy)


def execute(plan: Plan, session: Session, claims: Claims, todo: list[Cell]) -> Iterator[Record]:
    """Run ``todo`` with the plan's executor; save, track and unlock each cell as it finishes
    (a failed cell is recorded with its reason and the grid goes on)."""
    from tqdm import tqdm

    from bench.run import executors, outputs
    from bench.run.records import record_path

    splits = plan.splits
    pending = [
        (
            c.dataset,
            c.method,
            c.seed,
            record_path(plan.results, splits[c.dataset].label, c.method, c.seed).with_suffix(
                ".work"
            ),
        )
        for c in todo
    ]
    for c in todo:  # temporary files a killed writer of this cell left behind
        outputs.remove_temporaries(plan.results, splits[c.dataset].label, c.method, c.seed)
    run = executors.ray if plan.executor == "ray" else partial(executors.local, jobs=plan.jobs)
    results = run(pending, splits, plan.opts)
    try:
        for (dataset, method, seed, _), record, extras in results:
            with uninterrupted():  # a record and its run whole: an interrupt waits for them
                record, files = outputs.save_or_fail(plan.results, splits[dataset], record, extras)
                with store_writes(session, STORE_BYTES + sum(p.stat().st_size for p in files)):
                    session.tracker.log_cell(record, files, plan.facts[dataset])
                    session.tracker.drop_superseded(record)
                claims.locks[Cell(dataset, method, seed)].release()
            if not record.ok:
                tqdm.write(
                    f"{splits[dataset].label}/{method} seed {seed} failed: {record.error}",
                    file=sys.stderr,
                )
            yield record
    except DiskFull:  # the grid stops: no cell runs on, the invocation run closed as FAILED
        results.close()
        fail(session)
        raise
    finally:
        for c in todo:
            claims.locks[c].release()


def wait_for_others(plan: Plan, claims: Claims) -> tuple[list[Record], list[Cell]]:
    """Wait for the cells another invocation is computing; returns their records and the cells
    it left undone (to compute now)."""
    from tqdm import tqdm

    records, left = [], []
    for c in claims.busy:
        lock = claims.locks[c]
        tqdm.write(
            f"{plan.splits[c.dataset].label}/{c.method} seed {c.seed}: waiting for the "
            f"invocation computing it ({lock.holder() or 'unknown'})",
            file=sys.stderr,
        )
        lock.acquire(blocking=True)
        rec = _reusable(plan, c)
        if rec is None:
            left.append(c)
            continue
        lock.release()
        records.append(rec)
    return records, left
