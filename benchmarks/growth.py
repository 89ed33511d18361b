"""Growth of time and memory with the number of genes and the HR size.

Two tables, each over genes G in (25, 50, 100, 200) at HR 32 x 32, then HR size in (32, 64, 128,
256) at G = 50:

- metrics: ``bench.scoring.metrics.score_maps`` on N = 8 regions;
- diffst (quick network, synthetic samples of that shape): one training step (the mean of
  steps 2-3 after a first one) and one sampling step for K draws of one region.

Memory is the peak resident memory above the level before the block (MiB); ``B/elem`` divides it
by the elements of the block's output (N G H W for metrics, K G H W for sampling, batch G H W for
training): roughly constant values mean memory grows linearly in genes x pixels x samples.
Usage: ``python benchmarks/growth.py [--samples 4] [--sizes 32 64 128 256]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np


def _measure(fn, *args, **kwargs) -> tuple[float, float]:
    """(seconds, peak MiB above the starting RSS) of one call ``fn(*args, **kwargs)``."""
    from bench.run.resources import PeakMemory, rss_bytes

    base = rss_bytes() / 2**20
    with PeakMemory(interval=0.002) as mem:
        start = time.perf_counter()
        fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    return seconds, max(0.0, mem.cpu_mb - base)


def _shapes(sizes: list[int]) -> list[tuple[int, int]]:
    return [(g, 32) for g in (25, 50, 100, 200)] + [(50, s) for s in sizes if s != 32]


def metrics_table(sizes: list[int]) -> None:
    from bench.scoring.metrics import score_maps

    n = 8
    print(
        f"\nmetrics (N = {n} regions)\n{'G':>5} {'HR':>5} {'seconds':>8} {'MiB':>7} {'B/elem':>7}"
    )
    rng = np.random.default_rng(0)
    for g, size in _shapes(sizes):
        hr = rng.random((n, g, size, size)).astype(np.float32)
        pred = np.clip(hr + 0.1 * rng.standard_normal(hr.shape, dtype=np.float32), 0, 1)
        mask = np.ones((n, size, size), dtype=bool)
        score_maps(pred[:1], hr[:1], mask[:1], np.ones(g), device="cpu")  # warm-up
        s, mib = _measure(score_maps, pred, hr, mask, np.ones(g), device="cpu")
        print(f"{g:>5} {size:>5} {s:8.3f} {mib:7.0f} {mib * 2**20 / hr.size:7.1f}")


def diffst_table(sizes: list[int], k: int) -> None:
    from diffst_sampling import synthetic  # same folder

    from methods.diffst.method import DiffST

    print(
        f"\ndiffst quick network (1 train step at batch 2; 1 sampling step for K = {k})\n"
        f"{'G':>5} {'HR':>5} {'train s':>8} {'MiB':>7} {'B/elem':>7} {'sample s':>9} "
        f"{'MiB':>7} {'B/elem':>7}"
    )
    for g, size in _shapes(sizes):
        px = 8 if size <= 64 else 4
        train = synthetic(2, g, size, 2, px, seed=0)
        test = [s.without_target() for s in synthetic(1, g, size, 2, px, seed=1)]
        one = DiffST(preset="quick", iterations=1, checkpoint_every=10**9)
        one.fit(train)  # build, warm up
        three = DiffST(preset="quick", iterations=3, checkpoint_every=10**9)
        t1, _ = _measure(DiffST(preset="quick", iterations=1).fit, train)
        t3, m3 = _measure(three.fit, train)
        one.config = dataclasses.replace(one.config, steps=1)
        one.sample(test, 1, seed=0)
        ts, ms = _measure(one.sample, test, k, seed=0)
        e_train, e_sample = 2 * g * size * size, k * g * size * size
        print(
            f"{g:>5} {size:>5} {(t3 - t1) / 2:8.3f} {m3:7.0f} {m3 * 2**20 / e_train:7.0f} "
            f"{ts:9.3f} {ms:7.0f} {ms * 2**20 / e_sample:7.0f}"
        )


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--skip-diffst", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU"
    )
    metrics_table(args.sizes)
    if not args.skip_diffst:
        diffst_table(args.sizes, args.samples)


if __name__ == "__main__":
    main()
