"""The engine behind :func:`bench.scoring.metrics.ssim` (which states the definition): a
separable, zero-padded Gaussian filter of four moments per map, in one of two forms, and on the
CPU the PCC / RMSE sums of ``bench.scoring.tensors`` gathered in the same read of the maps
(:func:`score_t`).

Both forms filter ``a = u + v`` and ``d = u - v`` (u, v the maps on the u scale, zeroed outside
the mask) and their squares: with ``A = f(a)``, ``D = f(d)``, ``VA = f(a^2) - A^2`` and
``VD = f(d^2) - D^2``, ``mu_x mu_y = (A^2 - D^2) / 4``, ``mu_x^2 + mu_y^2 = (A^2 + D^2) / 2``,
``2 s_xy = (VA - VD) / 2`` and ``s_x^2 + s_y^2 = (VA + VD) / 2``, so
``SSIM = (A^2 - D^2 + 2 C1)(VA - VD + 2 C2) / ((A^2 + D^2 + 2 C1)(VA + VD + 2 C2))``.

- CPU (numba, see ``bench.scoring.tensors``): one compiled kernel per map, in float64 whether
  the maps are float32 or float64. Each row of the maps is read once: its PCC / RMSE sums and
  the sum of all its values (the finiteness check) are taken, and its four moments
  (``u = clip(x * (1 / r), 0, 1)``) go into a ring of the last ``2 radius + 4`` rows. Output
  rows are filtered four at a time down the columns from the ring (each ring row loaded once for
  the four), then along the row from a zero-padded buffer, and SSIM and its masked sum follow at
  once. Work ``O(H W (2 radius + 1))`` per map, memory ``O(W (2 radius + 4))`` per thread, and
  the full map is stored only when asked for.
- Other devices (and the CPU without numba): batched torch in float32 with per-map centring,
  the filter run as banded matrix products (below), in chunks; PCC / RMSE by
  ``tensors.pcc_rmse_t``.

Constants: Gaussian window sigma 1.5, radius 5 (11 x 11; scikit-image's ``truncate=3.5`` gives
the same radius at sigma 1.5), K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from bench.scoring.tensors import (
    N_SUMS,
    check_finite,
    check_sums_finite,
    first_masked,
    over_maps,
    pcc_rmse_from_sums,
    pcc_rmse_t,
    use_compiled,
)

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_RADIUS",
    "SSIM_SIGMA",
    "kernels",
    "score_t",
    "ssim_maps",
    "ssim_maps_torch",
]

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Upper bound on the float32 elements of one SSIM chunk (stacked moments of the chunk's maps),
# so hundreds of 256 x 256 maps do not allocate several GiB of temporaries at once; the size is
# measured (docs/decisions.md, "Metric chunk sizes").
_SSIM_CHUNK_ELEMENTS = 1 << 20
_TILE = 32  # output tile of the banded filter on long axes
assert SSIM_RADIUS == 5, "_score_kernel writes out the 11 taps of radius 5"


def _gaussian_1d(device: torch.device) -> torch.Tensor:
    k = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (k / SSIM_SIGMA) ** 2)
    return g / g.sum()  # the 2-D window g g^T then sums to 1 as well


@functools.lru_cache(maxsize=32)
def _band(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(n, n) symmetric banded matrix ``B[i, j] = g[j - i]`` (|j - i| <= radius, else 0).

    ``x @ B`` correlates every row of ``x`` with the Gaussian, zero-padded at both ends: the
    padding is the band's missing entries, so no padded copy is made and the filter runs as one
    large matrix product (BLAS), much faster on a CPU than a depthwise convolution.
    """
    g = _gaussian_1d(torch.device("cpu"))
    i = torch.arange(n)
    d = i[None, :] - i[:, None]
    band = torch.zeros(n, n, dtype=torch.float64)
    inside = d.abs() <= SSIM_RADIUS
    band[inside] = g[(d + SSIM_RADIUS)[inside]]
    return band.to(device=device, dtype=dtype)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """Separable zero-padded Gaussian of every map of ``x`` (B, H, W): rows, then columns.

    Long axes are cut into tiles of ``_TILE`` outputs, each a product with the band's
    ``_TILE + 2 radius`` non-zero rows only, so the work grows linearly with the axis length.
    """
    b, h, w = x.shape
    band = _band(w, x.device, x.dtype)
    flat = x.reshape(b * h, w)
    if w <= 2 * _TILE:
        rows = flat @ band
    else:
        rows = torch.cat([flat[:, lo:hi] @ band[lo:hi, s:e] for s, e, lo, hi in _tiles(w)], 1)
    rows = rows.reshape(b, h, w)
    band = _band(h, x.device, x.dtype)
    if h <= 2 * _TILE:
        return band @ rows
    return torch.cat([band[s:e, lo:hi] @ rows[:, lo:hi] for s, e, lo, hi in _tiles(h)], 1)


def _tiles(n: int) -> list[tuple[int, int, int, int]]:
    """(start, end, input start, input end) of each output tile along an axis of length n."""
    return [
        (s, min(n, s + _TILE), max(0, s - SSIM_RADIUS), min(n, s + _TILE + SSIM_RADIUS))
        for s in range(0, n, _TILE)
    ]


def kernels(device: torch.device | str) -> str:
    """The form :func:`ssim_maps` and :func:`score_t` take on ``device``: ``"compiled"`` (the
    CPU with numba) or ``"torch"``."""
    return "torch" if use_compiled(torch.device(device), _score_kernel) is None else "compiled"


def ssim_maps(
    pred: torch.Tensor,
    hr: torch.Tensor,
    data_range: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """SSIM map (N, G, H, W) float32 of float32 or float64 maps ``pred``, ``hr`` with per-gene
    ranges ``data_range`` (G,) float64; with ``mask`` (N, H, W) bool, both maps are zeroed
    outside it and the (N, G) float64 masked means are returned instead (NaN for an empty mask),
    the full map never stored. NaN/Inf in the maps raise :class:`MetricInputError`. The
    compiled CPU kernel where it can run, else :func:`ssim_maps_torch`.
    """
    kernel = use_compiled(pred.device, _score_kernel)
    if kernel is None:
        check_finite(pred, "pred")
        check_finite(hr, "hr")
        return ssim_maps_torch(pred, hr, data_range, mask)
    _, means, maps = _run_compiled(kernel, pred, hr, data_range, mask)
    return means if mask is not None else maps


def score_t(
    pred: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor, data_range: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCC, SSIM and RMSE, each (N, G) float64, of float32 or float64 maps ``pred``, ``hr``
    (N, G, H, W) over ``mask`` (N, H, W) bool, SSIM with ``data_range`` (G,) float64; NaN/Inf in
    the maps raise :class:`MetricInputError`.

    On the CPU with numba, one read of each map gives all three (:func:`_score_kernel`; PCC and
    RMSE equal ``tensors.pcc_rmse_t``'s). Elsewhere the maps are cast to float64 once and
    ``pcc_rmse_t`` and :func:`ssim_maps_torch` run on them."""
    kernel = use_compiled(pred.device, _score_kernel)
    if kernel is None:
        p = pred.to(torch.float64)
        h = hr.to(torch.float64)
        check_finite(p, "pred")
        check_finite(h, "hr")
        r_pcc, r_rmse = pcc_rmse_t(p, h, mask)
        return r_pcc, ssim_maps_torch(p, h, data_range, mask), r_rmse
    sums, means, _ = _run_compiled(kernel, pred, hr, data_range, mask)
    r_pcc, r_rmse = pcc_rmse_from_sums(torch.from_numpy(sums).reshape(*means.shape, N_SUMS))
    return r_pcc, means, r_rmse


def _run_compiled(
    kernel, pred: torch.Tensor, hr: torch.Tensor, data_range: torch.Tensor, mask
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """:func:`_score_kernel` over all maps: the sums ``(N G, N_SUMS)``, the masked SSIM means
    (N, G) float64 and, without ``mask`` (an all-True one then), the SSIM maps (N, G, H, W)
    float32 (else an empty array). Checks finiteness from the kernel's totals."""
    n, g, h, w = pred.shape
    x = pred.reshape(n * g, h, w).contiguous().numpy()
    y = hr.reshape(n * g, h, w).contiguous().numpy()
    scale = (1.0 / data_range.to(torch.float64)).repeat(n).numpy()  # per map, gene-major
    full = mask is None
    keep = torch.ones(n, h, w, dtype=torch.bool) if full else mask.contiguous()
    sums = np.zeros((n * g, N_SUMS))  # stays 0 for maps without positions
    means = np.full(n * g, np.nan)
    maps = np.empty((n * g, h, w) if full else (0, h, w), dtype=np.float32)
    if h * w:
        g1d = _gaussian_1d(torch.device("cpu")).numpy()
        c1, c2 = 2 * SSIM_K1**2, 2 * SSIM_K2**2  # L = 1 on the u scale
        args = (x, y, scale, keep.numpy(), first_masked(keep), g, g1d, c1, c2)
        over_maps(kernel, n * g, *args, sums, means, maps, full)
    check_sums_finite(sums, pred, hr)
    means_t = torch.from_numpy(means).reshape(n, g)
    return sums, means_t, torch.from_numpy(maps).reshape(-1, g, h, w)


def _score_kernel(
    start, stop, x, y, scale, keep, first, genes, g, c1, c2, sums, means, maps, full
):  # pragma: no cover - compiled
    """Maps ``start .. stop - 1`` of ``x``, ``y`` (M, H, W) float32 or float64 (module
    docstring; ``g`` the 11-tap window, ``keep[m // genes]`` the map's mask, ``first`` as in
    ``tensors._moments_kernel``): the PCC / RMSE sums into ``sums[m]`` (in the order of
    ``tensors.N_SUMS``), the masked SSIM mean into ``means[m]`` (NaN for an empty mask) and,
    when ``full``, the SSIM map into ``maps[m]``. The taps are written out for
    ``SSIM_RADIUS = 5`` (checked at import).

    Output rows go four at a time, ``i .. i + 3``: they need input rows ``i - 5 .. i + 8``,
    which the ring of 14 rows of moments holds (row ``t`` in slot ``t % 14``; rows outside the
    map are zero). Each is filtered down the columns into ``col`` (5 zeros either side), then
    along the row at every output position."""
    h, w = x.shape[1], x.shape[2]
    w0, w1, w2, w3, w4, w5 = g[5], g[4], g[3], g[2], g[1], g[0]
    ring = np.zeros((14, 4, w))  # a, d, a^2, d^2 of input rows
    col = np.zeros((4, 4, w + 10))  # column-filtered moments of the four output rows
    val = np.empty(w)
    for m in range(start, stop):
        s = scale[m]
        km = keep[m // genes]
        f = first[m // genes]
        p0 = np.float64(x[m, f // w, f % w])
        y0 = np.float64(y[m, f // w, f % w])
        n = sp = sy = spp = syy = spy = see = ap = ay = 0.0
        total = 0.0
        ring[:] = 0.0  # rows above the map read as zero padding
        t = 0  # next input row to read
        for i in range(0, h, 4):
            while t <= i + 8:
                slot = t % 14
                if t >= h:
                    ring[slot] = 0.0  # rows below the map: zero padding
                    t += 1
                    continue
                xr = x[m, t]
                yr = y[m, t]
                kr = km[t]
                for j in range(w):  # the row loop shared with tensors._moments_kernel
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
                ra, rd, raa, rdd = ring[slot, 0], ring[slot, 1], ring[slot, 2], ring[slot, 3]
                for j in range(w):
                    u = np.float64(xr[j]) * s
                    u = 0.0 if u < 0.0 else u
                    u = 1.0 if u > 1.0 else u
                    v = np.float64(yr[j]) * s
                    v = 0.0 if v < 0.0 else v
                    v = 1.0 if v > 1.0 else v
                    kj = 1.0 if kr[j] else 0.0
                    a = kj * (u + v)
                    d = kj * (u - v)
                    ra[j] = a
                    rd[j] = d
                    raa[j] = a * a
                    rdd[j] = d * d
                t += 1
            for q in range(4):  # row i - 5 + k sits in slot (i + 9 + k) % 14
                r0, r1 = ring[(i + 9) % 14, q], ring[(i + 10) % 14, q]
                r2, r3 = ring[(i + 11) % 14, q], ring[(i + 12) % 14, q]
                r4, r5 = ring[(i + 13) % 14, q], ring[i % 14, q]
                r6, r7 = ring[(i + 1) % 14, q], ring[(i + 2) % 14, q]
                r8, r9 = ring[(i + 3) % 14, q], ring[(i + 4) % 14, q]
                r10, r11 = ring[(i + 5) % 14, q], ring[(i + 6) % 14, q]
                r12, r13 = ring[(i + 7) % 14, q], ring[(i + 8) % 14, q]
                o0, o1, o2, o3 = col[0, q], col[1, q], col[2, q], col[3, q]
                for j in range(w):
                    b0, b1, b2, b3, b4, b5, b6 = r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j]
                    b7, b8, b9, b10 = r7[j], r8[j], r9[j], r10[j]
                    b11, b12, b13 = r11[j], r12[j], r13[j]
                    o0[j + 5] = (
                        w0 * b5
                        + w1 * (b4 + b6)
                        + w2 * (b3 + b7)
                        + w3 * (b2 + b8)
                        + w4 * (b1 + b9)
                        + w5 * (b0 + b10)
                    )
                    o1[j + 5] = (
                        w0 * b6
                        + w1 * (b5 + b7)
                        + w2 * (b4 + b8)
                        + w3 * (b3 + b9)
                        + w4 * (b2 + b10)
                        + w5 * (b1 + b11)
                    )
                    o2[j + 5] = (
                        w0 * b7
                        + w1 * (b6 + b8)
                        + w2 * (b5 + b9)
                        + w3 * (b4 + b10)
                        + w4 * (b3 + b11)
                        + w5 * (b2 + b12)
                    )
                    o3[j + 5] = (
                        w0 * b8
                        + w1 * (b7 + b9)
                        + w2 * (b6 + b10)
                        + w3 * (b5 + b11)
                        + w4 * (b4 + b12)
                        + w5 * (b3 + b13)
                    )
            for e in range(min(4, h - i)):
                ca, cd, caa, cdd = col[e, 0], col[e, 1], col[e, 2], col[e, 3]
                kr = km[i + e]
                for j in range(w):  # along the row: the tap at offset k is index j + 5 + k
                    fa = (
                        w0 * ca[j + 5]
                        + w1 * (ca[j + 4] + ca[j + 6])
                        + w2 * (ca[j + 3] + ca[j + 7])
                        + w3 * (ca[j + 2] + ca[j + 8])
                        + w4 * (ca[j + 1] + ca[j + 9])
                        + w5 * (ca[j] + ca[j + 10])
                    )
                    fd = (
                        w0 * cd[j + 5]
                        + w1 * (cd[j + 4] + cd[j + 6])
                        + w2 * (cd[j + 3] + cd[j + 7])
                        + w3 * (cd[j + 2] + cd[j + 8])
                        + w4 * (cd[j + 1] + cd[j + 9])
                        + w5 * (cd[j] + cd[j + 10])
                    )
                    faa = (
                        w0 * caa[j + 5]
                        + w1 * (caa[j + 4] + caa[j + 6])
                        + w2 * (caa[j + 3] + caa[j + 7])
                        + w3 * (caa[j + 2] + caa[j + 8])
                        + w4 * (caa[j + 1] + caa[j + 9])
                        + w5 * (caa[j] + caa[j + 10])
                    )
                    fdd = (
                        w0 * cdd[j + 5]
                        + w1 * (cdd[j + 4] + cdd[j + 6])
                        + w2 * (cdd[j + 3] + cdd[j + 7])
                        + w3 * (cdd[j + 2] + cdd[j + 8])
                        + w4 * (cdd[j + 1] + cdd[j + 9])
                        + w5 * (cdd[j] + cdd[j + 10])
                    )
                    a2 = fa * fa
                    d2 = fd * fd
                    va = faa - a2
                    vd = fdd - d2
                    val[j] = ((a2 - d2 + c1) * (va - vd + c2)) / ((a2 + d2 + c1) * (va + vd + c2))
                    total += (1.0 if kr[j] else 0.0) * val[j]
                if full:
                    for j in range(w):
                        maps[m, i + e, j] = val[j]
        o = sums[m]  # in the order of tensors.N_SUMS (literal here: numba's disk cache of this
        o[0], o[1], o[2], o[3], o[4], o[5] = n, sp, sy, spp, syy, spy  # file sees no other)
        o[6], o[7], o[8], o[9], o[10] = see, p0, y0, ap, ay
        means[m] = total / n if n > 0 else np.nan


def ssim_maps_torch(
    pred: torch.Tensor,
    hr: torch.Tensor,
    data_range: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`ssim_maps` in batched torch (any device), computed in float32 with per-map
    centring; the masked means are accumulated chunk by chunk.

    float32 halves the memory traffic and doubles BLAS throughput; the cancellation in
    ``s_x^2 = E[x^2] - mu^2`` that float32 would suffer is avoided by filtering the moments of
    ``x' = x - c`` (c = the map's mean): variances are shift-invariant in the interior, and near
    the border, where zero padding breaks the invariance, the exact correction terms with the
    window mass ``F = filter(1)`` are added:
    ``s_x^2 = f(x'^2) - f(x')^2 + 2 c f(x') (1 - F) + c^2 (F - F^2)``, ``mu_x = f(x') + c F``
    (and likewise for ``s_xy``). Agreement with the float64 definition is ~1e-6 (tests: 1e-5).
    """
    n, g, h, w = pred.shape
    r = data_range.to(torch.float32).repeat(n)[:, None, None]  # (N G, 1, 1)
    x, y = pred.reshape(n * g, h, w), hr.reshape(n * g, h, w)
    keep = None if mask is None else mask.to(torch.float32)  # (N, H, W), indexed per chunk
    mass = _smooth(torch.ones(1, h, w, dtype=torch.float32, device=x.device))  # F
    edge, edge2 = 1.0 - mass, mass - mass * mass
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # L = 1 on the u scale
    if keep is None:
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    else:
        out = torch.empty(n * g, dtype=torch.float64, device=x.device)
    step = max(1, _SSIM_CHUNK_ELEMENTS // (5 * h * w))
    for s in range(0, n * g, step):  # chunks of maps keep temporaries in cache, bound memory
        rs = r[s : s + step]
        xs = x[s : s + step].to(torch.float32, copy=True).div_(rs).clamp_(0.0, 1.0)
        ys = y[s : s + step].to(torch.float32, copy=True).div_(rs).clamp_(0.0, 1.0)
        if keep is not None:
            ks = keep[torch.arange(s, s + len(xs), device=x.device) // g]
            xs, ys = xs.mul_(ks), ys.mul_(ks)
        cx, cy = xs.mean(dim=(1, 2), keepdim=True), ys.mean(dim=(1, 2), keepdim=True)
        xs, ys = xs.sub_(cx), ys.sub_(cy)
        # four filtered moments carry the five: with a = x' + y', b = x' - y',
        # f(x') = (f(a) + f(b)) / 2, f(y') = (f(a) - f(b)) / 2,
        # f(x'^2) + f(y'^2) = (f(a^2) + f(b^2)) / 2, 2 f(x'y') = (f(a^2) - f(b^2)) / 2
        a, b = xs + ys, xs.sub_(ys)
        fa, fb, faa, fbb = _smooth(torch.cat([a, b, a * a, b * b])).chunk(4)
        fx, fy = (fa + fb).mul_(0.5), fa.sub_(fb).mul_(0.5)
        # in place, to keep the temporaries few: mu, then vx + vy + C2 and 2 vxy + C2
        mx, my = torch.addcmul(fx, cx, mass), torch.addcmul(fy, cy, mass)
        spread = (faa + fbb).mul_(0.5).addcmul_(fx, fx, value=-1).addcmul_(fy, fy, value=-1)
        spread.addcmul_((fx * cx).addcmul_(fy, cy), edge, value=2)
        spread.add_((cx * cx + cy * cy) * edge2).add_(c2)
        joint = faa.sub_(fbb).mul_(0.5).addcmul_(fx, fy, value=-2)
        joint.addcmul_((fy * cx).addcmul_(fx, cy), edge, value=2)
        joint.add_((cx * cy) * edge2, alpha=2).add_(c2)
        num = (mx * my).mul_(2).add_(c1).mul_(joint)
        den = mx.mul_(mx).addcmul_(my, my).add_(c1).mul_(spread)
        if keep is None:
            out[s : s + step] = num / den
        else:
            k = ks.sum(dim=(1, 2), dtype=torch.float64)
            total = num.div_(den).mul_(ks).sum(dim=(1, 2), dtype=torch.float64)
            out[s : s + step] = torch.where(k > 0, total / k.clamp_min(1.0), torch.nan)
    return out.reshape(n, g) if keep is not None else out.reshape(n, g, h, w)
