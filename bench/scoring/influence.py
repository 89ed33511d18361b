"""Leave-one-position-out influence of each scored HR position on the overall mean PCC.

The headline PCC of a prediction is ``R = mean_{(n, g) in F} r_ng`` with ``r_ng`` the PCC of
region n, gene g over its mask (:func:`bench.scoring.metrics.pcc`) and ``F`` the pairs where it is
finite (``np.nanmean``). The influence of a masked position ``p = (n, i, j)`` is the change of
``R`` when p alone leaves the mask:

``delta_p = R(mask without p) - R(mask)``.

Only region n's G pairs change, so with ``T = sum_F r``, ``C = |F|``, and ``r'_ng`` the PCC over
the mask without p,

``delta_p = (T - sum_g [r_ng]_0 + sum_g [r'_ng]_0) / (C - sum_g 1[r_ng finite]
+ sum_g 1[r'_ng finite]) - T / C``,   ``[r]_0`` = r if finite else 0.

``r'`` needs no refit: from the running sums over the mask of region n (count c, ``Sx``,
``Sy``, ``Sxx``, ``Syy``, ``Sxy`` per gene, x the prediction and y the truth, each centred on its
masked mean for conditioning) subtract p's own terms: ``c' = c - 1``, ``Sx' = Sx - x_p``,
``Sxy' = Sxy - x_p y_p`` and so on, then ``var_x' = Sxx'/c' - (Sx'/c')^2``,
``cov' = Sxy'/c' - Sx' Sy' / c'^2`` and ``r' = cov' / sqrt(var_x' var_y')``, with the PCC
conventions of :mod:`bench.scoring.metrics`: the pair is excluded (NaN) when the truth is constant
over the remaining positions or ``c' < 2``, and ``r' = 0`` when the prediction is constant there.
An excluded pair leaves both the sum and the count, exactly as in the brute-force ``nanmean``.
"""

from __future__ import annotations

import warnings

import numpy as np

from bench.scoring.metrics import pcc
from bench.scoring.tensors import CONSTANT_RTOL, ArrayLike, prepare_maps, to_numpy

__all__ = ["max_influence", "pcc_influence"]


def _pcc_np(
    cov: np.ndarray,
    var_x: np.ndarray,
    var_y: np.ndarray,
    msq_x: np.ndarray,
    msq_y: np.ndarray,
    n: np.ndarray,
) -> np.ndarray:
    """numpy twin of :func:`bench.scoring.tensors.pcc_from_moments`."""
    denom = np.sqrt(np.clip(var_x, 0, None)) * np.sqrt(np.clip(var_y, 0, None))
    r = np.clip(cov / np.where(denom > 0, denom, 1.0), -1.0, 1.0)
    r = np.where(var_x <= CONSTANT_RTOL * msq_x, 0.0, r)
    return np.where((var_y <= CONSTANT_RTOL * msq_y) | (n < 2), np.nan, r)


def pcc_influence(pred: ArrayLike, hr: ArrayLike, mask: ArrayLike) -> np.ndarray:
    """Change of the overall mean PCC when each masked position alone is removed from the mask.

    ``delta[n, i, j] = nanmean(pcc(pred, hr, mask - {(n, i, j)})) - nanmean(pcc(pred, hr, mask))``
    computed in closed form from running sums (see the module docstring). Positive: the position
    pulls the score down (removing it raises the mean PCC).

    Parameters
    ----------
    pred, hr : ``(N, G, H, W)`` real arrays; mask : ``(N, H, W)`` bool, the scored positions.

    Returns
    -------
    float64 ``(N, H, W)``; NaN outside the mask, and everywhere the mean PCC after removal is
    undefined (no finite pair left).
    """
    p_t, h_t, m_t = prepare_maps(pred, hr, mask, "cpu")
    x_all, y_all, mask_np = to_numpy(p_t), to_numpy(h_t), m_t.numpy()
    r0 = pcc(x_all, y_all, mask_np, device="cpu")  # (N, G), as the brute force sees it
    fin0 = np.isfinite(r0)
    total, count = float(r0[fin0].sum()), int(fin0.sum())
    base = total / count if count else np.nan
    n_reg, g, hh, ww = x_all.shape
    out = np.full((n_reg, hh, ww), np.nan)
    for n in range(n_reg):
        m = mask_np[n]
        c = int(m.sum())
        if c == 0:
            continue
        x, y = x_all[n][:, m], y_all[n][:, m]  # (G, c)
        sx, sy = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
        x, y = x - sx, y - sy  # centred: the sums below stay well conditioned
        sum_x, sum_y = x.sum(axis=1, keepdims=True), y.sum(axis=1, keepdims=True)
        sum_xx = (x * x).sum(axis=1, keepdims=True)
        sum_yy = (y * y).sum(axis=1, keepdims=True)
        sum_xy = (x * y).sum(axis=1, keepdims=True)
        c1 = c - 1
        cc = max(c1, 1)
        mx, my = (sum_x - x) / cc, (sum_y - y) / cc  # (G, c): means without each position
        var_x = (sum_xx - x * x) / cc - mx * mx
        var_y = (sum_yy - y * y) / cc - my * my
        cov = (sum_xy - x * y) / cc - mx * my
        msq_x, msq_y = var_x + (mx + sx) ** 2, var_y + (my + sy) ** 2
        r1 = _pcc_np(cov, var_x, var_y, msq_x, msq_y, np.full(x.shape, c1))
        fin1 = np.isfinite(r1)
        t_new = total - r0[n][fin0[n]].sum() + np.where(fin1, r1, 0.0).sum(axis=0)  # (c,)
        c_new = count - fin0[n].sum() + fin1.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[n][m] = np.where(c_new > 0, t_new / np.maximum(c_new, 1), np.nan) - base
    return out


def max_influence(deltas: list[np.ndarray] | np.ndarray) -> float:
    """Largest absolute seed-mean influence over positions: ``max_p |mean_s delta_s[p]|``.

    ``deltas``: one ``(N, H, W)`` array from :func:`pcc_influence` or a list of them (one per
    seed, same shape). NaN-aware: the mean over seeds ignores NaN, positions NaN in every seed
    are skipped; NaN if no position is finite.
    """
    if isinstance(deltas, (list, tuple)):
        if not deltas:
            return float("nan")
        arr = np.stack([np.asarray(d, dtype=np.float64) for d in deltas])
    else:
        arr = np.asarray(deltas, dtype=np.float64)
        arr = arr[None] if arr.ndim == 3 else arr
    if arr.size == 0 or not np.isfinite(arr).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=0)
    return float(np.nanmax(np.abs(mean)))
