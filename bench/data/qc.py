"""Spot QC: the rule that drops near-empty truth positions from every score.

A position's all-gene total ``t`` is its depth. Under ``log1p_cp10k`` a single count at a spot
of total 1 becomes ``log1p(1e4)`` = 9.2, the value of a highly expressed gene at full depth, so a
handful of near-empty spots can move a whole section's PCC. The rule is the single-cell field's
library-size outlier rule (scater's ``isOutlier(log = TRUE, type = "lower")``), taken relative to
each tissue section's depth: sections are sequenced to different depths, so one threshold in
counts, set on the training sections, would drop most of a shallower test section for its
sequencing rather than for being empty (docs/decisions.md, "Spot QC: 3 MADs of log depth below
the training median").

**Depth level** of a section ``s``, in counts per HR position, from the LR input alone (what a
method receives; never the test truth):

``d_s = median over the LR spots b of the split's regions in s of (T_b / n_b)``,

``T_b`` the block's all-gene total (the counts of its in-tissue HR positions summed, as the LR
input holds them) and ``n_b`` its lattice positions (k^2 on a square lattice, k^2 / 2 on a
checkerboard one for even k; :mod:`bench.data.blocks`), so a block of full-depth positions gives
their depth. The unit is the tissue section (``RegionRef.section``), the library whose sequencing
depth differs: every region of a section shares its level, whole-section regions (her2st) and the
tiles of one section (``regions = "tiles"``) alike. A one-section split's level cancels, and its
threshold is the training median rule in counts up to the rounding of the fraction below.

**Cut**, from the TRAINING regions only: for every in-tissue HR position of a training region with
``t > 0``, ``r = log t - log d_s`` with ``d_s`` the level of its own section; then

``c = median(r) - nmads * MAD(r)`` and ``fraction = exp(c)``,

``MAD`` the median absolute deviation scaled to a normal's standard deviation (x 1.4826,
``scipy.stats.median_abs_deviation(scale="normal")``) and ``nmads`` the card's
``[split].qc_nmads`` (default :data:`NMADS`). ``fraction`` is stored rounded to
:data:`FRACTION_DIGITS` significant digits and every threshold is computed from the stored value.

**Threshold** of a test region of section ``s``, in counts:

``min_total_s = max(1, ceil(d_s * fraction))``;

a test position is *scored* when it is in tissue and ``t >= min_total_s`` of its region. Every
score (methods, controls, the ceiling) uses that one mask. The LR input is unchanged: a dropped
position's counts still sum into its LR block, as the instrument measured them.

Arrays: ``totals`` any shape of non-negative all-gene totals; masks bool of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.data.blocks import lr_spots, pool
from bench.data.regions import in_window, sites, window_totals
from bench.data.section import Section
from bench.errors import BenchError

__all__ = [
    "FRACTION_DIGITS",
    "NMADS",
    "SplitQC",
    "depth_fraction",
    "depth_level",
    "for_split",
    "min_total",
    "notes",
    "scored",
]

NMADS = 3.0
FRACTION_DIGITS = 4  # significant digits of the stored fraction (a fingerprinted field)

Window = tuple[Section, tuple[int, int]]  # a region: its section and window origin (row, column)


def depth_level(block_totals: np.ndarray, block_sites: np.ndarray) -> float:
    """``d_s`` (module docstring), counts per HR position: the median of ``block_totals /
    block_sites`` over a section's LR spots, both (B,) with ``block_sites`` > 0."""
    totals = np.asarray(block_totals, dtype=np.float64).ravel()
    n = np.asarray(block_sites, dtype=np.float64).ravel()
    return float(np.median(totals / n))


def depth_fraction(totals: np.ndarray, depths: np.ndarray, nmads: float = NMADS) -> float:
    """``fraction = exp(c)`` (module docstring), rounded to :data:`FRACTION_DIGITS` significant
    digits, from the training positions' ``totals`` and the depth level of each one's section
    (``depths``, counts per HR position), both (P,); positions with a total of 0 are left out.
    0.0 when none is left (every threshold is then 1)."""
    from scipy.stats import median_abs_deviation

    t = np.asarray(totals, dtype=np.float64).ravel()
    d = np.asarray(depths, dtype=np.float64).ravel()
    keep = t > 0
    if not keep.any():
        return 0.0
    r = np.log(t[keep]) - np.log(d[keep])
    cut = float(np.median(r)) - nmads * float(median_abs_deviation(r, scale="normal"))
    return float(f"{math.exp(cut):.{FRACTION_DIGITS}g}")


def min_total(depth: float, fraction: float) -> int:
    """A section's threshold in counts, ``max(1, ceil(depth * fraction))`` (module docstring)."""
    return max(1, math.ceil(depth * fraction - 1e-9))


def scored(totals: np.ndarray, tissue: np.ndarray, threshold: int | np.ndarray) -> np.ndarray:
    """The scored positions: in ``tissue`` with an all-gene total of at least ``threshold`` (an
    int, or an array that broadcasts against ``totals``, e.g. (N, 1, 1) for N regions)."""
    return np.asarray(tissue, dtype=bool) & (np.asarray(totals) >= np.asarray(threshold))


@dataclass(frozen=True)
class SplitQC:
    """Spot QC of one split: ``fraction`` (exp(c), of a section's depth level), ``depths``
    (section id -> ``d_s``, counts per HR position, every section of the split) and
    ``min_totals`` (test region id -> its threshold in counts, in test order)."""

    fraction: float
    depths: dict[str, float]
    min_totals: dict[str, int]


def _section_depths(
    windows: Mapping[str, Window], ids: Sequence[str], k: int, canvas: tuple[int, int]
) -> dict[str, float]:
    blocks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for rid in ids:
        section, origin = windows[rid]
        totals = window_totals(section, origin, canvas)
        tissue = totals > 0
        lattice = sites(section, origin, canvas)
        spots = lr_spots(tissue, lattice, totals, k)
        found = (pool(totals * tissue, k)[spots], pool(lattice.astype(np.int64), k)[spots])
        blocks.setdefault(section.id, []).append(found)
    depths = {}
    for sid, found in blocks.items():
        block_totals = np.concatenate([t for t, _ in found])
        if block_totals.size == 0:
            raise BenchError(
                f"section {sid}: no LR spot in the split's regions at k = {k}, so spot QC has "
                "no depth level for it; lower k or enlarge [split].canvas"
            )
        depths[sid] = depth_level(block_totals, np.concatenate([n for _, n in found]))
    return depths


def for_split(
    windows: Mapping[str, Window],
    train: Sequence[str],
    test: Sequence[str],
    canvas: tuple[int, int],
    k: int,
    nmads: float = NMADS,
) -> SplitQC:
    """The spot QC of a split (module docstring): ``windows`` maps each region id of ``train``
    and ``test`` to its section and window origin; ``canvas`` (H, W) is the window, ``k`` the
    pooling. Reads the test regions' LR blocks (their input), never their HR totals."""
    depths = _section_depths(windows, [*train, *test], k, canvas)
    totals, levels = [], []
    for rid in train:
        section, origin = windows[rid]
        t = section.totals[in_window(section, origin, canvas) & (section.totals > 0)]
        totals.append(t)
        levels.append(np.full(t.size, depths[section.id]))
    fraction = depth_fraction(
        np.concatenate(totals) if totals else np.zeros(0),
        np.concatenate(levels) if levels else np.zeros(0),
        nmads,
    )
    return SplitQC(
        fraction=fraction,
        depths=depths,
        min_totals={r: min_total(depths[windows[r][0].id], fraction) for r in test},
    )


def notes(
    found: SplitQC, windows: Mapping[str, Window], test: Sequence[str], canvas: tuple[int, int]
) -> list[str]:
    """One line per test section for the split file's notes: its depth level, threshold and the
    in-tissue test positions the threshold drops (a report of the truth; nothing is chosen on
    it)."""
    by_section: dict[str, list[str]] = {}
    for rid in test:
        by_section.setdefault(windows[rid][0].id, []).append(rid)
    out = []
    for sid, rids in by_section.items():
        threshold = found.min_totals[rids[0]]
        tissue = dropped = 0
        for rid in rids:
            section, origin = windows[rid]
            t = section.totals[in_window(section, origin, canvas) & (section.totals > 0)]
            tissue += t.size
            dropped += int((t < found.min_totals[rid]).sum())
        out.append(
            f"spot QC, section {sid}: depth level {found.depths[sid]:.1f} counts per HR position "
            f"(LR input) x {found.fraction:g} -> threshold {threshold} counts; drops {dropped} of "
            f"{tissue} in-tissue test positions"
        )
    return out
