"""The noise ceiling: the best score any method could reach against truth this noisy.

The HR truth is itself a noisy measurement: counts of a few molecules per position. A perfect
method predicts the *expected* expression E, and even E correlates imperfectly with one noisy
draw of it. The ceiling estimates, per (region, gene), what E would score, from the test truth's
own counts by split-half reliability:

1. **Binomial thinning.** Each HR count ``c`` is split into ``c1 ~ Binomial(c, 1/2)`` and
   ``c2 = c - c1``; the other genes' counts of the position (``totals - sum of the G genes``) are
   split the same way, so each half has its own all-gene total. Under Poisson counting noise
   (``c ~ Poisson(lambda)``) the halves are independent ``Poisson(lambda / 2)`` draws of the same
   expression. Transcript data (Xenium and kin) thins exactly so: each transcript falls in one
   half or the other, independently.
2. **Each half on the split's scale.** ``normalise(c_half, totals_half, mask, area=1/2)``: for
   ``log1p_cp10k`` the half's own total is the denominator, for ``log1p_area`` the half's counts
   are doubled (``log1p(c_half / (1/2))``), so both halves estimate the full-depth value.
3. **Split-half agreement**, averaged over ``repeats`` thinnings: ``r`` = Pearson correlation of
   the two halves over exactly the scored positions ``mask`` (a half whose total is 0 has the
   value 0 there and still counts: the ceiling is computed on the positions the methods are
   scored on, no fewer).
4. **Full-depth ceiling.** With ``truth = E + n`` (noise variance ``s2`` at full depth, ``2 s2`` at
   half depth, additive and independent of E):

   - PCC: the halves correlate at ``r = var(E) / (var(E) + 2 s2)``; the full-depth reliability is
     Spearman-Brown's ``rho = 2 r / (1 + r)``, and ``corr(E, truth) = sqrt(rho)``, so
     ``pcc_ceiling = sqrt(2 r / (1 + r))`` (0 when ``r <= 0``).
   - RMSE: not available. The additive model gives ``rmse_ceiling = sqrt(E[(h1 - h2)^2]) / 2``,
     but log1p is far from linear at a few counts per position: on synthetic Poisson maps that
     formula missed what the expected map really scores by far more than the PCC ceiling did
     (docs/decisions.md, "No RMSE ceiling"); a bound that wrong would mislead, so none is
     printed.
   - SSIM: not available. SSIM's local means, variances and covariance do not decompose into a
     signal part and an additive noise part with one reliability, so no split-half formula
     gives it.

What it bounds: a method that predicts expected expression from information independent of the
test counts' noise. The LR input is pooled from those very counts, so part of the truth's noise
reaches every method through it, and a method that sees the LR input can exceed it (most at small
k, and where a block holds few positions).

5. **The LR-aware bound** ``pcc_lr``: what a predictor that knows the expected map AND the observed
   LR block sums reaches, ``corr(E[Y | E, S], Y)``. Given its block's sum ``S_b``, a position's
   count is ``Binomial(S_b, w_i)`` with ``w_i`` its share of the block's expected count, so such a
   predictor explains the share ``w_i`` of position i's noise variance ``s2_i`` (to first order),
   and ``sum_{i in b} w_i s2_i <= max_{i in b} s2_i`` whatever the unknown shares. With the
   per-position noise variance estimated from the thinnings, ``s2_i = mean_repeats (h1_i -
   h2_i)^2 / 4`` (the halves' difference has variance ``2 (2 s2_i)``), the bound is

   ``pcc_lr = sqrt(min(1, pcc^2 + sum_b max_{i in b & mask} s2_i / sum_{i in mask} (Y_i -
   mean Y)^2))``,

   at least ``pcc``. It is loose by design (the block's largest noise stands in for the
   explained share), so that no method that sees the LR input can pass it under the model;
   ``tests/scoring/test_ceiling.py`` checks it against nearest, bilinear and bicubic upsampling
   and the LR oracle itself on simulated Poisson maps with skewed depth.

Assumptions and what they ignore: counting noise is Poisson (any over-dispersion is biology and
belongs to E); technical noise that thinning cannot separate (e.g. uncollapsed duplicate reads of
one molecule, which land in both halves) makes the halves more alike and the ceiling too high;
the log1p transform makes the noise neither additive nor of one variance everywhere, so both
formulas are first-order approximations (``tests/scoring/test_ceiling.py`` measures how close on
synthetic Poisson maps); segmentation, transcript diffusion and misregistration are part of E,
not of the noise.

Arrays: ``counts`` ``(N, G, H, W)`` non-negative integers, ``totals`` ``(N, H, W)`` all-gene
totals (at least the G genes' sum), both 0 outside tissue, ``mask`` ``(N, H, W)`` bool, the
scored positions; ``k`` the LR pooling factor (H and W divisible by it); outputs ``(N, G)``
float64, NaN where a map is constant in either half in every repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.scoring.metrics import pcc

__all__ = ["ESTIMATOR", "Ceiling", "Normalise", "ceiling", "spearman_brown"]

# (counts (G, H, W), totals (H, W), mask (H, W), area) -> (G, H, W) values on the split's scale
Normalise = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]
REPEATS = 20
ESTIMATOR = "split-half-sb+lr-max-2"  # a change of either formula forces a recomputed record


@dataclass(frozen=True)
class Ceiling:
    """Split-half agreement and the ceiling it implies, each ``(N, G)`` float64."""

    r_half: np.ndarray  # mean split-half Pearson correlation
    pcc: np.ndarray  # sqrt(2 r / (1 + r))
    pcc_lr: np.ndarray  # the LR-aware bound (module docstring, step 5)


def spearman_brown(r_half: np.ndarray) -> np.ndarray:
    """The PCC ceiling ``sqrt(2 r / (1 + r))`` from split-half ``r`` (module docstring, step 4);
    0 where ``r <= 0``, elementwise, NaN propagates."""
    r = np.asarray(r_half, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(r > 0, 2.0 * r / (1.0 + r), 0.0)
    return np.where(np.isnan(r), np.nan, np.sqrt(rho))


def ceiling(
    counts: np.ndarray,
    totals: np.ndarray,
    mask: np.ndarray,
    normalise: Normalise,
    k: int,
    repeats: int = REPEATS,
    seed: int = 0,
) -> Ceiling:
    """The noise ceiling and the LR-aware bound of each (region, gene) map (module docstring;
    shapes there), over exactly the positions in ``mask``.

    ``normalise`` puts counts on the split's scale (``bench.data.splits.normalise`` with the
    split's normalisation); ``repeats`` thinnings drawn from ``np.random.default_rng(seed)``.
    """
    counts = np.asarray(counts)
    if counts.ndim != 4 or totals.shape != counts.shape[:1] + counts.shape[2:]:
        raise ValueError(
            f"counts (N, G, H, W) and totals (N, H, W) expected, got "
            f"{counts.shape} and {totals.shape}"
        )
    if (counts < 0).any() or (counts != np.round(counts)).any():
        raise ValueError("counts must be non-negative integers")
    n, g, h, w = counts.shape
    if k < 1 or h % k or w % k:
        raise ValueError(f"the grid {h} x {w} is not divisible by the pooling factor k = {k}")
    counts = counts.astype(np.int64)
    totals = np.round(totals).astype(np.int64)
    others = np.maximum(totals - counts.sum(axis=1), 0)  # the other genes' counts per position
    mask = np.asarray(mask, dtype=bool)
    rng = np.random.default_rng(seed)
    r_sum = np.zeros((n, g))
    r_n = np.zeros((n, g))
    d2 = np.zeros(counts.shape)  # sum over repeats of the halves' squared difference
    for _ in range(repeats):
        c1 = rng.binomial(counts, 0.5)
        o1 = rng.binomial(others, 0.5)
        t1 = c1.sum(axis=1) + o1
        halves = []
        for c, t in ((c1, t1), (counts - c1, totals - t1)):
            halves.append(
                np.stack([normalise(c[i], t[i], mask[i] & (t[i] > 0), 0.5) for i in range(n)])
            )
        r = pcc(halves[0], halves[1], mask, device="cpu")
        ok = np.isfinite(r)
        r_sum += np.where(ok, r, 0.0)
        r_n += ok
        d2 += (halves[0].astype(np.float64) - halves[1]) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        r_half = np.where(r_n > 0, r_sum / r_n, np.nan)
    plain = spearman_brown(r_half)
    return Ceiling(
        r_half=r_half,
        pcc=plain,
        pcc_lr=_lr_bound(plain, counts, totals, mask, normalise, d2 / (4 * repeats), k),
    )


def _lr_bound(
    plain: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
    mask: np.ndarray,
    normalise: Normalise,
    noise: np.ndarray,
    k: int,
) -> np.ndarray:
    """``pcc_lr`` of the module docstring (step 5) from the noise ceiling ``plain`` (N, G) and
    the per-position noise variance ``noise`` (N, G, H, W)."""
    n, g, h, w = counts.shape
    y = np.stack([normalise(counts[i], totals[i], mask[i], 1.0) for i in range(n)])
    y = y.astype(np.float64)
    m = mask[:, None]
    count = m.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(m, y, 0.0).sum(axis=(2, 3)) / count
        ss = (np.where(m, y - mean[..., None, None], 0.0) ** 2).sum(axis=(2, 3))
        blocks = np.where(m, noise, 0.0).reshape(n, g, h // k, k, w // k, k)
        explained = blocks.max(axis=(3, 5)).sum(axis=(2, 3))
        rho = np.where(ss > 0, plain**2 + explained / ss, np.nan)
    bound = np.sqrt(np.clip(rho, 0.0, 1.0))
    return np.where(np.isnan(plain), np.nan, np.maximum(bound, plain))
