"""Alternative scoring protocols, for the leaderboard's rank-stability table.

The headline protocol (:mod:`bench.scoring.metrics` on the scored positions, per (region, gene),
on the split's log1p scale) is one of several a careful reader could defend. Each alternative
below changes one choice; a ranking that reorders under them rests on the protocol, not the
method. Each returns one scalar per prediction (the mean the headline takes, or its analogue):

- ``alt_pcc_noqc``: PCC per (region, gene) over every in-tissue position (no spot QC), mean.
- ``alt_pcc_pooled``: PCC per gene over the scored positions of all regions pooled (one map per
  gene, the regions side by side), mean over genes.
- ``alt_pcc_linear``: PCC per (region, gene) on the linear scale ``expm1(x)`` (normalised counts
  instead of their log), scored positions (``expm1`` is taken there only), mean.
- ``alt_ssim_uniform7``: SSIM with scikit-image's default 7 x 7 uniform window (instead of the
  11 x 11 Gaussian, sigma 1.5) on the same ``u = clip(x / r_g, 0, 1)`` maps, zero outside the
  scored positions, the SSIM map averaged over them.

Arrays: ``pred``, ``hr`` (N, G, H, W) on the split's scale; ``tissue``, ``scored`` (N, H, W) bool;
``data_range`` (G,) the training maxima.
"""

from __future__ import annotations

import numpy as np

from bench.scoring import metrics
from bench.scoring.tensors import Device

__all__ = ["ALTERNATIVES", "alternatives"]

ALTERNATIVES = {
    "alt_pcc_noqc": "PCC without spot QC",
    "alt_pcc_pooled": "PCC pooled per gene across regions",
    "alt_pcc_linear": "PCC on expm1 (linear) scale",
    "alt_ssim_uniform7": "SSIM, 7 x 7 uniform window",
}


def _mean(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def _ssim_uniform7(pred: np.ndarray, hr: np.ndarray, mask: np.ndarray, r: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    out = []
    for n in range(pred.shape[0]):
        m = mask[n]
        if not m.any():
            continue
        for g in range(pred.shape[1]):
            a = np.where(m, np.clip(pred[n, g] / r[g], 0.0, 1.0), 0.0)
            b = np.where(m, np.clip(hr[n, g] / r[g], 0.0, 1.0), 0.0)
            _, full = structural_similarity(a, b, win_size=7, data_range=1.0, full=True)
            out.append(float(full[m].mean()))
    return float(np.mean(out)) if out else float("nan")


def alternatives(
    pred: np.ndarray,
    hr: np.ndarray,
    tissue: np.ndarray,
    scored: np.ndarray,
    data_range: np.ndarray,
    device: Device = None,
) -> dict[str, float | None]:
    """The scalar of each alternative protocol (module docstring) for one prediction."""
    pred, hr = np.asarray(pred, dtype=np.float64), np.asarray(hr, dtype=np.float64)
    n, g, h, w = pred.shape

    def side_by_side(x: np.ndarray) -> np.ndarray:  # (N, G, H, W) -> (1, G, N H, W)
        return x.transpose(1, 0, 2, 3).reshape(1, g, n * h, w)

    pooled = metrics.pcc(
        side_by_side(pred), side_by_side(hr), scored.reshape(1, n * h, w), device=device
    )
    # expm1 of the scored positions only: a finite prediction outside them (a method may
    # extrapolate there, unscored) must not overflow into the score
    inside = np.asarray(scored, dtype=bool)[:, None]
    linear = metrics.pcc(
        np.expm1(np.where(inside, pred, 0.0)),
        np.expm1(np.where(inside, hr, 0.0)),
        scored,
        device=device,
    )
    ssim7 = _ssim_uniform7(pred, hr, np.asarray(scored, dtype=bool), np.asarray(data_range))
    return {
        "alt_pcc_noqc": _mean(metrics.pcc(pred, hr, tissue, device=device)),
        "alt_pcc_pooled": _mean(pooled),
        "alt_pcc_linear": _mean(linear),
        "alt_ssim_uniform7": ssim7 if np.isfinite(ssim7) else None,
    }
