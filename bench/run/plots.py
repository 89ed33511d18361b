"""Gene-map figures: what a method predicts, where it errs and where its samples disagree.

- :func:`gene_panel`: one cell's "LR | truth | prediction" per gene (a side file of each run);
- :func:`error_spread_figure`: a stochastic method's per-position sample spread beside its error;
- :func:`gallery_figure`: LR, truth, every method's prediction and the sample spreads, per gene.

:func:`save_png` writes any of them atomically and without a timestamp, so the same maps give the
same bytes. matplotlib is imported inside the functions that draw. Figures are drawn on their own
Agg canvas rather than through ``pyplot``, so no global backend is switched (a notebook user's
backend is left alone) and no figure is left registered in pyplot's figure manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.files import atomic_write

__all__ = ["error_spread_figure", "gallery_figure", "gene_panel", "pick_genes", "save_png"]


def pick_genes(hr: np.ndarray, hr_mask: np.ndarray, genes: Sequence[str], n: int = 3) -> list[int]:
    """Indices of the ``n`` genes whose truth varies most over the in-tissue positions.

    Parameters
    ----------
    hr : float ``(G, H, W)`` truth on the dataset's scale.
    hr_mask : bool ``(H, W)`` in-tissue HR positions; values outside it are ignored.
    genes : the G gene names (checked against ``hr``'s first axis).
    n : how many to pick (all G when G < n).

    Returns
    -------
    Gene indices, largest variance (population, float64) first; ties by lower index.
    """
    hr, hr_mask = np.asarray(hr), np.asarray(hr_mask, dtype=bool)
    if hr.ndim != 3 or hr.shape[1:] != hr_mask.shape:
        raise ValueError(f"hr {hr.shape} and hr_mask {hr_mask.shape}: expected (G, H, W), (H, W)")
    if len(genes) != hr.shape[0]:
        raise ValueError(f"{len(genes)} gene names for hr with {hr.shape[0]} genes")
    if not hr_mask.any():
        raise ValueError("hr_mask has no in-tissue position; nothing to rank genes by")
    var = np.nanvar(hr[:, hr_mask].astype(np.float64), axis=1)
    var = np.where(np.isnan(var), -np.inf, var)
    return sorted(range(hr.shape[0]), key=lambda i: (-var[i], i))[: max(int(n), 0)]


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ma.MaskedArray:
    """``x`` with positions outside ``mask`` (and NaN) masked, so they are drawn blank."""
    x = np.asarray(x, dtype=np.float64)
    return np.ma.masked_array(x, mask=~np.asarray(mask, dtype=bool) | ~np.isfinite(x))


def _limits(*maps: np.ma.MaskedArray) -> tuple[float, float]:
    """Common colour limits: the range of the unmasked values of ``maps`` (widened if flat)."""
    values = np.concatenate([m.compressed() for m in maps])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def gene_panel(
    lr: np.ndarray,
    hr: np.ndarray,
    pred: np.ndarray,
    hr_mask: np.ndarray,
    lr_mask: np.ndarray,
    genes: list[str],
    path: Path,
    title: str,
) -> Path:
    """Write a PNG with one row per gene and the columns "LR | truth | prediction".

    Truth and prediction of a gene share one colour scale (the range of both over ``hr_mask``),
    and LR is drawn on it too (it is on the same log scale); each row has its colour bar.
    Positions outside the masks, and NaN, are blank.

    Parameters
    ----------
    lr : float ``(g, h, w)`` LR maps of the genes to show (a handful; pass at most ~4).
    hr, pred : float ``(g, H, W)`` truth and prediction, same scale as ``lr``.
    hr_mask : bool ``(H, W)``; lr_mask : bool ``(h, w)``.
    genes : the g gene names, one per row.
    path : where to write the PNG (parent folders are created).
    title : figure title.

    Returns
    -------
    ``path``.
    """
    lr, hr, pred = np.asarray(lr), np.asarray(hr), np.asarray(pred)
    if lr.ndim != 3 or hr.ndim != 3 or hr.shape != pred.shape or lr.shape[0] != hr.shape[0]:
        raise ValueError(
            f"lr {lr.shape}, hr {hr.shape}, pred {pred.shape}: expected (g, h, w), (g, H, W) x 2"
        )
    if hr.shape[1:] != np.shape(hr_mask) or lr.shape[1:] != np.shape(lr_mask):
        raise ValueError(
            f"hr_mask {np.shape(hr_mask)} / lr_mask {np.shape(lr_mask)} do not match the maps "
            f"{hr.shape[1:]} / {lr.shape[1:]}"
        )
    if len(genes) != hr.shape[0] or not genes:
        raise ValueError(f"{len(genes)} gene names for maps with {hr.shape[0]} genes (need >= 1)")

    fig = _figure(10.0, 3.0 * len(genes) + 0.4)
    grid = fig.add_gridspec(len(genes), 4, width_ratios=[1, 1, 1, 0.06])
    for i, gene in enumerate(genes):
        maps = [_masked(lr[i], lr_mask), _masked(hr[i], hr_mask), _masked(pred[i], hr_mask)]
        lim = _limits(maps[1], maps[2])
        for j, (m, label) in enumerate(zip(maps, ("LR", "truth", "prediction"), strict=True)):
            image = _show(fig, grid[i, j], m, "viridis", lim, f"{gene}: {label}")
        fig.colorbar(image, cax=fig.add_subplot(grid[i, 3]))
    fig.suptitle(title)
    save_png(fig, path, dpi=100)
    fig.clear()  # no pyplot manager holds the figure; clearing frees its artists now
    return Path(path)


def save_png(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically, with no software/time stamp in the file."""
    return atomic_write(
        Path(path),
        lambda p: fig.savefig(
            p, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None}
        ),
    )


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _show(fig: Any, cell: Any, m: np.ma.MaskedArray, cmap: str, lim: tuple, title: str) -> Any:
    from matplotlib import colormaps

    ax = fig.add_subplot(cell)
    image = ax.imshow(
        m,
        cmap=colormaps[cmap].with_extremes(bad="white"),
        vmin=lim[0],
        vmax=lim[1],
        interpolation="nearest",
    )
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def _check_maps(genes: Sequence[str], hr_mask: np.ndarray, **maps: np.ndarray) -> None:
    """Every map ``(g, H, W)`` with ``g = len(genes) >= 1`` and ``(H, W)`` = ``hr_mask``'s."""
    want = (len(genes), *np.shape(hr_mask))
    bad = {k: np.shape(v) for k, v in maps.items() if np.shape(v) != want}
    if bad or not genes:
        raise ValueError(f"maps {bad} for {len(genes)} gene(s) and hr_mask {np.shape(hr_mask)}")


def error_spread_figure(
    hr: np.ndarray,
    pred: np.ndarray,
    spread: np.ndarray,
    hr_mask: np.ndarray,
    genes: Sequence[str],
    title: str,
) -> Any:
    """Per gene: "truth | mean prediction | |error| | spread", error and spread on one scale.

    A calibrated sampler has spread about as large as its error, where its error is (a
    spread-skill ratio near 1, metrics.md); a collapsed one shows a blank spread map beside a
    bright error map.

    Parameters
    ----------
    hr, pred : float ``(g, H, W)`` truth and point prediction (the mean of the K draws), on the
        split's scale.
    spread : float ``(g, H, W)`` population std over the K draws at each position, same scale.
    hr_mask : bool ``(H, W)`` in-tissue positions; everything else is blank.
    genes : the g gene names, one per row.
    title : figure title.

    Returns
    -------
    A matplotlib ``Figure`` (Agg canvas; pass it to :func:`save_png`).
    """
    hr, pred, spread = (np.asarray(x, dtype=np.float64) for x in (hr, pred, spread))
    _check_maps(genes, hr_mask, hr=hr, pred=pred, spread=spread)
    fig = _figure(9.5, 2.1 * len(genes) + 0.5)
    grid = fig.add_gridspec(len(genes), 6, width_ratios=[1, 1, 0.06, 1, 1, 0.06], wspace=0.3)
    for i, gene in enumerate(genes):
        truth, mean = _masked(hr[i], hr_mask), _masked(pred[i], hr_mask)
        error, sd = _masked(np.abs(pred[i] - hr[i]), hr_mask), _masked(spread[i], hr_mask)
        lim = _limits(truth, mean)
        _show(fig, grid[i, 0], truth, "viridis", lim, f"{gene}: truth")
        image = _show(fig, grid[i, 1], mean, "viridis", lim, "mean prediction")
        fig.colorbar(image, cax=fig.add_subplot(grid[i, 2]))
        top = _limits(error, sd)[1]
        _show(fig, grid[i, 3], error, "magma", (0.0, top), "|mean - truth|")
        image = _show(fig, grid[i, 4], sd, "magma", (0.0, top), "spread (std over K)")
        fig.colorbar(image, cax=fig.add_subplot(grid[i, 5]))
    fig.suptitle(title, fontsize=10)
    return fig


def gallery_figure(
    lr: np.ndarray,
    hr: np.ndarray,
    lr_mask: np.ndarray,
    hr_mask: np.ndarray,
    preds: Sequence[tuple[str, np.ndarray]],
    spreads: Sequence[tuple[str, np.ndarray]],
    genes: Sequence[str],
    title: str,
) -> Any:
    """One row per gene: LR, truth, each method's prediction, then each sampler's spread.

    Expression panels of a row share the truth's in-tissue range, so a prediction beyond it
    saturates rather than washing the row out; spread panels share ``[0, largest spread]``.

    Parameters
    ----------
    lr : float ``(g, h, w)``; hr : float ``(g, H, W)``, on the split's scale.
    lr_mask : bool ``(h, w)``; hr_mask : bool ``(H, W)``: in-tissue positions.
    preds : ``(method, (g, H, W) prediction)`` in display order.
    spreads : ``(method, (g, H, W) std over K draws)`` of the stochastic methods.
    genes : the g gene names, one per row.
    title : figure title.

    Returns
    -------
    A matplotlib ``Figure`` (Agg canvas; pass it to :func:`save_png`).
    """
    lr, hr = np.asarray(lr, dtype=np.float64), np.asarray(hr, dtype=np.float64)
    _check_maps(genes, hr_mask, hr=hr, **{f"pred of {m}": p for m, p in preds})
    _check_maps(genes, hr_mask, **{f"spread of {m}": p for m, p in spreads})
    if lr.shape != (len(genes), *np.shape(lr_mask)):
        raise ValueError(f"lr {lr.shape} for {len(genes)} gene(s) and lr_mask {np.shape(lr_mask)}")
    n_expr, n_sd = 2 + len(preds), len(spreads)
    # expression panels, their colour bar, a gap for its labels, spread panels, their bar
    ratios = [1.0] * n_expr + [0.08] + ([0.4] + [1.0] * n_sd + [0.08] if n_sd else [])
    fig = _figure(1.35 * (n_expr + n_sd) + 1.5, 1.45 * len(genes) + 0.6)
    grid = fig.add_gridspec(len(genes), len(ratios), width_ratios=ratios, wspace=0.08)
    for i, gene in enumerate(genes):
        truth = _masked(hr[i], hr_mask)
        lim = _limits(truth)
        panels = [("LR", _masked(lr[i], lr_mask)), ("truth", truth)]
        panels += [(m, _masked(np.asarray(p[i], dtype=np.float64), hr_mask)) for m, p in preds]
        for j, (label, m) in enumerate(panels):
            image = _show(
                fig, grid[i, j], m, "viridis", lim, f"{gene}: {label}" if j == 0 else label
            )
        fig.colorbar(image, cax=fig.add_subplot(grid[i, n_expr]))
        if n_sd:
            sds = [_masked(np.asarray(s[i], dtype=np.float64), hr_mask) for _, s in spreads]
            lim = (0.0, _limits(*sds)[1])
            for j, ((m, _), sd) in enumerate(zip(spreads, sds, strict=True)):
                image = _show(fig, grid[i, n_expr + 2 + j], sd, "magma", lim, f"{m} spread")
            fig.colorbar(image, cax=fig.add_subplot(grid[i, -1]))
    fig.suptitle(title, fontsize=10)
    return fig
