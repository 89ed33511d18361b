"""Per-map metrics: PCC, SSIM and RMSE, batched over (region, gene) in torch.

Definitions follow ``shared/design/metrics.md``. Every metric is computed for each (region, gene)
map over the in-tissue HR positions (the mask) and returned as a float64 numpy array of shape
``(N, G)``; pairs that a metric excludes are NaN.

Conventions
-----------
- ``pred``, ``hr``: ``(N, G, H, W)`` real arrays (numpy or torch), in the split's expression scale
  (e.g. log1p-normalised counts); cast to float64 internally.
- ``mask``: ``(N, H, W)`` boolean (or 0/1) array, True at in-tissue HR positions.
- ``data_range``: ``(G,)`` positive array, gene g's maximum over the TRAINING HR maps (SSIM only).
- ``device``: where to compute; None means "cuda" when available, else "cpu".

A map counts as *constant* over its mask when its population variance is at most
``CONSTANT_RTOL = 1e-12`` times its mean square over the mask (std below 1e-6 of its RMS magnitude;
an all-zero map is constant). The test is relative, so it does not depend on the expression scale,
and loose enough that float rounding of a truly flat map (relative error ~1e-16 per value) never
passes as signal.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.scoring.ssim_engine import score_t, ssim_maps
from bench.scoring.tensors import (
    CONSTANT_RTOL,
    ArrayLike,
    Device,
    MetricInputError,
    as_maps,
    check_pair,
    default_device,
    pcc_rmse_t,
    prepare_maps,
    prepare_range,
    resolve_device,
    to_numpy,
)

# fmt: off
__all__ = ["CONSTANT_RTOL", "MetricInputError", "default_device", "pcc", "rmse", "score_maps",
           "ssim", "ssim_map"]
# fmt: on

# --- public API -----------------------------------------------------------------------------


def pcc(pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Signed Pearson correlation per (region, gene) over in-tissue positions.

    ``r = sum(pc * hc) / sqrt(sum(pc^2) * sum(hc^2))`` with ``pc = pred - mean(pred)`` and
    ``hc = hr - mean(hr)``, sums and means over the masked positions (centred first, then
    normalised, in float64).

    Parameters
    ----------
    pred, hr : array ``(N, G, H, W)``, real, expression scale.
    mask : bool array ``(N, H, W)``, True in tissue.
    device : torch device; None picks cuda when available.

    Returns
    -------
    np.ndarray, float64 ``(N, G)`` in [-1, 1]. NaN where hr is constant over the mask or fewer than
    2 positions are masked (excluded pair); 0.0 where pred is constant and hr is not. "Constant"
    means variance <= ``CONSTANT_RTOL`` * mean square (see the module docstring).
    """
    p, h, m = prepare_maps(pred, hr, mask, device, finite=False)
    return to_numpy(pcc_rmse_t(p, h, m)[0])


def rmse(pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Root mean squared error per (region, gene): ``sqrt(mean_mask((pred - hr)^2))``.

    Parameters as in :func:`pcc`. Returns float64 ``(N, G)`` in the maps' scale; NaN where the
    region's mask is empty.
    """
    p, h, m = prepare_maps(pred, hr, mask, device, finite=False)
    return to_numpy(pcc_rmse_t(p, h, m)[1])


def ssim_map(
    pred: ArrayLike, hr: ArrayLike, data_range: ArrayLike, device: Device = None
) -> torch.Tensor:
    """Full-size SSIM map (Wang et al. 2004) with zero padding.

    Both maps go to ``u = clip(x / r_g, 0, 1)`` with ``r_g = data_range[g]``. Local statistics use
    an 11 x 11 Gaussian window (sigma 1.5, sum 1) applied depthwise with zero padding, so the map
    keeps the grid's size; covariances are population ones. With ``C1 = 0.01^2``, ``C2 = 0.03^2``
    (L = 1):
    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``.

    Parameters
    ----------
    pred, hr : array ``(N, G, H, W)``, real, expression scale.
    data_range : array ``(G,)``, > 0: each gene's maximum over the training HR maps.
    device : torch device; None picks cuda when available.

    Returns
    -------
    torch.Tensor float64 ``(N, G, H, W)`` on ``device``, values in [-1, 1]. Cropping 5 positions
    from each border gives scikit-image's ``structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False, data_range=1)`` map on the u scale.
    """
    dev = resolve_device(device)
    p_shape = check_pair(pred, hr)
    r = prepare_range(data_range, p_shape[1], dev)
    return ssim_maps(as_maps(pred, "pred", dev), as_maps(hr, "hr", dev), r).double()


def ssim(
    pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, data_range: ArrayLike, device: Device = None
) -> np.ndarray:
    """Masked SSIM per (region, gene).

    Both maps are set to 0 outside the mask, passed through :func:`ssim_map` (u scale, zero
    padding), and the SSIM map is averaged over the masked positions.

    Returns float64 ``(N, G)`` in [-1, 1]; NaN where the region's mask is empty.
    """
    p, h, m = prepare_maps(pred, hr, mask, device, finite=False)
    r = prepare_range(data_range, p.shape[1], p.device)
    return to_numpy(ssim_maps(p, h, r, m))


def score_maps(
    pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, data_range: ArrayLike, device: Device = None
) -> dict[str, np.ndarray]:
    """All primary per-map metrics at once (validated and moved to ``device`` once).

    Returns
    -------
    dict with keys ``"pcc"``, ``"ssim"``, ``"rmse"``: float64 ``(N, G)`` arrays as returned by
    :func:`pcc`, :func:`ssim` and :func:`rmse`.
    """
    p, h, m = prepare_maps(pred, hr, mask, device, finite=False)
    r = prepare_range(data_range, p.shape[1], p.device)
    r_pcc, r_ssim, r_rmse = score_t(p, h, m, r)
    return {"pcc": to_numpy(r_pcc), "ssim": to_numpy(r_ssim), "rmse": to_numpy(r_rmse)}
