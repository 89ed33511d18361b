"""The whole grid: ``run --methods all --preset quick`` on her2st, cold.

Calls the library entry point (``bench.run_grid(RunConfig(...))``, what ``python -m bench run``
calls) with a fresh results folder and a fresh split cache, and prints its wall time and this
process's peak resident memory against the targets of 10 minutes and 4 GiB on 2 CPU cores, plus
each cell's fit + predict seconds and peak memory from the returned records. Usage:
``python benchmarks/whole_grid.py [--datasets her2st] [--data-dir D]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="her2st")
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
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs; "
            f"exit status {result.exit_status}"
        )
        print(f"{'method':<14} {'status':<7} {'fit+predict s':>14} {'peak MiB':>9}")
        for rec in result.records:
            t = rec.timings.get("fit_s", 0.0) + rec.timings.get("predict_s", 0.0)
            print(f"{rec.method:<14} {rec.status:<7} {t:14.1f} {rec.peak_memory_mb:9.0f}")
    print(f"whole grid: {wall / 60:.1f} min (target <= 10), peak RSS {peak:.2f} GiB (target < 4)")


if __name__ == "__main__":
    main()
