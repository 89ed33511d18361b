"""diffst on her2st: quality and cost against sampling steps and sampler, to pick the knee.

Trains diffst once (``--preset``, default quick) on the split's fit regions, the training regions
less the validation quarter (``split.fit``; the checkpoint is kept in ``--workdir`` so a rerun only
samples), then for each sampler (DDPM over respaced timesteps, DDIM with eta 0) and each number of
steps draws K samples for every VALIDATION region (``split.validation``, carved from the training
regions; the test regions are never used, so the knee is not chosen on them) in one batched call
and prints

- seconds, and the share of them spent inside the network (the rest is the sampler loop:
  schedule arithmetic, noise, conditioning reuse);
- PCC of the K-sample mean and CRPS of the K draws (bench.scoring.metrics /
  bench.scoring.diversity),

plus K batched draws against K sequential one-draw calls at 20 steps (throughput ratio).
Usage: ``python benchmarks/diffst_quality.py [--steps 5 10 20 50 100 250 1000] [--samples 8]
[--data-dir D] [--workdir W]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from bench.data import cache, cards
    from bench.run.resources import device_name
    from bench.scoring import diversity, metrics
    from methods.contract import stack
    from methods.diffst.method import DiffST

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "default", "paper"])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100, 250, 1000])
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--workdir", default=str(Path.home() / ".cache" / "stsr-bench" / "bench-diffst")
    )
    args = parser.parse_args()

    card = cards.load_card("her2st")
    split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
    method = DiffST(preset=args.preset, seed=0)
    method.workdir = Path(args.workdir) / args.preset
    start = time.perf_counter()
    method.fit(split.fit)
    fit_s = time.perf_counter() - start
    inputs = [s.without_target() for s in split.validation]
    hr, mask = stack(split.validation, "hr"), stack(split.validation, "hr_mask")

    network = {"s": 0.0, "t": 0.0}

    # the network calls, timed by hooks on the sampling network (CPU: synchronous)
    def started(module, inputs):
        network["t"] = time.perf_counter()

    def finished(module, inputs, output):
        network["s"] += time.perf_counter() - network["t"]

    method.ema.register_forward_pre_hook(started)
    method.ema.register_forward_hook(finished)
    k = args.samples
    print(
        f"device {device_name()}; her2st k={split.spec.k}, {len(inputs)} validation regions, "
        f"K={k}; preset {args.preset}, fit {fit_s:.0f} s (0 = checkpoint reused)"
    )
    print(f"{'sampler':>8} {'steps':>6} {'seconds':>8} {'network':>8} {'PCC':>7} {'CRPS':>7}")
    base = method.config
    for sampler in ("ddpm", "ddim"):
        for steps in args.steps:
            method.config = dataclasses.replace(base, steps=steps, sampler=sampler)
            network["s"] = 0.0
            t = time.perf_counter()
            draws = method.sample(inputs, k, seed=0)
            seconds = time.perf_counter() - t
            pcc = np.nanmean(metrics.pcc(draws.mean(axis=1), hr, mask))
            crps = np.nanmean(diversity.diversity_scores(draws, hr, mask)["crps"])
            print(
                f"{sampler:>8} {steps:>6} {seconds:8.2f} {network['s'] / seconds:8.0%} "
                f"{pcc:7.3f} {crps:7.3f}"
            )
    method.config = dataclasses.replace(base, steps=20, sampler="ddpm")
    t = time.perf_counter()
    method.sample(inputs, k, seed=0)
    batched = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(k):
        method.sample(inputs, 1, seed=i)
    looped = time.perf_counter() - t
    print(
        f"K={k} draws at 20 DDPM steps: one batched call {batched:.2f} s, K sequential calls "
        f"{looped:.2f} s; throughput ratio {looped / batched:.2f}x (target on a GPU: >= "
        f"{0.8 * k:.1f}x)"
    )


if __name__ == "__main__":
    main()
