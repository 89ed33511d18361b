"""Metrics engine vs the per-map reference loop, side by side in one run.

Ours: ``bench.scoring.metrics.score_maps`` (masked; on the CPU with numba, one compiled kernel
per map that reads it once for the finiteness check, the float64 masked moments of PCC/RMSE and
SSIM with a separable zero-padded Gaussian run row by row in float64; elsewhere batched torch,
after a separate finiteness check). Reference: a Python loop over maps with scipy
``pearsonr``, scikit-image ``structural_similarity`` (Gaussian weights, sigma 1.5, population
covariance) and NumPy RMSE, all unmasked. Prints wall time, the
ratio (reference / ours), peak resident memory of each side and the largest difference between
the two sides' values (the target: within 1e-5). The first call (numba's compile, or loading
its cache) is timed apart and not in "ours".
Usage: ``python benchmarks/metrics_speed.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial
from importlib.metadata import version

import numpy as np


def reference(pred: np.ndarray, hr: np.ndarray) -> dict[str, np.ndarray]:
    from scipy.stats import pearsonr
    from skimage.metrics import structural_similarity

    out: dict[str, list[float]] = {"pcc": [], "ssim": [], "rmse": []}
    for p, t in zip(
        pred.reshape(-1, *pred.shape[-2:]), hr.reshape(-1, *hr.shape[-2:]), strict=True
    ):
        out["pcc"].append(pearsonr(p.ravel(), t.ravel())[0])
        _, full = structural_similarity(
            p,
            t,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            full=True,
        )
        out["ssim"].append(full)
        out["rmse"].append(np.sqrt(np.mean((p - t) ** 2)))
    return {k: np.asarray(v) for k, v in out.items()}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import torch

    from bench.run.resources import PeakMemory
    from bench.scoring import ssim_engine, tensors
    from bench.scoring.metrics import score_maps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs")
    kernels = ssim_engine.kernels(tensors.default_device())
    if kernels == "compiled":
        kernels += f" (numba {version('numba')})"
    start = time.perf_counter()
    tiny = np.ones((1, 1, 4, 4))
    score_maps(tiny, tiny, np.ones((1, 4, 4), dtype=bool), np.ones(1))
    print(f"kernels: {kernels}; first call {time.perf_counter() - start:.2f} s")
    print(
        f"{'maps':>12} {'ours s':>8} {'ref s':>8} {'ratio':>7} {'ours MiB':>9} {'ref MiB':>8} "
        f"{'max |diff|':>10}"
    )
    rng = np.random.default_rng(0)
    for n, g, size in [(64, 50, 32), (4, 50, 256)]:
        hr = rng.random((n, g, size, size))
        pred = np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1)
        mask = np.ones((n, size, size), dtype=bool)
        data_range = np.ones(g)
        with PeakMemory() as mem_ours:
            ours = best_of(partial(score_maps, pred, hr, mask, data_range), args.repeat)
        with PeakMemory() as mem_ref:
            ref = best_of(partial(reference, pred, hr), args.repeat)
        ours_values = score_maps(pred, hr, mask, data_range)
        diff = _max_diff(ours_values, reference(pred, hr), pred, hr)
        label = f"{n * g}x{size}^2"
        print(
            f"{label:>12} {ours:8.3f} {ref:8.3f} {ref / ours:7.1f} {mem_ours.cpu_mb:9.0f} "
            f"{mem_ref.cpu_mb:8.0f} {diff:10.1e}"
        )


def _max_diff(ours: dict, ref: dict, pred: np.ndarray, hr: np.ndarray) -> float:
    """Largest |ours - reference| over PCC, RMSE and the SSIM map's interior (scikit-image pads
    by reflection and crops 5 positions per border; ours zero-pads: they agree inside)."""
    from bench.scoring.metrics import ssim_map

    full = ssim_map(pred, hr, np.ones(pred.shape[1]), device="cpu").numpy()
    full = full.reshape(-1, *pred.shape[-2:])[:, 5:-5, 5:-5]
    return max(
        float(np.abs(ours["pcc"].ravel() - ref["pcc"]).max()),
        float(np.abs(ours["rmse"].ravel() - ref["rmse"]).max()),
        float(np.abs(full - ref["ssim"][:, 5:-5, 5:-5]).max()),
    )


if __name__ == "__main__":
    main()
