"""What a grid is asked (:class:`RunConfig`, the options of ``python -m bench run``) and what it
leaves (:class:`GridResult`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATASETS = "all"  # every committed dataset (and any user card)
DEFAULT_LEADERBOARD = Path("leaderboard") / "LEADERBOARD.md"


@dataclass(frozen=True)
class RunConfig:
    """One invocation's settings (the options of ``python -m bench run``).

    ``methods`` and ``datasets`` are ``"all"``, comma-separated names or a sequence of names;
    ``k`` the pooling factor (None: each card's default); ``draws`` the K draws per input of a
    stochastic method, or ``"auto"`` for K chosen per cell by
    :data:`methods.contract.DEFAULT_DRAW_RULE`; ``timeout`` seconds per cell (None: no limit);
    ``max_memory`` the bytes a cell's processes may hold (None: :func:`auto_max_memory`);
    ``folds`` ``"all"`` (the default) runs each dataset's committed fold files at its k
    (:func:`bench.data.splits.fold_specs`) as tasks of their own, labelled ``<dataset>-f<i>``, so
    that every region is tested once, and a dataset with no fold files at that k its single
    committed split; comma-separated fold indices run those folds; ``"none"`` the single committed
    split; ``ladder`` also runs each dataset's pooling ladder at every committed pooling factor
    (``[split].pooling``), at the first seed only: its fold 0 where its folds run, else its single
    split (:mod:`bench.board.ladder`); ``command`` the shell command printed on the leaderboard to
    regenerate it.
    """

    methods: str | Sequence[str] = "all"
    datasets: str | Sequence[str] = DEFAULT_DATASETS
    seeds: Sequence[int] = (0,)
    preset: str = "default"
    draws: int | str = "auto"
    k: int | None = None
    folds: str = "all"  # "all", "0,2": the committed folds as tasks; "none": the single split
    ladder: bool = False  # also every committed k's fold 0 (or single split), first seed
    timeout: float | None = None
    max_memory: int | None = None  # bytes per cell; None: auto_max_memory(jobs)
    data_dir: str | Path | None = None
    results_dir: str | Path = "results"
    tracking_uri: str | None = None
    leaderboard: str | Path = DEFAULT_LEADERBOARD
    executor: str = "local"
    jobs: int | None = None  # local cells at a time; None: auto_jobs()
    ray_address: str | None = None
    progress: bool = True
    command: str = "bench.run_grid(...)"


@dataclass
class GridResult:
    """What a grid left: its records (one per cell, reused ones included), the folders and files
    written, and how many cells failed."""

    records: list = field(default_factory=list)  # list[bench.run.records.Record]
    failed: int = 0
    reused: int = 0
    results_dir: Path = Path("results")
    leaderboard: Path = DEFAULT_LEADERBOARD
    tracking_uri: str = ""

    def add(self, record) -> None:  # record: bench.run.records.Record
        """Keep a computed cell's record, counting it when it failed."""
        self.records.append(record)
        self.failed += not record.ok

    @property
    def exit_status(self) -> int:
        """0 when every cell is ok, else 1 (as ``python -m bench run``)."""
        return 1 if self.failed else 0


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


DRIVER_RESERVE = 2**30  # memory kept for the driver at the least (also: 1/8 of the machine's)


def auto_max_memory(jobs: int) -> int:
    """The default memory cap of a cell: the machine's memory (its cgroup limit in a container)
    less a reserve for the driver (:data:`DRIVER_RESERVE`, or an eighth of it when larger; at
    most half of it), shared among the ``jobs`` cells that run at a time."""
    from bench.run.resources import machine_memory

    total = machine_memory()
    return max(total // 2, total - max(DRIVER_RESERVE, total // 8)) // max(1, jobs)


def auto_jobs() -> int:
    """Local cells run at a time by default: one per CPU up to 4 (each with
    ``cpu_count() // jobs`` torch threads), and one when a GPU is visible (cells share it)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(4, cpu_count()))
