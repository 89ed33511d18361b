"""Aggregation statistics: the mean over (section, gene) pairs with a bootstrap interval.

``shared/design/metrics.md``: "mean over all (section, gene) pairs with a 95% bootstrap confidence
interval (resampling genes within sections)". numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci"]


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
