"""A sampler's her2st cell at the page's quality: this checkout against a reference commit, side
by side in one run.

For each checkout (``--ref REV``, checked out into a temporary git worktree, and this one) a
child process with that checkout first on ``PYTHONPATH`` trains ``--method`` (default diffst) at
the quick preset, at each of ``--seeds`` (default 0 1 2), on her2st's fit regions
(``split.fit``: the training regions less the validation carve), then samples the VALIDATION
carve (``split.validation``) with its draw setting: ``--ref-draws`` for the reference
(default 128, the page's K when the performance issue was filed) and ``auto``
(``methods.contract.draw_adaptive``) for this checkout, or ``--draws`` for both, and scores the
validation PCC of the mean of the draws and their spread-skill
(``bench.scoring.diversity.spread_skill``). Then it samples the split's test inputs the same
way, as the page's cell predicts them, for time only.
The children run one after the other, alternating checkouts, seed by seed, ``--repeat`` times,
each with ``--threads`` torch threads; measure on an otherwise idle machine. Several seeds,
because the spread-skill of her2st's one validation region moves by about the 0.05 tolerance
from seed to seed of one checkout; one seed cannot tell whether two checkouts agree within it.

A page cell is the fit and the sampling of the split's test regions: ``cell s`` is the fit
plus that sampling, timed. Of the test regions only the inputs are read (``without_target()``,
the LR map and the image, as ``predict`` gets them): their draws are timed and counted, never
scored, and nothing is chosen from what this prints. Timed on the test inputs themselves, not
scaled from the validation sampling: a sampler that draws in batches (``auto``) calls the
network on 8 rows per input it is given, so its cost a draw depends on their number
(docs/decisions.md, "Quick diffusion preset"). The runner's validation scoring during the
fit (early stopping) is not part of either fit here.

Printed per run: seed, fit s, validation and test sampling s, cell s, K on validation and on
test, validation PCC and spread-skill; then the
median cell seconds of each checkout over its runs, their ratio (reference / this; > 1: this
checkout is cheaper), and whether the mean PCC over the seeds is within 0.005 and the mean
spread-skill within 0.05 of the reference's.

Usage: ``python benchmarks/cell_cost.py --ref a66ba6c [--method diffst] [--repeat 1]
[--threads 2] [--ref-draws 128] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(method_name: str, draws: str, threads: int, seed: int) -> dict[str, float]:
    """Train, sample the validation carve and score it (in the checkout on PYTHONPATH)."""
    import numpy as np
    import torch

    from bench.data import cache, cards
    from bench.scoring import diversity, metrics
    from methods import create
    from methods.contract import draw_adaptive, stack

    torch.set_num_threads(threads)
    card = cards.load_card("her2st")
    split = cache.load(card, cards.data_dir(None), card.split["default_pooling"])
    val = split.validation
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")
    torch.manual_seed(seed)
    method = create(method_name, preset="quick", seed=seed)
    start = time.perf_counter()
    method.fit(split.fit)
    fit_s = time.perf_counter() - start

    def draw(inputs: list) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        if draws == "auto":
            x = draw_adaptive(method, inputs, seed)
        else:
            x = method.sample(inputs, int(draws), seed)
        return np.asarray(x, dtype=np.float64), time.perf_counter() - start

    x, val_s = draw(inputs)
    test_x, test_s = draw([s.without_target() for s in split.test])  # timed, never scored
    return {
        "fit_s": fit_s,
        "val_s": val_s,
        "test_s": test_s,
        "cell_s": fit_s + test_s,
        "draws": float(x.shape[1]),
        "test_draws": float(test_x.shape[1]),
        "pcc": float(np.nanmean(metrics.pcc(x.mean(axis=1), hr, mask))),
        "spread_skill": float(np.nanmean(diversity.spread_skill(x, hr, mask))),
    }


def run_child(checkout: Path, args: argparse.Namespace, draws: str, seed: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", args.method, draws]
    out = subprocess.run(
        [*command, str(args.threads), str(seed)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="reference commit")
    parser.add_argument("--method", default="diffst")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ref-draws", default="128")
    parser.add_argument("--draws", default="auto", help="this checkout's draws")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(ref), args.ref],
            check=True,
        )
        try:
            runs: dict[str, list[dict[str, float]]] = {"reference": [], "this": []}
            print(
                f"her2st {args.method}, quick, seeds {' '.join(map(str, args.seeds))}, "
                f"{args.threads} thread(s); reference "
                f"{args.ref} at K={args.ref_draws}, this checkout at K={args.draws}"
            )
            print(
                f"{'checkout':>10} {'seed':>4} {'fit s':>7} {'val s':>6} {'test s':>7} "
                f"{'cell s':>7} {'K val':>5} {'K test':>6} {'val PCC':>8} {'spread-skill':>12}"
            )
            for _, seed in itertools.product(range(args.repeat), args.seeds):
                for name, checkout, draws in (
                    ("reference", ref, args.ref_draws),
                    ("this", ROOT, args.draws),
                ):
                    r = run_child(checkout, args, draws, seed)
                    runs[name].append(r)
                    print(
                        f"{name:>10} {seed:4d} {r['fit_s']:7.1f} {r['val_s']:6.1f} "
                        f"{r['test_s']:7.1f} {r['cell_s']:7.1f} {r['draws']:5.0f} "
                        f"{r['test_draws']:6.0f} {r['pcc']:8.4f} {r['spread_skill']:12.3f}",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], check=False
            )
    cost = {k: statistics.median(r["cell_s"] for r in v) for k, v in runs.items()}
    pcc = {k: statistics.mean(r["pcc"] for r in v) for k, v in runs.items()}
    skill = {k: statistics.mean(r["spread_skill"] for r in v) for k, v in runs.items()}
    d_pcc, d_skill = pcc["this"] - pcc["reference"], skill["this"] - skill["reference"]
    print(
        f"cell: reference {cost['reference']:.1f} s, this {cost['this']:.1f} s, reference / "
        f"this = {cost['reference'] / cost['this']:.2f}x; validation PCC {d_pcc:+.4f} "
        f"({'within' if abs(d_pcc) <= 0.005 else 'NOT within'} 0.005), spread-skill "
        f"{d_skill:+.3f} ({'within' if abs(d_skill) <= 0.05 else 'NOT within'} 0.05)"
    )


if __name__ == "__main__":
    main()
