"""Bin point measurements (transcripts, cells) into a square grid of ``bin_um`` micrometre bins.

Bin ``(row, col)`` covers ``y in [row b, (row + 1) b)`` and ``x in [col b, (col + 1) b)`` um
(b = ``bin_um``, x = image column direction); points are assigned by ``floor(coordinate / b)``,
so every point lands in exactly one bin and no count is split or lost.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def bin_points(
    x_um: np.ndarray,
    y_um: np.ndarray,
    bin_um: float,
    values: np.ndarray | sparse.spmatrix,
    n_genes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, sparse.csr_matrix]:
    """Sum point values per bin.

    Parameters
    ----------
    x_um, y_um : (P,) float, point coordinates in micrometres (non-negative).
    bin_um : bin edge in micrometres.
    values : (P,) int gene index of each point (one transcript each; ``n_genes`` required), or a
        (P, G) sparse/dense count matrix (e.g. cells x genes) summed per bin.

    Returns
    -------
    row, col : (S,) int64 grid coordinates of the S occupied bins, sorted by (row, col).
    counts : (S, G) CSR int64, summed counts per bin.
    """
    rows = np.floor(np.asarray(y_um, dtype=np.float64) / bin_um).astype(np.int64)
    cols = np.floor(np.asarray(x_um, dtype=np.float64) / bin_um).astype(np.int64)
    width = int(cols.max()) + 1 if len(cols) else 1
    key = rows * width + cols
    bins, inverse = np.unique(key, return_inverse=True)
    if isinstance(values, np.ndarray) and values.ndim == 1:
        if n_genes is None:
            raise ValueError("n_genes is required when values are gene indices")
        counts = sparse.coo_matrix(
            (np.ones(len(values), dtype=np.int64), (inverse, values.astype(np.int64))),
            shape=(len(bins), n_genes),
        ).tocsr()
    else:
        points = sparse.csr_matrix(values)
        member = sparse.csr_matrix(
            (np.ones(len(inverse), dtype=np.int64), (inverse, np.arange(len(inverse)))),
            shape=(len(bins), len(inverse)),
        )
        counts = (member @ points).tocsr()
    counts.sum_duplicates()
    return bins // width, bins % width, counts.astype(np.int64)


def bin_to_pixel(bin_um: float, um_per_px: float) -> np.ndarray:
    """(2, 3) affine from bin ``(col, row, 1)`` to the pixel ``(x, y)`` of the bin's centre.

    Assumes micrometre coordinates and image pixels share their origin: ``px = um / um_per_px``.
    """
    step = bin_um / um_per_px
    return np.array([[step, 0.0, 0.5 * step], [0.0, step, 0.5 * step]])
