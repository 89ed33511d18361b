"""diffst sampling cost: time against sampler steps, and K-sample batching against a loop.

Builds diffst on synthetic samples of a dataset's shape (weights after a couple of training steps:
sampling time does not depend on what the weights learned), then prints

- seconds to draw K samples for N inputs at 5, 10, 20 and 50 DDPM steps (and DDIM at 20), with
  the ratio to 20 steps (the released setting);
- one batched call for all K draws against K calls of one draw each (a per-sample loop), same
  steps, with the ratio loop / batched;
- peak memory (process RSS, or CUDA allocated on a GPU).

Usage: ``python benchmarks/diffst_sampling.py [--preset quick|paper] [--genes 50] [--size 24]
[--inputs 2] [--samples 8]``. The paper sizes (``--preset paper --genes 25 --size 256``) are for
a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np


def synthetic(n: int, genes: int, size: int, scale: int, px: int, seed: int) -> list:
    from methods.contract import Sample

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hr = rng.gamma(2.0, 1.0, (genes, size, size)).astype(np.float32)
        lr = hr.reshape(genes, size // scale, scale, size // scale, scale).mean(axis=(2, 4))
        out.append(
            Sample(
                region=f"s{i}",
                genes=tuple(f"g{j}" for j in range(genes)),
                scale=scale,
                lr=lr,
                lr_mask=np.ones(lr.shape[1:], bool),
                hr_mask=np.ones((size, size), bool),
                image=rng.integers(0, 256, (3, size * px, size * px), dtype=np.uint8),
                hr=hr,
            )
        )
    return out


def timed(fn) -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    from bench.run.resources import PeakMemory, device_name
    from methods.diffst.method import DiffST

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=["quick", "paper"])
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()

    px = 32 if args.size <= 64 else 20
    train = synthetic(2, args.genes, args.size, args.scale, px, seed=0)
    test = [
        s.without_target()
        for s in synthetic(args.inputs, args.genes, args.size, args.scale, px, 1)
    ]
    method = DiffST(preset=args.preset, iterations=2, checkpoint_every=10**9)
    method.fit(train)
    n, k = args.inputs, args.samples
    print(
        f"device {device_name()}, preset {args.preset}, G={args.genes}, HR {args.size}^2, "
        f"N={n} inputs, K={k} samples, {sum(p.numel() for p in method.net.parameters())} params"
    )
    method.sample(test, 1, seed=0)  # warm-up

    print(f"\n{'sampler':>8} {'steps':>6} {'seconds':>9} {'vs 20':>7} {'peak MiB':>9}")
    base = None
    rows = []
    for sampler, steps in [("ddpm", 5), ("ddpm", 10), ("ddpm", 20), ("ddpm", 50), ("ddim", 20)]:
        method.config = dataclasses.replace(method.config, steps=steps, sampler=sampler)
        with PeakMemory() as mem:
            seconds = timed(lambda: method.sample(test, k, seed=0))
        rows.append((sampler, steps, seconds, mem))
        if sampler == "ddpm" and steps == 20:
            base = seconds
    for sampler, steps, seconds, mem in rows:
        peak = mem.gpu_mb if mem.gpu_mb is not None else mem.cpu_mb
        print(f"{sampler:>8} {steps:>6} {seconds:9.3f} {seconds / base:7.2f} {peak:9.0f}")

    method.config = dataclasses.replace(method.config, steps=20, sampler="ddpm")
    with PeakMemory() as mem_b:
        batched = timed(lambda: method.sample(test, k, seed=0))
    with PeakMemory() as mem_l:
        looped = timed(lambda: [method.sample(test, 1, seed=i) for i in range(k)])
    print(
        f"\nK={k} draws, 20 DDPM steps: batched {batched:.3f} s, per-sample loop {looped:.3f} s, "
        f"loop / batched = {looped / batched:.2f}x"
    )
    for label, mem in (("batched", mem_b), ("loop", mem_l)):
        peak = mem.gpu_mb if mem.gpu_mb is not None else mem.cpu_mb
        print(f"  peak memory {label}: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
