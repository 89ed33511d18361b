"""Figures: a per-gene "LR | truth | prediction" panel for eyeballing a method's output.

matplotlib is imported inside the functions that draw. The figure is drawn on its own Agg canvas
rather than through ``pyplot``, so no global backend is switched (a notebook user's backend is
left alone) and no figure is left registered in pyplot's figure manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["gene_panel", "pick_genes"]


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
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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

    cmap = colormaps["viridis"].with_extremes(bad="white")
    rows = len(genes)
    fig = Figure(figsize=(10.0, 3.0 * rows + 0.4))
    FigureCanvasAgg(fig)  # attaches itself to the figure: savefig renders with Agg
    grid = fig.add_gridspec(rows, 4, width_ratios=[1, 1, 1, 0.06])
    for i, gene in enumerate(genes):
        maps = [_masked(lr[i], lr_mask), _masked(hr[i], hr_mask), _masked(pred[i], hr_mask)]
        vmin, vmax = _limits(maps[1], maps[2])
        for j, (m, label) in enumerate(zip(maps, ("LR", "truth", "prediction"), strict=True)):
            ax = fig.add_subplot(grid[i, j])
            image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(f"{gene}: {label}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(image, cax=fig.add_subplot(grid[i, 3]))
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    fig.clear()  # no pyplot manager holds the figure; clearing frees its artists now
    return path
