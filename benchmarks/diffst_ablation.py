"""What each diffst contribution adds: the full model against one switch off at a time.

Trains diffst (a preset, default ``quick``) on the her2st split with every contribution, then
without the gene graph, the cell-to-tissue attention, the disentangling network and the adaptive
modulation, each on the same data and seed, fitted on the split's fit regions, draws K samples per
VALIDATION region (carved from the training regions; test regions are never used, so no choice
follows from them) and prints PCC, SSIM, RMSE, spread and CRPS with the difference to the full
model.

Usage: ``python benchmarks/diffst_ablation.py [--preset quick] [--data-dir D] [--samples 8]
[--seed 0]``; the data directory defaults to $STSR_DATA_DIR.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

VARIANTS = {
    "full": {},
    "no graph": {"graph": False},
    "no cell attention": {"cell_attention": False},
    "no disentangling": {"disentangle": False},
    "no modulation": {"modulation": False},
}
COLUMNS = ("pcc", "ssim", "rmse", "spread", "crps")


def main() -> None:
    from bench.data.cards import data_dir, load_card
    from bench.data.splits import build
    from bench.run.resources import device_name
    from bench.scoring import diversity, metrics
    from methods.contract import stack
    from methods.diffst.method import DiffST

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--data-dir")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    card = load_card("her2st")
    split = build(card, data_dir(args.data_dir), card.split["default_pooling"])
    inputs = [s.without_target() for s in split.validation]
    hr, mask = stack(split.validation, "hr"), stack(split.validation, "hr_mask")
    print(
        f"her2st split {split.fingerprint}, preset {args.preset}, K={args.samples}, "
        f"seed {args.seed}, {device_name()}"
    )
    print(f"{'variant':<18}" + "".join(f"{c:>9}" for c in COLUMNS) + f"{'d PCC':>9}{'fit s':>8}")
    full = None
    for name, switches in VARIANTS.items():
        method = DiffST(preset=args.preset, seed=args.seed, **switches)
        start = time.perf_counter()
        method.fit(split.fit)
        fit_s = time.perf_counter() - start
        draws = method.sample(inputs, args.samples, seed=args.seed)
        tables = metrics.score_maps(draws.mean(axis=1), hr, mask, split.data_range)
        tables.update(diversity.diversity_scores(draws, hr, mask))
        scores = {c: float(np.nanmean(tables[c])) for c in COLUMNS}
        full = full or scores
        row = "".join(f"{scores[c]:9.3f}" for c in COLUMNS)
        print(f"{name:<18}{row}{scores['pcc'] - full['pcc']:9.3f}{fit_s:8.0f}", flush=True)


if __name__ == "__main__":
    main()
