"""CPU training speed of the U-Net methods: fp32 eager against threads, channels-last,
``torch.compile`` and bfloat16 autocast, measured side by side in one run.

For each method (``diffst``, ``sr3``, ``unet`` at the ``quick`` preset on her2st, the default
split) and each option, the same training steps (same batches, timesteps and noise) are timed after
a warm-up, and the last step's loss is printed beside fp32 eager's so a precision option's drift
shows. Prints seconds per step, the ratio to fp32 eager (> 1: faster) and peak RSS.

Usage: ``python benchmarks/diffusion_speed.py [--methods diffst sr3 unet] [--steps 30]
[--options eager threads1 channels_last compile bf16]``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

OPTIONS = ("eager", "threads1", "channels_last", "compile", "bf16")


def run(method_name: str, option: str, steps: int, warmup: int, split) -> tuple[float, float]:
    """Seconds per training step and the last loss for one method under one option."""
    from methods import registry

    threads = torch.get_num_threads()
    if option == "threads1":
        torch.set_num_threads(1)
    try:
        m = registry.create(method_name, preset="quick", seed=0)
        m._build(split.train)
        data = m._encode(m._augmented(split.train))
        if option == "channels_last":
            m.net = m.net.to(memory_format=torch.channels_last)
            data = {
                k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                for k, v in data.items()
            }
        if option == "compile":
            m.net = torch.compile(m.net)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if option == "bf16"
            else contextlib.nullcontext()
        )
        generator = torch.Generator().manual_seed(0)
        n = data["x0"].shape[0]
        loss = torch.zeros(())
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            idx = torch.randint(0, n, (m.config.batch_size,), generator=generator)
            batch = {k: v[idx] for k, v in data.items()}
            with autocast:
                loss = m._loss(batch, generator, 1.0)
            m.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            m.optimizer.step()
        return (time.perf_counter() - start) / steps, float(loss)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    from bench.resources import device_name

    from bench import cache, cards

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["diffst", "sr3", "unet"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    card = cards.load_card("her2st")
    split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
    print(f"device {device_name()}, torch {torch.__version__}, {args.steps} timed steps")
    print(f"{'method':7} {'option':14} {'s/step':>7} {'vs eager':>8} {'loss':>8} {'peak MiB':>8}")
    for name in args.methods:
        reference = None
        for option in args.options:
            try:
                seconds, loss = run(name, option, args.steps, args.warmup, split)
            except Exception as exc:  # e.g. torch.compile without a C++ compiler
                print(f"{name:7} {option:14} failed: {str(exc).splitlines()[0][:80]}")
                continue
            reference = reference or seconds
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{name:7} {option:14} {seconds:7.3f} {reference / seconds:7.2f}x "
                f"{loss:8.4f} {peak:8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
