"""The ceiling estimators checked by simulation under each dataset's real depths and maps.

For each dataset the test regions' real all-gene totals (depths) and scored positions are kept;
the expected expression is the real truth smoothed (a Gaussian of ``--sigma`` HR positions over
the scored positions: per-gene proportions of the depth for ``log1p_cp10k``, counts per bin for
``log1p_area``). One truth is drawn from it (Poisson counts), and printed per dataset:

- ``true``: what the expected map really scores against that truth, ``corr(E[Y | rates], Y)``
  with ``E[Y | rates]`` from ``--draws`` independent truths (the maximum over predictors that
  know the rates but not the noise), mean over (region, gene);
- ``estimate``: :func:`bench.scoring.ceiling.ceiling`'s noise ceiling from that one truth, and
  the difference;
- ``lr bound`` beside what nearest-neighbour upsampling of the truth's own LR map scores (a
  method that sees the LR input; the bound must stay above it).

Usage: ``python benchmarks/ceiling_check.py [--datasets her2st ...] [--draws 200] [--seed 0]``.
"""

from __future__ import annotations

import argparse

import numpy as np


def rates(counts: np.ndarray, totals: np.ndarray, mask: np.ndarray, how: str, sigma: float):
    """(G, H, W) expected gene counts and (H, W) expected other counts of one region."""
    from scipy.ndimage import gaussian_filter

    m = mask.astype(np.float64)
    weight = gaussian_filter(m, sigma)
    safe = np.where(mask, np.maximum(totals, 1), 1).astype(np.float64)
    if how == "log1p_cp10k":  # proportions smoothed, times each position's real depth
        share = np.stack([gaussian_filter(c * m / safe, sigma) for c in counts])
        share = np.where(mask, share / np.maximum(weight, 1e-9), 0.0)
        lam = share * totals
    else:  # counts per bin smoothed
        lam = np.stack([gaussian_filter(c * m, sigma) for c in counts.astype(np.float64)])
        lam = np.where(mask, lam / np.maximum(weight, 1e-9), 0.0)
    rest = np.where(mask, np.maximum(totals - lam.sum(axis=0), 0.0), 0.0)
    return lam, rest


def check(split, draws: int, sigma: float, rng: np.random.Generator) -> tuple[float, ...]:
    """(true, estimate, lr bound, nearest) of one split (module docstring)."""
    from bench.scoring.ceiling import ceiling
    from bench.scoring.metrics import pcc

    truth, how, k = split.truth, split.spec.normalisation, split.spec.k
    mask = truth.scored
    regions = zip(truth.counts, truth.totals, mask, strict=True)
    made = [rates(c, t, m, how, sigma) for c, t, m in regions]
    lam, rest = np.stack([a for a, _ in made]), np.stack([b for _, b in made])

    def draw() -> tuple[np.ndarray, np.ndarray]:
        c = rng.poisson(lam)
        return c, c.sum(axis=1) + rng.poisson(rest)

    def values(c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.stack(
            [split.normalise(c[i], t[i], mask[i] & (t[i] > 0), 1.0) for i in range(len(c))]
        ).astype(np.float64)

    c, t = draw()
    y = values(c, t)
    expected = np.mean([values(*draw()) for _ in range(draws)], axis=0)
    true = float(np.nanmean(pcc(expected, y, mask, device="cpu")))
    est = ceiling(c, t, mask, split.normalise, k)
    n, g, h, w = c.shape
    s = c.reshape(n, g, h // k, k, w // k, k).sum(axis=(3, 5))
    tt = t.reshape(n, h // k, k, w // k, k).sum(axis=(2, 4))[:, None]
    lr = np.log1p(s / np.maximum(tt, 1) * 1e4) if how == "log1p_cp10k" else np.log1p(s / k**2)
    nearest = np.repeat(np.repeat(lr, k, axis=2), k, axis=3)
    near = float(np.nanmean(pcc(nearest, y, mask, device="cpu")))
    return true, float(np.nanmean(est.pcc)), float(np.nanmean(est.pcc_lr)), near


def main() -> None:
    from bench.data import cache, cards

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["her2st", "visium_cytassist_mouse_embryo", "xenium_bone_marrow"],
    )
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3, help="simulated truths per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    head = f"{'dataset':<32} {'draw':>4} {'true':>6} {'estimate':>8} {'diff':>7}"
    print(head + f" {'lr bound':>8} {'nearest':>8}")
    for name in args.datasets:
        card = cards.load_card(name)
        split = cache.load(card, cards.data_dir(args.data_dir), card.split["default_pooling"])
        for i in range(args.repeats):
            true, plain, bound, near = check(split, args.draws, args.sigma, rng)
            print(
                f"{name:<32} {i:>4} {true:6.3f} {plain:8.3f} {plain - true:+7.3f} "
                f"{bound:8.3f} {near:8.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
