"""Tensor helpers shared by the scoring modules: input validation (shapes, dtypes, finiteness,
masks; one-line :class:`MetricInputError` naming the argument and the fix), device choice, and the
float64 kernels that metrics and diversity scores are built from (masked means, Pearson r from
moments, fused PCC / RMSE).

Layouts: maps ``(N, G, H, W)``, masks ``(N, H, W)`` bool (True = in tissue), per-gene ranges
``(G,)``. The map kernels (:func:`pcc_rmse_t` here, ``bench.scoring.ssim_engine``) take maps as
float32 or float64 tensors on one device, computing in float64 either way, and report NaN/Inf in
them as :func:`as_float64` does; the other kernels take float64 tensors and do no validation.

On the CPU the per-map kernels (PCC / RMSE moments here, SSIM with the same moments in
``ssim_engine``) are compiled with numba (a dependency of scanpy) when it imports: each map is
computed on its own, reading float32 or float64 values as they are, the maps split over
``torch.get_num_threads()`` threads (the kernels release the GIL; no threading layer of numba's
is started, so forked workers inherit nothing). The same pass sums every value of each map, so a
finite total proves the maps finite without a second read. Without numba, and on other devices,
the batched torch kernels run instead; both compute the same definitions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
Device = str | torch.device | None

CONSTANT_RTOL = 1e-12
# PCC/RMSE chunk (float64 elements per batch of regions); docs/decisions.md, "Metric chunk sizes"
_CHUNK_ELEMENTS = 1 << 17
# Ranges of maps per thread in the compiled kernels (see over_maps)
_RANGES_PER_THREAD = 4

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


def check_finite(t: torch.Tensor, name: str, total: float | None = None) -> None:
    """Raise :class:`MetricInputError` when ``t`` holds NaN or Inf values.

    ``total``: the sum of all of ``t``'s values when a kernel has already taken it (else one
    reduction here). A finite sum proves every value finite; a sum of finite values overflows
    only near 1e308, so a non-finite one is followed by the exact count."""
    if total is None:
        total = float(t.sum())
    if math.isfinite(total):
        return
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        hint = _NONFINITE_HINT.get(name, "pass finite values")
        raise MetricInputError(f"{name} contains {bad} NaN/Inf values; {hint}")


def as_float64(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """Cast ``x`` to a float64 tensor on ``device``; raise if it is not real or not finite."""
    t = real_tensor(x, name).to(device=device, dtype=torch.float64)
    check_finite(t, name)
    return t


def as_maps(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    """``x`` as a float32 or float64 tensor on ``device`` (float32 and float64 kept, any other
    real dtype cast to float64); raise if it is not real. Finiteness is left to the map kernels,
    which check it as they read the values."""
    t = real_tensor(x, name)
    dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float64
    return t.to(device=device, dtype=dtype)


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
    pred: ArrayLike, hr: ArrayLike, mask: ArrayLike, device: Device, finite: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate ``pred``/``hr`` ``(N, G, H, W)`` and ``mask`` ``(N, H, W)``; move them once.

    ``finite=True``: the maps come back float64 and checked for NaN/Inf. ``finite=False``: for
    the map kernels, which check finiteness themselves; float32 maps stay float32 (no float64
    copy of the stack)."""
    dev = resolve_device(device)
    p_shape = check_pair(pred, hr)
    n, _, h, w = p_shape
    m = as_mask(mask, (n, h, w), dev)
    cast = as_float64 if finite else as_maps
    return cast(pred, "pred", dev), cast(hr, "hr", dev), m


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
    """Run ``kernel(start, stop, *args)`` on contiguous ranges of ``n_maps`` maps, on
    ``torch.get_num_threads()`` threads at most (so a cell's thread limit holds).

    ``_RANGES_PER_THREAD`` ranges per thread, each taken by whichever thread is free, so a thread
    slowed by other work on its core takes fewer; every map is computed on its own, so the values
    do not depend on the split."""
    n_threads = max(1, min(torch.get_num_threads(), n_maps))
    if n_threads == 1:
        kernel(0, n_maps, *args)
        return
    n_ranges = min(n_maps, _RANGES_PER_THREAD * n_threads)
    bounds = [n_maps * i // n_ranges for i in range(n_ranges + 1)]
    with ThreadPoolExecutor(n_threads) as pool:
        done = [
            pool.submit(kernel, lo, hi, *args) for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]
        for d in done:
            d.result()


# Columns of the per-map sums the compiled kernels write, in this order: the masked count n;
# over the mask, the sums of p - p0, y - y0, (p - p0)^2, (y - y0)^2, (p - p0)(y - y0) and
# (p - y)^2; the shifts p0, y0; the sums of every value of p and of y, mask or not (the
# finiteness check).
SUM_ALL_P, SUM_ALL_Y, N_SUMS = 9, 10, 11


def first_masked(mask: torch.Tensor) -> np.ndarray:
    """Flat index ``(N,)`` int64 of each region's first masked position (0 for an empty mask)."""
    return mask.reshape(mask.shape[0], -1).numpy().argmax(axis=1).astype(np.int64)


def _moments_kernel(start, stop, x, y, keep, first, genes, sums):  # pragma: no cover - compiled
    """Per map ``m`` in ``[start, stop)`` of ``x``, ``y`` (M, H, W) float32 or float64, region
    mask ``keep[m // genes]`` (H, W) bool, shifts at the flat position ``first[m // genes]``:
    the ``N_SUMS`` sums (order above) into ``sums[m]``, in float64, one row at a time.

    Sums of ``p - p0`` and ``y - y0``, with ``p0``, ``y0`` the values at the first masked
    position: a map constant over its mask gives exactly 0 variance, and since ``p0`` is one of
    the n values, ``(E[p] - p0)^2 <= n var_p``, so the cancellation in
    ``var = E[(p - p0)^2] - (E[p] - p0)^2`` costs at most ~n ulp of ``var`` itself.
    ``ssim_engine._score_kernel`` gathers the same sums with the same row loop (kept identical,
    so the two give equal values; tests check it)."""
    h, w = x.shape[1], x.shape[2]
    for m in range(start, stop):
        km = keep[m // genes]
        f = first[m // genes]
        p0 = np.float64(x[m, f // w, f % w])
        y0 = np.float64(y[m, f // w, f % w])
        n = sp = sy = spp = syy = spy = see = ap = ay = 0.0
        for t in range(h):
            xr = x[m, t]
            yr = y[m, t]
            kr = km[t]
            for j in range(w):  # the row loop shared with ssim_engine._score_kernel
                pj = np.float64(xr[j])
                yj = np.float64(yr[j])
                kj = 1.0 if kr[j] else 0.0
                dp = kj * (pj - p0)
                dy = kj * (yj - y0)
                de = kj * (pj - yj)
                n += kj
                sp += dp
                sy += dy
                spp += dp * dp
                syy += dy * dy
                spy += dp * dy
                see += de * de
                ap += pj
                ay += yj
        o = sums[m]  # in the order given above N_SUMS
        o[0], o[1], o[2], o[3], o[4], o[5] = n, sp, sy, spp, syy, spy
        o[6], o[7], o[8], o[9], o[10] = see, p0, y0, ap, ay


def check_sums_finite(sums: np.ndarray, pred: torch.Tensor, hr: torch.Tensor) -> None:
    """Raise as :func:`as_float64` does when the kernels' totals of ``pred`` or ``hr`` (columns
    ``SUM_ALL_P``, ``SUM_ALL_Y`` of ``sums`` (M, N_SUMS)) are not finite and a value is NaN/Inf."""
    for col, t, name in ((SUM_ALL_P, pred, "pred"), (SUM_ALL_Y, hr, "hr")):
        total = float(sums[:, col].sum()) if len(sums) else 0.0
        check_finite(t, name, total)


def pcc_rmse_from_sums(sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PCC and RMSE from the kernels' sums ``(..., N_SUMS)`` float64 (see :func:`_moments_kernel`).

    With ``d = n`` clamped to 1, ``mp = S_p / d``, ``my = S_y / d``:
    ``var_p = max(S_pp / d - mp^2, 0)``, ``cov = S_py / d - mp my``, ``mse = S_ee / d``
    (exactly 0 when pred == hr bitwise) and ``E[p^2] = var_p + (mp + p0)^2`` for the
    constant-map rule; then :func:`pcc_from_moments`, and RMSE NaN where the mask is empty."""
    n, sp, sy, spp, syy, spy, see, p0, y0 = sums[..., :SUM_ALL_P].unbind(-1)
    safe = n.clamp_min(1.0)
    mp, my = sp / safe, sy / safe
    var_p = (spp / safe - mp * mp).clamp_min(0.0)
    var_y = (syy / safe - my * my).clamp_min(0.0)
    cov = spy / safe - mp * my
    msq_p, msq_y = var_p + (mp + p0) ** 2, var_y + (my + y0) ** 2
    r = pcc_from_moments(cov, var_p, var_y, msq_p, msq_y, n)
    return r, torch.where(n > 0, (see / safe).sqrt(), torch.nan)


def pcc_rmse_t(
    pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCC and RMSE (N, G) (see :func:`pcc`, :func:`rmse`) of float32 or float64 maps, NaN/Inf
    in them reported as :func:`as_float64` does.

    CPU with numba: one compiled pass per map (:func:`_moments_kernel`) of float64 sums shifted
    by the first masked values, finished by :func:`pcc_rmse_from_sums`. Otherwise, on float64:

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
        sums = np.zeros((n_ * g, N_SUMS))  # stays 0 for maps without positions
        x = pred.reshape(n_ * g, h, w).contiguous().numpy()
        y = hr.reshape(n_ * g, h, w).contiguous().numpy()
        if h * w:
            keep = mask.contiguous().numpy()
            over_maps(kernel, n_ * g, x, y, keep, first_masked(mask), g, sums)
        check_sums_finite(sums, pred, hr)
        return pcc_rmse_from_sums(torch.from_numpy(sums).reshape(n_, g, N_SUMS))
    pred, hr = as_float64(pred, "pred", pred.device), as_float64(hr, "hr", hr.device)
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
