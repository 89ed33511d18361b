"""Tensor helpers shared by the scoring modules: input validation (shapes, dtypes, finiteness,
masks; one-line :class:`MetricInputError` naming the argument and the fix), device choice, and the
float64 kernels that metrics and diversity scores are built from (masked means, Pearson r from
moments, fused PCC / RMSE).

Layouts: maps ``(N, G, H, W)``, masks ``(N, H, W)`` bool (True = in tissue), per-gene ranges
``(G,)``; kernels take float64 tensors on one device and do no validation.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
Device = str | torch.device | None

CONSTANT_RTOL = 1e-12
# PCC/RMSE chunk (float64 elements per batch of regions); docs/decisions.md, "Metric chunk sizes"
_CHUNK_ELEMENTS = 1 << 17

_NONFINITE_HINT = {
    "pred": "methods must return finite maps",
    "hr": "ground-truth maps must be finite; check the loader and normalisation",
    "samples": "methods must return finite samples",
    "data_range": "pass each gene's finite maximum over the training HR maps",
}


class MetricInputError(ValueError):
    """Bad input to a metric; the message names the argument, the problem and the fix."""


def default_device() -> torch.device:
    """Return ``cuda`` when torch sees a GPU, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: Device) -> torch.device:
    return default_device() if device is None else torch.device(device)


# --- validation -----------------------------------------------


def real_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """``x`` as a tensor (no copy where possible); raise unless it is bool, integer or float."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise MetricInputError(f"{name} has dtype {x.dtype}; pass a real numeric array")
        return x.detach()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":  # bool, int, uint, float
        raise MetricInputError(f"{name} has dtype {a.dtype}; pass a real numeric array")
    return torch.as_tensor(np.ascontiguousarray(a))


def as_float64(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """Cast ``x`` to a float64 tensor on ``device``; raise if it is not real or not finite."""
    t = real_tensor(x, name).to(device=device, dtype=torch.float64)
    if bool(torch.isfinite(t.sum())):  # one reduction; a sum of finite values overflows only
        return t  # near 1e308, where the exact count below decides
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        hint = _NONFINITE_HINT.get(name, "pass finite values")
        raise MetricInputError(f"{name} contains {bad} NaN/Inf values; {hint}")
    return t


def shape_of(x: ArrayLike) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def check_ndim(x: ArrayLike, name: str, layout: str) -> tuple[int, ...]:
    shape = shape_of(x)
    if len(shape) != layout.count(",") + 1:
        raise MetricInputError(f"{name} has shape {shape}; expected {layout}")
    return shape


def check_pair(pred: ArrayLike, hr: ArrayLike) -> tuple[int, int, int, int]:
    p_shape = check_ndim(pred, "pred", "(N, G, H, W)")
    h_shape = check_ndim(hr, "hr", "(N, G, H, W)")
    if p_shape != h_shape:
        raise MetricInputError(
            f"pred has shape {p_shape} but hr has shape {h_shape}; both must be (N, G, H, W)"
        )
    return p_shape


def as_mask(mask: ArrayLike, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """Return ``mask`` as a bool tensor ``(N, H, W)`` on ``device``; accept bool or 0/1 values."""
    if shape_of(mask) != shape:
        raise MetricInputError(
            f"mask has shape {shape_of(mask)}; expected (N, H, W) = {shape} to match the maps"
        )
    t = real_tensor(mask, "mask")
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            raise MetricInputError(
                f"mask has dtype {t.dtype} with values other than 0/1; pass a boolean array "
                "(True = in tissue)"
            )
        t = t != 0
    return t.to(device)


def prepare_maps(
    pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``pred``/``hr`` ``(N, G, H, W)`` and ``mask`` ``(N, H, W)``; move them once."""
    dev = resolve_device(device)
    p_shape = check_pair(pred, hr)
    n, _, h, w = p_shape
    m = as_mask(mask, (n, h, w), dev)
    return as_float64(pred, "pred", dev), as_float64(hr, "hr", dev), m


def prepare_range(data_range: ArrayLike, n_genes: int, device: torch.device) -> torch.Tensor:
    shape = shape_of(data_range)
    if shape != (n_genes,):
        raise MetricInputError(
            f"data_range has shape {shape}; expected (G,) = ({n_genes},), one max per gene"
        )
    r = as_float64(data_range, "data_range", device)
    bad = int((r <= 0).sum())
    if bad:
        raise MetricInputError(
            f"data_range has {bad} non-positive values; each gene's training max must be > 0 "
            "(drop genes never expressed in training)"
        )
    return r


# --- tensor kernels: float64 tensors on one device, no validation ---------------------------


def masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``v`` ``(N, G, H, W)`` over ``mask`` ``(N, H, W)`` -> ``(N, G)``; NaN if empty."""
    m = mask[:, None]
    n = m.sum(dim=(-2, -1)).to(v.dtype)  # (N, 1)
    s = torch.where(m, v, 0.0).sum(dim=(-2, -1))
    return torch.where(n > 0, s / n.clamp_min(1.0), torch.nan)


def is_constant(var: torch.Tensor, msq: torch.Tensor) -> torch.Tensor:
    """True where a map's variance is negligible relative to its mean square (see module doc)."""
    return var <= CONSTANT_RTOL * msq


def pcc_from_moments(
    cov: torch.Tensor,
    var_x: torch.Tensor,
    var_y: torch.Tensor,
    msq_x: torch.Tensor,
    msq_y: torch.Tensor,
    n: torch.Tensor,
) -> torch.Tensor:
    """Pearson r of x (prediction) with y (truth) from population moments.

    NaN where y is constant or ``n < 2`` (pair excluded); 0 where x is constant and y is not.
    """
    denom = var_x.clamp_min(0).sqrt() * var_y.clamp_min(0).sqrt()  # no underflow of the product
    r = (cov / torch.where(denom > 0, denom, 1.0)).clamp(-1.0, 1.0)
    r = torch.where(is_constant(var_x, msq_x), 0.0, r)
    return torch.where(is_constant(var_y, msq_y) | (n < 2), torch.nan, r)


def pcc_rmse_t(
    pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCC and RMSE (N, G) in one pass over chunks of regions (see :func:`pcc`, :func:`rmse`).

    Raw float64 moments over the mask (``n``, ``E[p]``, ``E[h]``, ``E[p^2]``, ``E[h^2]``,
    ``E[ph]``, each one fused product-sum over ``p * m`` or ``h * m``) give
    ``var = E[p^2] - E[p]^2``, ``cov = E[ph] - E[p]E[h]`` and
    ``mse = E[p^2] - 2 E[ph] + E[h^2]``. In float64 the cancellation costs ~1e-16 of the mean
    square, far below the 1e-5 agreement with the references and the constant-map threshold
    (1e-12 of the mean square). Chunks keep the temporaries in cache.
    """
    n_, g, h, w = pred.shape
    P, Y = pred.reshape(n_, g, h * w), hr.reshape(n_, g, h * w)
    M = mask.reshape(n_, h * w, 1).to(pred.dtype)
    r_all = torch.empty(n_, g, dtype=torch.float64, device=pred.device)
    e_all = torch.empty_like(r_all)
    step = max(1, _CHUNK_ELEMENTS // (g * h * w))
    for s in range(0, n_, step):
        p, y, m = P[s : s + step], Y[s : s + step], M[s : s + step]
        n = m.sum(dim=1)  # (B, 1)
        safe = n.clamp_min(1.0)
        mt = m.transpose(1, 2)  # (B, 1, L)
        pm, ym = p * mt, y * mt
        mp, my = pm.sum(-1) / safe, ym.sum(-1) / safe  # (B, G)
        spp = torch.linalg.vecdot(pm, p) / safe  # E[p^2]
        syy = torch.linalg.vecdot(ym, y) / safe
        spy = torch.linalg.vecdot(pm, y) / safe
        var_p, var_y, cov = spp - mp * mp, syy - my * my, spy - mp * my
        mse = spp - 2 * spy + syy  # exactly 0 when pred == hr bitwise
        msq_p, msq_y = spp, syy
        nn = n.expand(-1, g)
        r_all[s : s + step] = pcc_from_moments(cov, var_p, var_y, msq_p, msq_y, nn)
        e_all[s : s + step] = torch.where(nn > 0, mse.clamp_min(0).sqrt(), torch.nan)
    return r_all, e_all


def pcc_t(pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return pcc_rmse_t(pred, hr, mask)[0]


def rmse_t(pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return pcc_rmse_t(pred, hr, mask)[1]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()
