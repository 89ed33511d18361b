"""A sampler's draws in bfloat16 against float32, side by side on one trained model.

Trains ``--method`` (default diffst) once at the quick preset, seed 0, on ``--dataset``'s fit
regions (the default split's training regions less the validation carve), then samples the
VALIDATION carve (no test region is read) at ``--draws`` K, seed 0, with the network under
bfloat16 autocast (``amp=True``, the default) and in float32 (``amp=False``), alternately,
``--repeat`` times each. The sampler's update of x_t is float32 either way.

Printed per pass: sampling seconds, validation PCC of the mean of the draws, spread-skill
(``bench.scoring.diversity.spread_skill``); then the median seconds of each precision and their
ratio (float32 / bfloat16; > 1: bfloat16 is faster), the PCC and spread-skill differences, the
largest and mean absolute difference between the two precisions' draws (log1p-CP10k), and peak
RSS. Nothing is chosen from what it prints; measure on an otherwise idle machine.

Usage: ``python benchmarks/sampling_precision.py [--dataset her2st] [--method diffst]
[--draws 32] [--repeat 2] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time

import numpy as np
import torch


def main() -> None:
    from bench.data import cache, cards
    from bench.scoring import diversity, metrics
    from methods import create
    from methods.contract import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="her2st")
    parser.add_argument("--method", default="diffst")
    parser.add_argument("--draws", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    card = cards.load_card(args.dataset)
    split = cache.load(card, cards.data_dir(None), card.split["default_pooling"])
    val = split.validation
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")
    method = create(args.method, preset="quick", seed=0)
    start = time.perf_counter()
    method.fit(split.fit)
    print(
        f"{args.dataset} {args.method}, quick, seed 0, {args.threads} thread(s): fit "
        f"{time.perf_counter() - start:.1f} s; validation {len(val)} regions, K = {args.draws}",
        flush=True,
    )
    seconds: dict[str, list[float]] = {"bfloat16": [], "float32": []}
    draws: dict[str, np.ndarray] = {}
    scores: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for precision in seconds:
            method.config = dataclasses.replace(method.config, amp=precision == "bfloat16")
            start = time.perf_counter()
            x = np.asarray(method.sample(inputs, args.draws, 0), dtype=np.float64)
            seconds[precision].append(time.perf_counter() - start)
            pcc = float(np.nanmean(metrics.pcc(x.mean(axis=1), hr, mask)))
            skill = float(np.nanmean(diversity.spread_skill(x, hr, mask)))
            draws[precision], scores[precision] = x, (pcc, skill)
            print(
                f"  {precision:9s} sample {seconds[precision][-1]:6.1f} s  PCC {pcc:.4f}  "
                f"spread-skill {skill:.4f}",
                flush=True,
            )
    bf, fp = (statistics.median(seconds[p]) for p in ("bfloat16", "float32"))
    diff = np.abs(draws["bfloat16"] - draws["float32"])
    print(
        f"median sample s: float32 {fp:.1f}, bfloat16 {bf:.1f}; ratio {fp / bf:.2f}x; "
        f"PCC difference {scores['bfloat16'][0] - scores['float32'][0]:+.4f}, spread-skill "
        f"{scores['bfloat16'][1] - scores['float32'][1]:+.4f}; draws differ by at most "
        f"{diff.max():.4f} (mean {diff.mean():.5f}); peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB",
        flush=True,
    )


if __name__ == "__main__":
    main()
