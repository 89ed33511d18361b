"""bench.scoring.diversity against brute-force numpy / scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, zoom
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
    assert set(out) == {"spread", "crps", "spread_skill", "draw_diversity", "coverage"}
    np.testing.assert_array_equal(out["crps"], diversity.crps(samples, hr, mask, device="cpu"))
    out8 = diversity.diversity_scores(samples[:, :8], hr, mask, device="cpu")
    assert set(out8) == {"spread", "crps", "spread_skill", "draw_diversity"}
    np.testing.assert_array_equal(
        out["draw_diversity"], diversity.draw_diversity(samples, mask, device="cpu")
    )


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


# --- input response and draw diversity -----------------------------------------------------------


def _is_const(v: np.ndarray) -> bool:
    """metrics' constant-map rule: population variance <= CONSTANT_RTOL * mean square."""
    return bool(np.var(v) <= 1e-12 * np.mean(v * v))


def _pcc_ref(x: np.ndarray, y: np.ndarray) -> float:
    """PCC(x, y) with metrics' conventions: y constant or < 2 values -> NaN; x constant -> 0."""
    if len(y) < 2 or _is_const(y):
        return float("nan")
    return 0.0 if _is_const(x) else float(pearsonr(x, y)[0])


def _pool(hr: np.ndarray, hr_mask: np.ndarray, k: int):
    """LR maps as the benchmark makes them: means of k x k blocks over in-tissue positions."""
    n, g, hh, ww = hr.shape
    m = hr_mask[:, None].astype(float)
    s = (hr * m).reshape(n, g, hh // k, k, ww // k, k).sum(axis=(3, 5))
    c = m.reshape(n, 1, hh // k, k, ww // k, k).sum(axis=(3, 5))
    return s / np.maximum(c, 1.0), c[:, 0] > 0, hr_mask


def _input_response_brute(pred, lr, lr_mask, hr_mask) -> float:
    n, g, hh, ww = pred.shape
    k = hh // lr.shape[2]
    pooled, defined, _ = _pool(pred, hr_mask, k)
    ok = lr_mask & defined
    vals = []
    for gene in range(g):
        for i in range(n):
            for j in range(i + 1, n):
                m = ok[i] & ok[j]
                if m.sum() < 3:
                    continue
                r = _pcc_ref(
                    pooled[i, gene][m] - pooled[j, gene][m], lr[i, gene][m] - lr[j, gene][m]
                )
                if np.isfinite(r):
                    vals.append(r)
    return float(np.mean(vals)) if vals else float("nan")


def test_input_response_matches_brute_force():
    rng = np.random.default_rng(8)
    n, g, k, h, w = 6, 4, 2, 5, 4
    pred = rng.random((n, g, k * h, k * w)) + 10.0  # offset: exercises the centring
    hr_mask = rng.random((n, k * h, k * w)) > 0.2
    lr = rng.random((n, g, h, w)) + 5.0
    lr_mask = rng.random((n, h, w)) > 0.15
    hr_mask[0, :k, :k] = False
    lr_mask[0, 0, 0] = True  # an LR spot whose block has no in-tissue HR position: not used
    pred[2], hr_mask[2] = pred[1], hr_mask[1]  # identical pooled predictions: PCC 0
    lr[3, 1] = lr[4, 1]  # identical inputs for gene 1: pair (3, 4) excluded
    lr[5, 2] = lr[0, 2] + 1.0  # inputs differ by a constant: pair (0, 5) excluded
    lr_mask[4] = False
    lr_mask[4, 0, :3] = True  # few shared positions: pairs with < 3 excluded
    ref = _input_response_brute(pred, lr, lr_mask, hr_mask)
    out = diversity.input_response(pred, lr, lr_mask, hr_mask, device="cpu")
    assert isinstance(out, float)
    assert abs(out - ref) <= 1e-12


def test_input_response_units():
    rng = np.random.default_rng(9)
    n, g, k, h = 5, 3, 2, 6
    hr = rng.random((n, g, k * h, k * h))
    hr_mask = rng.random((n, k * h, k * h)) > 0.1
    lr, lr_mask, _ = _pool(hr, hr_mask, k)
    pred = hr + 0.5 * rng.random(hr.shape)
    a = diversity.input_response(pred, lr, lr_mask, hr_mask, device="cpu")
    level = 3.0 * rng.random((1, g, 1, 1))  # a constant per gene, common to every region
    b = diversity.input_response(pred + level, lr, lr_mask, hr_mask, device="cpu")
    assert abs(a - b) <= 1e-10
    # any map common to every region's prediction, where the tissue fills the blocks alike
    full = np.ones_like(hr_mask)
    common = 3.0 * rng.random((1, g, k * h, k * h))
    a = diversity.input_response(pred, lr, lr_mask, full, device="cpu")
    b = diversity.input_response(pred + common, lr, lr_mask, full, device="cpu")
    assert abs(a - b) <= 1e-10
    assert diversity.input_response(hr, lr, lr_mask, hr_mask, device="cpu") == pytest.approx(1.0)
    assert np.isnan(diversity.input_response(pred[:1], lr[:1], lr_mask[:1], hr_mask[:1]))
    same = np.broadcast_to(pred[:1], pred.shape)  # one output for every input, same tissue
    assert diversity.input_response(same, lr, lr_mask, full, device="cpu") == 0.0
    with pytest.raises(MetricInputError, match="k-fold upsampling"):
        diversity.input_response(pred[..., :-1], lr, lr_mask, hr_mask[..., :-1], device="cpu")
    with pytest.raises(MetricInputError, match="lr has shape"):
        diversity.input_response(pred, lr[:, :2], lr_mask, hr_mask, device="cpu")


def _draw_diversity_brute(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n, k, g = x.shape[:3]
    out = np.full((n, g), np.nan)
    for i in range(n):
        for gene in range(g):
            v = x[i, :, gene][:, mask[i]]  # (K, c)
            if v.shape[1] < 2 or k < 2:
                continue
            const = [_is_const(d) for d in v]
            rs = []
            for a in range(k):
                for b in range(a + 1, k):
                    if const[a] and const[b]:
                        rs.append(1.0)
                    elif const[a] or const[b]:
                        rs.append(0.0)
                    else:
                        rs.append(pearsonr(v[a], v[b])[0])
            out[i, gene] = 1.0 - np.mean(rs)
    return out


def test_draw_diversity_matches_brute_force():
    rng = np.random.default_rng(11)
    samples, _, mask = _samples(rng, n=3, k=6)
    samples[0, 2, 0] = 4.0  # one constant draw
    samples[1, 1, 1], samples[1, 4, 1] = 2.0, 3.0  # two constant draws (different levels)
    samples[2, :, 2] = 1.5  # every draw constant -> 0
    mask[2] = False
    mask[2, 1, 1:4] = True
    out = diversity.draw_diversity(samples, mask, device="cpu")
    assert out.shape == (3, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, _draw_diversity_brute(samples, mask), atol=1e-12, rtol=0)
    assert out[2, 2] == 0.0


def test_draw_diversity_identical_draws_and_nan_cases():
    rng = np.random.default_rng(12)
    samples, _, mask = _samples(rng, n=2, k=7)
    same = np.repeat(samples[:, :1], 7, axis=1)
    np.testing.assert_allclose(diversity.draw_diversity(same, mask, device="cpu"), 0.0, atol=1e-12)
    assert np.isnan(diversity.draw_diversity(samples[:, :1], mask, device="cpu")).all()  # K = 1
    mask[1] = False
    out = diversity.draw_diversity(samples, mask, device="cpu")
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()


def _field(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth random maps, unit std per map."""
    f = gaussian_filter(rng.normal(size=shape), sigma=(0, 0, 2.0, 2.0))
    return (f - f.mean(axis=(-2, -1), keepdims=True)) / f.std(axis=(-2, -1), keepdims=True)


def _world(seed: int, n: int = 8, g: int = 4, k: int = 2, h: int = 8):
    """Truth = smooth expected map (a part shared by the regions + a part of each) + noise of
    the same size; LR by pooling the truth over k x k blocks of in-tissue positions."""
    rng = np.random.default_rng(seed)
    smooth = 3.0 + _field(rng, (1, g, k * h, k * h)) + _field(rng, (n, g, k * h, k * h))
    truth = smooth + rng.normal(0.0, 1.0, size=smooth.shape)
    hr_mask = rng.random((n, k * h, k * h)) > 0.1
    lr, lr_mask, _ = _pool(truth, hr_mask, k)
    return rng, smooth, lr, lr_mask, hr_mask


def _flags(draws: np.ndarray, lr, lr_mask, hr_mask) -> tuple[float, float]:
    resp = diversity.input_response(draws.mean(axis=1), lr, lr_mask, hr_mask, device="cpu")
    div = float(np.nanmean(diversity.draw_diversity(draws, hr_mask, device="cpu")))
    return resp, div


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_generators_are_flagged_as_expected(seed):
    rng, smooth, lr, lr_mask, hr_mask = _world(seed)
    n, g, hh, ww = smooth.shape
    k_draws = 16
    noise = rng.normal(0.0, 1.0, size=(n, k_draws, g, hh, ww))
    # (a) ignores its input: one map for every region, independent noise per draw
    ignores = smooth.mean(axis=0, keepdims=True)[:, None] + noise
    resp, div = _flags(ignores, lr, lr_mask, hr_mask)
    assert resp < diversity.COLLAPSE_BELOW and div >= diversity.DIVERSE_ABOVE
    # (b) zero spread: K identical draws of the truth's smooth part
    frozen = np.repeat(smooth[:, None], k_draws, axis=1)
    resp, div = _flags(frozen, lr, lr_mask, hr_mask)
    assert resp >= diversity.COLLAPSE_BELOW and div < diversity.DIVERSE_ABOVE
    # (c) faithful: the truth's expected map + independent noise of the truth's size
    faithful = smooth[:, None] + noise
    resp, div = _flags(faithful, lr, lr_mask, hr_mask)
    assert resp >= diversity.COLLAPSE_BELOW and div >= diversity.DIVERSE_ABOVE
    # (d) deterministic upsampling of the LR input: nearest (block means reproduce the LR) and
    # cubic spline
    nearest = np.repeat(np.repeat(lr, 2, axis=2), 2, axis=3)
    assert diversity.input_response(nearest, lr, lr_mask, hr_mask, device="cpu") == pytest.approx(
        1.0
    )
    cubic = zoom(lr, (1, 1, 2, 2), order=3)
    assert diversity.input_response(cubic, lr, lr_mask, hr_mask) >= diversity.COLLAPSE_BELOW


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
    lr, lr_mask, hr_mask = _pool(hr, mask, 1)  # k = 1: the LR grid is the HR grid
    a = diversity.input_response(pred, lr, lr_mask, hr_mask, device=None)
    assert abs(a - diversity.input_response(pred, lr, lr_mask, hr_mask, device="cpu")) <= 1e-6
