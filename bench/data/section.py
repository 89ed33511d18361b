"""The in-memory tissue section every reader returns, whatever the platform, and the coordinate
contract every reader enforces before returning one.

Grid. Spots (or bins) sit on an integer grid ``(row, col)``. One grid step is ``pitch_um`` =
(row step, column step) micrometres apart:

- square lattices (legacy ST 1k, binned transcripts): every grid position can hold a spot;
- checkerboard lattices (Visium's hexagonal lattice, the legacy ST 2k array): only positions with
  ``(row + col) % 2 == parity`` exist. Visium's ``array_row``/``array_col`` are such a grid: odd
  rows are offset by half a pitch, which the doubled column index states exactly (column step
  50 um, row step 86.6 um), so no offset row is rounded onto its neighbour.

Pixels. ``to_pixel`` is the affine map from ``(col, row, 1)`` to image pixel ``(x, y)`` (x = image
column) of the *coordinate space* (for Visium: full-resolution pixels, even when only the low-res
PNG exists); ``image_size`` is that space's (width, height), and the stored image may be a scaled
copy of it (crops rescale by the size ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from bench.errors import BenchError

LATTICES = ("square", "checkerboard")
UM_PER_PX_RANGE = (0.05, 50.0)  # plausible pixel sizes of histology / morphology images


@dataclass(frozen=True, eq=False)
class Section:
    """One tissue section as measured.

    Attributes
    ----------
    id : section identifier from the dataset card (e.g. "C5").
    counts : (S, n_genes) sparse CSR int64, raw counts of the S measured spots or bins, all genes.
    genes : (n_genes,) str, gene symbols (columns of ``counts``), unique.
    row, col : (S,) int64, grid coordinates of each spot (see the module docstring).
    in_tissue : (S,) bool, spot is under tissue.
    to_pixel : (2, 3) float64, affine ``[x, y] = to_pixel @ [col, row, 1]`` in image pixels.
    image : the image file, or an array (Hi, Wi) or (Hi, Wi, 3) uint8 already in memory.
    image_size : (width, height) of the coordinate pixel space.
    pitch_um : (row step, column step) of the grid in micrometres.
    um_per_px : pixel size of the coordinate space in micrometres, when the source states it.
    lattice : "square" or "checkerboard".
    parity : for checkerboard lattices, ``(row + col) % 2`` of the existing positions.
    symbols : (n_genes,) str gene symbols when ``genes`` are identifiers (e.g. Ensembl ids) and
        the data also name them (an AnnData ``var`` column), else None; gene rules use them.
    notes : what the reader dropped or inferred, one sentence each (e.g. "dropped 1,204 control
        probe transcripts (Blank-*: 1,204)"); shown to the user and kept in the split file.
    """

    id: str
    counts: sparse.csr_matrix
    genes: np.ndarray
    row: np.ndarray
    col: np.ndarray
    in_tissue: np.ndarray
    to_pixel: np.ndarray
    image: Path | np.ndarray
    image_size: tuple[int, int]
    pitch_um: tuple[float, float]
    um_per_px: float | None
    lattice: str = "square"
    parity: int = 0
    notes: tuple[str, ...] = ()
    symbols: np.ndarray | None = None

    @property
    def totals(self) -> np.ndarray:
        """(S,) float64, total counts per spot over all genes (the CP10k denominator)."""
        return np.asarray(self.counts.sum(axis=1), dtype=np.float64).ravel()

    def gene_counts(self, genes: list[str] | tuple[str, ...]) -> np.ndarray:
        """(S, len(genes)) float64 counts of the named genes, all of which must be measured here.

        A gene absent from a section was not measured there (panels differ between runs), which
        is not the same as zero counts, so it is an error.
        """
        index = {g: i for i, g in enumerate(self.genes)}
        absent = [g for g in genes if g not in index]
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise BenchError(
                f"section {self.id}: gene {absent[0]}{more} not measured in this section; a "
                "split's genes must be measured in every section (regenerate the split with "
                "'python -m bench split')"
            )
        return self.counts[:, [index[g] for g in genes]].toarray().astype(np.float64)


def fit_to_pixel(col: np.ndarray, row: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares affine from ``(col, row, 1)`` to ``pixels`` (S, 2) = (x, y)."""
    design = np.c_[col, row, np.ones(len(col))].astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, np.asarray(pixels, dtype=np.float64), rcond=None)
    return coef.T


MAX_COUNT = 2**31 - 1  # per spot and gene; sums over any section then fit int64 with room


def check_counts(
    where: Path,
    counts: sparse.spmatrix | np.ndarray,
    genes: np.ndarray,
    spots: np.ndarray | None = None,
) -> sparse.csr_matrix:
    """Counts as CSR int64 after checking they are finite, non-negative integers that fit
    (at most :data:`MAX_COUNT`; larger values would wrap when cast) and genes are unique.

    A bad value is named with its spot (``spots``, the row labels, when given) and gene.
    """
    counts = sparse.csr_matrix(counts)
    data = counts.data

    def at(bad: np.ndarray) -> str:
        coo = counts.tocoo()
        i = int(np.flatnonzero(bad)[0])
        row, col = int(coo.row[i]), int(coo.col[i])
        spot = str(spots[row]) if spots is not None and row < len(spots) else f"row {row}"
        return f"spot {spot}, gene {genes[col] if col < len(genes) else col}: {coo.data[i]:g}"

    if data.size:
        counts.sum_duplicates()
        data = counts.data
    if data.size and not np.isfinite(data).all():
        raise BenchError(
            f"{where}: NaN or infinite count ({at(~np.isfinite(data))}); raw counts are finite"
        )
    if data.size and (data < 0).any():
        raise BenchError(
            f"{where}: negative counts ({at(data < 0)}); raw counts are non-negative integers"
        )
    if data.size and (data > MAX_COUNT).any():
        raise BenchError(
            f"{where}: count too large ({at(data > MAX_COUNT)}); raw counts must be at most "
            f"{MAX_COUNT} (a corrupt or overflowed file?)"
        )
    if data.size and (data != np.round(data)).any():
        raise BenchError(
            f"{where}: non-integer counts (e.g. {data[data != np.round(data)][0]:g}); "
            "the reader needs raw integer counts, not normalised values"
        )
    names = np.asarray(genes, dtype=str)
    uniq, first = np.unique(names, return_counts=True)
    if (first > 1).any():
        raise BenchError(
            f"{where}: gene {uniq[first > 1][0]} appears more than once; gene names must be unique"
        )
    return counts.astype(np.int64)


def check_section(where: Path, section: Section, stated_um_per_px: float | None = None) -> None:
    """The coordinate contract: in-tissue spots lie inside the image; the pixel size is plausible.

    The pixel size implied by the fitted ``to_pixel`` (pitch in um / pitch in px) must lie in
    ``UM_PER_PX_RANGE`` and agree with ``section.um_per_px`` (and with ``stated_um_per_px``, a
    card's value) within 25%: a wrong scale factor or image shows up here instead of as a
    silently misregistered crop.
    """
    if section.lattice not in LATTICES:
        raise BenchError(f"{where}: lattice {section.lattice!r} unknown; use one of {LATTICES}")
    if not section.in_tissue.any():
        raise BenchError(f"{where}: section {section.id} has no spot under tissue (empty section)")
    if section.counts.shape[0] != len(section.row):
        raise BenchError(
            f"{where}: {section.counts.shape[0]} count rows for {len(section.row)} spots"
        )
    xy = section.to_pixel @ np.vstack([section.col, section.row, np.ones(len(section.row))])
    w, h = section.image_size
    inside = (xy[0] >= 0) & (xy[0] < w) & (xy[1] >= 0) & (xy[1] < h)
    bad = section.in_tissue & ~inside
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchError(
            f"{where}: spot at grid (row {section.row[i]}, col {section.col[i]}) maps to pixel "
            f"({xy[0, i]:.0f}, {xy[1, i]:.0f}), outside the {w}x{h} image; the image and "
            "coordinates are misregistered: check the image file, its scale factor "
            "(image_scale, scalefactors) and the card's [read].um_per_px / [read].unit"
        )
    steps = np.hypot(section.to_pixel[0, :2], section.to_pixel[1, :2])  # px per (col, row) step
    implied = float(np.mean(np.array(section.pitch_um)[::-1] / np.maximum(steps, 1e-12)))
    low, high = UM_PER_PX_RANGE
    if not low <= implied <= high:
        raise BenchError(
            f"{where}: implied pixel size {implied:.3g} um/px is implausible (expected "
            f"{low}-{high}); check [lattice].pitch_um (one grid step in um), [read].um_per_px "
            "and the scale factors"
        )
    sources = (
        ("the reader", section.um_per_px),
        ("the card's [lattice].image_um_per_px", stated_um_per_px),
    )
    for name, value in sources:
        if value is not None and not 0.75 <= implied / value <= 1.0 / 0.75:
            raise BenchError(
                f"{where}: spot spacing ([lattice].pitch_um {section.pitch_um[1]:g} um per grid "
                f"step) implies {implied:.3g} um/px but {name} states {value:.3g} um/px; fix "
                "[lattice].pitch_um or [lattice].image_um_per_px (or [read].um_per_px), or the "
                "image or its scale factor does not match the coordinates"
            )
