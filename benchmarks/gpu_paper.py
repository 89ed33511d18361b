"""The ``paper`` preset of ``diffst`` trained on one device, with its validation curve.

Trains ``diffst`` at the ``paper`` preset (the published sizes and budget: 128 channels, batch 8,
24,751 iterations, ``methods/diffusion/config.py``) on one dataset's default split, fit regions
only (``split.fit``: the training regions less the validation carve), and every ``--every``
iterations scores the point prediction (the mean of ``VAL_DRAWS`` draws, seed 0, as the runner's
watcher) on the validation carve: PCC, RMSE, CRPS of the draws and the mean training loss since the
previous point. No test region is read, exported or scored.

``--minutes M`` caps the training's wall time (validation scoring not counted): a lease too short
for the whole budget still gives the curve's start and the measured seconds per step, from which
the whole budget's time is projected: ``iterations x s/step + (EVALUATIONS + 1) x s/validation``
(the runner's schedule). At the end the model draws the validation carve with the default draw
rule (``methods.contract.draw_adaptive``) beside the bicubic control. Printed: device, each
validation point, s/step, peak device memory, the projection and the final scores; ``--out DIR``
also writes the curve as JSON and a figure. ``--profile N`` instead profiles N training steps
after ``WARM`` warm-up steps (torch.profiler, CPU and CUDA) and prints the operators that take the
most time, where a step's time goes.

A machine without the project's data readers (a lent GPU with its own packages) reads the split
from a bundle this script exports elsewhere: ``--export FILE`` pickles the split's fit and
validation regions (``methods.contract.Sample``) and nothing else.

Usage: ``python benchmarks/gpu_paper.py --export bundle.pkl [--dataset her2st]`` where the data
is; ``python benchmarks/gpu_paper.py [--bundle bundle.pkl] [--minutes 6] [--every 500]
[--out DIR]`` on the device.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch


def load_split(dataset: str, data_dir: str | None) -> dict:
    """The default split's fit and validation regions of ``dataset`` (bench.data)."""
    from bench.data import cache, cards

    card = cards.load_card(dataset)
    k = card.split["default_pooling"]
    split = cache.load(card, cards.data_dir(data_dir), k)
    return {"dataset": dataset, "k": k, "fit": split.fit, "validation": split.validation}


def sync() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


WARM = 20  # training steps before the profiled ones


def profile(method, fit: list, steps: int) -> None:
    """Train ``WARM + steps`` steps, the last ``steps`` under torch.profiler; print the top
    operators by self CPU time and by self device time, and the seconds per step."""
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities)
    clock: dict[str, float] = {}

    def progress(phase: str, step: int, total: int, loss: float | None) -> bool:
        if phase != "train":
            return False
        if step == WARM:
            clock["start"] = sync()
            prof.__enter__()
        if step == WARM + steps:
            clock["end"] = sync()
            prof.__exit__(None, None, None)
            return True
        return False

    method.progress = progress
    method.fit(fit)
    per_step = (clock["end"] - clock["start"]) / steps
    print(f"profiled {steps} steps: {per_step * 1e3:.1f} ms/step (profiler on)", flush=True)
    table = prof.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    if torch.cuda.is_available():
        print(table.table(sort_by="self_cuda_time_total", row_limit=15), flush=True)
        kernels = sum(e.count for e in table if e.device_type.name == "CUDA")
        print(f"device kernels per step: {kernels / steps:.0f}", flush=True)


def main() -> None:
    from bench.run.learning import EVALUATIONS, VAL_DRAWS
    from bench.run.resources import device_name
    from bench.scoring import diversity, metrics
    from methods import registry
    from methods.contract import draw_adaptive, stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="her2st")
    parser.add_argument("--data-dir")
    parser.add_argument("--export", help="write the split's fit and validation regions here, exit")
    parser.add_argument("--bundle", help="read the split from an --export file")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall-time cap")
    parser.add_argument("--every", type=int, default=500, help="iterations between scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for curve.json and curve.png")
    parser.add_argument("--profile", type=int, default=0, help="profile this many steps, exit")
    args = parser.parse_args()

    if args.export:
        split = load_split(args.dataset, args.data_dir)
        Path(args.export).write_bytes(pickle.dumps(split))
        n_fit, n_val = len(split["fit"]), len(split["validation"])
        print(f"wrote {args.export}: {n_fit} fit regions, {n_val} validation regions")
        return
    if args.bundle:
        split = pickle.loads(Path(args.bundle).read_bytes())
    else:
        split = load_split(args.dataset, args.data_dir)
    fit, val = split["fit"], split["validation"]
    inputs = [s.without_target() for s in val]
    hr, mask = stack(val, "hr"), stack(val, "hr_mask")
    bicubic = float(np.nanmean(metrics.pcc(registry.create("bicubic").predict(inputs), hr, mask)))
    print(
        f"device {device_name()}, torch {torch.__version__}; {split['dataset']} k = {split['k']}: "
        f"fit {len(fit)} regions, validation {len(val)}; HR {hr.shape[2:]} x {hr.shape[1]} genes; "
        f"bicubic validation PCC {bicubic:.3f}",
        flush=True,
    )

    method = registry.create("diffst", preset=args.preset, seed=args.seed)
    if args.profile:
        profile(method, fit, args.profile)
        return
    cap_s = args.minutes * 60
    state = {"train_s": 0.0, "val_s": 0.0, "mark": 0.0, "scoring": False, "losses": []}
    curve: list[dict] = []

    def score(step: int) -> None:
        state["scoring"] = True
        start = sync()
        draws = np.asarray(method.sample(inputs, VAL_DRAWS, 0), dtype=np.float64)
        state["val_s"] += sync() - start
        state["scoring"] = False
        point = draws.mean(axis=1)
        row = {
            "step": step,
            "train_s": round(state["train_s"], 2),
            "loss": float(np.mean(state["losses"])) if state["losses"] else None,
            "pcc": float(np.nanmean(metrics.pcc(point, hr, mask))),
            "rmse": float(np.nanmean(metrics.rmse(point, hr, mask))),
            "crps": float(np.nanmean(diversity.crps(draws, hr, mask))),
        }
        state["losses"] = []
        curve.append(row)
        print(
            f"  step {step:6d}  train {row['train_s']:7.1f} s  loss {row['loss'] or 0:.4f}  "
            f"val PCC {row['pcc']:.3f}  RMSE {row['rmse']:.3f}  CRPS {row['crps']:.3f}",
            flush=True,
        )

    def progress(phase: str, step: int, total: int, loss: float | None) -> bool:
        if phase != "train" or state["scoring"]:
            return False
        if loss is not None:
            state["losses"].append(float(loss))
        now = sync()
        state["train_s"] += now - state["mark"]
        stop = state["train_s"] >= cap_s
        if step % args.every == 0 or step == total or stop:
            score(step)
        state["mark"] = sync()
        return stop

    method.progress = progress
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    state["mark"] = sync()
    method.fit(fit)
    steps = curve[-1]["step"] if curve else 0
    total = method.config.iterations
    per_step = state["train_s"] / max(steps, 1)
    per_val = state["val_s"] / max(len(curve), 1)
    projected = total * per_step + (EVALUATIONS + 1) * per_val
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    print(
        f"trained {steps} of {total} iterations in {state['train_s']:.1f} s "
        f"({per_step * 1e3:.1f} ms/step, {1 / per_step:.1f} it/s); validation "
        f"{per_val:.2f} s a point; whole budget projected {projected / 60:.1f} min "
        f"(target: within 60); peak device memory "
        + (f"{peak:.2f} GiB" if peak is not None else "n/a (cpu)"),
        flush=True,
    )
    start = sync()
    draws = draw_adaptive(method, inputs, seed=0)
    sample_s = sync() - start
    point = draws.mean(axis=1)
    spread = np.nanmean(diversity.spread_skill(draws, hr, mask))
    print(
        f"final (step {steps}): default draw rule K = {draws.shape[1]} in {sample_s:.1f} s: "
        f"val PCC {np.nanmean(metrics.pcc(point, hr, mask)):.3f}, spread-skill {spread:.3f}",
        flush=True,
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        summary = {
            "device": device_name(),
            "dataset": split["dataset"],
            "preset": args.preset,
            "iterations": total,
            "steps": steps,
            "ms_per_step": per_step * 1e3,
            "projected_min": projected / 60,
            "peak_gib": peak,
            "curve": curve,
        }
        (out / "curve.json").write_text(json.dumps(summary, indent=1))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([r["step"] for r in curve], [r["pcc"] for r in curve], marker="o")
        ax.axhline(bicubic, ls="--", c="grey")  # the bicubic control
        title = f"diffst {args.preset}, {device_name()}"
        ax.set(xlabel="iteration", ylabel="validation PCC", title=title)
        fig.tight_layout()
        fig.savefig(out / "curve.png", dpi=120)


if __name__ == "__main__":
    main()
