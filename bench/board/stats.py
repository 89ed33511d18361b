"""Aggregation statistics: means with bootstrap intervals, and paired tests between methods.

``shared/design/metrics.md``: "mean over all (section, gene) pairs with a 95% bootstrap confidence
interval (resampling genes within sections)"; with several seeds the seeds are resampled too
(:func:`bootstrap_ci_seeds`). A method is compared with the best one by a paired Wilcoxon
signed-rank test on the same (section, gene) pairs (:func:`paired_wilcoxon`), and the p-values of
all methods are Holm-corrected (:func:`holm`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "bootstrap_ci_seeds", "holm", "paired_wilcoxon"]


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
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot is {n_boot!r}; pass a positive integer number of replicates")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is {level!r}; pass a confidence level in (0, 1), e.g. 0.95")
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
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot is {n_boot!r}; pass a positive integer number of replicates")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is {level!r}; pass a confidence level in (0, 1), e.g. 0.95")
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
