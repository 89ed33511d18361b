"""The whole grid: ``python -m bench run --methods all --preset quick`` on her2st, cold.

Runs the CLI in a child process with a fresh results folder and a fresh split cache, and prints
its wall time and peak resident memory (``ru_maxrss`` of the child) against the targets of 10
minutes and 4 GiB on 2 CPU cores, plus each cell's fit + predict seconds and peak memory from
the records. Usage: ``python benchmarks/whole_grid.py [--datasets her2st] [--data-dir D]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="her2st")
    parser.add_argument("--data-dir", default=os.environ.get("STSR_DATA_DIR"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        argv = [sys.executable, "-m", "bench", "run", "--methods", "all", "--preset", "quick"]
        argv += ["--datasets", args.datasets, "--results-dir", str(out / "results")]
        argv += ["--leaderboard", str(out / "LB.md"), "--no-progress"]
        if args.data_dir:
            argv += ["--data-dir", args.data_dir]
        env = {**os.environ, "STSR_CACHE_DIR": str(out / "cache")}
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs; exit status {proc.returncode}"
        )
        print(f"{'method':<14} {'status':<7} {'fit+predict s':>14} {'peak MiB':>9}")
        for path in sorted((out / "results").glob("*/*/seed-*.json")):
            rec = json.loads(path.read_text())
            t = rec["timings"]["fit_s"] + rec["timings"]["predict_s"]
            print(f"{rec['method']:<14} {rec['status']:<7} {t:14.1f} {rec['peak_memory_mb']:9.0f}")
    print(f"whole grid: {wall / 60:.1f} min (target <= 10), peak RSS {peak:.2f} GiB (target < 4)")


if __name__ == "__main__":
    main()
