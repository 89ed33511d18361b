"""Diversity and mode-collapse metrics: sampler scores, RVD, draw diversity, input response.

Definitions follow ``shared/design/metrics.md`` ("Diversity and mode collapse"). Two collapse
flags: :func:`input_response` below ``COLLAPSE_BELOW`` (outputs do not follow the inputs; any
method) and :func:`draw_diversity` below ``DIVERSE_ABOVE`` (a sampler's K draws of one input are
the same pattern).

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
    "COLLAPSE_BELOW",
    "DIVERSE_ABOVE",
    "coverage",
    "crps",
    "diversity_scores",
    "draw_diversity",
    "input_response",
    "rvd",
    "spread",
    "spread_map",
    "spread_skill",
]

COVERAGE_MIN_K = 10
COVERAGE_LEVELS = (0.05, 0.95)
COLLAPSE_BELOW = 0.5  # input_response below this: the method's outputs ignore its inputs
DIVERSE_ABOVE = 0.05  # mean draw_diversity below this: a sampler's draws are collapsed
INPUT_RESPONSE_MIN_POSITIONS = 3  # shared LR positions a region pair needs
_PAIR_CHUNK = 1 << 20  # float64 elements per chunk of region pairs (input_response)


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


def _draw_diversity_t(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per (region, gene) ``1 - mean_{a<b} PCC(X_a, X_b)`` over the mask -> ``(N, G)``.

    Closed form, no K x K matrix: with ``z_k`` the draws standardised over the mask
    (``z_k = (x_k - mean x_k) / std x_k``, population moments, ``c`` masked positions) and
    ``S = sum_k z_k`` over the non-constant draws, ``sum_{a != b} PCC(X_a, X_b) = (|S|^2 -
    sum_k |z_k|^2) / c``. Pairs of two constant draws count as PCC 1, pairs of one constant and
    one varying draw as PCC 0.
    """
    n_reg, k, g = x.shape[:3]
    out = torch.full((n_reg, g), torch.nan, dtype=x.dtype, device=x.device)
    if k < 2:
        return out
    flat_mask = mask.reshape(n_reg, -1)
    n_pairs = k * (k - 1) / 2
    for n in range(n_reg):
        m = flat_mask[n]
        c = int(m.sum())
        if c < 2:
            continue
        sel = x[n].reshape(k, g, -1)[..., m]  # (K, G, c)
        mu = sel.mean(dim=-1, keepdim=True)
        xc = sel - mu
        var = (xc * xc).mean(dim=-1)  # (K, G)
        const = is_constant(var, var + mu[..., 0] ** 2)
        z = xc / torch.where(const, 1.0, var).sqrt()[..., None]
        z = torch.where(const[..., None], 0.0, z)
        s = z.sum(dim=0)  # (G, c)
        off = (torch.linalg.vecdot(s, s) - torch.linalg.vecdot(z, z).sum(dim=0)) / (2 * c)
        n_const = const.sum(dim=0).to(x.dtype)
        mean_r = (off + n_const * (n_const - 1) / 2) / n_pairs
        out[n] = 1.0 - mean_r.clamp(-1.0, 1.0)
    return out


def _pool_to_lr(
    pred: torch.Tensor, hr_mask: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``pred`` over the in-tissue HR positions of each k x k block -> ``(N, G, h, w)``,
    and the ``(N, h, w)`` mask of blocks with at least one such position (0 elsewhere)."""
    n_reg, g, hh, ww = pred.shape
    k = hh // h
    m = hr_mask.to(pred.dtype)
    s = (pred * m[:, None]).reshape(n_reg, g, h, k, w, k).sum(dim=(3, 5))
    cnt = m.reshape(n_reg, h, k, w, k).sum(dim=(2, 4))
    return s / cnt.clamp_min(1.0)[:, None], cnt > 0


def _input_response_t(
    pooled: torch.Tensor, lr: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of the valid ``PCC(P_i - P_j, L_i - L_j)`` over genes and pairs i < j.

    The pair differences are formed explicitly (in chunks of pairs), not from cross moments, so
    identical pooled predictions give an exactly zero difference (a constant map: PCC 0) instead
    of rounding noise.
    """
    n_reg, g = pooled.shape[:2]
    P, L = pooled.reshape(n_reg, g, -1), lr.reshape(n_reg, g, -1)
    V = valid.reshape(n_reg, 1, -1).to(pooled.dtype)
    ii, jj = torch.triu_indices(n_reg, n_reg, offset=1, device=pooled.device)
    total = torch.zeros((), dtype=pooled.dtype, device=pooled.device)
    count = torch.zeros((), dtype=pooled.dtype, device=pooled.device)
    step = max(1, _PAIR_CHUNK // (g * P.shape[-1]))
    for s in range(0, ii.numel(), step):
        i, j = ii[s : s + step], jj[s : s + step]
        m = V[i] * V[j]  # (B, 1, l)
        n = m.sum(dim=-1).expand(-1, g)  # (B, G)
        nn = n.clamp_min(1.0)
        moments = []
        for d in (P[i] - P[j], L[i] - L[j]):
            mu = (d * m).sum(dim=-1) / nn
            dc = (d - mu[..., None]) * m
            var = torch.linalg.vecdot(dc, dc) / nn
            moments.append((dc, var, var + mu * mu))
        (dp, var_p, msq_p), (dl, var_l, msq_l) = moments
        cov = torch.linalg.vecdot(dp, dl) / nn
        r = pcc_from_moments(cov, var_p, var_l, msq_p, msq_l, n)
        ok = torch.isfinite(r) & (n >= INPUT_RESPONSE_MIN_POSITIONS)
        total = total + torch.where(ok, r, 0.0).sum()
        count = count + ok.sum()
    return total, count


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


def draw_diversity(samples: ArrayLike, mask: ArrayLike, device: Device = None) -> np.ndarray:
    """Draw diversity: mean dissimilarity of the K draws of one input, per (region, gene).

    ``diversity = mean_{a<b} (1 - PCC(X_a, X_b))`` over the draws a < b of one region and gene,
    each PCC over the masked positions (population moments). Conventions: two constant draws
    (variance <= ``CONSTANT_RTOL`` * mean square, as in :mod:`bench.scoring.metrics`) have PCC 1,
    a constant draw against a varying one PCC 0; so identical draws, constant or not, give 0.
    Computed in closed form from the sum of the standardised draws (no K x K matrix):
    ``sum_{a != b} PCC_ab = (sum_pos (sum_k z_k)^2 - sum_k sum_pos z_k^2) / c``, ``z_k`` the k-th
    draw standardised over the ``c`` masked positions.

    0: every draw has the same pattern (collapsed draws, whatever their levels); about 1: draws
    unrelated; at most ``1 + 1 / (K - 1)``. A sampler whose mean draw diversity is below
    ``DIVERSE_ABOVE`` is flagged as collapsed.

    Returns
    -------
    float64 ``(N, G)``; NaN where fewer than 2 positions are masked or K < 2.
    """
    x, _, m = _prepare_samples(samples, None, mask, device)
    return to_numpy(_draw_diversity_t(x, m))


def input_response(
    pred: ArrayLike,
    lr: ArrayLike,
    lr_mask: ArrayLike,
    hr_mask: ArrayLike,
    device: Device = None,
) -> float:
    """Input response: how far a method's outputs differ between inputs as the inputs differ.

    A mode-collapse score framed by the input, defined for every method (deterministic or not).
    The point prediction is pooled to the LR lattice: ``P_n[b]`` = mean of ``pred_n`` over the
    in-tissue HR positions of k x k block b (``k = H / h``); blocks with none are not used. For
    every gene g and region pair i < j, over the LR positions ``S_ij`` in ``lr_mask_i &
    lr_mask_j`` where both pooled maps are defined,

    ``r_gij = PCC( P_i - P_j , L_i - L_j )``   (``L`` the LR input maps),

    with :mod:`bench.scoring.metrics`' conventions, ``L_i - L_j`` in the truth's role: the pair is
    excluded when ``L_i - L_j`` is constant on ``S_ij`` or ``|S_ij| < 3``; when ``P_i - P_j`` is
    constant ``r = 0`` (the outputs do not change as the inputs do).

    ``input_response = mean_{(g, i<j) valid} r_gij``.

    1: outputs differ between inputs exactly as the inputs differ (e.g. any upsampling whose
    block means reproduce the LR); near 0: the output does not follow the input (collapsed onto
    one output, or independent of it). Invariant to adding a per-gene constant to every
    prediction, and to adding any map common to all regions' predictions where the regions'
    in-tissue HR positions coincide within the blocks compared (e.g. full blocks). A method
    scoring below ``COLLAPSE_BELOW`` is flagged as collapsed.

    Parameters
    ----------
    pred : ``(N, G, H, W)`` point prediction on the HR grid.
    lr : ``(N, G, h, w)`` LR input maps, ``H = k h``, ``W = k w``.
    lr_mask : ``(N, h, w)`` bool, LR spots.
    hr_mask : ``(N, H, W)`` bool, in-tissue HR positions.

    Returns
    -------
    float; NaN if N < 2 or no (gene, pair) is valid.
    """
    dev = resolve_device(device)
    n, g, hh, ww = check_ndim(pred, "pred", "(N, G, H, W)")
    l_shape = check_ndim(lr, "lr", "(N, G, h, w)")
    if l_shape[:2] != (n, g):
        raise MetricInputError(
            f"pred has shape {(n, g, hh, ww)} but lr has shape {l_shape}; lr must be "
            f"(N, G, h, w) with (N, G) = {(n, g)}"
        )
    h, w = l_shape[2:]
    if h < 1 or w < 1 or hh % h or ww % w or hh // h != ww // w:
        raise MetricInputError(
            f"pred's grid {(hh, ww)} is not a k-fold upsampling of lr's grid {(h, w)}; need "
            "H = k h and W = k w for one integer k"
        )
    p = as_float64(pred, "pred", dev)
    low = as_float64(lr, "lr", dev)
    lm = as_mask(lr_mask, (n, h, w), dev)
    hm = as_mask(hr_mask, (n, hh, ww), dev)
    if n < 2:
        return float("nan")
    pooled, defined = _pool_to_lr(p, hm, h, w)
    total, count = _input_response_t(pooled, low, lm & defined)
    return float(total / count) if float(count) > 0 else float("nan")


def diversity_scores(
    samples: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device = None
) -> dict[str, np.ndarray | float]:
    """Diversity metrics of K samples per region at once (validated and moved once).

    Returns
    -------
    dict with ``"spread"``, ``"crps"``, ``"spread_skill"``, ``"draw_diversity"`` (float64
    ``(N, G)`` each), plus ``"coverage"`` when K >= 10.
    """
    x, y, m = _prepare_samples(samples, hr, mask, device)
    out: dict[str, np.ndarray | float] = {
        "spread": to_numpy(_spread_t(x, m)),
        "crps": to_numpy(_crps_t(x, y, m)),
        "spread_skill": to_numpy(_spread_skill_t(x, y, m)),
        "draw_diversity": to_numpy(_draw_diversity_t(x, m)),
    }
    if x.shape[1] >= COVERAGE_MIN_K:
        out["coverage"] = to_numpy(_coverage_t(x, y, m))
    return out
