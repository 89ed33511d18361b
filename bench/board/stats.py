"""Aggregation statistics: means with bootstrap intervals, paired tests between methods, power.

``shared/design/metrics.md``: "mean over all (section, gene) pairs with a 95% bootstrap confidence
interval (resampling genes within sections)"; with several seeds the seeds are resampled too
(:func:`bootstrap_ci_seeds`). A method is compared with the best one by a paired Wilcoxon
signed-rank test on the same (section, gene) pairs (:func:`paired_wilcoxon`), and the p-values of
all methods are Holm-corrected (:func:`holm`).

A folded benchmark (issue 24) scores every region (a section or a tile) once through
cross-validation folds and pools all of them: :func:`hierarchical_bootstrap_ci` draws its interval
by resampling regions, then genes within each drawn region (so region-to-region variation, which a
genes-only bootstrap ignores, widens the interval), and :func:`detectable_difference` gives the
smallest mean paired difference a paired test detects at a given power, with a design effect for
pairs clustered in regions (:func:`intraclass_correlation`). Pairs of one region are correlated,
so the folded page tests a method against the best on the region means of their paired
differences (:func:`paired_wilcoxon_regions`), whose power :func:`power_at` gives at any
difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

__all__ = [
    "bootstrap_ci",
    "bootstrap_ci_seeds",
    "detectable_difference",
    "hierarchical_bootstrap_ci",
    "holm",
    "intraclass_correlation",
    "min_signed_rank_p",
    "paired_wilcoxon",
    "paired_wilcoxon_regions",
    "power_at",
]


def _check_boot(n_boot: int, level: float) -> None:
    """A bootstrap's replicate count and confidence level, else a ValueError naming the fix."""
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot is {n_boot!r}; pass a positive integer number of replicates")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is {level!r}; pass a confidence level in (0, 1), e.g. 0.95")


def _sections(values: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split ``values`` into one float64 1-D array of valid (non-NaN) entries per section."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise ValueError(
                f"values has shape {values.shape}; expected (S, G) (sections x genes) or a list "
                "of 1-D arrays, one per section"
            )
        rows = list(values)
    else:
        rows = list(values)
    out = []
    for s, row in enumerate(rows):
        a = np.asarray(row, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"values[{s}] has shape {a.shape}; expected a 1-D array of genes")
        if np.isinf(a).any():
            raise ValueError(f"values[{s}] contains Inf; use NaN to mark excluded pairs")
        a = a[~np.isnan(a)]
        if a.size:
            out.append(a)
    return out


def bootstrap_ci(
    values: np.ndarray | Sequence[np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of a (section x gene) score table with a percentile bootstrap confidence interval.

    The statistic is ``mean = sum of valid entries / number of valid entries`` (NaN = excluded).
    Each bootstrap replicate resamples, independently in every section, that section's valid genes
    with replacement (so each section keeps its count of valid genes and the replicate keeps the
    total count), and takes the mean over all resampled entries. The interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation) of the replicates.

    Random draws, in order: for each section s with ``c_s`` valid genes (sections without any are
    skipped), ``rng.integers(0, c_s, size=(n_boot, c_s))`` with
    ``rng = np.random.default_rng(seed)``; vectorised over replicates, so deterministic per seed.

    Parameters
    ----------
    values : float array ``(S, G)`` with NaN for excluded pairs, or a list of 1-D arrays (one per
        section, any lengths). Any scale (a metric's own).
    n_boot : number of bootstrap replicates, >= 1.
    level : confidence level in (0, 1).
    seed : seed of the generator.

    Returns
    -------
    (mean, low, high) as floats; ``(nan, nan, nan)`` when no entry is valid.
    """
    _check_boot(n_boot, level)
    sections = _sections(values)
    total = sum(a.size for a in sections)
    if total == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(sum(a.sum() for a in sections) / total)

    rng = np.random.default_rng(seed)
    boot_sum = np.zeros(int(n_boot), dtype=np.float64)
    for a in sections:  # loop over sections only; each is vectorised over replicates
        idx = rng.integers(0, a.size, size=(int(n_boot), a.size))
        boot_sum += a[idx].sum(axis=1)
    boot = boot_sum / total
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def bootstrap_ci_seeds(
    tables: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over seeds and (section, gene) pairs with an interval resampling seeds and genes.

    ``tables`` is ``(R, S, G)``: R seeds' (section x gene) scores, NaN = excluded pair. The
    statistic is the mean of the valid entries. A replicate draws R seeds with replacement and,
    independently in every section, G gene indices with replacement (the same genes for every
    drawn seed, since a gene's scores under different seeds are paired), and takes the mean of the
    valid entries it selected. Interval: percentile quantiles as in :func:`bootstrap_ci`.
    With R = 1 the seed draw is the identity and only genes are resampled.

    Random draws, in order, from ``np.random.default_rng(seed)``: ``integers(0, R, (n_boot, R))``,
    then for each section ``integers(0, G, (n_boot, G))``.

    Returns (mean, low, high); ``(nan, nan, nan)`` when no entry is valid.
    """
    t = np.asarray(tables, dtype=np.float64)
    if t.ndim != 3:
        raise ValueError(
            f"tables has shape {t.shape}; expected (R, S, G) seeds x sections x genes"
        )
    _check_boot(n_boot, level)
    if np.isinf(t).any():
        raise ValueError("tables contain Inf; use NaN to mark excluded pairs")
    valid = ~np.isnan(t)
    if not valid.any():
        return float("nan"), float("nan"), float("nan")
    mean = float(t[valid].mean())
    r, n_sections, g = t.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, r, size=(int(n_boot), r))  # (B, R)
    total = np.zeros(int(n_boot))
    count = np.zeros(int(n_boot))
    filled = np.where(valid, t, 0.0)
    for s in range(n_sections):
        genes = rng.integers(0, g, size=(int(n_boot), g))  # (B, G)
        # entries [b, i, j] = tables[seeds[b, i], s, genes[b, j]]
        picked = filled[seeds[:, :, None], s, genes[:, None, :]]
        ok = valid[seeds[:, :, None], s, genes[:, None, :]]
        total += picked.sum(axis=(1, 2))
        count += ok.sum(axis=(1, 2))
    boot = total[count > 0] / count[count > 0]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of ``a - b`` on paired entries.

    ``a`` and ``b`` hold two methods' scores on the same (section, gene) pairs (any equal shapes,
    NaN = excluded); pairs where either is NaN are dropped. scipy's ``wilcoxon`` with its defaults
    (zero differences dropped, ``method="auto"``: exact for small samples without ties, else the
    normal approximation). Returns 1.0 when every remaining difference is zero (identical
    methods) and NaN when no pair remains.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a has shape {x.shape} but b has {y.shape}; pass paired score tables")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    if d.size == 0:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(x[keep], y[keep]).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of m p-values (family-wise error control).

    With ``p_(1) <= ... <= p_(m)`` sorted ascending, the adjusted value of the i-th smallest is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``, returned in the input order. NaN p-values (tests
    that could not run) stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = ok.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# --- folded benchmark: regions as clusters ----------------------------------------------------


def _region_index(region_ids: np.ndarray | Sequence, n: int, name: str) -> np.ndarray:
    """Integer codes ``0..R-1`` (sorted labels) of ``region_ids``, checked against ``n`` pairs."""
    labels = np.asarray(region_ids)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"region_ids has shape {labels.shape} but {name} has {n} pairs; pass one region "
            "label per (region, gene) pair"
        )
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def hierarchical_bootstrap_ci(
    values: np.ndarray,
    region_ids: np.ndarray | Sequence,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean over (region, gene) pairs with a two-stage (regions, then genes) bootstrap interval.

    ``values`` is ``(P,)``: one score per (region, gene) pair, NaN = excluded pair (dropped); or
    ``(S, P)``: S seeds' scores on the same P pairs, the seeds resampled too (as in
    :func:`bootstrap_ci_seeds`). ``region_ids`` is ``(P,)``: the region label of each pair (any
    sortable labels). A pair that is NaN under every seed is dropped; a region without any valid
    pair is dropped. With R regions left and ``n_r`` pairs in region r, the statistic is
    ``mean = sum of valid entries / number of valid entries``.

    One replicate:

    1. draws S seeds with replacement (weight ``w_s`` = times seed s is drawn; S = 1: ``w = 1``);
    2. draws R regions with replacement (``k_r`` = times region r is drawn);
    3. for each drawn copy of region r, draws ``n_r`` of its pairs with replacement, independently
       per copy; ``c_rg`` = times pair g is drawn over all ``k_r`` copies, i.e.
       ``c_r ~ Multinomial(k_r * n_r, uniform over the n_r pairs)``; a drawn pair keeps its scores
       under all drawn seeds (scores of one pair under different seeds are paired);
    4. ``replicate = sum_rg c_rg sum_s w_s v_sg [valid] / sum_rg c_rg sum_s w_s [v_sg valid]``.

    Interval: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation)
    of the replicates (replicates that drew no valid entry, possible only with NaN under some
    seeds, are left out). With one region the region draw is the identity and only genes are
    resampled. Percentile intervals from R clusters behave like a normal interval with the
    between-region variance shrunk by ``(R - 1) / R`` and a normal rather than a ``t_{R-1}``
    quantile, so with few regions (about ten or fewer) they cover less than ``level``.

    Random draws, in order: ``SeedSequence(seed).spawn(2)`` gives two generators; the first draws
    ``multinomial(S, [1/S] * S, size=n_boot)``, the second ``multinomial(R, [1/R] * R,
    size=n_boot)`` then, for each region in sorted label order, ``multinomial(k_r * n_r,
    [1/n_r] * n_r)`` (vectorised over replicates). Deterministic per seed, and a ``(P,)`` table
    gives the same replicates as S identical copies of it.

    Returns (mean, low, high) as floats; ``(nan, nan, nan)`` when no entry is valid.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    elif v.ndim != 2:
        raise ValueError(
            f"values has shape {v.shape}; expected (P,) one score per (region, gene) pair, or "
            "(S, P) seeds x pairs"
        )
    codes = _region_index(region_ids, v.shape[1], "values")
    _check_boot(n_boot, level)
    if np.isinf(v).any():
        raise ValueError("values contain Inf; use NaN to mark excluded pairs")
    valid = ~np.isnan(v)
    keep = valid.any(axis=0)
    if not keep.any():
        return float("nan"), float("nan"), float("nan")
    valid, codes = valid[:, keep], codes[keep]
    filled = np.where(valid, v[:, keep], 0.0)
    mean = float(filled.sum() / valid.sum())
    regions = [np.flatnonzero(codes == r) for r in np.unique(codes)]

    b, n_seeds, n_regions = int(n_boot), filled.shape[0], len(regions)
    seed_rng, rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    w = seed_rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b).astype(np.float64)
    k = rng.multinomial(n_regions, np.full(n_regions, 1.0 / n_regions), size=b)  # (B, R)
    total = np.zeros(b)
    count = np.zeros(b)
    for r, cols in enumerate(regions):  # loop over regions only; vectorised over replicates
        n_r = cols.size
        c = rng.multinomial(k[:, r] * n_r, np.full(n_r, 1.0 / n_r))  # (B, n_r)
        total += np.einsum("bg,bg->b", c, w @ filled[:, cols])
        count += np.einsum("bg,bg->b", c, w @ valid[:, cols].astype(np.float64))
    boot = total[count > 0] / count[count > 0]
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def intraclass_correlation(values: np.ndarray, region_ids: np.ndarray | Sequence) -> float:
    """One-way ANOVA estimate of the intraclass correlation of ``values`` within regions.

    ``values`` ``(P,)`` (NaN pairs dropped), ``region_ids`` ``(P,)``. With R regions, ``n_r``
    pairs in region r, N pairs, region means ``m_r`` and grand mean ``m``:
    ``MSB = sum_r n_r (m_r - m)^2 / (R - 1)``, ``MSW = sum_r sum_g (x_rg - m_r)^2 / (N - R)``,
    ``n0 = (N - sum_r n_r^2 / N) / (R - 1)`` and ``icc = (MSB - MSW) / (MSB + (n0 - 1) MSW)``,
    clipped to [0, 1]. NaN when it cannot be estimated: fewer than two regions, no region with
    two pairs (N = R), or no variation at all.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values has shape {x.shape}; expected (P,) one value per pair")
    codes = _region_index(region_ids, x.size, "values")
    if np.isinf(x).any():
        raise ValueError("values contain Inf; use NaN to mark excluded pairs")
    keep = ~np.isnan(x)
    x, codes = x[keep], np.unique(codes[keep], return_inverse=True)[1].reshape(-1)
    n, n_regions = x.size, (int(codes.max()) + 1 if x.size else 0)
    if n_regions < 2 or n == n_regions:
        return float("nan")
    sizes = np.bincount(codes, minlength=n_regions).astype(np.float64)
    means = np.bincount(codes, weights=x, minlength=n_regions) / sizes
    grand = x.mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (n_regions - 1))
    msw = float(((x - means[codes]) ** 2).sum() / (n - n_regions))
    n0 = (n - float((sizes**2).sum()) / n) / (n_regions - 1)
    denom = msb + (n0 - 1.0) * msw
    if denom <= 0.0:
        return float("nan")
    return float(min(1.0, max(0.0, (msb - msw) / denom)))


def detectable_difference(
    differences: np.ndarray,
    power: float = 0.8,
    alpha: float = 0.05,
    region_ids: np.ndarray | Sequence | None = None,
    test: Literal["wilcoxon", "t"] = "wilcoxon",
) -> float:
    """Smallest mean paired difference a two-sided paired test detects with the given power.

    ``differences`` ``(P,)``: observed paired differences ``d`` (e.g. method minus best, PCC per
    (region, gene) pair), NaN pairs dropped. Normal approximation of the paired test:

    ``MDE = (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n_eff)``

    with ``sd`` the sample standard deviation of d (ddof = 1) and n the number of valid pairs.
    ``alpha`` is per comparison (no Holm correction: pass ``alpha / m`` for a Bonferroni bound
    over m comparisons). The opposite tail's rejections are ignored.

    - ``region_ids`` None: pairs are independent, ``n_eff = n``.
    - ``region_ids`` ``(P,)``: pairs of one region are correlated; design effect
      ``deff = 1 + (m - 1) * icc`` with ``m = n / R`` the mean pairs per region and ``icc`` from
      :func:`intraclass_correlation` (taken as 0 when it cannot be estimated: one region, one pair
      per region, no variation), and ``n_eff = n / deff``. This is the difference a test that
      respects the clustering detects (one whose null distribution includes the region-to-region
      variation, e.g. a signed-rank test on the region means of d). The pooled signed-rank test
      :func:`paired_wilcoxon` treats every pair as independent, so with ``icc > 0`` its rejection
      rate under no difference exceeds ``alpha`` (its z statistic has variance about ``deff``
      instead of 1): it rejects more often than the power stated here, for the wrong reason.
    - ``test="wilcoxon"`` (default): the Wilcoxon signed-rank test needs ``1 / ARE`` times the
      pairs of the paired t-test, with asymptotic relative efficiency ``ARE = 3 / pi`` for normal
      differences, so ``n_eff`` is multiplied by ``3 / pi`` (``MDE`` grows by ``sqrt(pi / 3)``).
      For heavy-tailed differences the signed-rank test is relatively more efficient (ARE >= 1
      for many), so this MDE is then conservative. ``test="t"``: no factor.

    Returns the MDE in the units of ``d`` (0 when every valid difference is equal; NaN with fewer
    than two valid pairs).
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"differences has shape {d.shape}; expected (P,) one value per pair")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power is {power!r}; pass a probability in (0, 1), e.g. 0.8")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha is {alpha!r}; pass a significance level in (0, 1), e.g. 0.05")
    if test not in ("wilcoxon", "t"):
        raise ValueError(f"test is {test!r}; pass 'wilcoxon' or 't'")
    codes = None if region_ids is None else _region_index(region_ids, d.size, "differences")
    if np.isinf(d).any():
        raise ValueError("differences contain Inf; use NaN to mark excluded pairs")
    keep = ~np.isnan(d)
    n = int(keep.sum())
    if n < 2:
        return float("nan")
    dv = d[keep]
    sd = 0.0 if np.all(dv == dv[0]) else float(dv.std(ddof=1))  # exact 0 for equal differences
    n_eff = float(n)
    if codes is not None:
        icc = intraclass_correlation(d[keep], codes[keep])
        m = n / np.unique(codes[keep]).size
        n_eff = n / (1.0 + (m - 1.0) * (0.0 if math.isnan(icc) else icc))
    if test == "wilcoxon":
        n_eff *= 3.0 / math.pi
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)
    return float(z * sd / math.sqrt(n_eff))


def paired_wilcoxon_regions(
    a: np.ndarray, b: np.ndarray, region_ids: np.ndarray | Sequence | None = None
) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test on the region means of ``a - b``.

    ``a`` and ``b`` hold two methods' scores on the same (region, gene) pairs, NaN = excluded;
    pairs where either is NaN are dropped. With ``region_ids`` None they are ``(R, G)`` tables,
    one row per region; else ``(P,)`` with ``region_ids`` ``(P,)`` the region of each pair.
    Per region with a valid pair, ``m_r`` = the mean of its differences; the test is scipy's
    ``wilcoxon`` on the ``m_r`` with its defaults (zero means dropped, exact for up to 50 regions
    without ties, else the normal approximation). Regions, not pairs, are the independent units,
    so region-to-region variation of the difference is in the null distribution: the test holds
    its level when pairs are clustered in regions, where :func:`paired_wilcoxon` on the pooled
    pairs rejects too often. With R regions it cannot give p below :func:`min_signed_rank_p`.

    Returns 1.0 when every region mean is zero (identical methods) and NaN when no pair remains.
    """
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a has shape {x.shape} but b has {y.shape}; pass paired score tables")
    if region_ids is None:
        if x.ndim != 2:
            raise ValueError(
                f"a has shape {x.shape}; pass (R, G) regions x genes tables, or (P,) pairs with "
                "region_ids"
            )
        codes = np.repeat(np.arange(x.shape[0]), x.shape[1])
        x, y = x.reshape(-1), y.reshape(-1)
    else:
        if x.ndim != 1:
            raise ValueError(f"a has shape {x.shape}; with region_ids pass (P,) pairs")
        codes = _region_index(region_ids, x.size, "a")
    keep = ~(np.isnan(x) | np.isnan(y))
    if not keep.any():
        return float("nan")
    d, codes = x[keep] - y[keep], codes[keep]
    sizes = np.bincount(codes)
    means = np.bincount(codes, weights=d)[sizes > 0] / sizes[sizes > 0]
    if not np.any(means != 0):
        return 1.0
    return float(wilcoxon(means).pvalue)


def min_signed_rank_p(n_regions: int) -> float:
    """The smallest two-sided p of the exact signed-rank test on ``n_regions`` values:
    ``2 / 2**n`` (every value of one sign), at most 1. A level ``alpha`` at or below it can never
    be reached, whatever the difference: with five regions or fewer, none at 0.05."""
    if int(n_regions) != n_regions or n_regions < 0:
        raise ValueError(f"n_regions is {n_regions!r}; pass a count of regions")
    return min(1.0, 2.0 / 2.0 ** int(n_regions))


def power_at(delta: float, mde: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """Power of a two-sided paired test at a true mean difference ``delta``, given its
    :func:`detectable_difference` ``mde`` at ``power`` and ``alpha`` (the same normal
    approximation, so ``power_at(mde, mde, power, alpha) == power``):

    ``power(delta) = Phi(|delta| * (z_{1 - alpha/2} + z_{power}) / mde - z_{1 - alpha/2})``

    (the opposite tail's rejections ignored). 1 when ``mde`` is 0 and ``delta`` is not; NaN when
    ``mde`` is NaN.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power is {power!r}; pass a probability in (0, 1), e.g. 0.8")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha is {alpha!r}; pass a significance level in (0, 1), e.g. 0.05")
    if math.isnan(mde) or math.isnan(delta):
        return float("nan")
    z_a = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    if mde <= 0.0:
        return 1.0 if delta != 0 else NormalDist().cdf(-z_a)
    z = z_a + NormalDist().inv_cdf(power)
    return float(NormalDist().cdf(abs(delta) * z / mde - z_a))
