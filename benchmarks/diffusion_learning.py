"""Learning curves of the U-Net methods: validation scores against training iterations.

For each dataset, method (``unet``, ``sr3``, ``diffst``) and parameterisation (``prediction``
eps / x0 / v, ``residual`` on or off; ``unet`` has only the residual switch) one model is trained
at the ``quick`` preset and, every ``--every`` iterations, scored on a validation set carved from
the TRAINING regions (the last quarter of them, at least one; the model trains on the rest), never
on test regions. Printed per row: iterations, seconds per training step, validation PCC and RMSE of
the point prediction (the mean of K draws for samplers), and for samplers CRPS and spread-skill
(bench.diversity). The bicubic and mean controls on the same validation regions head each table,
so the knee and the cost of every variant are visible side by side.

For samplers one more column, ``PCC@T``: the PCC of the network's own estimate of the conditional
mean E[x0 | LR, image], read off one call at the last timestep (x_T is pure noise there, so the
x0 it predicts is the minimum-squared-error guess given the condition alone), averaged over the K
noise draws. Were the draws exact samples of one posterior, their mean would approach it as K
grows; below bicubic it says the learned part itself hurts, above the draws' mean that K (or the
sampler) limits the point prediction.

``--final-draws 32 128``: after the last iteration, each sampler's draws are scored once more at
each of these K (column ``K``), which measures how much of the gap between the draws' mean and
``PCC@T`` is Monte-Carlo error (it shrinks as 1/K) rather than the network.

Usage: ``python benchmarks/diffusion_learning.py [--datasets her2st xenium_bone_marrow]
[--methods unet sr3 diffst] [--variants eps eps+res x0+res v+res] [--iterations 2000]
[--every 250] [--draws 8] [--final-draws 32 128] [--samplers ddpm ddim] [--csv out.csv]
[--set amp=false ...]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time

import numpy as np
import torch

VARIANTS = {"eps": ("eps", False), "x0": ("x0", False), "v": ("v", False)}
VARIANTS |= {f"{name}+res": (pred, True) for name, (pred, _) in list(VARIANTS.items())}


def scores(draws: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Validation PCC / RMSE of the draws' mean and, with K > 1, CRPS and spread-skill."""
    from bench.scoring import diversity, metrics

    point = draws.mean(axis=1)
    out = {
        "pcc": float(np.nanmean(metrics.pcc(point, hr, mask))),
        "rmse": float(np.nanmean(metrics.rmse(point, hr, mask))),
    }
    if draws.shape[1] > 1:
        div = diversity.diversity_scores(draws, hr, mask)
        out["crps"] = float(np.nanmean(div["crps"]))
        out["spread_skill"] = float(np.nanmean(div["spread_skill"]))
    return out


@torch.no_grad()
def conditional_mean(method, inputs: list, k: int, seed: int) -> np.ndarray:
    """(N, K, G, H, W) one-call x0 estimates at the last timestep (module docstring), through
    the trainer's own encoding, network call and decoding."""
    last = method.diffusion.num_timesteps - 1
    generator = torch.Generator().manual_seed(seed)

    def run(lo: int, part: dict, shape: tuple[int, ...]) -> torch.Tensor:
        x = torch.randn(shape, generator=generator).to(method.device)
        t = torch.full((shape[0],), last, dtype=torch.long, device=method.device)
        pred = method._denoise(method.ema, x, t, part, 1.0)[0].chunk(2, dim=1)[0]
        return method._finish(part, method.diffusion.to_x0_eps(pred, x, t)[0])

    return method._infer(method._encode(inputs), inputs[0].hr_shape, k, run)


def main() -> None:
    from bench.data import cache, cards
    from bench.run.resources import device_name
    from methods import registry
    from methods.contract import stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["her2st", "xenium_bone_marrow"])
    parser.add_argument("--methods", nargs="+", default=["unet", "sr3", "diffst"])
    parser.add_argument("--variants", nargs="+", default=["eps", "eps+res", "x0+res", "v+res"])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--draws", type=int, default=8, help="K draws at every checkpoint")
    parser.add_argument(
        "--final-draws",
        nargs="*",
        type=int,
        default=[],
        metavar="K",
        help="also score each sampler at these K after the last iteration",
    )
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["ddpm"],
        choices=["ddpm", "ddim"],
        help="score each sampler's draws at every checkpoint (same model)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--data-dir")
    parser.add_argument("--csv", help="also write the rows to this CSV file")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every model, e.g. learning_rate=1e-3 (values parsed as JSON)",
    )
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")

    rows: list[dict] = []
    print(f"device {device_name()}, torch threads {torch.get_num_threads()}", flush=True)
    for name in args.datasets:
        card = cards.load_card(name)
        split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
        fit_regions, val = split.fit, split.validation
        inputs = [s.without_target() for s in val]
        hr, mask = stack(val, "hr"), stack(val, "hr_mask")
        bicubic = registry.create("bicubic").predict(inputs)[:, None]
        mean = registry.create("mean")
        mean.fit(fit_regions)
        print(
            f"\n{name}: fit on {len(fit_regions)} training regions, validate on {len(val)} "
            f"({', '.join(s.region for s in val)}); K = {args.draws}\n"
            f"  controls: bicubic {scores(bicubic, hr, mask)}, "
            f"mean {scores(mean.predict(inputs)[:, None], hr, mask)}",
            flush=True,
        )
        print(
            f"  {'method':7} {'variant':8} {'iter':>5} {'s/step':>6} {'PCC':>6} {'RMSE':>6} "
            f"{'CRPS':>6} {'sp-sk':>6} {'PCC@T':>6} {'width':>5} {'K':>4} sampler",
            flush=True,
        )
        for method_name in args.methods:
            for variant in args.variants:
                prediction, residual = VARIANTS[variant]
                if method_name == "unet" and prediction != "eps":
                    continue  # a regressor has no parameterisation beyond the residual
                method = registry.create(
                    method_name,
                    preset="quick",
                    seed=args.seed,
                    iterations=args.iterations,
                    **({} if method_name == "unet" else {"prediction": prediction}),
                    residual=residual,
                    **overrides,
                )
                clock = {"t": time.perf_counter(), "step": 0, "eval": 0.0}

                def monitor(
                    phase: str,
                    step: int,
                    total: int,
                    loss: float | None,
                    method=method,
                    clock=clock,
                    variant=variant,
                    inputs=inputs,
                    truth=(hr, mask),
                    name=name,
                ) -> None:
                    if phase != "train" or (step % args.every and step != total):
                        return
                    train_s = time.perf_counter() - clock["t"] - clock["eval"]
                    t0 = time.perf_counter()
                    base = method.config
                    at_t = math.nan
                    if method.stochastic:
                        one_call = conditional_mean(method, inputs, args.draws, args.seed)
                        at_t = scores(one_call.mean(axis=1, keepdims=True), *truth)["pcc"]
                    final = method.stochastic and step == total
                    for sampler in args.samplers if method.stochastic else ["-"]:
                        if method.stochastic:
                            method.config = dataclasses.replace(base, sampler=sampler)
                        for k in [args.draws, *args.final_draws] if final else [args.draws]:
                            if method.stochastic:
                                draws = method.sample(inputs, k, seed=args.seed)
                            else:
                                draws = method.predict(inputs)[:, None]
                            s = scores(draws, *truth)
                            row = dict(
                                dataset=name,
                                method=method.name,
                                variant=variant,
                                iter=step,
                                sampler=sampler,
                                draws=draws.shape[1],
                                s_per_step=train_s / step,
                                width=method.config.channels,
                                pcc_at_t=at_t,
                                **s,
                            )
                            rows.append(row)
                            print(
                                f"  {method.name:7} {variant:8} {step:5d} "
                                f"{row['s_per_step']:6.3f} {s['pcc']:6.3f} {s['rmse']:6.3f} "
                                f"{s.get('crps', math.nan):6.3f} "
                                f"{s.get('spread_skill', math.nan):6.2f} {at_t:6.3f} "
                                f"{row['width']:5d} {row['draws']:4d} {sampler}",
                                flush=True,
                            )
                    method.config = base
                    clock["eval"] += time.perf_counter() - t0

                method.progress = monitor
                method.fit(fit_regions)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
