"""Validation of ``--draws auto``: the K the draw rule picks against the page's fixed K = 128.

For each sampler (``--methods``, default diffst and sr3) one model is trained at ``--preset``
(default quick, seed 0) on her2st's fit regions (``split.fit``: the training regions less the
validation carve; the checkpoint is kept in ``--workdir`` so a rerun only samples), and only the
VALIDATION carve (``split.validation``) is sampled and scored; the test regions and their truth
are never read. For each sampling seed (``--seeds``) it draws

- K = 128 in one call, ``sample(inputs, 128, seed)``: what ``--draws 128`` (the page) does;
- the rule's batches in the rule's order, ``sample(inputs, batch, batch_seed(seed, b))`` for
  every batch up to ``max_draws``, and after each the rule's summary ``draw_gain`` and the
  validation PCC of the running mean.

For every tolerance in ``--tols`` (the rule's batch, minimum and maximum as in
``methods.contract.DEFAULT_DRAW_RULE``) it prints the K the rule stops at, the share of the 128
draws that K is, and the validation PCC there against K = 128's (one call, and the rule's own
batches carried to 128), with ``|delta|`` against the target ``--target``. The stop is also
replayed through ``draw_adaptive`` itself on the recorded batches (no new draws), which must agree.

Usage: ``python benchmarks/adaptive_k.py [--methods diffst sr3] [--seeds 0] [--tols 0.0025 0.005
0.01 0.02] [--threads 2] [--workdir W]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np


class Replay:
    """A sampler that hands back recorded batches by seed (``draw_adaptive`` on known draws)."""

    def __init__(self, batches: dict[int, np.ndarray]) -> None:
        self.batches, self.progress = batches, None

    def sample(self, samples, k: int, seed: int) -> np.ndarray:
        return self.batches[seed][:, :k]


def main() -> None:
    import torch

    from bench.data import cache, cards
    from bench.run.resources import device_name
    from bench.scoring import metrics
    from methods import create
    from methods.contract import DEFAULT_DRAW_RULE, batch_seed, draw_adaptive, draw_gain, stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["diffst", "sr3"])
    parser.add_argument("--preset", default="quick", choices=["quick", "default", "paper"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds")
    parser.add_argument("--tols", type=float, nargs="+", default=[0.0025, 0.005, 0.01, 0.02])
    parser.add_argument("--target", type=float, default=0.005, help="|delta PCC| aimed at")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--workdir", default=str(Path.home() / ".cache" / "stsr-bench" / "bench-adaptive-k")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    card = cards.load_card("her2st")
    split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
    val = split.validation
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")
    rule = DEFAULT_DRAW_RULE
    full = rule.max_draws
    print(
        f"device {device_name()}, {args.threads} thread(s); her2st k={split.spec.k}, validation "
        f"{', '.join(s.region for s in val)} ({len(val)} region(s), {len(split.genes)} genes); "
        f"rule {rule.label()}"
    )

    def pcc(point: np.ndarray) -> float:
        return float(np.nanmean(metrics.pcc(point, hr, mask)))

    for name in args.methods:
        torch.manual_seed(0)
        method = create(name, preset=args.preset, seed=0)
        method.workdir = Path(args.workdir) / f"{name}-{args.preset}"
        t = time.perf_counter()
        method.fit(split.fit)
        print(f"\n{name} ({args.preset}): fit {time.perf_counter() - t:.0f} s (0: checkpoint)")
        for seed in args.seeds:
            t = time.perf_counter()
            fixed = pcc(method.sample(inputs, full, seed).mean(axis=1))
            fixed_s = time.perf_counter() - t
            batches, gains, pccs = {}, {}, {}
            total = squares = None
            t = time.perf_counter()
            for b in range(full // rule.batch):
                part = method.sample(inputs, rule.batch, batch_seed(seed, b)).astype(np.float64)
                batches[batch_seed(seed, b)] = part.astype(np.float32)
                total = part.sum(axis=1) if total is None else total + part.sum(axis=1)
                sq = (part**2).sum(axis=1)
                squares = sq if squares is None else squares + sq
                k = rule.batch * (b + 1)
                gains[k] = draw_gain(total, squares, k, mask, full)
                pccs[k] = pcc(total / k)
            batched_s = time.perf_counter() - t
            print(
                f" seed {seed}: K={full} in one call PCC {fixed:.4f} ({fixed_s:.0f} s); the "
                f"rule's batches carried to K={full} PCC {pccs[full]:.4f} ({batched_s:.0f} s)"
            )
            print("   K: " + " ".join(f"{k:>7d}" for k in gains))
            print("gain: " + " ".join(f"{g:7.4f}" for g in gains.values()))
            print(" PCC: " + " ".join(f"{p:7.4f}" for p in pccs.values()))
            print(
                f"{'tol':>8} {'K':>4} {'share':>6} {'PCC':>7} {'d(one call)':>12} "
                f"{'d(batches)':>11} {'within':>7}"
            )
            for tol in args.tols:
                stop = next(
                    (k for k, g in gains.items() if k >= rule.min_draws and g <= tol), full
                )
                replay = draw_adaptive(
                    Replay(batches), inputs, seed, dataclasses.replace(rule, tol=tol)
                )
                assert replay.shape[1] == stop, (replay.shape, stop)
                delta, delta_b = pccs[stop] - fixed, pccs[stop] - pccs[full]
                print(
                    f"{tol:8g} {stop:4d} {stop / full:6.0%} {pccs[stop]:7.4f} {delta:+12.4f} "
                    f"{delta_b:+11.4f} {'yes' if abs(delta) <= args.target else 'NO':>7}"
                )


if __name__ == "__main__":
    main()
