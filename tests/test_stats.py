"""bench.stats.bootstrap_ci: a loop reference with the same draws, scipy, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.stats import bootstrap_ci


def _table(rng: np.random.Generator, s: int = 4, g: int = 30, nan_frac: float = 0.2) -> np.ndarray:
    v = rng.normal(0.5, 0.2, size=(s, g)) + rng.normal(0, 0.1, size=(s, 1))
    v[rng.random((s, g)) < nan_frac] = np.nan
    return v


def _loop_reference(values: np.ndarray, n_boot: int, level: float, seed: int):
    """Plain loops over replicates, consuming the documented draws in the documented order."""
    rows = [r[~np.isnan(r)] for r in values]
    rows = [r for r in rows if r.size]
    total = sum(r.size for r in rows)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, r.size, size=(n_boot, r.size)) for r in rows]
    reps = []
    for b in range(n_boot):
        acc = 0.0
        for r, idx in zip(rows, draws, strict=True):
            for t in idx[b]:
                acc += r[t]
        reps.append(acc / total)
    alpha = (1 - level) / 2
    mean = sum(float(r.sum()) for r in rows) / total
    return mean, float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))


def test_matches_loop_reference_with_same_draws():
    values = _table(np.random.default_rng(0), s=3, g=12)
    values[1, :] = np.nan  # a section with no valid gene is skipped
    got = bootstrap_ci(values, n_boot=200, level=0.9, seed=7)
    ref = _loop_reference(values, n_boot=200, level=0.9, seed=7)
    np.testing.assert_allclose(got, ref, atol=1e-12, rtol=0)


def test_single_section_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 1.0, size=60)
    n_boot = 4000
    mean, low, high = bootstrap_ci(x[None, :], n_boot=n_boot, seed=3)
    res = sps.bootstrap(
        (x,), np.mean, n_resamples=n_boot, method="percentile", confidence_level=0.95,
        random_state=np.random.default_rng(4),
    )  # fmt: skip
    # Monte-Carlo standard error of a 2.5% quantile from n_boot replicates, with a safety factor.
    se = x.std() / math.sqrt(x.size)
    mc = se * math.sqrt(0.025 * 0.975 / n_boot) / sps.norm.pdf(sps.norm.ppf(0.025))
    tol = 6 * math.sqrt(2) * mc
    assert mean == pytest.approx(x.mean(), abs=1e-12)
    assert abs(low - res.confidence_interval.low) <= tol
    assert abs(high - res.confidence_interval.high) <= tol


def test_contains_mean_and_is_deterministic():
    values = _table(np.random.default_rng(2))
    a = bootstrap_ci(values, seed=11)
    assert a[1] < a[0] < a[2]
    assert a == bootstrap_ci(values, seed=11)
    assert a != bootstrap_ci(values, seed=12)
    assert a[0] == pytest.approx(np.nanmean(values), abs=1e-12)


def test_narrows_with_more_genes():
    rng = np.random.default_rng(3)
    few = bootstrap_ci(rng.normal(0, 1, size=(3, 20)), seed=0)
    many = bootstrap_ci(rng.normal(0, 1, size=(3, 500)), seed=0)
    assert (many[2] - many[1]) < 0.5 * (few[2] - few[1])


def test_nan_entries_ignored():
    rng = np.random.default_rng(4)
    values = _table(rng, nan_frac=0.0)
    padded = np.concatenate([values, np.full((values.shape[0], 7), np.nan)], axis=1)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(padded, seed=5)
    ragged = [row for row in values]  # the list-of-sections form gives the same answer
    assert bootstrap_ci(ragged, seed=5) == bootstrap_ci(values, seed=5)


def test_all_nan_and_bad_arguments():
    out = bootstrap_ci(np.full((2, 5), np.nan))
    assert len(out) == 3 and all(math.isnan(v) for v in out)
    with pytest.raises(ValueError, match="values has shape"):
        bootstrap_ci(np.ones(5))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(np.ones((2, 5)), level=95)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.ones((2, 5)), n_boot=0)
    with pytest.raises(ValueError, match="Inf"):
        bootstrap_ci(np.array([[1.0, np.inf]]))
