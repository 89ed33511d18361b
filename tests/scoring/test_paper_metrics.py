"""The `paper` metric set: the release's scoring, checked on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from bench.scoring.paper_metrics import nonzero_mean, paper_scores


def test_affine_copies_score_perfectly_and_sign_is_dropped():
    rng = np.random.default_rng(0)
    hr = rng.gamma(2.0, 1.0, (2, 3, 16, 16))
    for pred in (2 * hr + 1, -hr):
        out = paper_scores(pred, hr)
        np.testing.assert_allclose(out["paper_pcc"], 1.0, atol=1e-12)  # |r|, never signed
    out = paper_scores(2 * hr + 1, hr)
    np.testing.assert_allclose(out["paper_rmse"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["paper_ssim"], 1.0, atol=1e-12)


def test_ssim_uses_225_not_255_and_the_uint8_range():
    rng = np.random.default_rng(1)
    pred, hr = rng.random((1, 1, 20, 20)), rng.random((1, 1, 20, 20))
    scaled = [(m - m.min()) / (m.max() - m.min()) for m in (pred[0, 0], hr[0, 0])]
    u8 = [(m * 225).astype(np.uint8) for m in scaled]
    assert max(a.max() for a in u8) == 225
    expected = structural_similarity(*u8, gaussian_weights=True, sigma=1.5, data_range=255)
    assert paper_scores(pred, hr)["paper_ssim"][0, 0] == pytest.approx(expected, abs=1e-12)
    rmse = np.sqrt(np.mean((scaled[0] - scaled[1]) ** 2))
    assert paper_scores(pred, hr)["paper_rmse"][0, 0] == pytest.approx(rmse, abs=1e-12)


def test_constant_maps_and_the_nonzero_mean():
    hr = np.zeros((1, 2, 12, 12))
    hr[0, 1, 2:4, 2:4] = 3.0
    pred = np.ones_like(hr)
    out = paper_scores(pred, hr)
    assert np.isnan(out["paper_pcc"]).all()  # a constant map has no correlation
    assert np.isnan(paper_scores(pred[..., :8, :8], hr[..., :8, :8])["paper_ssim"]).all()
    assert nonzero_mean(np.array([[0.0, 0.5], [np.nan, 0.7]])) == pytest.approx(0.6)
    assert np.isnan(nonzero_mean(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="N, G, H, W"):
        paper_scores(pred[0], hr[0])
