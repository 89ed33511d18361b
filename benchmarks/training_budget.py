"""A diffusion learner's training budget, its shape against its cost: one run, side by side.

For each ``--variants`` entry (config overrides of the quick preset, e.g. ``batch_size=16,
iterations=250``; the first entry is the reference, by default the preset itself) and each seed,
trains ``--method`` (diffst, sr3 or unet) on ``--dataset``'s fit regions (``split.fit``: the
training regions less the validation carve) in this process, one variant after the other with
``--threads`` torch threads, then predicts the VALIDATION carve (``split.validation``; no test
region is read, so nothing is chosen on test) the way a page cell predicts: the page's draw rule
(``methods.contract.draw_adaptive``) for the samplers, one call for ``unet``. No early stopping
runs here: every variant trains its whole budget.

Printed per run: fit seconds, seconds a step, K, validation PCC of the prediction (mean over
regions of the mean over genes, ``bench.scoring.metrics.pcc``) and, for the samplers, the
spread-skill of the draws (``bench.scoring.diversity.spread_skill``). Then per variant the mean
over seeds and, against the reference, the PCC and spread-skill differences, whether they are
within the performance issue's tolerances (0.005 PCC, 0.05 spread-skill) and the fit-time ratio
(reference / variant; > 1: cheaper). With two or more seeds it prints the seed-to-seed sd of the
reference's PCC too, the noise those tolerances are read against.

Usage: ``python benchmarks/training_budget.py [--method diffst] [--dataset her2st]
[--variants "" "batch_size=4,iterations=1000,learning_rate=5e-4,ema_decay=0.99"] [--seeds 0]
[--threads 2]``; the default second variant is the quick preset's budget before issue 25.
Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

PCC_TOL, SKILL_TOL = 0.005, 0.05


def parse_variant(text: str) -> dict[str, Any]:
    """``"a=1,b=2.5"`` -> ``{"a": 1, "b": 2.5}`` (ints, then floats, else strings)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        for kind in (int, float):
            try:
                out[name] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[name] = value
    return out


def one_run(
    method_name: str, split: Any, overrides: dict[str, Any], seed: int
) -> dict[str, float]:
    """Train one variant at one seed and score its validation prediction."""
    import numpy as np
    import torch

    from bench.scoring import diversity, metrics
    from methods import create
    from methods.contract import draw_adaptive, stack

    val = split.validation
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")
    torch.manual_seed(seed)
    method = create(method_name, preset="quick", seed=seed, **overrides)
    start = time.perf_counter()
    method.fit(split.fit)
    fit_s = time.perf_counter() - start
    out: dict[str, float] = {"fit_s": fit_s, "step_ms": 1000 * fit_s / method.config.iterations}
    if hasattr(method, "sample"):
        x = np.asarray(draw_adaptive(method, inputs, seed), dtype=np.float64)
        point = x.mean(axis=1)
        out["draws"] = float(x.shape[1])
        out["spread_skill"] = float(np.nanmean(diversity.spread_skill(x, hr, mask)))
    else:
        point = np.asarray(method.predict(inputs), dtype=np.float64)
        out["draws"] = 1.0
        out["spread_skill"] = float("nan")
    region_pcc = np.nanmean(metrics.pcc(point, hr, mask), axis=1)
    out["pcc"] = float(np.mean(region_pcc))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="diffst", choices=("diffst", "sr3", "unet"))
    parser.add_argument("--dataset", default="her2st")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["", "batch_size=4,iterations=1000,learning_rate=5e-4,ema_decay=0.99"],
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    import torch

    from bench.data import cache, cards

    torch.set_num_threads(args.threads)
    card = cards.load_card(args.dataset)
    split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
    variants = [parse_variant(v) for v in args.variants]
    print(
        f"{args.dataset} {args.method}, quick preset, {args.threads} thread(s), "
        f"{len(split.fit)} fit / {len(split.validation)} validation regions"
    )
    print(
        f"{'variant':>36} {'seed':>4} {'fit s':>7} {'ms/step':>8} {'K':>4} {'val PCC':>8} "
        f"{'spread-skill':>12}"
    )
    runs: list[list[dict[str, float]]] = [[] for _ in variants]
    for seed in args.seeds:
        for i, overrides in enumerate(variants):
            r = one_run(args.method, split, overrides, seed)
            runs[i].append(r)
            name = args.variants[i] or "(preset)"
            print(
                f"{name:>36} {seed:4d} {r['fit_s']:7.1f} {r['step_ms']:8.1f} {r['draws']:4.0f} "
                f"{r['pcc']:8.4f} {r['spread_skill']:12.3f}",
                flush=True,
            )
    ref = runs[0]
    ref_fit = statistics.mean(r["fit_s"] for r in ref)
    ref_pcc = statistics.mean(r["pcc"] for r in ref)
    ref_skill = statistics.mean(r["spread_skill"] for r in ref)
    if len(ref) > 1:
        print(f"reference PCC sd over seeds: {statistics.stdev(r['pcc'] for r in ref):.4f}")
    for name, rs in zip(args.variants, runs, strict=True):
        fit = statistics.mean(r["fit_s"] for r in rs)
        d_pcc = statistics.mean(r["pcc"] for r in rs) - ref_pcc
        d_skill = statistics.mean(r["spread_skill"] for r in rs) - ref_skill
        verdict = "within" if abs(d_pcc) <= PCC_TOL else "NOT within"
        skill = ""
        if not math.isnan(d_skill):  # a regressor has no spread-skill
            skill_verdict = "within" if abs(d_skill) <= SKILL_TOL else "NOT within"
            skill = f", spread-skill {d_skill:+.3f} ({skill_verdict} {SKILL_TOL})"
        print(
            f"{name or '(preset)':>36}: fit {fit:.1f} s ({ref_fit / fit:.2f}x), PCC {d_pcc:+.4f} "
            f"({verdict} {PCC_TOL}){skill}"
        )


if __name__ == "__main__":
    main()
