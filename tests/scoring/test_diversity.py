"""bench.scoring.diversity against brute-force numpy / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from bench.scoring import diversity
from bench.scoring.metrics import MetricInputError

TOL = 1e-5


def _samples(rng: np.random.Generator, n: int = 2, k: int = 5, g: int = 3, h: int = 7, w: int = 6):
    hr = rng.gamma(2.0, 1.0, size=(n, g, h, w))
    samples = hr[:, None] + rng.normal(0.0, 0.7, size=(n, k, g, h, w))
    mask = rng.random((n, h, w)) > 0.3
    return samples, hr, mask


def _crps_brute(x: np.ndarray, y: float) -> float:
    k = len(x)
    skill = np.mean(np.abs(x - y))
    if k == 1:
        return float(skill)
    pair = sum(abs(x[a] - x[b]) for a in range(k) for b in range(k) if a != b)
    return float(skill - pair / (2 * k * (k - 1)))


@pytest.mark.parametrize("k", [2, 5, 8])
def test_crps_matches_double_loop(k):
    rng = np.random.default_rng(0)
    samples, hr, mask = _samples(rng, k=k)
    out = diversity.crps(samples, hr, mask, device="cpu")
    assert out.shape == (2, 3) and out.dtype == np.float64
    for i in range(2):
        for g in range(3):
            pos = np.argwhere(mask[i])
            ref = np.mean([_crps_brute(samples[i, :, g, a, b], hr[i, g, a, b]) for a, b in pos])
            assert abs(out[i, g] - ref) <= TOL


def test_crps_k1_is_mae_and_spread_zero():
    rng = np.random.default_rng(1)
    samples, hr, mask = _samples(rng, k=1)
    out = diversity.crps(samples, hr, mask, device="cpu")
    mae = np.array(
        [[np.abs(samples[i, 0, g] - hr[i, g])[mask[i]].mean() for g in range(3)] for i in range(2)]
    )
    np.testing.assert_allclose(out, mae, atol=TOL, rtol=0)
    np.testing.assert_array_equal(diversity.spread(samples, mask, device="cpu"), 0.0)


def test_spread_matches_numpy_and_identical_samples_give_zero():
    rng = np.random.default_rng(2)
    samples, _, mask = _samples(rng, k=6)
    out = diversity.spread(samples, mask, device="cpu")
    for i in range(2):
        for g in range(3):
            ref = samples[i, :, g].std(axis=0, ddof=0)[mask[i]].mean()
            assert abs(out[i, g] - ref) <= TOL
    same = np.repeat(samples[:, :1], 6, axis=1)
    np.testing.assert_allclose(diversity.spread(same, mask, device="cpu"), 0.0, atol=1e-12)
    # the map it averages, position by position
    full = diversity.spread_map(samples, device="cpu")
    np.testing.assert_allclose(full, samples.std(axis=1, ddof=0), rtol=1e-12, atol=1e-12)
    with pytest.raises(MetricInputError, match="samples"):
        diversity.spread_map(samples[0], device="cpu")


def test_spread_skill_matches_numpy():
    rng = np.random.default_rng(3)
    samples, hr, mask = _samples(rng, k=4)
    out = diversity.spread_skill(samples, hr, mask, device="cpu")
    for i in range(2):
        for g in range(3):
            m = mask[i]
            sp = samples[i, :, g].std(axis=0)[m].mean()
            err = np.sqrt(np.mean((samples[i, :, g].mean(axis=0)[m] - hr[i, g][m]) ** 2))
            assert abs(out[i, g] - sp / err) <= TOL
    exact = np.repeat(hr[:, None], 4, axis=1)  # sample mean equals the truth: RMSE 0 -> NaN
    assert np.isnan(diversity.spread_skill(exact, hr, mask, device="cpu")).all()


def test_coverage_matches_numpy_quantile():
    rng = np.random.default_rng(4)
    samples, hr, mask = _samples(rng, k=12)
    hr = hr + rng.normal(0.0, 0.7, size=hr.shape)  # truth as one more draw: ~80% covered
    out = diversity.coverage(samples, hr, mask, device="cpu")
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=1)
    inside = (hr >= lo) & (hr <= hi)
    for i in range(2):
        for g in range(3):
            assert abs(out[i, g] - inside[i, g][mask[i]].mean()) <= TOL
    assert 0.0 < np.nanmean(out) < 1.0  # the test data actually has positions in and out
    with pytest.raises(MetricInputError, match="coverage needs K >= 10"):
        diversity.coverage(samples[:, :9], hr, mask, device="cpu")


def test_diversity_scores_keys():
    rng = np.random.default_rng(5)
    samples, hr, mask = _samples(rng, k=10)
    out = diversity.diversity_scores(samples, hr, mask, device="cpu")
    assert set(out) == {"spread", "crps", "spread_skill", "coverage"}
    np.testing.assert_array_equal(out["crps"], diversity.crps(samples, hr, mask, device="cpu"))
    out8 = diversity.diversity_scores(samples[:, :8], hr, mask, device="cpu")
    assert set(out8) == {"spread", "crps", "spread_skill"}


def test_validation_errors():
    rng = np.random.default_rng(6)
    samples, hr, mask = _samples(rng)
    with pytest.raises(MetricInputError, match="samples has shape"):
        diversity.crps(samples[:, 0], hr, mask, device="cpu")
    with pytest.raises(MetricInputError, match="hr has shape"):
        diversity.crps(samples, hr[:, :2], mask, device="cpu")
    bad = samples.copy()
    bad[0, 1, 0, 0, 0] = np.nan
    with pytest.raises(MetricInputError, match="samples contains 1 NaN/Inf"):
        diversity.spread(bad, mask, device="cpu")


def test_rvd_matches_numpy():
    rng = np.random.default_rng(7)
    samples, hr, mask = _samples(rng)
    pred = samples.mean(axis=1)
    hr[1, 2] = 3.0  # constant truth -> NaN
    out = diversity.rvd(pred, hr, mask, device="cpu")
    for i in range(2):
        for g in range(3):
            if (i, g) == (1, 2):
                assert np.isnan(out[i, g])
                continue
            vp, vt = pred[i, g][mask[i]].var(), hr[i, g][mask[i]].var()
            assert abs(out[i, g] - (vp - vt) ** 2 / vt**2) <= TOL
    flat = np.broadcast_to(hr.mean(axis=(2, 3), keepdims=True), hr.shape)
    np.testing.assert_allclose(diversity.rvd(flat, hr, mask, device="cpu")[0], 1.0, atol=1e-12)


def _collapse_brute(pred: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    rp, rh = [], []
    n, g = pred.shape[:2]
    for gene in range(g):
        for i in range(n):
            for j in range(i + 1, n):
                m = mask[i] & mask[j]
                hi, hj = hr[i, gene][m], hr[j, gene][m]
                if m.sum() < 2 or np.ptp(hi) == 0 or np.ptp(hj) == 0:
                    continue
                rh.append(pearsonr(hi, hj)[0])
                pi, pj = pred[i, gene][m], pred[j, gene][m]
                rp.append(0.0 if np.ptp(pi) == 0 or np.ptp(pj) == 0 else pearsonr(pi, pj)[0])
    return float(np.mean(rp) / np.mean(rh)) if rh else float("nan")


def test_collapse_ratio_matches_brute_force():
    rng = np.random.default_rng(8)
    n, g, h, w = 5, 3, 9, 8
    common = rng.random((1, g, h, w))
    hr = common + 0.8 * rng.random((n, g, h, w)) + 10.0  # offset: exercises the centring
    pred = common + 0.3 * rng.random((n, g, h, w)) + 10.0
    mask = rng.random((n, h, w)) > 0.25
    pred[2, 1] = 4.0  # constant prediction -> PCC 0
    hr[3, 0] = 1.5  # constant truth -> pairs with region 3, gene 0 dropped
    hr[1, 2, 0, :] = 7.0  # constant only where region 1 meets region 4's mask (row 0)
    mask[4] = False
    mask[4, 0, :2] = True  # tiny mask: few shared positions with the others
    ref = _collapse_brute(pred, hr, mask)
    out = diversity.collapse_ratio(pred, hr, mask, device="cpu")
    assert isinstance(out, float)
    assert abs(out - ref) <= TOL


def test_collapse_ratio_detects_identical_predictions():
    rng = np.random.default_rng(9)
    n, g, h, w = 6, 4, 10, 10
    common = rng.random((1, g, h, w))
    hr = common + rng.random((n, g, h, w))  # regions share structure but differ
    pred = np.repeat(rng.random((1, g, h, w)), n, axis=0)  # the same map for every region
    mask = np.ones((n, h, w), dtype=bool)
    assert diversity.collapse_ratio(pred, hr, mask, device="cpu") > 1.5
    assert diversity.collapse_ratio(hr, hr, mask, device="cpu") == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(diversity.collapse_ratio(pred[:1], hr[:1], mask[:1], device="cpu"))
    flat = np.ones_like(hr)
    assert np.isnan(diversity.collapse_ratio(pred, flat, mask, device="cpu"))


def test_default_device_matches_cpu():
    """The default device (CUDA where a GPU is visible, else CPU) matches the CPU."""
    rng = np.random.default_rng(10)
    samples, hr, mask = _samples(rng, n=3, k=10)
    cpu = diversity.diversity_scores(samples, hr, mask, device="cpu")
    gpu = diversity.diversity_scores(samples, hr, mask, device=None)
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-6, rtol=0)
    pred = samples.mean(axis=1)
    np.testing.assert_allclose(
        diversity.rvd(pred, hr, mask, device=None),
        diversity.rvd(pred, hr, mask, device="cpu"),
        atol=1e-6,
        rtol=0,
    )
    a = diversity.collapse_ratio(pred, hr, mask, device=None)
    assert abs(a - diversity.collapse_ratio(pred, hr, mask, device="cpu")) <= 1e-6
