"""A sampler's her2st cell at the page's quality: this checkout against a reference commit, side
by side in one run.

For each checkout (``--ref REV``, checked out into a temporary git worktree, and this one) a
child process with that checkout first on ``PYTHONPATH`` trains ``--method`` (default diffst) at
the quick preset, seed 0, on her2st's fit regions (``split.fit``: the training regions less the
validation carve), then samples the VALIDATION carve (``split.validation``; no test region is
read) with its draw setting: ``--ref-draws`` for the reference (default 128, the page's K when
the performance issue was filed) and ``auto`` (``methods.contract.draw_adaptive``) for this
checkout, or ``--draws`` for both. It times the fit and the sampling and scores the validation PCC
of the mean of the draws and their spread-skill (``bench.scoring.diversity.spread_skill``).
The children run one after the other, alternating, ``--repeat`` times, each with ``--threads``
torch threads; measure on an otherwise idle machine.

A page cell predicts the split's test regions, not the validation carve: ``cell s`` is the fit
plus the sampling scaled by ``test regions / validation regions`` of the split. Of the test
regions only their number is read (no input, no truth), and nothing is chosen from what it
prints. The runner's validation scoring during the fit (early stopping) is not part of either
fit here.

Printed per run: fit s, sampling s, cell s, K, validation PCC and spread-skill; then the median
cell seconds of each checkout, their ratio (reference / this; > 1: this checkout is cheaper), and
whether the PCC is within 0.005 and the spread-skill within 0.05 of the reference.

Usage: ``python benchmarks/cell_cost.py --ref a66ba6c [--method diffst] [--repeat 1]
[--threads 2] [--ref-draws 128]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(method_name: str, draws: str, threads: int) -> dict[str, float]:
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
    torch.manual_seed(0)
    method = create(method_name, preset="quick", seed=0)
    start = time.perf_counter()
    method.fit(split.fit)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    if draws == "auto":
        x = draw_adaptive(method, inputs, 0)
    else:
        x = method.sample(inputs, int(draws), 0)
    sample_s = time.perf_counter() - start
    x = np.asarray(x, dtype=np.float64)
    return {
        "fit_s": fit_s,
        "sample_s": sample_s,
        "cell_s": fit_s + sample_s * len(split.test) / len(val),
        "draws": float(x.shape[1]),
        "pcc": float(np.nanmean(metrics.pcc(x.mean(axis=1), hr, mask))),
        "spread_skill": float(np.nanmean(diversity.spread_skill(x, hr, mask))),
    }


def run_child(checkout: Path, args: argparse.Namespace, draws: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", args.method, draws]
    out = subprocess.run(
        [*command, str(args.threads)],
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
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="reference commit")
    parser.add_argument("--method", default="diffst")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ref-draws", default="128")
    parser.add_argument("--draws", default="auto", help="this checkout's draws")
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
                f"her2st {args.method}, quick, seed 0, {args.threads} thread(s); reference "
                f"{args.ref} at K={args.ref_draws}, this checkout at K={args.draws}"
            )
            print(
                f"{'checkout':>10} {'fit s':>7} {'sample s':>9} {'cell s':>7} {'K':>4} "
                f"{'val PCC':>8} {'spread-skill':>12}"
            )
            for _ in range(args.repeat):
                for name, checkout, draws in (
                    ("reference", ref, args.ref_draws),
                    ("this", ROOT, args.draws),
                ):
                    r = run_child(checkout, args, draws)
                    runs[name].append(r)
                    print(
                        f"{name:>10} {r['fit_s']:7.1f} {r['sample_s']:9.1f} {r['cell_s']:7.1f} "
                        f"{r['draws']:4.0f} {r['pcc']:8.4f} {r['spread_skill']:12.3f}",
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
