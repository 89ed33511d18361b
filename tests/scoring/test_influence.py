"""bench.scoring.influence against brute-force leave-one-position-out refits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bench.scoring import influence, metrics

ATOL = 1e-10


def _mean_pcc(pred: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float:
    r = metrics.pcc(pred, hr, mask, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slice
        return float(np.nanmean(r))


def _brute(pred: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    base = _mean_pcc(pred, hr, mask)
    out = np.full(mask.shape, np.nan)
    for n, i, j in np.argwhere(mask):
        m = mask.copy()
        m[n, i, j] = False
        out[n, i, j] = _mean_pcc(pred, hr, m) - base
    return out


def _maps(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, g, h, w = 2, 3, 6, 6
    hr = rng.gamma(2.0, 1.0, size=(n, g, h, w)) + 3.0
    pred = hr + rng.normal(0.0, 1.0, size=hr.shape)
    mask = rng.random((n, h, w)) > 0.3
    # gene 1 of region 0: truth constant except at one masked position -> removing it excludes
    # the pair (denominator changes)
    hr[0, 1] = 2.5
    first = tuple(np.argwhere(mask[0])[0])
    hr[0, 1][first] = 4.0
    pred[1, 2] = 1.7  # constant prediction -> PCC 0, before and after every removal
    # gene 0 of region 1: prediction constant except at one position -> becomes constant
    pred[1, 0] = 0.5
    pred[1, 0][tuple(np.argwhere(mask[1])[1])] = 2.0
    return pred, hr, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    pred, hr, mask = _maps(seed)
    out = influence.pcc_influence(pred, hr, mask)
    assert out.shape == mask.shape and out.dtype == np.float64
    ref = _brute(pred, hr, mask)
    assert np.isnan(out[~mask]).all()
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0, equal_nan=True)
    # the excluded-after-removal case really occurs (the pair leaves the mean)
    first = tuple(np.argwhere(mask[0])[0])
    m = mask.copy()
    m[(0, *first)] = False
    assert np.isfinite(metrics.pcc(pred, hr, mask, device="cpu")[0, 1])
    assert np.isnan(metrics.pcc(pred, hr, m, device="cpu")[0, 1])
    assert np.isfinite(out[(0, *first)])


def test_tiny_and_empty_masks_match_brute_force():
    pred, hr, mask = _maps(3)
    mask[0] = False
    mask[0, 2, 3] = mask[0, 4, 1] = True  # 2 positions: removing either excludes region 0
    mask[1] = False
    mask[1, 0, 0] = mask[1, 0, 1] = mask[1, 5, 5] = True
    ref = _brute(pred, hr, mask)
    np.testing.assert_allclose(influence.pcc_influence(pred, hr, mask), ref, atol=ATOL, rtol=0,
                               equal_nan=True)  # fmt: skip
    mask[1] = False  # only region 0 left: removing a position leaves no finite pair -> NaN
    out = influence.pcc_influence(pred, hr, mask)
    np.testing.assert_allclose(out, _brute(pred, hr, mask), atol=ATOL, rtol=0, equal_nan=True)
    assert np.isnan(out).all()


def test_max_influence():
    a = np.full((1, 2, 2), np.nan)
    a[0, 0, 0], a[0, 1, 1] = 0.2, -0.05
    b = np.full((1, 2, 2), np.nan)
    b[0, 0, 0], b[0, 1, 1], b[0, 0, 1] = -0.1, -0.5, 0.01
    # seed means: 0.05, -0.275, 0.01 (only b) -> 0.275
    assert influence.max_influence([a, b]) == pytest.approx(0.275, abs=1e-15)
    assert influence.max_influence(a) == pytest.approx(0.2, abs=1e-15)
    assert np.isnan(influence.max_influence(np.full((1, 2, 2), np.nan)))
    assert np.isnan(influence.max_influence([]))
