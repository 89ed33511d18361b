"""Stage 1, plan: turn a :class:`RunConfig` into a :class:`Plan`, the cells to run and everything
they need, having checked every input and output before anything is written.

A bad input (an unknown method or dataset, a broken plugin, unreadable data, an output path that
cannot be written, too little free space for the grid's outputs, an unreachable tracking server or
Ray cluster) is a :class:`bench.errors.BenchError` here, the CLI's exit status 2. ``RunConfig``
goes no further than this module: later stages take the plan.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bench.errors import BenchError, redact, size_text
from bench.files import check_writable, free_bytes
from bench.grid.config import RunConfig, auto_jobs, auto_max_memory, cpu_count

if TYPE_CHECKING:
    from bench.data.splits import Split
    from bench.run.cell import RunOptions
    from bench.run.tracking import Tracker


MIN_MEMORY = 64 * 2**20  # the smallest --max-memory taken (a cell's process needs more)
PAGE_BYTES = 16 * 2**20  # the leaderboard page and its figures, at the most
STORE_BYTES = 2**18  # one MLflow run in an SQLite store (params, tags, metrics), at the most
STORE_BASE = 4 * 2**20  # a new SQLite store (MLflow's tables), at the most
MARGIN = 1.1  # on the estimate of the grid's outputs


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


def single_split(folds: str, count: int) -> bool:
    """Whether ``--folds`` runs a dataset's single committed split: ``"none"``, or ``"all"`` when
    it has no fold files at its k (``count`` of them)."""
    text = folds.strip()
    return text == "none" or (text == "all" and count == 0)


def fold_selection(text: str, count: int, dataset: str, k: int) -> list[int]:
    """The folds ``--folds`` names: ``"all"`` (every committed fold) or comma-separated indices
    below ``count``; else a one-line :class:`BenchError` naming the dataset and the fix (fold
    indices of a dataset without fold files: how to make them)."""
    again = f"'python -m bench split --datasets {dataset} --k {k} --folds'"
    if count == 0:
        raise BenchError(f"--folds: {dataset} (k = {k}) has no committed fold files; make them "
                         f"with {again}")  # fmt: skip
    if text.strip() == "all":
        return list(range(count))
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) < count for p in parts):
        raise BenchError(
            f"--folds {text!r}: name 'all' or fold indices 0..{count - 1} of {dataset} "
            f"(k = {k}), comma-separated"
        )
    return list(dict.fromkeys(int(p) for p in parts))


def longest_first(cells: list[Cell]) -> list[Cell]:
    """``cells`` in three groups, each in its given order: the samplers' (the stochastic
    methods', the grid's longest cells: training, validation draws and K test draws), then the
    other trained methods' (those that can snapshot a best state: training and validation),
    then the rest (no training loop): longest-first list scheduling, so that parallel workers
    end on short cells rather than one of them running a long cell alone at the end."""
    from methods.contract import Method
    from methods.registry import method_class

    def group(name: str) -> int:
        cls = method_class(name)[0]
        return 0 if cls.stochastic else 1 if cls.snapshot is not Method.snapshot else 2

    rank = {m: group(m) for m in {c.method for c in cells}}
    return sorted(cells, key=lambda c: rank[c.method])


def check_memory_cap(value: int | None) -> None:
    """A ``max_memory`` (bytes per cell) is None or a whole number of bytes of at least
    :data:`MIN_MEMORY`; else a one-line :class:`BenchError`."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MEMORY:
        raise BenchError(
            f"--max-memory {value!r} is not a memory size of at least {size_text(MIN_MEMORY)}; "
            "use e.g. 6G or 512M"
        )


def check_space(
    results: Path,
    board: Path,
    tracking_uri: str | None,
    cells: list[Cell],
    splits: dict[str, Split],
) -> None:
    """Check, writing nothing, that the grid's outputs fit: per file system, the free space
    against the most they may take (:func:`bench.run.outputs.cell_bytes` for each cell not yet
    saved, the splits' shared files, the MLflow store, the page, and :data:`MARGIN`); else a
    one-line :class:`BenchError` naming the folder, the space free and the space needed."""
    from bench.run import outputs
    from methods.registry import method_class

    local_store = not tracking_uri or tracking_uri.startswith("sqlite:")
    store = Path(tracking_uri[len("sqlite:///") :]) if tracking_uri and local_store else None
    stochastic = {m: method_class(m)[0].stochastic for m in {c.method for c in cells}}
    store_dir = store.parent if store else results
    copies = 2 if local_store else 1  # the side files again in a local store's artifacts
    needs: dict[Path, int] = dict.fromkeys((results, board.parent, store_dir), 0)
    needs[board.parent] += PAGE_BYTES
    needs[store_dir] += STORE_BASE if local_store else 0
    todo = 0
    for c in cells:
        split = splits[c.dataset]
        if outputs.side_path(results, split.label, c.method, c.seed, ".pred.npz").is_file():
            continue  # saved by an earlier run: reused, or overwritten by as much
        todo += 1
        needs[results] += outputs.cell_bytes(split, stochastic[c.method], copies)
        needs[store_dir] += STORE_BYTES if local_store else 0
    for split in splits.values():
        needs[results] += outputs.split_bytes(split)
    by_disk: dict[int, tuple[Path, int]] = {}
    for folder, needed in needs.items():
        device = os.stat(_existing(folder)).st_dev
        first, total = by_disk.get(device, (folder, 0))
        by_disk[device] = (first, total + needed)
    for folder, needed in by_disk.values():
        needed = int(needed * MARGIN)
        free = free_bytes(folder)
        if free < needed:
            raise BenchError(
                f"not enough free space for the grid's outputs in {folder}: {size_text(free)} "
                f"free, {size_text(needed)} needed ({todo} cell(s) to run); free space there or "
                "pass another --results-dir"
            )


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing folder."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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
    from bench.data import splits as splits_mod
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
    check_memory_cap(config.max_memory)
    datasets = cards.resolve_datasets(_names(config.datasets))
    seeds = list(dict.fromkeys(config.seeds))  # --seeds 0 0 is one cell, not two
    results, board = check_outputs(config)
    if config.executor == "ray" and config.ray_address:  # bounded, before any data is read
        executors.check_ray_address(config.ray_address)
    server = None
    if config.tracking_uri and not config.tracking_uri.startswith("sqlite"):
        server = Tracker(config.tracking_uri, results)  # reached before the data
    root = cards.data_dir(config.data_dir)
    splits, facts, tasks, ladder = {}, {}, [], []
    for name in datasets:  # read and verify all data before writing anything
        card = cards.load_card(name)
        k = config.k or card.split["default_pooling"]
        count = splits_mod.fold_count(card, k)
        folded = not single_split(config.folds, count)
        if not folded:
            splits[name], facts[name] = cache.load(card, root, k), card_facts(card.raw)
            tasks.append(name)
        else:
            for fold in fold_selection(config.folds, count, card.name, k):
                split = cache.load(card, root, k, fold)
                splits[split.label], facts[split.label] = split, card_facts(card.raw)
                tasks.append(split.label)
        # the ladder: fold 0 at every k for a folded dataset (its own k's fold 0 is a task
        # already when selected), else the single split at every k
        for rung in card.split["pooling"] if config.ladder else ():
            split = cache.load(card, root, int(rung), 0 if folded else None)
            if split.label not in splits:
                splits[split.label], facts[split.label] = split, card_facts(card.raw)
                ladder.append(split.label)
    datasets = tasks + ladder  # folds and ladder rungs are tasks of their own (their labels)
    opts = RunOptions(
        preset=config.preset,
        draws=config.draws,
        timeout=config.timeout,
        code_version=code_version(),
    )
    jobs = config.jobs or auto_jobs()
    if config.executor == "local" and jobs > 1:  # parallel cells share the cores
        opts = dataclasses.replace(opts, threads=max(1, cpu_count() // jobs))
    cap = config.max_memory  # Ray tasks are capped only when asked (Ray watches its nodes)
    if cap is None and config.executor == "local":
        cap = auto_max_memory(jobs)
    opts = dataclasses.replace(opts, max_memory=cap)
    cells = [Cell(d, m, s) for d in tasks for m in methods for s in seeds]
    cells += [Cell(d, m, seeds[0]) for d in ladder for m in methods]  # one seed is enough
    cells = longest_first(cells)
    check_space(results, board, config.tracking_uri, cells, splits)
    return Plan(
        methods=methods,
        datasets=datasets,
        seeds=seeds,
        cells=cells,
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
