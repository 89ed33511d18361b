"""CPU training speed of the U-Net methods: fp32 eager against threads, channels-last,
``torch.compile`` and bfloat16 autocast, measured side by side in one run.

For each network (``diffst``'s ``DiffSTNet``, ``sr3``'s ``SR3Net``, both at the ``quick`` preset's
width for her2st's shapes: 50 genes, 24 x 24 HR, 12 x 12 LR, 3-channel image, batch 4) and each
option, the same training steps (the same batches, timesteps and noise; speed does not depend on
the values, so the batches are drawn at random) of the hybrid diffusion loss with AdamW are timed
after a warm-up. Printed: seconds per step, the ratio to fp32 eager (> 1: faster), the last loss
beside eager's (a precision option's drift shows) and peak RSS. Public constructors only.

Usage: ``python benchmarks/diffusion_speed.py [--networks diffst sr3] [--steps 30]
[--options eager threads1 channels_last compile bf16]``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

OPTIONS = ("eager", "threads1", "channels_last", "compile", "bf16")
GENES, HR, LR, BATCH, TILES, TILE_PX = 50, 24, 12, 4, 144, 8


def network(name: str) -> tuple[torch.nn.Module, int]:
    """The quick-preset network of ``name`` for her2st's shapes, and its width."""
    from methods.diffusion.config import auto_channels, make_config
    from methods.registry import method_class

    cfg = make_config("quick", on_gpu=False)
    width = auto_channels(method_class(name)[0].input_width(GENES))
    torch.manual_seed(0)
    if name == "sr3":
        from methods.sr3 import SR3Net

        return SR3Net(genes=GENES, channels=width, groups=cfg.groups), width
    from methods.diffst.network import DiffSTNet

    net = DiffSTNet(
        genes=GENES,
        image_channels=3,
        channels=width,
        groups=cfg.groups,
        lr_hw=(LR, LR),
        hr_hw=(HR, HR),
        tile_px=TILE_PX,
    )
    net.set_gene_totals(torch.rand(GENES) + 0.5)
    return net, width


def run(name: str, option: str, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds per training step and the last loss of ``name`` under ``option``."""
    from methods.diffusion.schedule import GaussianDiffusion

    threads = torch.get_num_threads()
    if option == "threads1":
        torch.set_num_threads(1)
    try:
        net, _ = network(name)
        fmt = torch.channels_last if option == "channels_last" else torch.contiguous_format
        net = net.to(memory_format=fmt)
        model = torch.compile(net) if option == "compile" else net
        optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-5)
        diffusion = GaussianDiffusion.linear(prediction="v")
        g = torch.Generator().manual_seed(0)
        x0 = (torch.rand(BATCH, GENES, HR, HR, generator=g) * 2 - 1).to(memory_format=fmt)
        lr = (torch.rand(BATCH, GENES, LR, LR, generator=g) * 2 - 1).to(memory_format=fmt)
        image = torch.rand(BATCH, 3, HR, HR, generator=g).to(memory_format=fmt)
        tiles = torch.rand(BATCH, TILES, 3, TILE_PX, TILE_PX, generator=g)

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if name == "sr3":
                return model(x, t, lr).float()
            return model(x, t, lr, image, tiles)[0].float()

        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if option == "bf16"
            else contextlib.nullcontext()
        )
        loss = torch.zeros(())
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            t = torch.randint(0, 1000, (BATCH,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            with autocast:
                loss = diffusion.training_losses(model_fn, x0, t, noise)["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / steps, float(loss.detach())
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    from bench.run.resources import device_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["diffst", "sr3"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    print(f"device {device_name()}, torch {torch.__version__}, {args.steps} timed steps")
    print(
        f"{'network':7} {'width':>5} {'option':14} {'s/step':>7} {'vs eager':>8} {'loss':>8} "
        f"{'peak MiB':>8}"
    )
    for name in args.networks:
        reference = None
        width = network(name)[1]
        for option in args.options:
            try:
                seconds, loss = run(name, option, args.steps, args.warmup)
            except Exception as exc:  # e.g. torch.compile without a working C++ toolchain
                print(f"{name:7} {width:5d} {option:14} failed: {str(exc).splitlines()[0][:70]}")
                continue
            reference = reference or seconds
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{name:7} {width:5d} {option:14} {seconds:7.3f} {reference / seconds:7.2f}x "
                f"{loss:8.4f} {peak:8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
