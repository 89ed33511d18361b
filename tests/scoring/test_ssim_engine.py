"""The SSIM engine's two forms (compiled CPU kernel, batched torch) and the compiled PCC / RMSE
moments against float64 references, at large, small and odd sizes, with masks that have holes
and touch the edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from bench.scoring import metrics, ssim_engine, tensors
from bench.scoring.ssim_engine import kernels, ssim_maps, ssim_maps_torch

TOL = 1e-5


@pytest.fixture(params=["compiled", "torch"])
def engine(request, monkeypatch):
    """Run the test with the compiled CPU kernels, then with the torch ones."""
    if request.param == "compiled":
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(tensors, "compiled", lambda kernel: None)
    assert kernels("cpu") == request.param
    return request.param


def _window() -> np.ndarray:
    k = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(k**2) / (2 * 1.5**2))
    g2 = np.outer(g, g)
    return g2 / g2.sum()


def _ssim_ref(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """SSIM map of u-scale maps: 2-D correlation with zero padding, population statistics."""

    def f(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, _window(), mode="constant", cval=0.0)

    mx, my = f(u), f(v)
    vx, vy, vxy = f(u * u) - mx**2, f(v * v) - my**2, f(u * v) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def _case(rng: np.random.Generator, n: int, g: int, h: int, w: int):
    """Expression-like maps (some above the range and some below 0: clipped), per-gene ranges,
    masks with holes (region 0), touching every edge (region 1: a border frame), and empty
    (region 2)."""
    pred = rng.gamma(2.0, 1.0, size=(n, g, h, w))
    hr = 0.5 * pred + rng.gamma(2.0, 1.0, size=(n, g, h, w))
    pred[..., ::3] -= 1.0
    data_range = rng.uniform(3.0, 8.0, size=g)
    mask = rng.random((n, h, w)) > 0.35
    if n > 1:
        mask[1] = False
        mask[1, :2] = mask[1, -2:] = True
        mask[1, :, :2] = mask[1, :, -2:] = True
    if n > 2:
        mask[2] = False
    return pred, hr, data_range, mask


def _masked_ref(pred, hr, data_range, mask) -> np.ndarray:
    n, g = pred.shape[:2]
    out = np.full((n, g), np.nan)
    for i in range(n):
        if not mask[i].any():
            continue
        for j in range(g):
            u = np.clip(np.where(mask[i], pred[i, j], 0) / data_range[j], 0, 1)
            v = np.clip(np.where(mask[i], hr[i, j], 0) / data_range[j], 0, 1)
            out[i, j] = _ssim_ref(u, v)[mask[i]].mean()
    return out


SHAPES = [(256, 256), (1, 1), (3, 7), (11, 5), (12, 10), (37, 29), (70, 33), (33, 97)]


@pytest.mark.parametrize("shape", SHAPES)
def test_masked_ssim_matches_reference(engine, shape):
    rng = np.random.default_rng(sum(shape))
    n, g = (3, 2) if shape == (256, 256) else (3, 4)
    pred, hr, data_range, mask = _case(rng, n, g, *shape)
    out = metrics.ssim(pred, hr, mask, data_range, device="cpu")
    ref = _masked_ref(pred, hr, data_range, mask)
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[2]).all()  # the empty mask
    np.testing.assert_allclose(out, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_full_ssim_map_matches_reference(engine, shape):
    rng = np.random.default_rng(100 + sum(shape))
    pred, hr, data_range, _ = _case(rng, 2, 2, *shape)
    full = metrics.ssim_map(pred, hr, data_range, device="cpu").numpy()
    for i in range(2):
        for j in range(2):
            u = np.clip(pred[i, j] / data_range[j], 0, 1)
            v = np.clip(hr[i, j] / data_range[j], 0, 1)
            np.testing.assert_allclose(full[i, j], _ssim_ref(u, v), atol=TOL, rtol=0)


def test_cropped_map_matches_skimage_at_256(engine):
    rng = np.random.default_rng(21)
    a = rng.random((1, 2, 256, 256))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    full = metrics.ssim_map(a, b, np.ones(2), device="cpu").numpy()
    for j in range(2):
        mean, ref = structural_similarity(
            a[0, j], b[0, j], gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0, full=True,
        )  # fmt: skip
        crop = full[0, j, 5:-5, 5:-5]
        assert np.abs(crop - ref[5:-5, 5:-5]).max() <= TOL
        assert abs(crop.mean() - mean) <= TOL


def test_compiled_and_torch_engines_agree():
    if kernels("cpu") != "compiled":
        pytest.skip("numba does not import")
    rng = np.random.default_rng(22)
    pred, hr, data_range, mask = _case(rng, 4, 3, 45, 71)
    p, h = torch.as_tensor(pred), torch.as_tensor(hr)
    r, m = torch.as_tensor(data_range), torch.as_tensor(mask)
    compiled, batched = ssim_maps(p, h, r, m), ssim_maps_torch(p, h, r, m)
    assert compiled.dtype == batched.dtype == torch.float64 and compiled.shape == (4, 3)
    torch.testing.assert_close(compiled, batched, atol=TOL, rtol=0, equal_nan=True)
    compiled, batched = ssim_maps(p, h, r), ssim_maps_torch(p, h, r)
    assert compiled.dtype == batched.dtype == torch.float32 and compiled.shape == (4, 3, 45, 71)
    torch.testing.assert_close(compiled, batched, atol=TOL, rtol=0)


def test_compiled_engine_is_float64_exact_on_a_clipped_plateau():
    """A saturated plateau (u = v = 1) in a faint map: the local mean is far from the map's, the
    local variance near 0, the case a float32 filter of centred moments loses digits on."""
    if kernels("cpu") != "compiled":
        pytest.skip("numba does not import")
    rng = np.random.default_rng(26)
    x = 0.05 * rng.random((1, 1, 64, 64))
    x[..., 20:40, 20:40] = 5.0
    y = x + 1e-4 * rng.random(x.shape)
    y[..., 20:40, 20:40] = 5.0
    full = ssim_maps(torch.as_tensor(x), torch.as_tensor(y), torch.ones(1, dtype=torch.float64))
    ref = _ssim_ref(np.clip(x[0, 0], 0, 1), np.clip(y[0, 0], 0, 1))
    assert np.abs(full[0, 0].double().numpy() - ref).max() <= 1e-6


def test_torch_engine_chunks_agree(monkeypatch):
    """The torch engine's chunking (several chunks, a partial last one) changes no value."""
    rng = np.random.default_rng(23)
    pred, hr, data_range, mask = _case(rng, 3, 5, 20, 17)
    args = (torch.as_tensor(pred), torch.as_tensor(hr), torch.as_tensor(data_range))
    whole = ssim_maps_torch(*args, torch.as_tensor(mask))
    monkeypatch.setattr(ssim_engine, "_SSIM_CHUNK_ELEMENTS", 4 * 5 * 20 * 17)
    chunked = ssim_maps_torch(*args, torch.as_tensor(mask))
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0, equal_nan=True)


def test_values_do_not_depend_on_thread_count(engine):
    rng = np.random.default_rng(24)
    pred, hr, data_range, mask = _case(rng, 5, 3, 24, 19)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = metrics.score_maps(pred, hr, mask, data_range, device="cpu")
        torch.set_num_threads(2)
        two = metrics.score_maps(pred, hr, mask, data_range, device="cpu")
    finally:
        torch.set_num_threads(before)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])


def test_pcc_rmse_match_numpy_with_holes_edges_and_constants(engine):
    rng = np.random.default_rng(25)
    pred, hr, _, mask = _case(rng, 4, 3, 30, 23)
    mask[3] = False
    mask[3, 4, 5] = True  # one position: PCC excluded, RMSE defined
    hr[0, 1] = 2.5  # constant truth: excluded
    pred[0, 2] = 1e-3  # constant prediction: r = 0
    pred[1, 0] = hr[1, 0]  # identical maps: RMSE exactly 0
    out = metrics.score_maps(pred, hr, mask, np.ones(3), device="cpu")
    for i in range(4):
        for j in range(3):
            p, t = pred[i, j][mask[i]], hr[i, j][mask[i]]
            ref_e = np.sqrt(np.mean((p - t) ** 2)) if p.size else np.nan
            np.testing.assert_allclose(out["rmse"][i, j], ref_e, atol=TOL, rtol=0)
            if p.size < 2 or np.ptp(t) == 0:
                assert np.isnan(out["pcc"][i, j])
            elif np.ptp(p) == 0:
                assert out["pcc"][i, j] == 0.0
            else:
                ref_r = np.corrcoef(p, t)[0, 1]
                np.testing.assert_allclose(out["pcc"][i, j], ref_r, atol=TOL, rtol=0)
    assert out["rmse"][1, 0] == 0.0
    assert np.isnan(out["pcc"][0, 1]) and out["pcc"][0, 2] == 0.0


def _hard_case(rng: np.random.Generator, dtype) -> tuple[np.ndarray, ...]:
    """:func:`_case` plus the maps the metric contract singles out: constant truth (PCC
    excluded), constant prediction (PCC 0), identical maps (RMSE exactly 0), a region with one
    masked position (PCC excluded, RMSE and SSIM defined), values far outside the mask."""
    pred, hr, data_range, mask = _case(rng, 5, 4, 37, 29)
    mask[3] = False
    mask[3, 36, 28] = True  # one position, in the last corner
    hr[0, 1] = 2.5
    pred[0, 2] = 1e-3
    pred[1, 0] = hr[1, 0]
    pred[4, 3] = np.where(mask[4], pred[4, 3], 1e6)
    return pred.astype(dtype), hr.astype(dtype), data_range, mask


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_scores_equal_the_separate_paths(engine, dtype):
    """``score_t`` (one read of each map on the CPU with numba) gives the same PCC and RMSE as
    ``pcc_rmse_t`` and the same SSIM as ``ssim_maps``, value for value, NaN for NaN; float32
    maps give what their float64 copies give."""
    pred, hr, data_range, mask = _hard_case(np.random.default_rng(27), dtype)
    p, h = torch.as_tensor(pred), torch.as_tensor(hr)
    r, m = torch.as_tensor(data_range), torch.as_tensor(mask)
    r_pcc, r_ssim, r_rmse = ssim_engine.score_t(p, h, m, r)
    s_pcc, s_rmse = tensors.pcc_rmse_t(p, h, m)
    torch.testing.assert_close(r_pcc, s_pcc, atol=0, rtol=0, equal_nan=True)
    torch.testing.assert_close(r_rmse, s_rmse, atol=0, rtol=0, equal_nan=True)
    torch.testing.assert_close(r_ssim, ssim_maps(p, h, r, m), atol=0, rtol=0, equal_nan=True)
    as64 = ssim_engine.score_t(p.double(), h.double(), m, r)
    for got, want in zip((r_pcc, r_ssim, r_rmse), as64, strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0, equal_nan=True)
    assert r_rmse[1, 0] == 0.0 and r_pcc[0, 1].isnan() and r_pcc[0, 2] == 0.0
    assert r_pcc[3].isnan().all() and r_rmse[3].isfinite().all() and r_ssim[3].isfinite().all()
    assert r_pcc[2].isnan().all() and r_rmse[2].isnan().all() and r_ssim[2].isnan().all()
    np.testing.assert_allclose(r_ssim, _masked_ref(pred, hr, data_range, mask), atol=TOL, rtol=0)


@pytest.mark.parametrize("where", ["inside", "outside"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "both"])
@pytest.mark.parametrize("which", ["pred", "hr"])
def test_every_metric_reports_nonfinite_maps(engine, which, bad, where):
    """NaN/Inf anywhere in a map, in the mask or outside it, float64 or float32, stop every
    metric with the argument's name and the count, as the up-front check did."""
    rng = np.random.default_rng(28)
    pred, hr, data_range, mask = _case(rng, 3, 2, 14, 9)
    mask[0, 2, 3], mask[0, 5, 6] = where == "inside", where == "inside"
    target = pred if which == "pred" else hr
    if bad == "both":  # +Inf and -Inf: a sum of the two is NaN, never a finite total
        target[0, 1, 2, 3], target[0, 1, 5, 6] = np.inf, -np.inf
        count = 2
    else:
        target[0, 1, 2, 3] = bad
        count = 1
    message = rf"^{which} contains {count} NaN/Inf"
    for maps in ((pred, hr), (pred.astype(np.float32), hr.astype(np.float32))):
        for metric in (metrics.pcc, metrics.rmse):
            with pytest.raises(metrics.MetricInputError, match=message):
                metric(*maps, mask, device="cpu")
        with pytest.raises(metrics.MetricInputError, match=message):
            metrics.ssim(*maps, mask, data_range, device="cpu")
        with pytest.raises(metrics.MetricInputError, match=message):
            metrics.score_maps(*maps, mask, data_range, device="cpu")
        with pytest.raises(metrics.MetricInputError, match=message):
            metrics.ssim_map(*maps, data_range, device="cpu")


def test_finite_values_whose_sum_overflows_are_accepted(engine):
    """The kernels' totals overflow to Inf on values near the float64 maximum; the values are
    then counted, and finite ones pass."""
    rng = np.random.default_rng(29)
    pred, hr, data_range, mask = _case(rng, 2, 2, 8, 8)
    pred[0, 0, :2] = 1.5e308
    out = metrics.score_maps(pred, hr, mask, data_range, device="cpu")
    assert out["ssim"].shape == (2, 2) and np.isfinite(out["ssim"][1]).all()
