"""The whole default grid: ``run --methods all --preset quick`` on every committed dataset, cold.

Calls the library entry point (``bench.run_grid(RunConfig(...))``, what ``python -m bench run``
calls) with a fresh results folder and a fresh split cache, and prints its wall time and peak
resident memory (this process and any cell processes, the largest) against issue 14's budget of
20 minutes and 4 GiB on 2 CPU cores, and each cell's fit and predict seconds, most expensive first,
with its share of the cells' total, so what to cut is visible. Usage:
``python benchmarks/whole_grid.py [--datasets all] [--data-dir D]``. Measure on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

BUDGET_MIN = 20
BUDGET_GIB = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="all")
    parser.add_argument("--data-dir", default=os.environ.get("STSR_DATA_DIR"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        os.environ["STSR_CACHE_DIR"] = str(out / "cache")  # cold: the split is built, not loaded
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from bench import RunConfig, run_grid

        config = RunConfig(
            methods="all",
            datasets=args.datasets,
            preset="quick",
            data_dir=args.data_dir,
            results_dir=out / "results",
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
