"""diffst sampling cost: time against sampler steps, and K-sample batching against a loop.

Builds diffst on synthetic samples of a dataset's shape (weights after a couple of training steps:
sampling time does not depend on what the weights learned), then prints

- seconds to draw K samples for N inputs at 5, 10, 20 and 50 DDPM steps (and DDIM at 20), with
  the ratio to 20 steps (the released setting);
- one batched call for all K draws against K calls of one draw each (a per-sample loop), same
  steps, with the ratio loop / batched;
- one network call on a chunk of 64 rows (the sampler's chunk: 64 draws of one input) with the
  input repeated 64 times against the input given once (``rows``: the conditioning streams run
  once and are shared by the draws, as ``sample`` does), with the ratio and the largest
  difference between the two outputs;
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

    shared_conditioning(method, test[0], calls=5)


def shared_conditioning(method, sample, calls: int) -> None:
    """Seconds per network call on 64 draws of ``sample``: repeated input against ``rows``."""
    import copy

    import torch

    from methods.diffst.histology import cell_tiles, tissue_image

    net, device, rows_n = copy.deepcopy(method.ema), method.device, 64
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights off their zero start, so every path carries signal
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g).to(device))
    cfg = method.config
    lr = torch.from_numpy(sample.lr).float()[None].to(device)
    image = tissue_image(sample.image, sample.hr_shape)[None].to(device)
    tiles = cell_tiles(sample.image, cfg.tile_grid, cfg.tile_px)[None].to(device)
    x_t = torch.randn((rows_n, lr.shape[1], *sample.hr_shape), generator=g).to(device)
    t = torch.full((rows_n,), 500, device=device)
    rows = torch.zeros(rows_n, dtype=torch.long, device=device)
    rep = (lr.expand(rows_n, *lr.shape[1:]), image.expand(rows_n, *image.shape[1:]))
    rep_tiles = tiles.expand(rows_n, *tiles.shape[1:])
    with torch.no_grad():
        repeated = net(x_t, t, *rep, rep_tiles)[0]
        shared = net(x_t, t, lr, image, tiles, rows=rows)[0]
        per_repeated = timed(lambda: [net(x_t, t, *rep, rep_tiles) for _ in range(calls)])
        per_shared = timed(lambda: [net(x_t, t, lr, image, tiles, rows=rows) for _ in [0] * calls])
    per_repeated, per_shared = per_repeated / calls, per_shared / calls
    print(
        f"\none network call, {rows_n} draws of one input: input repeated {per_repeated:.3f} s, "
        f"shared (rows) {per_shared:.3f} s, repeated / shared = {per_repeated / per_shared:.2f}x, "
        f"max |difference| {float((repeated - shared).abs().max()):.1e} "
        f"(outputs up to {float(repeated.abs().max()):.2f})"
    )


if __name__ == "__main__":
    main()
