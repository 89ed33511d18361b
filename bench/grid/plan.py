"""Stage 1, plan: turn a :class:`RunConfig` into a :class:`Plan`, the cells to run and everything
they need, having checked every input and output before anything is written.

A bad input (an unknown method or dataset, a broken plugin, unreadable data, an output path that
cannot be written, an unreachable tracking server or Ray cluster) is a
:class:`bench.errors.BenchError` here, the CLI's exit status 2. ``RunConfig`` goes no further
than this module: later stages take the plan.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bench.errors import BenchError, redact
from bench.files import check_writable
from bench.grid.config import RunConfig, auto_jobs, cpu_count

if TYPE_CHECKING:
    from bench.data.splits import Split
    from bench.run.cell import RunOptions
    from bench.run.tracking import Tracker


class Cell(NamedTuple):
    """One unit of the grid: a method fitted and scored on a dataset's split with a seed."""

    dataset: str
    method: str
    seed: int


@dataclass(frozen=True)
class Plan:
    """What the grid will do. ``splits`` and ``facts`` are keyed by dataset name; ``server`` is
    a tracker already connected when the tracking URI is a server (reached before the data are
    read), else None (a local store is made only when the run starts writing)."""

    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    cells: list[Cell]
    splits: dict[str, Split]
    facts: dict[str, dict[str, str]]
    opts: RunOptions
    jobs: int
    executor: str  # "local" or "ray"
    ray_address: str | None
    results: Path
    board: Path
    tracking_uri: str | None
    server: Tracker | None
    command: str  # redacted; printed on the page to regenerate it
    progress: bool


def _names(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def check_outputs(config: RunConfig) -> tuple[Path, Path]:
    """Check every output path (results folder, leaderboard file, an explicit SQLite store)
    before anything is created; returns the results folder and the leaderboard path."""
    from bench.run.tracking import check_uri

    results = check_writable(Path(config.results_dir), "results dir")
    board = Path(config.leaderboard)
    if board.is_dir() or str(config.leaderboard).endswith(("/", os.sep)):
        raise BenchError(f"leaderboard {board} is a folder; pass a file, e.g. {board}/LB.md")
    check_writable(board, "leaderboard file", kind="file")
    if config.tracking_uri:
        check_uri(config.tracking_uri)
    return results, board


def usable_methods(names: list[str], asked_all: bool) -> list[str]:
    """``names`` with every plugin method imported and checked against the contract: a broken
    plugin asked for by name is a one-line error; under ``all`` it is skipped with one line."""
    from methods.registry import PluginError, method_class, plugin_source

    kept = []
    for name in names:
        if plugin_source(name) is not None:
            try:
                method_class(name)
            except PluginError as err:
                if not asked_all:
                    raise BenchError(str(err)) from None
                print(f"skipped: {err}", file=sys.stderr, flush=True)
                continue
        kept.append(name)
    return kept


def make_plan(config: RunConfig) -> Plan:
    """Resolve names, check outputs, reach a tracking server or Ray cluster, and read and verify
    every dataset's split; nothing is written."""
    from bench.data import cache, cards
    from bench.run import executors
    from bench.run.cell import RunOptions
    from bench.run.resources import code_version
    from bench.run.tracking import Tracker, card_facts
    from methods import UnknownMethodError, resolve

    try:
        methods = resolve(_names(config.methods))
    except UnknownMethodError as err:
        raise BenchError(str(err)) from None
    methods = usable_methods(methods, _names(config.methods).strip() == "all")
    datasets = cards.resolve_datasets(_names(config.datasets))
    seeds = list(dict.fromkeys(config.seeds))  # --seeds 0 0 is one cell, not two
    results, board = check_outputs(config)
    if config.executor == "ray" and config.ray_address:  # bounded, before any data is read
        executors.check_ray_address(config.ray_address)
    server = None
    if config.tracking_uri and not config.tracking_uri.startswith("sqlite"):
        server = Tracker(config.tracking_uri, results)  # reached before the data
    root = cards.data_dir(config.data_dir)
    splits, facts = {}, {}
    for name in datasets:  # read and verify all data before writing anything
        card = cards.load_card(name)
        splits[name] = cache.load(card, root, config.k or card.split["default_pooling"])
        facts[name] = card_facts(card.raw)
    opts = RunOptions(
        preset=config.preset,
        draws=config.draws,
        timeout=config.timeout,
        code_version=code_version(),
    )
    jobs = config.jobs or auto_jobs()
    if config.executor == "local" and jobs > 1:  # parallel cells share the cores
        opts = dataclasses.replace(opts, threads=max(1, cpu_count() // jobs))
    return Plan(
        methods=methods,
        datasets=datasets,
        seeds=seeds,
        cells=[Cell(d, m, s) for d in datasets for m in methods for s in seeds],
        splits=splits,
        facts=facts,
        opts=opts,
        jobs=jobs,
        executor=config.executor,
        ray_address=config.ray_address,
        results=results,
        board=board,
        tracking_uri=config.tracking_uri,
        server=server,
        command=redact(config.command),
        progress=config.progress,
    )
