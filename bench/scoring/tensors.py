"""Tensor helpers shared by the scoring modules: input validation (shapes, dtypes, finiteness,
masks; one-line :class:`MetricInputError` naming the argument and the fix), device choice, and the
float64 kernels that metrics and diversity scores are built from (masked means, Pearson r from
moments, fused PCC / RMSE).

Layouts: maps ``(N, G, H, W)``, masks ``(N, H, W)`` bool (True = in tissue), per-gene ranges
``(G,)``; kernels take float64 tensors on one device and do no validation.

On the CPU the per-map kernels (PCC / RMSE moments here, SSIM in ``ssim_engine``) are compiled
with numba (a dependency of scanpy) when it imports: each map is computed on its own, the
maps split over ``torch.get_num_threads()`` threads (the kernels release the GIL; no threading
layer of numba's is started, so forked workers inherit nothing). Without numba, and on other
devices, the batched torch kernels run instead; both compute the same definitions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


# --- compiled CPU kernels ---------------------------------------------------------------------


@functools.cache
def compiled(kernel: Callable) -> Callable | None:
    """``kernel`` (a module-level function over a range of maps) compiled with numba: no-Python
    mode, GIL released, contraction to FMA and reassociated sums allowed (no NaN/Inf
    assumptions), cached on disk where a cache folder is writable; None when numba does not
    import."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba comes with scanpy
        return None
    options = dict(nogil=True, fastmath={"contract", "reassoc", "nsz"}, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(kernel)
    except RuntimeError:  # no writable cache folder: compile in every process instead
        return numba.njit(**options)(kernel)


def use_compiled(device: torch.device, kernel: Callable) -> Callable | None:
    """The compiled ``kernel`` for tensors on ``device``: None unless it is the CPU and numba
    imports."""
    return compiled(kernel) if device.type == "cpu" else None


def over_maps(kernel: Callable, n_maps: int, *args: object) -> None:
    """Run ``kernel(start, stop, *args)`` on contiguous ranges of ``n_maps`` maps, one range per
    thread, ``torch.get_num_threads()`` threads at most (so a cell's thread limit holds)."""
    n_threads = max(1, min(torch.get_num_threads(), n_maps))
    bounds = [n_maps * i // n_threads for i in range(n_threads + 1)]
    if n_threads == 1:
        kernel(0, n_maps, *args)
        return
    with ThreadPoolExecutor(n_threads) as pool:
        done = [
            pool.submit(kernel, lo, hi, *args) for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]
        for d in done:
            d.result()


def _moments_kernel(start, stop, p, y, keep, genes, out):  # pragma: no cover - compiled
    """Per map ``m`` in ``[start, stop)`` of ``p``, ``y`` (M, L), region mask ``keep[m // genes]``
    (L,) bool: ``out[m] = (n, var_p, var_y, cov, E[p^2], E[y^2], mse)`` over the mask.

    One pass of sums of ``p - p0`` and ``y - y0``, with ``p0``, ``y0`` the values at the first
    masked position: a map constant over its mask gives exactly 0 variance, and since ``p0`` is
    one of the n values, ``(E[p] - p0)^2 <= n var_p``, so the cancellation in
    ``var = E[(p - p0)^2] - (E[p] - p0)^2`` costs at most ~n ulp of ``var`` itself."""
    length = p.shape[1]
    for m in range(start, stop):
        k = keep[m // genes]
        pr = p[m]
        yr = y[m]
        first = 0
        while first < length and not k[first]:
            first += 1
        p0 = pr[first] if first < length else 0.0
        y0 = yr[first] if first < length else 0.0
        n = 0.0
        sp = 0.0
        sy = 0.0
        spp = 0.0
        syy = 0.0
        spy = 0.0
        see = 0.0
        for j in range(length):
            kj = 1.0 if k[j] else 0.0
            dp = kj * (pr[j] - p0)
            dy = kj * (yr[j] - y0)
            de = kj * (pr[j] - yr[j])
            n += kj
            sp += dp
            sy += dy
            spp += dp * dp
            syy += dy * dy
            spy += dp * dy
            see += de * de
        safe = max(n, 1.0)
        mp = sp / safe
        my = sy / safe
        var_p = max(spp / safe - mp * mp, 0.0)
        var_y = max(syy / safe - my * my, 0.0)
        out[m, 0] = n
        out[m, 1] = var_p
        out[m, 2] = var_y
        out[m, 3] = spy / safe - mp * my
        out[m, 4] = var_p + (mp + p0) ** 2
        out[m, 5] = var_y + (my + y0) ** 2
        out[m, 6] = see / safe


def pcc_rmse_t(
    pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCC and RMSE (N, G) (see :func:`pcc`, :func:`rmse`).

    CPU with numba: one compiled pass per map (:func:`_moments_kernel`) of sums shifted by the
    first masked values, giving ``var``, ``cov``, ``mse = E[(p - h)^2]`` (exactly 0 when
    pred == hr bitwise) and ``E[p^2] = var + E[p]^2`` for the constant-map rule. Otherwise:

    Raw float64 moments over the mask (``n``, ``E[p]``, ``E[h]``, ``E[p^2]``, ``E[h^2]``,
    ``E[ph]``, each one fused product-sum over ``p * m`` or ``h * m``) give
    ``var = E[p^2] - E[p]^2``, ``cov = E[ph] - E[p]E[h]`` and
    ``mse = E[p^2] - 2 E[ph] + E[h^2]``. In float64 the cancellation costs ~1e-16 of the mean
    square, far below the 1e-5 agreement with the references and the constant-map threshold
    (1e-12 of the mean square). Chunks keep the temporaries in cache.
    """
    n_, g, h, w = pred.shape
    kernel = use_compiled(pred.device, _moments_kernel)
    if kernel is not None:
        out = np.empty((n_ * g, 7))
        p = pred.reshape(n_ * g, h * w).contiguous().numpy()
        y = hr.reshape(n_ * g, h * w).contiguous().numpy()
        keep = mask.reshape(n_, h * w).contiguous().numpy()
        over_maps(kernel, n_ * g, p, y, keep, g, out)
        moments = torch.from_numpy(out).reshape(n_, g, 7).unbind(-1)
        n, var_p, var_y, cov, msq_p, msq_y, mse = moments
        r = pcc_from_moments(cov, var_p, var_y, msq_p, msq_y, n)
        return r, torch.where(n > 0, mse.sqrt(), torch.nan)
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
