"""Command line: ``python -m bench {list,run,leaderboard,fetch,split,export,verify}``.

Exit status: 0 success; 1 when a cell of the grid failed (recorded, the rest ran); 2 for bad
input (unknown names, bad numbers, missing or corrupt data, unwritable folders, unreachable
tracking server), reported as one line ``bench: error: ...`` before anything is written, and
for ``verify`` when records, checksums, store and page disagree (one line per problem).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError, Interrupted, redact, writable_dir
from bench.files import check_writable
from bench.grid import DEFAULT_DATASETS, DEFAULT_LEADERBOARD


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        words = self.prog.split()  # "bench" or "bench run"
        where = " ".join(["python -m bench", *words[1:]])
        raise BenchError(f"{message} (see '{where} --help')")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seed {text!r} is not an integer; use e.g. --seeds 0 1 2"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} is negative; seeds are integers >= 0")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _draws(text: str) -> int | str:
    """``--draws``: ``auto`` (K chosen per cell by the draw rule) or a positive integer K."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a positive integer") from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _memory(text: str) -> int:
    """``--max-memory``: a number of bytes with an optional unit K, M, G or T (powers of 1024;
    ``6G``, ``512M``, ``1.5GiB``)."""
    import re

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    value = int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a memory size; use e.g. 6G or 512M (K, M, G, T: powers of 1024)"
        )
    from bench.grid.plan import MIN_MEMORY

    if value < MIN_MEMORY:
        raise argparse.ArgumentTypeError(
            f"{text!r} is less than a cell needs; give --max-memory {MIN_MEMORY // 2**20}M or more"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    from methods import PRESETS

    parser = _Parser(
        prog="bench",
        description="stsr-bench: super-resolution of spatial transcriptomics",
        epilog="environment: STSR_DATA_DIR (the data directory), STSR_DATASETS_DIR (a folder "
        "of your own cards, <name>/card.toml, read besides the repository's datasets/), "
        "STSR_CACHE_DIR (built splits, default ~/.cache/stsr-bench/splits)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="registered methods and datasets")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        help="data directory (default: $STSR_DATA_DIR, else ~/.cache/stsr-bench/data)",
    )
    data.add_argument(
        "--datasets",
        default=DEFAULT_DATASETS,
        help="'all' (the default) or comma-separated names: the cards under datasets/ and "
        "$STSR_DATASETS_DIR/<name>/card.toml",
    )

    run = sub.add_parser("run", parents=[data], help="run the benchmark grid")
    run.add_argument("--methods", default="all", help="'all' or comma-separated names")
    run.add_argument("--seeds", nargs="+", type=_seed, default=[0], help="integers >= 0")
    run.add_argument("--preset", choices=PRESETS, default="default")
    run.add_argument(
        "--draws",
        "--samples",
        dest="draws",
        type=_draws,
        default="auto",
        help="K draws per input for stochastic methods: 'auto' (the default) draws in batches "
        "until more draws could no longer move the mean's PCC (methods.contract.DrawRule), a "
        "number fixes K (--samples: old name)",
    )
    run.add_argument(
        "--results-dir", default="results", help="records and the MLflow store (default: results)"
    )
    run.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite file in the results dir)"
    )
    run.add_argument(
        "--leaderboard", default=str(DEFAULT_LEADERBOARD), help="leaderboard file to regenerate"
    )
    run.add_argument(
        "--k",
        "--scale",
        dest="k",
        type=_positive,
        default=None,
        help="pooling factor k (default: each card's)",
    )
    run.add_argument(
        "--folds",
        default="all",
        help="'all' (the default): each dataset's committed cross-validation folds at its k "
        "(datasets/<name>/folds/, made by 'bench split --folds') as tasks labelled "
        "<dataset>-f<i>, so every region is tested once, or its single committed split where "
        "it has no fold files at that k; comma-separated fold indices: those folds; 'none': "
        "the single committed split",
    )
    run.add_argument(
        "--ladder",
        action="store_true",
        help="also score each dataset's pooling ladder at every committed k (the card's "
        "[split].pooling), at the first seed: fold 0 where the folds run (fold files at every "
        "k: 'bench split --k K --folds'), else the single split; the page shows each method's "
        "PCC against k",
    )
    run.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        help="seconds per cell; a cell past it is recorded as failed and the grid goes on",
    )
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="run cells in this process, or as Ray tasks (local Ray started on demand)",
    )
    run.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument(
        "--max-memory",
        type=_memory,
        default=None,
        metavar="SIZE",
        help="memory a cell's processes may hold, e.g. 6G or 512M; a cell past it is killed and "
        "recorded as failed, and the grid goes on (default: the machine's memory, less "
        "max(1 GiB, 1/8 of it) kept for the driver, divided by --jobs; with --executor ray, "
        "no cap unless given)",
    )
    run.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        help="local cells at a time, each in its own process (default: one per CPU up to 4; "
        "1 with a GPU)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    board = sub.add_parser("leaderboard", help="regenerate the leaderboard from the records")
    board.add_argument("--results-dir", default="results")
    board.add_argument("--leaderboard", default=str(DEFAULT_LEADERBOARD))

    sub.add_parser("fetch", parents=[data], help="download the datasets' files (sha256-verified)")
    split = sub.add_parser(
        "split", parents=[data], help="(re)build committed split files from the data"
    )
    split.add_argument(
        "--k", "--scale", dest="k", type=_positive, default=None, help="pooling factor k"
    )
    split.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2, nothing written) when a flipped, rotated or shifted image matches "
        "the counts clearly better than the card's placement (default: a warning)",
    )
    split.add_argument(
        "--folds",
        action="store_true",
        help="write the card's cross-validation fold files instead "
        "(datasets/<name>/folds/split-k<k>-f<i>.json, [split].folds of them)",
    )
    export = sub.add_parser(
        "export",
        help="write a cell's HR prediction as AnnData (.h5ad) or a SpatialData store (.zarr)",
    )
    export.add_argument("--dataset", default="her2st")
    export.add_argument("--method", required=True)
    export.add_argument("--seed", type=_seed, default=0)
    export.add_argument(
        "--k", "--scale", dest="k", type=_positive, default=None, help="pooling factor k"
    )
    export.add_argument("--data-dir", help="data directory (as for run)")
    export.add_argument("--results-dir", default="results")
    export.add_argument(
        "--out", required=True, help="output .h5ad file, or .zarr folder (SpatialData store)"
    )
    verify = sub.add_parser(
        "verify",
        help="check the records against their checksums, the MLflow store and the page; "
        "damaged records are moved aside",
    )
    verify.add_argument("--results-dir", default="results")
    verify.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite file in the results dir)"
    )
    verify.add_argument("--leaderboard", default=str(DEFAULT_LEADERBOARD), help="page to check")
    return parser


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.grid import RunConfig, run_grid

    config = RunConfig(
        methods=args.methods,
        datasets=args.datasets,
        seeds=tuple(args.seeds),
        preset=args.preset,
        draws=args.draws,
        k=args.k,
        folds=args.folds,
        ladder=args.ladder,
        timeout=args.timeout,
        max_memory=args.max_memory,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        tracking_uri=args.tracking_uri,
        leaderboard=args.leaderboard,
        executor=args.executor,
        ray_address=args.ray_address,
        jobs=args.jobs,
        progress=not args.no_progress,
        command="python -m bench " + shlex.join(argv),
    )
    return run_grid(config).exit_status


def cmd_list() -> int:
    from bench.data.cards import dataset_names, load_card
    from methods import PluginError, names
    from methods.registry import method_class, plugin_source

    print("methods:")
    for name in names():
        source = plugin_source(name)
        try:
            cls, _ = method_class(name)
        except PluginError as err:
            print(f"  {name:<12} broken plugin: {err}")
            continue
        kind = f"{cls.control} control" if cls.control else "method"
        origin = f" (plugin: {source})" if source else ""
        print(f"  {name:<12} {kind}{', stochastic' if cls.stochastic else ''}{origin}")
    print("datasets:")
    for name in dataset_names():
        try:
            card = load_card(name)
        except BenchError as err:  # one unusable card (a reader uninstalled) hides no other
            print(f"  {name:<30} unusable card: {err}")
            continue
        cfg = card.split
        if cfg.get("regions", "sections") == "tiles":
            layout = f"tiles of {','.join(cfg['sections'])}, test in spatial bands"
        else:
            layout = f"train {','.join(cfg['train'])}, test {','.join(cfg['test'])}"
        print(
            f"  {name:<30} {card.raw.get('platform', '?')}: {layout}; "
            f"k = {cfg['default_pooling']} (offered {cfg['pooling']})"
        )
    return 0


def cmd_leaderboard(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from bench.board import page as leaderboard
    from bench.run.records import read_record

    results = Path(args.results_dir)
    if not results.is_dir():
        raise BenchError(f"results dir {results} does not exist; run 'python -m bench run' first")
    for path in sorted(results.glob("*/*/seed-*.json")):
        if read_record(path) is None:
            raise BenchError(
                f"{path}: not a record (unreadable, another schema, missing keys or 'ok' "
                "without metrics); delete it, or rerun its cell with 'python -m bench run'"
            )
    board = Path(args.leaderboard)
    if board.is_dir():
        raise BenchError(f"leaderboard {board} is a folder; pass a file, e.g. {board}/LB.md")
    check_writable(board, "leaderboard file", kind="file")
    writable_dir(board.parent, "leaderboard folder")
    path, _ = leaderboard.write(results, board, redact("python -m bench " + shlex.join(argv)))
    print(f"leaderboard: {path}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from bench.data import cards
    from bench.data.fetch import fetch

    root = cards.data_dir(args.data_dir)
    for name in cards.resolve_datasets(args.datasets):
        n = fetch(cards.load_card(name), root)
        state = "all files present and verified" if n == 0 else f"{n} file(s) fetched"
        print(f"{name}: {state} in {root / name}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    from bench.data import cards, folds, registration, splits

    root = cards.data_dir(args.data_dir)
    for name in cards.resolve_datasets(args.datasets):
        card = cards.load_card(name)
        sections = splits.verified_sections(card, root)
        k = args.k or card.split["default_pooling"]
        if args.folds:
            specs = folds.make_folds(card, root, k, sections)
        else:
            specs = [splits.make_split(card, root, k, sections)]
        placed = [registration.check(s) for s in sections.values()]  # before anything is written
        suspects = [
            f"{name} section {found.section}: the image {found.suspect} matches the counts "
            f"better than as placed (|r| {abs(found.transformed[found.suspect]):.2f} against "
            f"{abs(found.r):.2f}); check the card's {registration.KEYS}"
            for found in placed
            if found.suspect
        ]
        if suspects and args.strict:
            more = f" (and {len(suspects) - 1} more)" if len(suspects) > 1 else ""
            raise BenchError(f"{suspects[0]}{more}; nothing written (--strict)")
        lines = tuple(found.line() for found in placed)  # kept in the split's notes
        for spec in specs:
            spec = dataclasses.replace(spec, notes=(*spec.notes, *lines))
            path = splits.write_spec(card, spec)
            print(f"{name}: {path} fingerprint {spec.fingerprint}")
        if args.folds:  # fold files left by an earlier, larger [split].folds
            for stale in splits.fold_paths(card, k)[len(specs) :]:
                stale.unlink()
                print(f"{name}: {stale} removed ({len(specs)} folds now)")
        for note in spec.notes:  # control probes dropped, the registration of each section
            print(f"  {note}")
        for line in suspects:
            print(f"bench: warning: {line}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.data import cache, cards, splits
    from bench.run import export
    from bench.run.outputs import side_path
    from methods import UnknownMethodError, resolve

    try:
        (method,) = resolve(args.method)
    except (UnknownMethodError, ValueError) as err:
        raise BenchError(f"--method must name one registered method ({err})") from None
    store = Path(args.out).suffix == ".zarr"  # a SpatialData store (a folder)
    out = check_writable(Path(args.out), "--out", kind="dir" if store else "file")
    if store and importlib.util.find_spec("spatialdata") is None:
        raise BenchError(
            f"--out {out}: a .zarr export needs the spatialdata package; install it with "
            "pip install -e '.[spatialdata]', or export to a .h5ad file"
        )
    card = cards.load_card(args.dataset)
    root = cards.data_dir(args.data_dir)
    k = args.k or card.split["default_pooling"]
    label = splits.load_spec(card, k).label
    saved = side_path(Path(args.results_dir), label, method, args.seed, ".pred.npz")
    if not saved.is_file():  # before the split is built (and cached)
        raise BenchError(f"{saved}: no saved prediction; run this cell with 'python -m bench run'")
    split = cache.load(card, root, k)
    pred, spread = export.read_prediction(saved, split)
    ids = split.spec.section_ids([s.region for s in split.test])
    sections = splits.read_sections(card, root, ids)
    adata = export.to_anndata(split, sections, pred, method, args.seed, spread)
    writable_dir(out.parent, "output folder")
    if store:
        from bench.data.stores import write_store

        write_store(export.to_spatialdata(adata, split, sections), out)
    else:
        export.write_h5ad(adata, out)
    print(f"{out}: {adata.n_obs} HR positions x {adata.n_vars} genes ({split.label}, {method})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when records, checksums, store and page agree; else 2, each problem one line on
    stderr (damaged records moved aside and named)."""
    from bench.board.verify import verify

    report = verify(Path(args.results_dir), args.tracking_uri, Path(args.leaderboard))
    for note in report.notes:
        print(note)
    for problem in report.problems:
        print(redact(problem.line()), file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 2


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a failed cell, 2 bad input, 128 + the
    signal's number when interrupted: 130 for SIGINT / Ctrl-C, 143 for SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "leaderboard":
            return cmd_leaderboard(args, argv)
        if args.command == "fetch":
            return cmd_fetch(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "verify":
            return cmd_verify(args)
        return cmd_split(args)
    except BenchError as err:
        print(f"bench: error: {redact(str(err))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"bench: interrupted by {name}: what finished is kept, running cells were "
            "stopped, nothing is half-written; run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
