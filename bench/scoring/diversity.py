"""Diversity and mode-collapse metrics for stochastic methods, plus RVD and collapse ratio.

Definitions follow ``shared/design/metrics.md`` ("Diversity and mode collapse").

Conventions
-----------
- ``samples``: ``(N, K, G, H, W)`` real array (numpy or torch), K draws per input region, in the
  split's expression scale; ``hr``/``pred``: ``(N, G, H, W)``; ``mask``: ``(N, H, W)`` bool.
- Everything is computed in float64 on ``device`` (None: cuda when available, else cpu) and
  returned as float64 numpy ``(N, G)`` arrays, NaN for excluded pairs (e.g. an empty mask).
- Validation, masked means and the constant-map rule are those of :mod:`bench.scoring.metrics`.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.scoring.tensors import (
    ArrayLike,
    Device,
    MetricInputError,
    as_float64,
    as_mask,
    check_ndim,
    is_constant,
    masked_mean,
    pcc_from_moments,
    prepare_maps,
    resolve_device,
    rmse_t,
    to_numpy,
)

__all__ = [
    "collapse_ratio",
    "coverage",
    "crps",
    "diversity_scores",
    "rvd",
    "spread",
    "spread_map",
    "spread_skill",
]

COVERAGE_MIN_K = 10
COVERAGE_LEVELS = (0.05, 0.95)


def _prepare_samples(
    samples: ArrayLike, hr: ArrayLike | None, mask: ArrayLike, device: Device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Validate ``samples`` ``(N, K, G, H, W)``, ``hr`` ``(N, G, H, W)``, ``mask``; move once."""
    dev = resolve_device(device)
    s_shape = check_ndim(samples, "samples", "(N, K, G, H, W)")
    n, k, g, h, w = s_shape
    if k < 1:
        raise MetricInputError(f"samples has shape {s_shape}; need K >= 1 samples on axis 1")
    y = None
    if hr is not None:
        h_shape = check_ndim(hr, "hr", "(N, G, H, W)")
        if h_shape != (n, g, h, w):
            raise MetricInputError(
                f"samples has shape {s_shape} but hr has shape {h_shape}; hr must be "
                f"(N, G, H, W) = {(n, g, h, w)}"
            )
        y = as_float64(hr, "hr", dev)
    m = as_mask(mask, (n, h, w), dev)
    return as_float64(samples, "samples", dev), y, m


# --- tensor kernels ------------------------------------------------------------------------------


def _masked_var(v: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Population variance and mean square of ``v`` over ``mask`` (two-pass) -> ``(N, G)`` each."""
    mu = masked_mean(v, mask)
    vc = torch.where(mask[:, None], v - mu[..., None, None], 0.0)
    var = masked_mean(vc * vc, mask)
    return var, var + mu * mu


def _spread_map_t(x: torch.Tensor) -> torch.Tensor:
    return x.std(dim=1, correction=0)


def _spread_t(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean(_spread_map_t(x), mask)


def _crps_t(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    k = x.shape[1]
    skill = (x - y[:, None]).abs().mean(dim=1)
    if k == 1:
        return masked_mean(skill, mask)
    # sum_{k != l} |X_k - X_l| = 2 sum_i (2i - K - 1) x_(i), x sorted ascending, i = 1..K
    # (avoids the K x K pairwise tensor); the unbiased energy term divides it by 2K(K-1).
    xs = x.sort(dim=1).values
    i = torch.arange(1, k + 1, dtype=x.dtype, device=x.device)
    w = (2 * i - k - 1).view(1, k, 1, 1, 1)
    pair = (w * xs).sum(dim=1) / (k * (k - 1))
    return masked_mean(skill - pair, mask)


def _quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """Quantiles along dim 1 with linear interpolation (numpy's default, torch.quantile's).

    Written with a sort because ``torch.quantile`` refuses inputs above 2^24 elements.
    """
    k = x.shape[1]
    xs = x.sort(dim=1).values
    out = []
    for q in qs:
        pos = q * (k - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, k - 1)
        frac = pos - lo
        out.append(xs[:, lo] + frac * (xs[:, hi] - xs[:, lo]))
    return out


def _coverage_t(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if x.shape[1] < COVERAGE_MIN_K:
        raise MetricInputError(
            f"samples has K = {x.shape[1]}; coverage needs K >= {COVERAGE_MIN_K} samples"
        )
    q_lo, q_hi = _quantiles(x, COVERAGE_LEVELS)
    inside = ((y >= q_lo) & (y <= q_hi)).to(x.dtype)
    return masked_mean(inside, mask)


def _spread_skill_t(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    err = rmse_t(x.mean(dim=1), y, mask)
    return torch.where(err > 0, _spread_t(x, mask) / torch.where(err > 0, err, 1.0), torch.nan)


def _pair_pcc(
    x: torch.Tensor, mask: torch.Tensor, pairs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCC between regions i and j of the same gene over ``mask_i & mask_j``.

    Parameters
    ----------
    x : ``(N, G, H, W)`` float64; mask : ``(N, H, W)`` bool; pairs : ``(2, P)`` indices, i < j.

    Returns
    -------
    ``(r, const_i | const_j | n < 2, const_i | const_j)`` each ``(G, P)``; ``r`` is PCC(x_i, x_j)
    with :mod:`bench.scoring.metrics`' conventions (NaN if x_j constant or n < 2, 0 if x_i
    constant).

    Moments over every pair mask come from three batched matrix products over positions, after
    centring each map on its own masked mean (which keeps the raw-moment variance well away from
    catastrophic cancellation), instead of materialising (P, G, H, W) pair tensors.
    """
    n_reg, g = x.shape[:2]
    m = mask.reshape(n_reg, -1).to(x.dtype)  # (N, P)
    shift = torch.nan_to_num(masked_mean(x, mask))  # (N, G); 0 for empty masks
    a = (x.reshape(n_reg, g, -1) - shift[..., None]) * m[:, None]
    a = a.transpose(0, 1)  # (G, N, P), zero outside each region's own mask
    cnt = m @ m.T  # (N, N) positions in both masks
    s1 = a @ m.T  # s1[g, i, j] = sum over mask_i & mask_j of a_i
    s2 = (a * a) @ m.T
    sxy = a @ a.transpose(1, 2)
    i, j = pairs
    n = cnt[i, j]
    nn = n.clamp_min(1.0)
    mu_i, mu_j = s1[:, i, j] / nn, s1[:, j, i] / nn
    var_i = (s2[:, i, j] / nn - mu_i * mu_i).clamp_min(0.0)
    var_j = (s2[:, j, i] / nn - mu_j * mu_j).clamp_min(0.0)
    cov = sxy[:, i, j] / nn - mu_i * mu_j
    # mean square on the original (unshifted) scale, for the relative constant-map test
    msq_i = var_i + (mu_i + shift.T[:, i]) ** 2
    msq_j = var_j + (mu_j + shift.T[:, j]) ** 2
    r = pcc_from_moments(cov, var_i, var_j, msq_i, msq_j, n.expand_as(cov))
    either_const = is_constant(var_i, msq_i) | is_constant(var_j, msq_j)
    return r, either_const | (n < 2), either_const


# --- public API ----------------------------------------------------------------------------------


def spread(samples: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Ensemble spread: per-position population std (ddof=0) over K, averaged over the mask.

    ``spread = mean_mask( sqrt( mean_k (X_k - mean_k X)^2 ) )``; float64 ``(N, G)`` in the maps'
    scale; 0 for K = 1 or a deterministic method; NaN for an empty mask.
    """
    x, _, m = _prepare_samples(samples, None, mask, device)
    return to_numpy(_spread_t(x, m))


def spread_map(samples: ArrayLike, device: Device = None) -> np.ndarray:
    """The per-position spread that :func:`spread` averages: ``sqrt(mean_k (X_k - mean_k X)^2)``
    at every position, float64 ``(N, G, H, W)`` in the maps' scale (for figures and export)."""
    check_ndim(samples, "samples", "(N, K, G, H, W)")
    return to_numpy(_spread_map_t(as_float64(samples, "samples", resolve_device(device))))


def crps(samples: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Continuous ranked probability score, unbiased energy form, averaged over the mask.

    Per position: ``mean_k |X_k - y| - 1 / (2K(K-1)) * sum_{k != l} |X_k - X_l|`` (second term 0
    when K = 1, so the score equals the MAE). Lower is better; float64 ``(N, G)`` in the maps'
    scale; NaN for an empty mask.
    """
    x, y, m = _prepare_samples(samples, hr, mask, device)
    return to_numpy(_crps_t(x, y, m))


def spread_skill(
    samples: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None
) -> np.ndarray:
    """Spread-skill ratio: :func:`spread` / RMSE of the sample mean against ``hr``.

    Near 1 is calibrated, near 0 is collapse. float64 ``(N, G)``, dimensionless; NaN where that
    RMSE is 0 or the mask is empty.
    """
    x, y, m = _prepare_samples(samples, hr, mask, device)
    return to_numpy(_spread_skill_t(x, y, m))


def coverage(
    samples: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None
) -> np.ndarray:
    """Fraction of masked positions whose truth lies in the samples' [q05, q95] interval.

    Quantiles over K with linear interpolation (as ``torch.quantile`` / ``numpy.quantile``);
    target 0.90. float64 ``(N, G)`` in [0, 1]; NaN for an empty mask.

    Raises
    ------
    MetricInputError
        If K < 10 (too few samples for a 5-95% interval).
    """
    x, y, m = _prepare_samples(samples, hr, mask, device)
    return to_numpy(_coverage_t(x, y, m))


def rvd(pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Relative variance distance per (region, gene): ``(var_pred - var_hr)^2 / var_hr^2``.

    Population variances across the masked positions of each map. 0 is perfect; over-smoothing
    (regression to the mean) raises it towards 1. float64 ``(N, G)``, dimensionless; NaN where
    hr is constant over the mask (variance <= ``CONSTANT_RTOL`` * mean square, incl. exactly 0)
    or the mask is empty.
    """
    p, h, m = prepare_maps(pred, hr, mask, device)
    var_p, _ = _masked_var(p, m)
    var_h, msq_h = _masked_var(h, m)
    ok = ~is_constant(var_h, msq_h)
    out = (var_p - var_h) ** 2 / torch.where(ok, var_h, 1.0) ** 2
    return to_numpy(torch.where(ok, out, torch.nan))


def collapse_ratio(
    pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None
) -> float:
    """Inter-input collapse ratio: mean PCC between different regions' predictions / same on hr.

    For every gene g and region pair i < j, ``PCC(pred_i, pred_j)`` and ``PCC(hr_i, hr_j)`` over
    the positions in both masks (``mask_i & mask_j``). Pairs whose hr PCC is undefined (either hr
    map constant there, or fewer than 2 shared positions) are dropped from both means; a constant
    prediction counts as PCC 0, as in :func:`bench.scoring.metrics.pcc`.

    ``ratio = mean_{(g, i<j) valid} PCC(pred) / mean_{(g, i<j) valid} PCC(hr)``.

    Above 1: predictions are more alike across inputs than reality (inter-input mode collapse);
    near 1: as alike as the truth. Interpretable only when the truth's mean PCC is clearly
    positive (regions of one tissue share structure); a denominator near 0 makes it unstable.

    Returns
    -------
    float; NaN if N < 2, no valid pair, or the denominator is 0.
    """
    p, h, m = prepare_maps(pred, hr, mask, device)
    n_reg = p.shape[0]
    if n_reg < 2:
        return float("nan")
    pairs = torch.triu_indices(n_reg, n_reg, offset=1, device=p.device)
    r_hr, undefined, _ = _pair_pcc(h, m, pairs)
    r_pred, _, pred_const = _pair_pcc(p, m, pairs)
    valid = ~undefined
    if not bool(valid.any()):
        return float("nan")
    r_pred = torch.where(pred_const, 0.0, r_pred)  # either prediction constant -> 0
    den = r_hr[valid].mean()
    if float(den) == 0.0:
        return float("nan")
    return float(r_pred[valid].mean() / den)


def diversity_scores(
    samples: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None
) -> dict[str, np.ndarray | float]:
    """Diversity metrics of K samples per region at once (validated and moved once).

    Returns
    -------
    dict with ``"spread"``, ``"crps"``, ``"spread_skill"`` (float64 ``(N, G)`` each), plus
    ``"coverage"`` when K >= 10.
    """
    x, y, m = _prepare_samples(samples, hr, mask, device)
    out: dict[str, np.ndarray | float] = {
        "spread": to_numpy(_spread_t(x, m)),
        "crps": to_numpy(_crps_t(x, y, m)),
        "spread_skill": to_numpy(_spread_skill_t(x, y, m)),
    }
    if x.shape[1] >= COVERAGE_MIN_K:
        out["coverage"] = to_numpy(_coverage_t(x, y, m))
    return out
