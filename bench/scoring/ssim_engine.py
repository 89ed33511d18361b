"""The SSIM engine behind :func:`bench.scoring.metrics.ssim` (which states the definition): a
separable, zero-padded Gaussian filter run as banded matrix products, and SSIM maps computed in
float32 from four filtered moments of centred maps, in chunks.

Constants: Gaussian window sigma 1.5, radius 5 (11 x 11; scikit-image's ``truncate=3.5`` gives
the same radius at sigma 1.5), K1 = 0.01, K2 = 0.03.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["SSIM_K1", "SSIM_K2", "SSIM_RADIUS", "SSIM_SIGMA", "ssim_maps"]

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Upper bound on the float32 elements of one SSIM chunk (stacked moments of the chunk's maps),
# so hundreds of 256 x 256 maps do not allocate several GiB of temporaries at once; the size is
# measured (docs/decisions.md, "Metric chunk sizes").
_SSIM_CHUNK_ELEMENTS = 1 << 20
_TILE = 32  # output tile of the banded filter on long axes


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


def ssim_maps(
    pred: torch.Tensor,
    hr: torch.Tensor,
    data_range: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """SSIM map (N, G, H, W) float32, computed in float32 with per-map centring; with ``mask``
    (N, H, W), both maps are zeroed outside it and the (N, G) float64 masked means are returned
    instead (accumulated chunk by chunk, so the full map is never stored).

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
