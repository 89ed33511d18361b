"""The SSIM engine behind :func:`bench.scoring.metrics.ssim` (which states the definition):
a separable, zero-padded Gaussian filter of four moments per map, in one of two forms.

Both forms filter ``a = u + v`` and ``d = u - v`` (u, v the maps on the u scale, zeroed outside
the mask) and their squares: with ``A = f(a)``, ``D = f(d)``, ``VA = f(a^2) - A^2`` and
``VD = f(d^2) - D^2``, ``mu_x mu_y = (A^2 - D^2) / 4``, ``mu_x^2 + mu_y^2 = (A^2 + D^2) / 2``,
``2 s_xy = (VA - VD) / 2`` and ``s_x^2 + s_y^2 = (VA + VD) / 2``, so
``SSIM = (A^2 - D^2 + 2 C1)(VA - VD + 2 C2) / ((A^2 + D^2 + 2 C1)(VA + VD + 2 C2))``.

- CPU (numba, see ``bench.scoring.tensors``): a compiled kernel per map in float64. Each row
  of u, v is read once (``u = clip(x * (1 / r), 0, 1)``), its four moments filtered along the
  row from a zero-padded row buffer into a ring of the last ``2 radius + 4`` filtered rows, and
  output rows filtered down the columns from the ring four at a time; SSIM and its masked sum
  follow at once. Work ``O(H W (2 radius + 1))`` per map, memory ``O(W (2 radius + 4))`` per
  thread, and the full map is stored only when asked for.
- Other devices (and the CPU without numba): batched torch in float32 with per-map centring,
  the filter run as banded matrix products (below), in chunks.

Constants: Gaussian window sigma 1.5, radius 5 (11 x 11; scikit-image's ``truncate=3.5`` gives
the same radius at sigma 1.5), K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from bench.scoring.tensors import over_maps, use_compiled

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_RADIUS",
    "SSIM_SIGMA",
    "kernels",
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
assert SSIM_RADIUS == 5, "_ssim_kernel writes out the 11 taps of radius 5"


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
    """The form :func:`ssim_maps` takes on ``device``: ``"compiled"`` (the CPU with numba) or
    ``"torch"``."""
    return "torch" if use_compiled(torch.device(device), _ssim_kernel) is None else "compiled"


def ssim_maps(
    pred: torch.Tensor,
    hr: torch.Tensor,
    data_range: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """SSIM map (N, G, H, W) float32 of float64 maps ``pred``, ``hr`` with per-gene ranges
    ``data_range`` (G,); with ``mask`` (N, H, W) bool, both maps are zeroed outside it and the
    (N, G) float64 masked means are returned instead (NaN for an empty mask), the full map never
    stored. The compiled CPU kernel where it can run, else :func:`ssim_maps_torch`.
    """
    kernel = use_compiled(pred.device, _ssim_kernel)
    if kernel is None:
        return ssim_maps_torch(pred, hr, data_range, mask)
    n, g, h, w = pred.shape
    x = pred.reshape(n * g, h, w).contiguous().numpy()
    y = hr.reshape(n * g, h, w).contiguous().numpy()
    scale = (1.0 / data_range.to(torch.float64)).repeat(n).numpy()  # per map, gene-major
    full = mask is None
    keep = torch.ones(n, h, w, dtype=torch.bool) if full else mask.contiguous()
    means = np.empty(n * g)
    maps = np.empty((n * g, h, w) if full else (0, h, w), dtype=np.float32)
    g1d = _gaussian_1d(torch.device("cpu")).numpy()
    c1, c2 = 2 * SSIM_K1**2, 2 * SSIM_K2**2  # L = 1 on the u scale
    over_maps(kernel, n * g, x, y, scale, keep.numpy(), g, g1d, c1, c2, means, maps, full)
    if full:
        return torch.from_numpy(maps).reshape(n, g, h, w)
    return torch.from_numpy(means).reshape(n, g)


def _ssim_kernel(
    start, stop, x, y, scale, keep, genes, g, c1, c2, means, maps, full
):  # pragma: no cover - compiled
    """SSIM of maps ``start .. stop - 1`` of ``x``, ``y`` (M, H, W) float64 (module docstring;
    ``g`` the 11-tap window, ``keep[m // genes]`` the map's mask): the masked mean into
    ``means[m]`` and, when ``full``, the map into ``maps[m]``. The taps are written out for
    ``SSIM_RADIUS = 5`` (checked at import).

    Output rows go four at a time, ``i .. i + 3``: they need input rows ``i - 5 .. i + 8``,
    which the ring of 14 row-filtered rows holds (row ``t`` in slot ``t % 14``; rows outside
    the map are zero), and each is loaded once for the four."""
    h, w = x.shape[1], x.shape[2]
    w0, w1, w2, w3, w4, w5 = g[5], g[4], g[3], g[2], g[1], g[0]
    row = np.zeros((4, w + 10))  # a, d, a^2, d^2 of one row, 5 zeros either side
    ring = np.zeros((14, 4, w))  # row-filtered moments
    col = np.empty((4, 4, w))  # filtered moments of the four output rows
    val = np.empty(w)
    for m in range(start, stop):
        s = scale[m]
        km = keep[m // genes]
        ring[:] = 0.0  # rows above the map read as zero padding
        total = 0.0
        count = 0.0
        t = 0  # next input row to filter along its length
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
                for j in range(w):
                    u = xr[j] * s
                    u = 0.0 if u < 0.0 else u
                    u = 1.0 if u > 1.0 else u
                    v = yr[j] * s
                    v = 0.0 if v < 0.0 else v
                    v = 1.0 if v > 1.0 else v
                    if not kr[j]:
                        u = 0.0
                        v = 0.0
                    a = u + v
                    d = u - v
                    row[0, j + 5] = a
                    row[1, j + 5] = d
                    row[2, j + 5] = a * a
                    row[3, j + 5] = d * d
                for q in range(4):
                    p = row[q]
                    o = ring[slot, q]
                    for j in range(w):
                        o[j] = (
                            w0 * p[j + 5]
                            + w1 * (p[j + 4] + p[j + 6])
                            + w2 * (p[j + 3] + p[j + 7])
                            + w3 * (p[j + 2] + p[j + 8])
                            + w4 * (p[j + 1] + p[j + 9])
                            + w5 * (p[j] + p[j + 10])
                        )
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
                    o0[j] = (
                        w0 * b5
                        + w1 * (b4 + b6)
                        + w2 * (b3 + b7)
                        + w3 * (b2 + b8)
                        + w4 * (b1 + b9)
                        + w5 * (b0 + b10)
                    )
                    o1[j] = (
                        w0 * b6
                        + w1 * (b5 + b7)
                        + w2 * (b4 + b8)
                        + w3 * (b3 + b9)
                        + w4 * (b2 + b10)
                        + w5 * (b1 + b11)
                    )
                    o2[j] = (
                        w0 * b7
                        + w1 * (b6 + b8)
                        + w2 * (b5 + b9)
                        + w3 * (b4 + b10)
                        + w4 * (b3 + b11)
                        + w5 * (b2 + b12)
                    )
                    o3[j] = (
                        w0 * b8
                        + w1 * (b7 + b9)
                        + w2 * (b6 + b10)
                        + w3 * (b5 + b11)
                        + w4 * (b4 + b12)
                        + w5 * (b3 + b13)
                    )
            for e in range(min(4, h - i)):
                f = col[e]
                kr = km[i + e]
                for j in range(w):
                    a2 = f[0, j] * f[0, j]
                    d2 = f[1, j] * f[1, j]
                    va = f[2, j] - a2
                    vd = f[3, j] - d2
                    val[j] = ((a2 - d2 + c1) * (va - vd + c2)) / ((a2 + d2 + c1) * (va + vd + c2))
                    kj = 1.0 if kr[j] else 0.0
                    total += kj * val[j]
                    count += kj
                if full:
                    for j in range(w):
                        maps[m, i + e, j] = val[j]
        means[m] = total / count if count > 0 else np.nan


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
