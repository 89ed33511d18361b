"""A diffusion sampler's quality and cost against sampling steps and sampler, to pick the knee.

Trains ``--method`` (diffst or sr3, default diffst) once at ``--preset`` (default quick), seed 0,
on ``--dataset``'s fit regions, the training regions less the validation carve (``split.fit``;
the checkpoint is kept in ``--workdir`` so a rerun only samples), then for each sampler (the
release's ancestral DDPM over respaced timesteps, DDIM with eta 0) and each number of steps draws
K = ``--samples`` (default 128, the most the page's draw rule takes) samples for every VALIDATION
region (``split.validation``, carved from the training regions; the test regions are never read,
so nothing is chosen on them) in one batched call, with the same seed, and prints

- seconds, and the share of them spent inside the network (the rest is the sampler loop:
  schedule arithmetic, noise, conditioning reuse);
- PCC of the K-draw mean, CRPS and spread-skill of the K draws (bench.scoring.metrics,
  bench.scoring.diversity);
- against the reference, 20 DDPM steps (the release's sampler): the PCC and spread-skill
  differences, whether they are within the performance issue's tolerances (0.005 PCC, 0.05
  spread-skill) and the time ratio (reference / this; > 1: cheaper).

Then K batched draws against K sequential one-draw calls at 20 steps (throughput ratio).
Usage: ``python benchmarks/diffst_quality.py [--method diffst] [--dataset her2st]
[--steps 5 10 20] [--samplers ddpm ddim] [--samples 128] [--threads 2] [--data-dir D]
[--workdir W]``. Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

REFERENCE = ("ddpm", 20)
PCC_TOLERANCE = 0.005
SPREAD_SKILL_TOLERANCE = 0.05


def main() -> None:
    import torch

    from bench.data import cache, cards
    from bench.run.resources import device_name
    from bench.scoring import diversity, metrics
    from methods import create
    from methods.contract import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="diffst", choices=["diffst", "sr3"])
    parser.add_argument("--dataset", default="her2st")
    parser.add_argument("--preset", default="quick", choices=["quick", "default", "paper"])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--samplers", nargs="+", default=["ddpm", "ddim"])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--workdir", default=str(Path.home() / ".cache" / "stsr-bench" / "bench-sampler")
    )
    parser.add_argument("--no-throughput", action="store_true", help="skip the batching ratio")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    card = cards.load_card(args.dataset)
    split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
    method = create(args.method, preset=args.preset, seed=0)
    method.workdir = Path(args.workdir) / f"{args.dataset}-{args.method}-{args.preset}"
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
        f"device {device_name()}, {args.threads} thread(s); {args.dataset} k={split.spec.k}, "
        f"{len(inputs)} validation region(s), {args.method}, K={k}; preset {args.preset}, "
        f"fit {fit_s:.0f} s (near 0: checkpoint reused)"
    )
    print(
        f"{'sampler':>8} {'steps':>6} {'seconds':>8} {'network':>8} {'PCC':>7} {'CRPS':>7} "
        f"{'spread-skill':>12}"
    )
    base = method.config
    scores: dict[tuple[str, int], tuple[float, float, float]] = {}
    runs = [(s, n) for s in args.samplers for n in args.steps]
    if REFERENCE not in runs:
        runs.insert(0, REFERENCE)
    for sampler, steps in runs:
        method.config = dataclasses.replace(base, steps=steps, sampler=sampler)
        network["s"] = 0.0
        t = time.perf_counter()
        draws = np.asarray(method.sample(inputs, k, seed=0), dtype=np.float64)
        seconds = time.perf_counter() - t
        pcc = float(np.nanmean(metrics.pcc(draws.mean(axis=1), hr, mask)))
        crps = float(np.nanmean(diversity.crps(draws, hr, mask)))
        skill = float(np.nanmean(diversity.spread_skill(draws, hr, mask)))
        scores[(sampler, steps)] = (seconds, pcc, skill)
        print(
            f"{sampler:>8} {steps:>6} {seconds:8.2f} {network['s'] / seconds:8.0%} "
            f"{pcc:7.4f} {crps:7.4f} {skill:12.3f}",
            flush=True,
        )
    ref_s, ref_pcc, ref_skill = scores[REFERENCE]
    print(f"against {REFERENCE[0]} at {REFERENCE[1]} steps:")
    for (sampler, steps), (seconds, pcc, skill) in scores.items():
        if (sampler, steps) == REFERENCE:
            continue
        ok_pcc = abs(pcc - ref_pcc) <= PCC_TOLERANCE
        ok_skill = abs(skill - ref_skill) <= SPREAD_SKILL_TOLERANCE
        print(
            f"  {sampler} {steps:>3}: PCC {pcc - ref_pcc:+.4f} "
            f"({'within' if ok_pcc else 'NOT within'} {PCC_TOLERANCE}), spread-skill "
            f"{skill - ref_skill:+.3f} ({'within' if ok_skill else 'NOT within'} "
            f"{SPREAD_SKILL_TOLERANCE}), {ref_s / seconds:.2f}x cheaper"
        )
    if args.no_throughput:
        return
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
