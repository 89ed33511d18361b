"""bench.board.stats: bootstrap intervals (genes; seeds and genes), the paired Wilcoxon test,
Holm."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.board.stats import bootstrap_ci, bootstrap_ci_seeds, holm, paired_wilcoxon


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


# --- seeds x genes bootstrap, paired Wilcoxon, Holm ------------------------------------------


def _seed_loop_reference(t: np.ndarray, n_boot: int, level: float, seed: int):
    """Loops over replicates, consuming bootstrap_ci_seeds' documented draws in order."""
    r, s, g = t.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, r, size=(n_boot, r))
    genes = [rng.integers(0, g, size=(n_boot, g)) for _ in range(s)]
    reps = []
    for b in range(n_boot):
        picked = [t[i, sec, j] for sec in range(s) for i in seeds[b] for j in genes[sec][b]]
        picked = [v for v in picked if not np.isnan(v)]
        reps.append(sum(picked) / len(picked))
    alpha = (1 - level) / 2
    return (
        float(np.nanmean(t)),
        float(np.quantile(reps, alpha)),
        float(np.quantile(reps, 1 - alpha)),
    )


def test_seed_bootstrap_matches_loop_reference():
    rng = np.random.default_rng(5)
    t = np.stack([_table(rng, s=3, g=8) for _ in range(3)])
    got = bootstrap_ci_seeds(t, n_boot=150, level=0.9, seed=2)
    np.testing.assert_allclose(got, _seed_loop_reference(t, 150, 0.9, 2), atol=1e-12, rtol=0)


def test_seed_bootstrap_widens_with_seed_variation_and_reduces_to_genes():
    rng = np.random.default_rng(6)
    base = _table(rng, s=2, g=40, nan_frac=0.0)
    same = np.stack([base, base, base])
    shifted = np.stack([base - 0.3, base, base + 0.3])  # seeds disagree by a constant
    _, lo1, hi1 = bootstrap_ci_seeds(same, n_boot=2000, seed=0)
    _, lo2, hi2 = bootstrap_ci_seeds(shifted, n_boot=2000, seed=0)
    assert hi2 - lo2 > 2 * (hi1 - lo1)
    # one seed: only genes are resampled, like bootstrap_ci on the same table
    m1, l1, h1 = bootstrap_ci_seeds(base[None], n_boot=4000, seed=1)
    m2, l2, h2 = bootstrap_ci(base, n_boot=4000, seed=1)
    assert m1 == pytest.approx(m2) and l1 == pytest.approx(l2, abs=0.01)
    assert h1 == pytest.approx(h2, abs=0.01)
    with pytest.raises(ValueError, match="R, S, G"):
        bootstrap_ci_seeds(base)


def test_paired_wilcoxon_agrees_with_scipy_on_aligned_pairs():
    rng = np.random.default_rng(7)
    a = rng.normal(0.5, 0.1, size=(2, 25))
    b = a - rng.normal(0.03, 0.05, size=a.shape)
    a[0, 3] = np.nan
    b[1, 7] = np.nan
    keep = ~(np.isnan(a) | np.isnan(b))
    expected = sps.wilcoxon(a[keep], b[keep]).pvalue
    assert paired_wilcoxon(a, b) == pytest.approx(expected, rel=1e-12)
    assert paired_wilcoxon(a, b) < 0.05  # a is better by 0.03 on average
    assert paired_wilcoxon(a, a) == 1.0
    # a textbook case: all 8 differences positive and distinct: exact two-sided p = 2 / 2^8
    x = np.arange(1.0, 9.0)
    assert paired_wilcoxon(x + np.arange(1, 9) * 0.1, x) == pytest.approx(2 / 2**8)
    with pytest.raises(ValueError, match="paired"):
        paired_wilcoxon(a, b[:1])


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.5 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.5
    p = [0.03, 0.5, 0.01, 0.02, np.nan]
    np.testing.assert_allclose(holm(p), [0.06, 0.5, 0.04, 0.06, np.nan])
    np.testing.assert_allclose(holm([0.4, 0.6]), [0.8, 0.8])  # min(1, 2 * 0.6) then monotone
    assert holm([]).size == 0
