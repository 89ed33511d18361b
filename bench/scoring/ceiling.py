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
   the two halves over the in-tissue positions.
4. **Full-depth ceiling.** With ``truth = E + n`` (noise variance ``s2`` at full depth, ``2 s2`` at
   half depth, additive and independent of E):

   - PCC: the halves correlate at ``r = var(E) / (var(E) + 2 s2)``; the full-depth reliability is
     Spearman-Brown's ``rho = 2 r / (1 + r)``, and ``corr(E, truth) = sqrt(rho)``, so
     ``pcc_ceiling = sqrt(2 r / (1 + r))`` (0 when ``r <= 0``).
   - RMSE: not available. The additive model gives ``rmse_ceiling = sqrt(E[(h1 - h2)^2]) / 2``,
     but log1p is far from linear at a few counts per position: on synthetic Poisson maps that
     formula gave 0.69-0.96 of what the expected map really scores under ``log1p_cp10k`` and
     0.85-1.02 under ``log1p_area`` (0.3 to 10 counts per position), against -0.03 to +0.015
     for the PCC ceiling; a bound that wrong would mislead, so none is printed.
   - SSIM: not available. SSIM's local means, variances and covariance do not decompose into a
     signal part and an additive noise part with one reliability, so no split-half formula
     gives it.

What it bounds: a method that predicts expected expression from information independent of the
test counts' noise. The LR input is pooled from those very counts, so part of the truth's noise
reaches every method through it, and a method can exceed the ceiling, most at small k (the Visium
embryo at k = 2: bicubic 0.670 against a ceiling of 0.554); a ceiling conditioned on the LR block
sums would need the unknown expected map within each block, and is not attempted.

Assumptions and what they ignore: counting noise is Poisson (any over-dispersion is biology and
belongs to E); technical noise that thinning cannot separate (e.g. uncollapsed duplicate reads of
one molecule, which land in both halves) makes the halves more alike and the ceiling too high;
the log1p transform makes the noise neither additive nor of one variance everywhere, so both
formulas are first-order approximations (``tests/scoring/test_ceiling.py`` measures how close on
synthetic Poisson maps); segmentation, transcript diffusion and misregistration are part of E,
not of the noise.

Arrays: ``counts`` ``(N, G, H, W)`` non-negative integers, ``totals`` ``(N, H, W)`` all-gene
totals (at least the G genes' sum), ``mask`` ``(N, H, W)`` bool; outputs ``(N, G)`` float64, NaN
where a map is constant in either half in every repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.scoring.metrics import pcc

__all__ = ["Ceiling", "Normalise", "ceiling", "spearman_brown"]

# (counts (G, H, W), totals (H, W), mask (H, W), area) -> (G, H, W) values on the split's scale
Normalise = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]
REPEATS = 20


@dataclass(frozen=True)
class Ceiling:
    """Split-half agreement and the ceiling it implies, each ``(N, G)`` float64."""

    r_half: np.ndarray  # mean split-half Pearson correlation
    pcc: np.ndarray  # sqrt(2 r / (1 + r))


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
    repeats: int = REPEATS,
    seed: int = 0,
) -> Ceiling:
    """The noise ceiling of each (region, gene) map (module docstring; shapes there).

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
    counts = counts.astype(np.int64)
    totals = np.round(totals).astype(np.int64)
    others = np.maximum(totals - counts.sum(axis=1), 0)  # the other genes' counts per position
    mask = np.asarray(mask, dtype=bool)
    rng = np.random.default_rng(seed)
    r_sum = np.zeros(counts.shape[:2])
    r_n = np.zeros(counts.shape[:2])
    for _ in range(repeats):
        c1 = rng.binomial(counts, 0.5)
        o1 = rng.binomial(others, 0.5)
        t1 = c1.sum(axis=1) + o1
        halves = []
        for c, t in ((c1, t1), (counts - c1, totals - t1)):
            halves.append(
                np.stack([normalise(c[i], t[i], mask[i] & (t[i] > 0), 0.5) for i in range(len(c))])
            )
        both = mask & (t1 > 0) & (totals - t1 > 0)
        r = pcc(halves[0], halves[1], both, device="cpu")
        ok = np.isfinite(r)
        r_sum += np.where(ok, r, 0.0)
        r_n += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        r_half = np.where(r_n > 0, r_sum / r_n, np.nan)
    return Ceiling(r_half=r_half, pcc=spearman_brown(r_half))
