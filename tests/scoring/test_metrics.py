"""bench.scoring.metrics against scipy / scikit-image / numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity

from bench.scoring import metrics
from bench.scoring.metrics import MetricInputError

TOL = 1e-5


def _maps(rng: np.random.Generator, n: int = 3, g: int = 4, h: int = 12, w: int = 10):
    pred = rng.gamma(2.0, 1.0, size=(n, g, h, w))
    hr = 0.5 * pred + rng.gamma(2.0, 1.0, size=(n, g, h, w))
    mask = rng.random((n, h, w)) > 0.3
    return pred, hr, mask


def _gauss2d() -> np.ndarray:
    k = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(k**2) / (2 * 1.5**2))
    g2 = np.outer(g, g)
    return g2 / g2.sum()


def _ssim_zero_pad_ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent SSIM map on u-scale inputs: 2-D correlation, zero padding, population stats."""
    win = _gauss2d()

    def f(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, win, mode="constant", cval=0.0)

    mx, my = f(x), f(y)
    vx, vy, vxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


# --- PCC ------------------------------------------------------------------------------------


def test_pcc_matches_scipy_on_random_masks():
    rng = np.random.default_rng(0)
    pred, hr, mask = _maps(rng, n=4, g=5)
    mask[1] = False
    mask[1, 3, 2:5] = True  # a region with only 3 positions
    out = metrics.pcc(pred, hr, mask, device="cpu")
    assert out.shape == (4, 5) and out.dtype == np.float64
    for i in range(4):
        for g in range(5):
            ref = pearsonr(pred[i, g][mask[i]], hr[i, g][mask[i]])[0]
            assert abs(out[i, g] - ref) <= TOL


def test_pcc_signed_constant_and_excluded():
    rng = np.random.default_rng(1)
    hr = rng.random((1, 4, 8, 8))
    mask = np.ones((1, 8, 8), dtype=bool)
    pred = hr.copy()
    pred[0, 0] = -3.0 * hr[0, 0] + 1.0  # perfectly anti-correlated
    pred[0, 1] = 2.5  # constant prediction
    hr[0, 2] = 7.0  # constant truth
    out = metrics.pcc(pred, hr, mask, device="cpu")
    assert out[0, 0] == pytest.approx(-1.0, abs=1e-12)
    assert out[0, 1] == 0.0
    assert np.isnan(out[0, 2])
    assert out[0, 3] == pytest.approx(1.0, abs=1e-12)


def test_pcc_constant_over_mask_only_and_tiny_masks():
    rng = np.random.default_rng(2)
    pred, hr, _ = _maps(rng, n=3, g=2, h=6, w=6)
    mask = np.zeros((3, 6, 6), dtype=bool)
    mask[0, :2] = True
    hr[0, 0, :2] = 1.25  # constant inside the mask, varies outside
    mask[1, 0, 0] = True  # a single position: excluded
    out = metrics.pcc(pred, hr, mask, device="cpu")
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()


def test_pcc_scale_invariant_constant_rule():
    # Tiny but real variation on a tiny scale is signal, not "constant".
    rng = np.random.default_rng(3)
    pred, hr, mask = _maps(rng, n=2, g=2)
    out = metrics.pcc(pred * 1e-150, hr * 1e-150, mask, device="cpu")
    np.testing.assert_allclose(out, metrics.pcc(pred, hr, mask, device="cpu"), atol=1e-12)


# --- RMSE -----------------------------------------------------------------------------------


def test_rmse_matches_numpy():
    rng = np.random.default_rng(4)
    pred, hr, mask = _maps(rng, n=3, g=4)
    mask[2] = False
    out = metrics.rmse(torch.as_tensor(pred), hr, mask.astype(np.int64), device="cpu")
    for i in range(2):
        for g in range(4):
            ref = np.sqrt(np.mean((pred[i, g][mask[i]] - hr[i, g][mask[i]]) ** 2))
            assert abs(out[i, g] - ref) <= TOL
    assert np.isnan(out[2]).all()


# --- SSIM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 32), (48, 40)])
def test_ssim_map_cropped_matches_skimage(shape):
    rng = np.random.default_rng(5)
    a = rng.random((2, 3, *shape))
    b = np.clip(0.6 * a + 0.4 * rng.random((2, 3, *shape)), 0, 1)
    s = metrics.ssim_map(a, b, np.ones(3), device="cpu")
    assert isinstance(s, torch.Tensor) and s.shape == (2, 3, *shape) and s.dtype == torch.float64
    s = s.numpy()
    for i in range(2):
        for g in range(3):
            ref, full = structural_similarity(
                a[i, g], b[i, g], gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, data_range=1.0, full=True,
            )  # fmt: skip
            crop = s[i, g, 5:-5, 5:-5]
            assert abs(crop.mean() - ref) <= TOL
            assert np.abs(crop - full[5:-5, 5:-5]).max() <= TOL


def test_ssim_masked_matches_zero_padded_reference():
    rng = np.random.default_rng(6)
    n, g, h, w = 2, 3, 20, 17
    data_range = np.array([3.0, 5.0, 8.0])
    pred = rng.gamma(2.0, 1.0, size=(n, g, h, w))
    hr = 0.5 * pred + rng.gamma(2.0, 1.0, size=(n, g, h, w))  # some values exceed r_g: clipped
    mask = np.zeros((n, h, w), dtype=bool)
    mask[0, 2:15, 3:14] = True
    mask[1] = rng.random((h, w)) > 0.4
    out = metrics.ssim(pred, hr, mask, data_range, device="cpu")
    for i in range(n):
        for j in range(g):
            u = np.clip(np.where(mask[i], pred[i, j], 0) / data_range[j], 0, 1)
            v = np.clip(np.where(mask[i], hr[i, j], 0) / data_range[j], 0, 1)
            ref = _ssim_zero_pad_ref(u, v)[mask[i]].mean()
            assert abs(out[i, j] - ref) <= TOL
    # the full map itself (unmasked) against the same reference
    full = metrics.ssim_map(pred, hr, data_range, device="cpu").numpy()
    u, v = np.clip(pred[1, 2] / 8.0, 0, 1), np.clip(hr[1, 2] / 8.0, 0, 1)
    assert np.abs(full[1, 2] - _ssim_zero_pad_ref(u, v)).max() <= TOL


def test_ssim_identical_and_clipping():
    rng = np.random.default_rng(7)
    hr = rng.random((2, 2, 16, 16)) * 2.0
    mask = rng.random((2, 16, 16)) > 0.5
    data_range = np.array([2.0, 2.0])
    np.testing.assert_allclose(
        metrics.ssim(hr, hr, mask, data_range, device="cpu"), 1.0, atol=1e-12
    )
    # Values above r_g clip to 1: where hr sits at the range's top, any larger pred is identical.
    hr2 = np.where(hr > 1.5, 2.0, hr)
    pred2 = np.where(hr > 1.5, 50.0, hr)
    np.testing.assert_allclose(
        metrics.ssim(pred2, hr2, mask, data_range, device="cpu"), 1.0, atol=1e-12
    )
    # ... but not without the clip (a smaller range leaves them different)
    assert (metrics.ssim(pred2, hr2, mask, data_range * 100, device="cpu") < 1 - 1e-6).all()


def test_ssim_ignores_values_outside_mask():
    rng = np.random.default_rng(8)
    pred, hr, mask = _maps(rng)
    r = np.full(4, 10.0)
    noisy = np.where(mask[:, None], pred, 1e3)
    np.testing.assert_allclose(
        metrics.ssim(noisy, hr, mask, r, device="cpu"),
        metrics.ssim(pred, hr, mask, r, device="cpu"),
        atol=1e-12,
    )


# --- score_maps and validation --------------------------------------------------------------


def test_score_maps_agrees_with_single_metrics():
    rng = np.random.default_rng(9)
    pred, hr, mask = _maps(rng)
    r = hr.max(axis=(0, 2, 3))
    out = metrics.score_maps(pred, hr, mask, r, device="cpu")
    assert set(out) == {"pcc", "ssim", "rmse"}
    np.testing.assert_array_equal(out["pcc"], metrics.pcc(pred, hr, mask, device="cpu"))
    np.testing.assert_array_equal(out["ssim"], metrics.ssim(pred, hr, mask, r, device="cpu"))
    np.testing.assert_array_equal(out["rmse"], metrics.rmse(pred, hr, mask, device="cpu"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["pred", "hr"])
def test_nonfinite_inputs_raise(bad, which):
    rng = np.random.default_rng(10)
    pred, hr, mask = _maps(rng)
    (pred if which == "pred" else hr)[0, 1, 2, 3] = bad
    with pytest.raises(MetricInputError, match=rf"^{which} contains 1 NaN/Inf"):
        metrics.score_maps(pred, hr, mask, np.ones(4), device="cpu")


def test_shape_and_range_errors_name_the_argument():
    rng = np.random.default_rng(11)
    pred, hr, mask = _maps(rng)
    with pytest.raises(MetricInputError, match=r"pred has shape \(3, 4, 12, 10\) but hr"):
        metrics.pcc(pred, hr[:, :3], mask, device="cpu")
    with pytest.raises(MetricInputError, match="pred has shape"):
        metrics.rmse(pred[0], hr[0], mask, device="cpu")
    with pytest.raises(MetricInputError, match="mask has shape"):
        metrics.pcc(pred, hr, mask[:, :5], device="cpu")
    with pytest.raises(MetricInputError, match=r"mask .* values other than 0/1"):
        metrics.pcc(pred, hr, mask * 2.5, device="cpu")
    with pytest.raises(MetricInputError, match="data_range has shape"):
        metrics.ssim(pred, hr, mask, np.ones(3), device="cpu")
    with pytest.raises(MetricInputError, match="data_range has 1 non-positive"):
        metrics.ssim(pred, hr, mask, np.array([1.0, 0.0, 2.0, 3.0]), device="cpu")
    with pytest.raises(MetricInputError, match="data_range contains 1 NaN/Inf"):
        metrics.score_maps(pred, hr, mask, np.array([1.0, np.nan, 2.0, 3.0]), device="cpu")
    with pytest.raises(MetricInputError, match="mask has dtype <U1"):
        metrics.pcc(pred, hr, np.full(mask.shape, "a"), device="cpu")
    with pytest.raises(MetricInputError, match="pred has dtype complex128"):
        metrics.pcc(pred + 1j, hr, mask, device="cpu")
    assert issubclass(MetricInputError, ValueError)


def test_default_device_and_float32_inputs():
    assert metrics.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(12)
    pred, hr, mask = _maps(rng)
    p32, h32 = pred.astype(np.float32), torch.as_tensor(hr, dtype=torch.float32)
    ref = metrics.pcc(p32.astype(np.float64), h32.double().numpy(), mask, device="cpu")
    np.testing.assert_array_equal(metrics.pcc(p32, h32, mask, device="cpu"), ref)


def test_default_device_matches_cpu():
    """The default device (CUDA where a GPU is visible, else CPU) matches the CPU."""
    rng = np.random.default_rng(13)
    pred, hr, mask = _maps(rng, n=4, g=6, h=24, w=20)
    r = hr.max(axis=(0, 2, 3))
    cpu = metrics.score_maps(pred, hr, mask, r, device="cpu")
    gpu = metrics.score_maps(pred, hr, mask, r, device=None)
    for key in cpu:
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-6, rtol=0)
