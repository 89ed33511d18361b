"""The ``paper`` metric set: the diffusion paper's released scoring, for comparison only.

``shared/design/metrics.md``, "Paper-compatible mode": per (region, gene) map, on the whole HR
grid (no mask, as released):

- ``paper_pcc`` = |pearsonr(pred, hr)| on the raw maps (absolute value; NaN for a constant map);
- both maps min-max scaled to [0, 1] per map (a constant map becomes 0);
- ``paper_rmse`` = RMSE of the scaled maps;
- ``paper_ssim`` = scikit-image ``structural_similarity`` with Gaussian weights (sigma 1.5) on
  ``uint8(scaled * 225)`` (225, sic: the release's constant) with the uint8 data range (255);
  NaN for maps smaller than its 11 x 11 window.

The released code summarises a (region x gene) table by :func:`nonzero_mean` (the mean of its
non-zero, non-NaN entries). These numbers are never mixed into the primary columns.
"""

from __future__ import annotations

import numpy as np

PAPER = ("paper_pcc", "paper_ssim", "paper_rmse")


def _minmax(x: np.ndarray) -> np.ndarray:
    low, high = float(x.min()), float(x.max())
    return (x - low) / (high - low) if high > low else np.zeros_like(x)


def paper_scores(pred: np.ndarray, hr: np.ndarray) -> dict[str, np.ndarray]:
    """(N, G) float64 tables of the paper set for ``pred``, ``hr`` of shape (N, G, H, W)."""
    from scipy.stats import pearsonr
    from skimage.metrics import structural_similarity

    pred, hr = np.asarray(pred, dtype=np.float64), np.asarray(hr, dtype=np.float64)
    if pred.shape != hr.shape or pred.ndim != 4:
        raise ValueError(f"pred {pred.shape} and hr {hr.shape} must both be (N, G, H, W)")
    n, g = pred.shape[:2]
    out = {name: np.full((n, g), np.nan) for name in PAPER}
    for i in range(n):
        for j in range(g):
            p, t = pred[i, j], hr[i, j]
            if np.ptp(p) > 0 and np.ptp(t) > 0:
                out["paper_pcc"][i, j] = abs(pearsonr(p.ravel(), t.ravel())[0])
            ps, ts = _minmax(p), _minmax(t)
            out["paper_rmse"][i, j] = np.sqrt(np.mean((ps - ts) ** 2))
            if min(p.shape) < 11:  # the Gaussian window (sigma 1.5) is 11 x 11
                continue
            out["paper_ssim"][i, j] = structural_similarity(
                (ps * 225).astype(np.uint8),
                (ts * 225).astype(np.uint8),
                gaussian_weights=True,
                sigma=1.5,
                data_range=255,
            )
    return out


def nonzero_mean(table: np.ndarray) -> float:
    """The release's summary: mean of the non-zero, non-NaN entries (NaN when there is none)."""
    t = np.asarray(table, dtype=np.float64)
    keep = np.isfinite(t) & (t != 0)
    return float(t[keep].mean()) if keep.any() else float("nan")
