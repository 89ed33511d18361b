"""bench.board.stats for a folded benchmark: the hierarchical (regions, then genes) bootstrap, the
intraclass correlation and the detectable difference, checked against simulations with a known
answer (issue 24)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.board.stats import (
    bootstrap_ci,
    detectable_difference,
    hierarchical_bootstrap_ci,
    intraclass_correlation,
    paired_wilcoxon,
)

Z80 = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # z_{1 - alpha/2} + z_{power} at the defaults


# --- hierarchical bootstrap ---------------------------------------------------------------------


def _loop_reference(values, region_ids, n_boot, level, seed):
    """Loops over replicates, expanding hierarchical_bootstrap_ci's documented draws into the
    drawn (seed, region copy, pair) entries."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    labels = np.asarray(region_ids)
    keep = (~np.isnan(v)).any(axis=0)
    v, labels = v[:, keep], labels[keep]
    regions = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    s, r = v.shape[0], len(regions)
    seed_rng, rng = (np.random.default_rng(x) for x in np.random.SeedSequence(seed).spawn(2))
    w = seed_rng.multinomial(s, [1 / s] * s, size=n_boot)
    k = rng.multinomial(r, [1 / r] * r, size=n_boot)
    c = [rng.multinomial(k[:, i] * cols.size, [1 / cols.size] * cols.size) for i, cols in
         enumerate(regions)]  # fmt: skip
    reps = []
    for b in range(n_boot):
        picked = []
        for i, cols in enumerate(regions):
            for g, times in zip(cols, c[i][b], strict=True):
                for sd in range(s):
                    picked += [v[sd, g]] * int(times * w[b, sd])
        picked = [x for x in picked if not np.isnan(x)]
        if picked:
            reps.append(sum(picked) / len(picked))
    alpha = (1 - level) / 2
    return (
        float(np.nanmean(v)),
        float(np.quantile(reps, alpha)),
        float(np.quantile(reps, 1 - alpha)),
    )


def test_hierarchical_matches_loop_reference():
    rng = np.random.default_rng(0)
    labels = np.array(["b", "a", "c", "a", "b", "b", "c", "a", "a", "d"])  # uneven, unsorted
    v = rng.normal(0.5, 0.2, size=labels.size)
    v[[2, 9]] = np.nan  # region "d" has no valid pair and is dropped
    got = hierarchical_bootstrap_ci(v, labels, n_boot=120, level=0.9, seed=3)
    np.testing.assert_allclose(got, _loop_reference(v, labels, 120, 0.9, 3), atol=1e-12, rtol=0)
    seeds = np.stack([v, v + rng.normal(0, 0.1, size=v.size)])
    seeds[1, 4] = np.nan  # valid under one seed only: kept with that seed's score
    got = hierarchical_bootstrap_ci(seeds, labels, n_boot=120, level=0.9, seed=3)
    ref = _loop_reference(seeds, labels, 120, 0.9, 3)
    np.testing.assert_allclose(got, ref, atol=1e-12, rtol=0)


def _simulate(rng, n_regions, n_genes, sd_region, sd_gene, mean=0.5):
    region = np.repeat(np.arange(n_regions), n_genes)
    effects = rng.normal(0, sd_region, n_regions)[region]
    return mean + effects + rng.normal(0, sd_gene, region.size), region


def test_hierarchical_covers_true_mean_where_genes_only_does_not():
    """Regions with random effects (sd_r) and gene noise (sd_g): the true mean is known. The
    two-stage interval covers it at about the nominal rate; the genes-only interval (regions
    fixed) misses the region-to-region variation and under-covers."""
    rng = np.random.default_rng(1)
    n_sims, n_regions, n_genes = 400, 16, 20
    hier = genes_only = 0
    for i in range(n_sims):
        v, region = _simulate(rng, n_regions, n_genes, sd_region=0.1, sd_gene=0.2)
        _, lo, hi = hierarchical_bootstrap_ci(v, region, n_boot=400, seed=i)
        hier += lo <= 0.5 <= hi
        _, lo, hi = bootstrap_ci(v.reshape(n_regions, n_genes), n_boot=400, seed=i)
        genes_only += lo <= 0.5 <= hi
    print(f"coverage: hierarchical {hier / n_sims}, genes only {genes_only / n_sims}")
    assert 0.90 <= hier / n_sims <= 0.99
    assert genes_only / n_sims < 0.85


def test_hierarchical_deterministic_and_seed_axis():
    rng = np.random.default_rng(2)
    v, region = _simulate(rng, 6, 15, 0.1, 0.2)
    a = hierarchical_bootstrap_ci(v, region, n_boot=500, seed=4)
    assert a[1] < a[0] < a[2]
    assert a == hierarchical_bootstrap_ci(v, region, n_boot=500, seed=4)
    assert a != hierarchical_bootstrap_ci(v, region, n_boot=500, seed=5)
    assert a[0] == pytest.approx(v.mean(), abs=1e-12)
    # identical seeds: exactly the one-seed answer (separate generators for seeds and pairs)
    stacked = hierarchical_bootstrap_ci(np.stack([v, v, v]), region, n_boot=500, seed=4)
    np.testing.assert_allclose(stacked, a, rtol=1e-12, atol=0)
    # seeds that disagree by a constant widen the interval
    shifted = np.stack([v - 0.3, v, v + 0.3])
    _, lo, hi = hierarchical_bootstrap_ci(shifted, region, n_boot=500, seed=4)
    assert hi - lo > 2 * (a[2] - a[1])


def test_hierarchical_nan_pairs_dropped_and_single_region():
    rng = np.random.default_rng(3)
    v, region = _simulate(rng, 5, 12, 0.1, 0.2)
    padded = np.concatenate([v, np.full(7, np.nan)])
    labels = np.concatenate([region, [0, 1, 1, 2, 9, 9, 9]])  # region 9: all NaN, dropped
    assert hierarchical_bootstrap_ci(padded, labels, seed=6) == hierarchical_bootstrap_ci(
        v, region, seed=6
    )
    # one region: the region draw is the identity, only genes are resampled (bootstrap_ci)
    x = rng.normal(0.5, 0.2, size=60)
    n_boot = 4000
    m1, l1, h1 = hierarchical_bootstrap_ci(x, np.zeros(60, int), n_boot=n_boot, seed=1)
    m2, l2, h2 = bootstrap_ci(x[None, :], n_boot=n_boot, seed=1)
    se = x.std() / math.sqrt(x.size)
    mc = se * math.sqrt(0.025 * 0.975 / n_boot) / sps.norm.pdf(sps.norm.ppf(0.025))
    assert m1 == pytest.approx(m2, abs=1e-12)
    assert abs(l1 - l2) <= 6 * math.sqrt(2) * mc and abs(h1 - h2) <= 6 * math.sqrt(2) * mc


def test_hierarchical_all_equal_all_nan_and_bad_arguments():
    assert hierarchical_bootstrap_ci(np.full(12, 0.3), np.arange(12) % 3) == pytest.approx(
        (0.3, 0.3, 0.3), abs=1e-12
    )
    out = hierarchical_bootstrap_ci(np.full(4, np.nan), [0, 0, 1, 1])
    assert len(out) == 3 and all(math.isnan(x) for x in out)
    with pytest.raises(ValueError, match=r"values has shape \(2, 2, 2\)"):
        hierarchical_bootstrap_ci(np.ones((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="one region label per"):
        hierarchical_bootstrap_ci(np.ones(5), [0, 1])
    with pytest.raises(ValueError, match="one region label per"):
        hierarchical_bootstrap_ci(np.ones(4), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_boot"):
        hierarchical_bootstrap_ci(np.ones(4), [0, 0, 1, 1], n_boot=0)
    with pytest.raises(ValueError, match="level"):
        hierarchical_bootstrap_ci(np.ones(4), [0, 0, 1, 1], level=95)
    with pytest.raises(ValueError, match="Inf"):
        hierarchical_bootstrap_ci(np.array([1.0, np.inf]), [0, 1])


# --- intraclass correlation and detectable difference ------------------------------------------


def test_icc_recovers_simulated_value_with_uneven_regions():
    rng = np.random.default_rng(4)
    sizes = rng.integers(5, 40, size=300)
    region = np.repeat(np.arange(sizes.size), sizes)
    x = rng.normal(0, 0.6, sizes.size)[region] + rng.normal(0, 0.8, region.size)
    truth = 0.36 / (0.36 + 0.64)
    assert intraclass_correlation(x, region) == pytest.approx(truth, abs=0.05)
    assert intraclass_correlation(rng.normal(size=400), np.arange(400) % 40) < 0.05
    assert math.isnan(intraclass_correlation(np.ones(6), np.arange(6) % 2))  # no variation
    assert math.isnan(intraclass_correlation(np.arange(5.0), np.zeros(5)))  # one region
    assert math.isnan(intraclass_correlation(np.arange(5.0), np.arange(5)))  # one pair each


def test_detectable_difference_formula_by_hand():
    rng = np.random.default_rng(5)
    d = rng.normal(0.01, 0.05, size=120)
    region = np.arange(120) // 12
    sd = d.std(ddof=1)
    assert detectable_difference(d, test="t") == pytest.approx(Z80 * sd / math.sqrt(120))
    wil = detectable_difference(d)
    assert wil == pytest.approx(Z80 * sd / math.sqrt(120 * 3 / math.pi))
    icc = intraclass_correlation(d, region)
    n_eff = 120 / (1 + 11 * icc) * 3 / math.pi
    assert detectable_difference(d, region_ids=region) == pytest.approx(
        Z80 * sd / math.sqrt(n_eff)
    )
    z = sps.norm.ppf(1 - 0.01 / 2) + sps.norm.ppf(0.9)
    assert detectable_difference(d, power=0.9, alpha=0.01) == pytest.approx(z / Z80 * wil)
    with_nan = np.concatenate([d, [np.nan, np.nan]])
    assert detectable_difference(with_nan) == wil
    labels = np.concatenate([region, [0, 99]])
    assert detectable_difference(with_nan, region_ids=labels) == detectable_difference(
        d, region_ids=region
    )


def test_detectable_difference_edge_cases_and_bad_arguments():
    assert detectable_difference(np.full(30, 0.02)) == 0.0
    assert detectable_difference(np.full(30, 0.02), region_ids=np.arange(30) % 3) == 0.0
    assert math.isnan(detectable_difference(np.array([0.1, np.nan])))
    d = np.random.default_rng(6).normal(size=40)
    # one region: the ICC cannot be estimated, so no design effect
    assert detectable_difference(d, region_ids=np.zeros(40)) == detectable_difference(d)
    with pytest.raises(ValueError, match=r"differences has shape \(4, 10\)"):
        detectable_difference(d.reshape(4, 10))
    with pytest.raises(ValueError, match="one region label per"):
        detectable_difference(d, region_ids=np.zeros(39))
    with pytest.raises(ValueError, match="power"):
        detectable_difference(d, power=80)
    with pytest.raises(ValueError, match="alpha"):
        detectable_difference(d, alpha=0.0)
    with pytest.raises(ValueError, match="test"):
        detectable_difference(d, test="sign")
    with pytest.raises(ValueError, match="Inf"):
        detectable_difference(np.array([0.1, np.inf]))


def test_power_at_detectable_difference_independent_pairs():
    """Each simulation plans from its own pilot sample (delta 0), then draws data with the true
    mean difference set to the pilot's MDE and runs the actual paired_wilcoxon at alpha 0.05: the
    rejection rate is the power, about 0.8."""
    rng = np.random.default_rng(7)
    n_sims, n, sd = 400, 200, 0.05
    base = rng.normal(0.5, 0.1, n)  # the best method's PCC per pair
    hits = hits_t = 0
    for _ in range(n_sims):
        mde = detectable_difference(rng.normal(0, sd, n))
        hits += paired_wilcoxon(base + rng.normal(mde, sd, n), base) < 0.05
        mde_t = detectable_difference(rng.normal(0, sd, n), test="t")
        hits_t += sps.ttest_1samp(rng.normal(mde_t, sd, n), 0).pvalue < 0.05
    print(f"power, independent pairs: signed-rank {hits / n_sims}, t-test {hits_t / n_sims}")
    assert 0.70 <= hits / n_sims <= 0.90
    assert 0.70 <= hits_t / n_sims <= 0.90


def test_power_at_detectable_difference_clustered_pairs():
    """Differences clustered in regions: d = delta + u_region + e_pair. The naive MDE (no
    region_ids) over-promises: at it the pooled paired_wilcoxon has power clearly below 0.8. The
    design-effect MDE is right for a test that respects the clustering (the signed-rank test on
    the region means of d). The pooled test itself is anti-conservative here: with no difference
    it rejects far more often than alpha (its statistic's variance is about the design effect)."""
    rng = np.random.default_rng(8)
    n_sims, n_regions, n_genes, sd_u, sd_e = 400, 40, 15, 0.03, 0.05
    region = np.repeat(np.arange(n_regions), n_genes)
    base = rng.normal(0.5, 0.1, region.size)

    def draw(delta: float) -> np.ndarray:
        return delta + rng.normal(0, sd_u, n_regions)[region] + rng.normal(0, sd_e, region.size)

    naive = design = null = 0
    for _ in range(n_sims):
        pilot = draw(0.0)
        naive += paired_wilcoxon(base + draw(detectable_difference(pilot)), base) < 0.05
        d = draw(detectable_difference(pilot, region_ids=region))
        design += sps.wilcoxon(d.reshape(n_regions, n_genes).mean(axis=1)).pvalue < 0.05
        null += paired_wilcoxon(base + draw(0.0), base) < 0.05
    print(
        f"power, clustered: pooled test at naive MDE {naive / n_sims}, region-mean test at "
        f"design-effect MDE {design / n_sims}; pooled test's rejection rate at no difference "
        f"{null / n_sims}"
    )
    assert naive / n_sims < 0.75
    assert 0.70 <= design / n_sims <= 0.90
    assert null / n_sims > 0.15
