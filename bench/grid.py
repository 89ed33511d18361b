"""The library entry point: ``run_grid(RunConfig(...)) -> GridResult``, behind
``python -m bench run`` and what benchmarks and notebooks call instead of shelling out.

Every (dataset, method, seed) cell of the run grid is resumed where an earlier invocation left
off (:func:`bench.run.cell.reusable` decides), run by an executor, recorded, tracked in MLflow;
then the leaderboard is rewritten. All data are read and verified, and the folders and tracking
store checked, before anything is written; a bad input is a :class:`bench.errors.BenchError`
(the CLI's exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.errors import BenchError, redact, writable_dir
from bench.files import FileLock, check_writable

DEFAULT_DATASETS = "all"  # every committed dataset (and any user card)
DEFAULT_LEADERBOARD = Path("leaderboard") / "LEADERBOARD.md"


@dataclass(frozen=True)
class RunConfig:
    """One invocation's settings (the options of ``python -m bench run``).

    ``methods`` and ``datasets`` are ``"all"``, comma-separated names or a sequence of names;
    ``k`` the pooling factor (None: each card's default); ``draws`` the K draws per input of a
    stochastic method; ``timeout`` seconds per cell (None: no limit); ``command`` the shell
    command printed on the leaderboard to regenerate it.
    """

    methods: str | Sequence[str] = "all"
    datasets: str | Sequence[str] = DEFAULT_DATASETS
    seeds: Sequence[int] = (0,)
    preset: str = "default"
    draws: int = 8
    k: int | None = None
    timeout: float | None = None
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


def auto_jobs() -> int:
    """Local cells run at a time by default: one per CPU up to 4 (each with
    ``cpu_count() // jobs`` torch threads), and one when a GPU is visible (cells share it)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(4, cpu_count()))


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


def run_grid(config: RunConfig) -> GridResult:
    """Run the grid of ``config`` and rewrite its leaderboard; see the module docstring.

    Each cell is computed under a lock file beside its record (``seed-<seed>.lock``, released
    on exit however the process ends): a cell that another invocation is computing is waited
    for and its record reused, so two invocations of the same cells compute each once.
    """
    from tqdm import tqdm

    from bench.board import page
    from bench.data import cache, cards
    from bench.run import cell, executors, outputs
    from bench.run.ceiling import write_ceiling
    from bench.run.records import record_path
    from bench.run.resources import code_version, device_name
    from bench.run.tracking import Tracker, card_facts, default_uri, run_name
    from methods import UnknownMethodError, resolve

    try:
        methods = resolve(_names(config.methods))
    except UnknownMethodError as err:
        raise BenchError(str(err)) from None
    datasets = cards.resolve_datasets(_names(config.datasets))
    seeds = list(dict.fromkeys(config.seeds))  # --seeds 0 0 is one cell, not two
    results, board_path = check_outputs(config)
    if config.executor == "ray" and config.ray_address:  # bounded, before any data is read
        executors.check_ray_address(config.ray_address)
    tracker = None
    if config.tracking_uri and not config.tracking_uri.startswith("sqlite"):
        tracker = Tracker(config.tracking_uri, results)  # a server: reached before the data
    root = cards.data_dir(config.data_dir)
    built, facts = {}, {}
    for name in datasets:  # read and verify all data before writing anything
        card = cards.load_card(name)
        built[name] = cache.load(card, root, config.k or card.split["default_pooling"])
        facts[name] = card_facts(card.raw)
    ray_here = config.executor == "ray" and executors.start_ray(config.ray_address)
    if config.tracking_uri and tracker is None:  # an explicit SQLite store: made only now
        tracker = Tracker(config.tracking_uri, results)
    writable_dir(results, "results dir")
    writable_dir(board_path.parent, "leaderboard folder")
    tracker = tracker or Tracker(default_uri(results), results)
    for split in built.values():  # what the leaderboard's gene-map figures show
        outputs.save_test_maps(results, split)
    opts = cell.RunOptions(
        preset=config.preset,
        draws=config.draws,
        timeout=config.timeout,
        code_version=code_version(),
    )
    jobs = config.jobs or auto_jobs()
    if config.executor == "local" and jobs > 1:  # parallel cells share the cores
        opts = dataclasses.replace(opts, threads=max(1, cpu_count() // jobs))
    for split in built.values():  # the noise ceiling of each split's test truth (a control row)
        write_ceiling(results, split, opts)
    command = redact(config.command)
    print(f"device: {device_name()}; MLflow store: {redact(tracker.uri)}", flush=True)
    tracker.start(
        run_name("invocation", {"preset": config.preset}),
        params={
            "methods": ",".join(methods),
            "datasets": ",".join(datasets),
            "seeds": " ".join(map(str, seeds)),
            "preset": config.preset,
            "command": command,
        },
        tags={"code_version": opts.code_version, "device": opts.device},
    )
    cells = [(d, m, s) for d in datasets for m in methods for s in seeds]

    def lock_of(c: tuple[str, str, int]) -> FileLock:
        return FileLock(record_path(results, built[c[0]].label, c[1], c[2]).with_suffix(".lock"))

    locks = {c: lock_of(c) for c in cells}
    busy = [c for c in cells if not locks[c].acquire()]  # being computed by another invocation
    held = [c for c in cells if c not in busy]
    # cells done by an earlier (perhaps killed) invocation: skipped, and given to the store repair
    done = {c: cell.reusable(results, built[c[0]], c[1], c[2], opts) for c in held}
    finished = [(rec, outputs.side_files(results, rec)) for rec in done.values() if rec]
    repaired = tracker.reconcile(finished, held=[rec for rec in done.values() if rec])
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
    result = GridResult(
        records=[rec for rec in done.values() if rec],
        reused=sum(1 for rec in done.values() if rec),
        results_dir=results,
        leaderboard=board_path,
        tracking_uri=tracker.uri,
    )
    bar = tqdm(
        total=len(cells),
        initial=len(result.records),
        unit="cell",
        disable=not config.progress,
        file=sys.stderr,
    )
    run = executors.ray if config.executor == "ray" else partial(executors.local, jobs=jobs)

    def compute(todo: list[tuple[str, str, int]]) -> None:
        pending = [
            (d, m, s, record_path(results, built[d].label, m, s).with_suffix(".work"))
            for d, m, s in todo
        ]
        for d, m, s in todo:  # temporary files a killed writer of this cell left behind
            outputs.remove_temporaries(results, built[d].label, m, s)
        try:
            for (dataset, method, seed, _), record, extras in run(pending, built, opts):
                split = built[dataset]
                bar.set_description(f"{split.label}/{method} seed {seed}")
                record, files = outputs.save_or_fail(results, split, record, extras)
                tracker.log_cell(record, files, facts[dataset])
                tracker.drop_superseded(record)
                locks[(dataset, method, seed)].release()
                result.records.append(record)
                bar.update()
                if not record.ok:
                    result.failed += 1
                    tqdm.write(
                        f"{split.label}/{method} seed {seed} failed: {record.error}",
                        file=sys.stderr,
                    )
        finally:
            for c in todo:
                locks[c].release()

    compute([c for c in held if done[c] is None])
    late = []
    for c in busy:  # wait for the other invocation's cells, then reuse (or compute) them
        tqdm.write(
            f"{built[c[0]].label}/{c[1]} seed {c[2]}: waiting for the invocation computing it "
            f"({locks[c].holder() or 'unknown'})",
            file=sys.stderr,
        )
        locks[c].acquire(blocking=True)
        rec = cell.reusable(results, built[c[0]], c[1], c[2], opts)
        if rec is None:
            late.append(c)
            continue
        locks[c].release()
        result.records.append(rec)
        result.reused += 1
        bar.update()
    compute(late)
    bar.close()
    if ray_here:
        executors.stop_ray()
    path, drawn = page.write(results, board_path, command)
    tracker.log_files(drawn, "figures")
    tracker.finish(failed=bool(result.failed))  # last: a run killed before it stays RUNNING
    result.leaderboard = path
    result.records.sort(key=lambda r: (r.dataset, r.method, r.seed))
    print(f"{len(cells)} cell(s), {result.failed} failed; records in {results}")
    print(f"leaderboard: {path}")
    shown = redact(tracker.uri)
    browse = f"mlflow ui --backend-store-uri {shown} --host 127.0.0.1"
    print(f"MLflow store: {shown}  (browse: {browse})")
    return result
