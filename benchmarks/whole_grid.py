"""The whole default grid: ``run --methods all --preset quick`` (every fold of every committed
dataset, ``--seeds S``, ``--jobs J``), cold; or, with ``--project RESULTS``, a cost model of a page
from records already measured.

Cost model (``--project RESULTS --folds F --seeds S --jobs J --draws K``): each measured cell costs
``c = fit_s + score_s + predict_s * r``, where ``r = K / K_recorded`` for a sampler (its prediction
time is its draws' time; ``K_recorded`` is its ``draws_used``, else a fixed ``--draws``) and 1
otherwise, means over the measured seeds. ``--folds all`` reads each dataset's committed fold files
(at the measured split's k): a fold's cell fits as long as the measured one (the step budget does
not depend on the number of training regions) and predicts in proportion to its test regions,
``predict_s * n_fold / n_split``, so the folds together predict every region once; ``--folds F`` (a
number) instead counts F copies of the measured cell. Records of folds (a folded page's) are
measured cells themselves and count as they are, whatever ``--folds``. The page runs that per seed
(``--seeds S``). The pooling ladder (records of a dataset's other-k tasks: ``<dataset>-k<k>-f0``,
fold 0 at another k, or ``<dataset>-k<k>``, a single split) runs at ``--ladder-seeds L`` seeds
(default 1): its cells count as measured; its own-k rung is fold 0 of the folds (or the single
split), counted already. Its wall time on ``J`` workers is estimated by
longest-processing-time-first list scheduling of all cells (never below the total divided by ``J``
nor the longest cell). Printed: each (dataset, method)'s share of the total and the projected wall
time. The projection reads the records' timings and the fold files' test-region counts, never a
score.

Without ``--project``: calls the library entry point (``bench.run_grid(RunConfig(...))``, what
``python -m bench run`` calls; ``--ladder`` adds the pooling ladder, as the page does) with a fresh
results folder and a fresh split cache, and prints its wall time and peak resident memory (this
process and any cell processes, the largest) against the performance issue's budget for the folded
page, 90 minutes and 4 GiB on 2 CPU cores with ``--jobs 2``, and each cell's fit and predict
seconds, most expensive first, with its share of the cells' total, so what to cut is visible. The
grid it runs scores the test regions, as the page does; this script reports cost only and chooses
nothing from the scores; ``--results DIR`` (a new or empty folder) keeps its results, so that
``python -m bench run`` with the page's command renders the page from them without running a
cell again. Usage: ``python benchmarks/whole_grid.py [--datasets all] [--seeds S] [--jobs J]
[--ladder] [--results DIR] [--data-dir D]``. Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

BUDGET_MIN = 90
BUDGET_GIB = 4.0


def cell_cost(
    timings: dict[str, float], draws: int | None, k: int | None, predict_share: float = 1.0
) -> float:
    """Seconds of one cell with ``k`` draws instead of the ``draws`` it was measured with, and
    ``predict_share`` of its test regions."""
    scale = k / draws if draws and k else 1.0
    fixed = timings.get("fit_s", 0.0) + timings.get("score_s", 0.0)
    return fixed + timings.get("predict_s", 0.0) * scale * predict_share


def schedule(costs: list[float], jobs: int) -> float:
    """Makespan of ``costs`` on ``jobs`` workers, longest first to the least loaded worker."""
    loads = [0.0] * max(1, jobs)
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def fold_shares(dataset: str, k: int, tested: int, folds: str) -> list[float]:
    """Per fold, its test regions over the measured split's ``tested``: from the committed fold
    files with ``folds == "all"``, else ``int(folds)`` folds of share 1."""
    if folds != "all":
        return [1.0] * int(folds)
    import json

    from bench.data import cards
    from bench.data.splits import fold_paths

    paths = fold_paths(cards.load_card(dataset), k)
    if not paths:
        raise SystemExit(f"{dataset}: no committed fold files at k = {k}; bench split --folds")
    return [len(json.loads(p.read_text())["test"]) / tested for p in paths]


def project(
    results: Path, folds: str, seeds: int, jobs: int, k: int | None, ladder_seeds: int = 1
) -> None:
    """Print the cost model of the module docstring for the records under ``results``."""
    from bench.board.folds import fold_of
    from bench.data import cards
    from bench.run.records import read_records

    known = set(cards.dataset_names())
    # per (task, method): per measured seed, each cell's cost; and how many seeds it runs at
    per: dict[tuple[str, str], list[list[float]]] = {}
    runs: dict[tuple[str, str], int] = {}
    validation: dict[tuple[str, str], list[float]] = {}  # seconds of validation scoring per fit
    shares: dict[str, list[float]] = {}
    records = [r for r in read_records(results) if r.status == "ok"]
    bases = {id(r): found for r in records if (found := fold_of(r)) is not None}
    folded = {found[0] for found in bases.values()}
    # measured folds: per (dataset, method), per seed, per fold index, the cell's cost
    measured: dict[tuple[str, str], dict[int, dict[int, float]]] = {}

    def count(key: tuple[str, str], costs: list[float], times: int) -> None:
        """One measured seed of ``key``'s cells, run ``times`` times on the page."""
        per.setdefault(key, []).append(costs)
        runs[key] = times

    for rec in records:
        asked = rec.params.get("draws")  # a number, or "auto" (then the record's draws_used)
        draws = rec.draws_used or (int(asked) if isinstance(asked, int | float) else None)
        if id(rec) in bases and bases[id(rec)][0] in known:  # a measured fold: counted as it is
            base, fold, _ = bases[id(rec)]
            seeds_of = measured.setdefault((base, rec.method), {})
            seeds_of.setdefault(rec.seed, {})[fold] = cell_cost(rec.timings, draws, k)
            if "validation_s" in rec.timings:
                validation.setdefault((base, rec.method), []).append(rec.timings["validation_s"])
            continue
        if rec.dataset not in known:  # a ladder task: fold 0 or a single split at another k
            count((rec.dataset, rec.method), [cell_cost(rec.timings, draws, k)], ladder_seeds)
            continue
        if rec.dataset in folded:  # its folds were measured: an older page's ladder rung
            continue
        if rec.dataset not in shares:
            shares[rec.dataset] = fold_shares(rec.dataset, rec.split.k, len(rec.split.test), folds)
        costs = [cell_cost(rec.timings, draws, k, share) for share in shares[rec.dataset]]
        count((rec.dataset, rec.method), costs, seeds)
        if "validation_s" in rec.timings:
            validation.setdefault((rec.dataset, rec.method), []).append(
                rec.timings["validation_s"]
            )
    for key, by_seed in measured.items():
        per[key] = [[c for _, c in sorted(folds_of.items())] for folds_of in by_seed.values()]
        runs[key] = seeds
    if not per:
        raise SystemExit(f"{results}: no finished records to project from; run a grid first")
    # per (task, method): each cell's cost, the mean over the measured seeds
    mean = {key: [sum(c) / len(c) for c in zip(*v, strict=True)] for key, v in per.items()}
    cells = [c for key, costs in mean.items() for c in costs for _ in range(runs[key])]
    total = sum(cells)
    print(f"{'task':<32} {'method':<13} {'cell s':>8} {'cells':>6} {'share':>6}")
    for key, cost in sorted(mean.items(), key=lambda kv: -sum(kv[1]) * runs[kv[0]]):
        n = len(cost) * runs[key]
        print(
            f"{key[0]:<32} {key[1]:<13} {sum(cost) / len(cost):8.1f} {n:6d} "
            f"{sum(cost) * runs[key] / total:6.1%}"
        )
    ladder = sum(sum(c) * runs[key] for key, c in mean.items() if key[0] not in known)
    validation = {key: v for key, v in validation.items() if key in mean}
    scoring = sum(statistics.mean(v) * len(mean[key]) * runs[key] for key, v in validation.items())
    if scoring:
        print(
            f"validation scoring during fits (records with timings['validation_s']): "
            f"{scoring / 60:.1f} cell-minutes, {scoring / total:.1%} of the total"
        )
    wall = schedule(cells, jobs)
    print(
        f"projected page: {len(cells)} cells, {total / 60:.1f} cell-minutes (the ladder "
        f"{ladder / 60:.1f}), {wall / 60:.1f} min wall on {jobs} worker(s) (folds {folds}, seeds "
        f"{seeds}, ladder seeds {ladder_seeds}, draws {k if k else 'as recorded'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="all")
    parser.add_argument("--data-dir", default=os.environ.get("STSR_DATA_DIR"))
    parser.add_argument("--project", type=Path, help="results folder to project a page from")
    parser.add_argument(
        "--folds", default="1", help="'all': each dataset's committed fold files; or a number"
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--ladder-seeds", type=int, default=1, help="seeds of the ladder's cells")
    parser.add_argument("--jobs", type=int, default=None, help="cells at a time (default: auto)")
    parser.add_argument("--draws", type=int, default=None, help="K per sampler cell")
    parser.add_argument("--ladder", action="store_true", help="run the pooling ladder too")
    parser.add_argument(
        "--results", type=Path, help="keep the grid's results here (new or empty; default: none)"
    )
    args = parser.parse_args()
    if args.results is not None and args.results.exists() and any(args.results.iterdir()):
        parser.error(
            f"--results {args.results} is not empty; the grid is timed cold, name a new folder"
        )
    if args.project is not None:
        project(
            args.project, args.folds, args.seeds, args.jobs or 1, args.draws, args.ladder_seeds
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ["STSR_CACHE_DIR"] = str(out / "cache")  # cold: the split is built, not loaded
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from bench import RunConfig, run_grid

        config = RunConfig(
            methods="all",
            datasets=args.datasets,
            preset="quick",
            seeds=tuple(range(args.seeds)),
            ladder=args.ladder,
            jobs=args.jobs,
            data_dir=args.data_dir,
            results_dir=args.results or out / "results",
            leaderboard=out / "LB.md",
            progress=False,
            command="python benchmarks/whole_grid.py",
        )
        start = time.perf_counter()
        result = run_grid(config)
        wall = time.perf_counter() - start
        peak = max(
            resource.getrusage(who).ru_maxrss / 2**20  # KiB -> GiB
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
            f"exit status {result.exit_status}"
        )
        cells = sorted(
            (
                (r.timings.get("fit_s", 0.0) + r.timings.get("predict_s", 0.0), r)
                for r in result.records
            ),
            key=lambda x: (-x[0], x[1].dataset, x[1].method),
        )
        total = sum(c for c, _ in cells) or 1.0
        print(
            f"{'dataset':<30} {'method':<13} {'status':<7} {'fit s':>7} {'predict s':>9} "
            f"{'share':>6} {'peak MiB':>9}"
        )
        for cost, rec in cells:
            t = rec.timings
            print(
                f"{rec.dataset:<30} {rec.method:<13} {rec.status:<7} {t.get('fit_s', 0.0):7.1f} "
                f"{t.get('predict_s', 0.0):9.1f} {cost / total:6.1%} {rec.peak_memory_mb:9.0f}"
            )
    print(
        f"whole grid: {wall / 60:.1f} min (target <= {BUDGET_MIN}), cells {total / 60:.1f} min, "
        f"peak RSS {peak:.2f} GiB (target < {BUDGET_GIB:g})"
    )


if __name__ == "__main__":
    main()
