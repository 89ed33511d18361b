"""The walk of ``run_grid``'s config through the code: which files ("rooms") it enters, how often
a call climbs back to a higher wing, how often the walk returns to a room it had left.

Runs one real cell (``bicubic`` on a dataset, default her2st) through ``bench.run_grid`` under a
profiler. A call is part of the walk when one of the callee's arguments or locals is the
``RunConfig`` itself, one of its values (the same object: the names, paths, the command) or an
object that carries them on (``RunOptions``, the grid's ``Plan``). Rooms are the project files so
entered (``bench/`` and ``methods/``); a climb is a call from a file of a lower wing into a higher
one (wings, top down: cli, grid, board, run, scoring | data, then methods; ``errors`` and
``files`` serve all); a return is entering a room again after the walk has left it.

Usage: ``python benchmarks/config_walk.py [--dataset her2st] [--data-dir D]``; run it on two
commits to compare them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WINGS = {"bench/cli": 5, "bench/grid": 4, "bench/board": 3, "bench/run": 2, "bench/scoring": 1}
CARRIERS = ("RunConfig", "RunOptions", "Plan")


def wing(path: str) -> float:
    """Height of a file's wing (higher = nearer the entry point)."""
    for prefix, height in WINGS.items():
        if path.startswith(prefix):
            return height
    if path.startswith("bench/data"):
        return 1
    return 0 if path.startswith("methods") else 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="her2st")
    parser.add_argument("--data-dir", default=os.environ.get("STSR_DATA_DIR"))
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(ROOT))
    from bench import RunConfig, run_grid

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            methods="bicubic",
            datasets=args.dataset,
            data_dir=args.data_dir,
            results_dir=Path(tmp) / "results",
            leaderboard=Path(tmp) / "LB.md",
            progress=False,
            jobs=1,
            command="python benchmarks/config_walk.py",
        )
        fields = ("methods", "datasets", "data_dir", "results_dir", "leaderboard", "command")
        ids = {id(config)} | {id(getattr(config, f)) for f in fields}
        rooms: list[str] = []  # in the order entered, consecutive repeats collapsed
        climbs: list[tuple[str, str, str]] = []

        def project(path: str) -> str | None:
            rel = os.path.relpath(path, ROOT)
            return rel if rel.startswith(("bench/", "methods/")) else None

        def profile(frame, event, _arg) -> None:
            if event != "call":
                return
            callee = project(frame.f_code.co_filename)
            if callee is None:
                return
            local = list(frame.f_locals.values())
            if not any(id(v) in ids or type(v).__name__ in CARRIERS for v in local):
                return
            back = frame.f_back
            while back is not None and project(back.f_code.co_filename) is None:
                back = back.f_back
            caller = project(back.f_code.co_filename) if back is not None else None
            if caller and caller != callee and wing(callee) > wing(caller):
                climbs.append((caller, callee, frame.f_code.co_name))
            if not rooms or rooms[-1] != callee:
                rooms.append(callee)

        sys.setprofile(profile)
        try:
            run_grid(config)
        finally:
            sys.setprofile(None)
    seen, returns = set(), 0
    for before, room in zip(rooms, rooms[1:], strict=False):
        seen.add(before)
        returns += room in seen
    distinct = list(dict.fromkeys(rooms))
    print(f"\nwalk: {' > '.join(rooms)}")
    print(f"rooms {len(distinct)}: {', '.join(distinct)}")
    print(f"climbs {len(climbs)}: {climbs}")
    print(f"returns {returns}")


if __name__ == "__main__":
    main()
