"""The grid behind ``python -m bench run``: every (dataset, method, seed) cell, resumed where an
earlier invocation left off, run by an executor, recorded, tracked in MLflow; then the leaderboard.

All data are read and verified, and the folders and tracking store checked, before anything is
written; a bad input is a :class:`bench.errors.BenchError` (exit status 2).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError, writable_dir


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``python -m bench run``: returns the exit status (1 when a cell failed)."""
    from tqdm import tqdm

    from bench.board import page as leaderboard
    from bench.data import cache, cards
    from bench.run import cell as runner
    from bench.run import executors, outputs
    from bench.run.records import record_path
    from bench.run.resources import code_version, device_name
    from bench.run.tracking import Tracker, card_facts, default_uri, run_name
    from methods import UnknownMethodError, resolve

    try:
        methods = resolve(args.methods)
    except UnknownMethodError as err:
        raise BenchError(str(err)) from None
    datasets = cards.resolve_datasets(args.datasets)
    root = cards.data_dir(args.data_dir)
    built, facts = {}, {}
    for name in datasets:  # read and verify all data before writing anything
        card = cards.load_card(name)
        built[name] = cache.load(card, root, args.k or card.split["default_pooling"])
        facts[name] = card_facts(card.raw)
    ray_here = args.executor == "ray" and executors.start_ray(args.ray_address)
    results = Path(args.results_dir).resolve()
    # an explicit server is checked before any folder is made; the default store is in results
    tracker = Tracker(args.tracking_uri, results) if args.tracking_uri else None
    writable_dir(results, "results dir")
    board_path = Path(args.leaderboard)
    writable_dir(board_path.parent, "leaderboard folder")
    tracker = tracker or Tracker(default_uri(results), results)
    for split in built.values():  # what the leaderboard's gene-map figures show
        outputs.save_test_maps(results, split)
    opts = runner.RunOptions(
        preset=args.preset,
        samples=args.samples,
        timeout=args.timeout,
        code_version=code_version(),
    )
    command = "python -m bench " + shlex.join(argv)
    print(f"device: {device_name()}; MLflow store: {tracker.uri}", flush=True)
    tracker.start(
        run_name("invocation", {"preset": args.preset}),
        params={
            "methods": ",".join(methods),
            "datasets": ",".join(datasets),
            "seeds": " ".join(map(str, args.seeds)),
            "preset": args.preset,
            "command": command,
        },
        tags={"code_version": opts.code_version, "device": opts.device},
    )
    cells = [(d, m, s) for d in datasets for m in methods for s in args.seeds]
    # cells done by an earlier (perhaps killed) invocation: skipped, and given to the store repair
    done = {(d, m, s): runner.reusable(results, built[d], m, s, opts) for d, m, s in cells}
    finished = [(rec, outputs.side_files(results, rec)) for rec in done.values() if rec]
    repaired = tracker.reconcile(finished)
    if any(repaired.values()):
        print(
            f"MLflow store repaired after an interrupted run: {repaired['killed']} run(s) closed "
            f"as KILLED, {repaired['deleted']} half-logged run(s) removed, {repaired['logged']} "
            "finished cell(s) logged",
            flush=True,
        )
    pending = [
        (d, m, s, record_path(results, built[d].label, m, s).with_suffix(".work"))
        for d, m, s in cells
        if done[(d, m, s)] is None
    ]
    if args.executor == "ray":
        stream = executors.ray(pending, built, opts)
    else:
        stream = executors.local(pending, built, opts)
    failed = 0
    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(pending),
        unit="cell",
        disable=args.no_progress,
        file=sys.stderr,
    )
    for (dataset, method, seed, _), record, extras in stream:
        split = built[dataset]
        bar.set_description(f"{split.label}/{method} seed {seed}")
        files = outputs.save(results, split, record, extras)
        tracker.log_cell(record, files, facts[dataset])
        bar.update()
        if record["status"] != "ok":
            failed += 1
            tqdm.write(
                f"{split.label}/{method} seed {seed} failed: {record['error']}", file=sys.stderr
            )
    bar.close()
    if ray_here:
        executors.stop_ray()
    tracker.finish(failed=bool(failed))
    path, drawn = leaderboard.write(results, board_path, command)
    tracker.log_files(drawn, "figures")
    print(f"{len(cells)} cell(s), {failed} failed; records in {results}")
    print(f"leaderboard: {path}")
    print(
        f"MLflow store: {tracker.uri}  (browse: mlflow ui --backend-store-uri {tracker.uri} "
        "--host 127.0.0.1)"
    )
    return 1 if failed else 0
