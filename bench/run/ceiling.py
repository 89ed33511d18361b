"""The ``ceiling`` row: each split's noise ceiling (:mod:`bench.scoring.ceiling`) as a record.

The ceiling is a property of the test truth, not of a method, so it is not a registered method
and no cell trains for it: every ``run`` computes it for each split it builds (seconds: 20
binomial thinnings of the test counts), and writes it as the record
``<results>/<dataset>/ceiling/seed-0.json`` with ``control = "ceiling"``, the per-(region, gene)
PCC ceiling in ``per_gene["pcc"]``, the LR-aware bound in ``per_gene["pcc_lr"]``, the split-half
correlation in ``per_gene["r_half"]``, all on exactly the scored positions, and no
SSIM or RMSE (not available; the module docstring of :mod:`bench.scoring.ceiling` says why). The
leaderboard shows it with the controls and scales every method by it ("share of ceiling").
Written atomically (seed 0) and reused by a later run on the same split, as a cell's record is.
"""

from __future__ import annotations

import time

import numpy as np

from bench.data.splits import Split
from bench.run.cell import RunOptions, new_record
from bench.run.records import PerGene, Record, read_record, record_path, write_record
from bench.scoring.ceiling import ESTIMATOR, REPEATS, ceiling

__all__ = ["NAME", "ceiling_record", "write_ceiling"]

NAME = "ceiling"


def ceiling_record(split: Split, opts: RunOptions) -> Record:
    """The ceiling of ``split``'s test regions as an ok control record (seed 0)."""
    truth = split.truth
    start = time.perf_counter()
    result = ceiling(
        truth.counts,
        truth.totals,
        truth.scored,  # exactly the positions every method is scored on
        split.normalise,
        split.spec.k,
        repeats=REPEATS,
        seed=0,
    )
    record = new_record(split, NAME, 0, opts)
    record.control, record.status, record.name = "ceiling", "ok", f"{NAME}-seed0"
    record.params = {"repeats": REPEATS, "estimator": ESTIMATOR, "preset": opts.preset}
    n, g = result.pcc.shape

    def column(values: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(v) else float(v) for v in values.ravel()]

    record.per_gene = PerGene(
        region=[s.region for s in split.test for _ in range(g)],
        gene=list(split.genes) * n,
        scores={
            "pcc": column(result.pcc),
            "pcc_lr": column(result.pcc_lr),
            "r_half": column(result.r_half),
            "ssim": [None] * (n * g),
            "rmse": [None] * (n * g),
        },
    )
    record.metrics = {
        "pcc": float(np.nanmean(result.pcc)),
        "pcc_lr": float(np.nanmean(result.pcc_lr)),
        "r_half": float(np.nanmean(result.r_half)),
    }
    record.timings = {"fit_s": 0.0, "predict_s": 0.0, "score_s": time.perf_counter() - start}
    record.memory = {"cpu_rss_mb": 0.0, "gpu_mb": None}
    record.finished = time.time()
    record.finished_ms = int(record.finished * 1000)
    return record


def write_ceiling(results_dir, split: Split, opts: RunOptions) -> Record:
    """The ceiling record of ``split`` under ``results_dir``: the one there when it is for the
    same split fingerprint and repeats (resume), else computed and written."""
    old = read_record(record_path(results_dir, split.label, NAME, 0))
    if (
        old is not None
        and old.ok
        and old.split.fingerprint == split.fingerprint
        and old.params.get("repeats") == REPEATS
        and old.params.get("estimator") == ESTIMATOR
    ):
        return old
    record = ceiling_record(split, opts)
    write_record(results_dir, record)
    return record
