"""The in-memory tissue section every reader returns, whatever the platform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse


@dataclass(frozen=True, eq=False)
class Section:
    """One tissue section as measured.

    Attributes
    ----------
    id : section identifier from the dataset card (e.g. "C5").
    counts : (S, n_genes) sparse CSR int, raw UMI counts of the S measured spots, all genes.
    genes : (n_genes,) str, gene symbols (columns of ``counts``).
    row, col : (S,) int, lattice coordinates of each spot (row = array y, col = array x), in
        lattice steps (``pitch_um`` of the card).
    in_tissue : (S,) bool, spot is under tissue.
    to_pixel : (2, 3) float, affine map from ``(col, row, 1)`` to image pixels ``(x, y)``
        (x = image column), fitted to the spots' recorded pixel centres.
    image_path : the full-resolution image file.
    image_size : (width, height) of that image in pixels.
    """

    id: str
    counts: sparse.csr_matrix
    genes: np.ndarray
    row: np.ndarray
    col: np.ndarray
    in_tissue: np.ndarray
    to_pixel: np.ndarray
    image_path: Path
    image_size: tuple[int, int]

    @property
    def totals(self) -> np.ndarray:
        """(S,) float64, total counts per spot over all genes (the CP10k denominator)."""
        return np.asarray(self.counts.sum(axis=1), dtype=np.float64).ravel()

    def gene_counts(self, genes: list[str] | tuple[str, ...]) -> np.ndarray:
        """(S, len(genes)) float64 counts of the named genes; a gene absent here counts 0."""
        index = {g: i for i, g in enumerate(self.genes)}
        out = np.zeros((self.counts.shape[0], len(genes)), dtype=np.float64)
        present = [(j, index[g]) for j, g in enumerate(genes) if g in index]
        if present:
            cols = [i for _, i in present]
            out[:, [j for j, _ in present]] = self.counts[:, cols].toarray()
        return out
