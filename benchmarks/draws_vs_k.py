"""A sampler's validation PCC against the number of draws K, beside the interpolations.

Trains ``--method`` (default diffst) at the quick preset, seed 0, on fold ``--fold`` of
``--dataset`` at pooling ``--k`` (its fit regions: the fold's training regions less the
validation carve) up to step ``--steps`` (the step early stopping restored on the page, say),
then draws ``--draws`` samples (seed 0) for the VALIDATION carve (no test region is read) and
prints the validation PCC of the mean of the first K draws for K = 1, 4 (the watcher's
``VAL_DRAWS``), 16, 64, 104, 128 and ``--draws``, and the least-squares line
``PCC(K) = a + b / K`` over K >= 16, whose ``a`` estimates the PCC of the conditional mean
(K -> infinity; an extrapolation, stated as such). Beside them: the validation PCC of
``bicubic`` and ``nearest`` on the same regions. It separates a curve that rises because the
draws narrow (the mean of 4 draws sheds noise) from one that rises because the mean improves.
Nothing is chosen from what it prints.

Usage: ``python benchmarks/draws_vs_k.py --dataset visium_cytassist_mouse_embryo --k 3
[--fold 0] [--steps 850] [--method diffst] [--draws 256] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from bench.data import cache, cards
    from bench.scoring import metrics
    from methods import create
    from methods.contract import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--method", default="diffst")
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    card = cards.load_card(args.dataset)
    split = cache.load(card, cards.data_dir(None), args.k, args.fold)
    val = split.validation
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")

    def pcc(pred: np.ndarray) -> float:
        return float(np.nanmean(metrics.pcc(pred, hr, mask)))

    print(
        f"{args.dataset} k = {args.k} fold {args.fold}: {len(val)} validation regions; "
        + ", ".join(f"{m} {pcc(create(m).predict(inputs)):.4f}" for m in ("bicubic", "nearest")),
        flush=True,
    )
    method = create(args.method, preset="quick", seed=0)
    method.progress = lambda phase, step, total, loss: phase == "train" and step >= args.steps
    start = time.perf_counter()
    method.fit(split.fit)
    print(f"{args.method} trained to step {args.steps} in {time.perf_counter() - start:.1f} s")
    x = np.asarray(method.sample(inputs, args.draws, 0), dtype=np.float64)
    ks = sorted({k for k in (1, 4, 16, 64, 104, 128, args.draws) if k <= args.draws})
    curve = {k: pcc(x[:, :k].mean(axis=1)) for k in ks}
    for k, value in curve.items():
        print(f"  K = {k:4d}: PCC of the mean {value:.4f}")
    big = [k for k in ks if k >= 16]
    if len(big) >= 2:
        design = np.vstack([np.ones(len(big)), 1.0 / np.array(big)]).T
        a, b = np.linalg.lstsq(design, np.array([curve[k] for k in big]), rcond=None)[0]
        print(f"PCC(K) = a + b / K over K >= 16: a = {a:.4f} (K -> infinity), b = {b:.4f}")


if __name__ == "__main__":
    main()
