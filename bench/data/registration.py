"""Registration check: do a section's counts sit on its image the way the card places them?

Cells make both the counts and the image's stain (H&E's haematoxylin darkens, DAPI brightens
where nuclei are), so from one position to its neighbours the total counts rise and fall with the
image signal under them. The tissue's outline also makes both fall towards its edges, which a
flipped image of a roughly symmetric tissue keeps; so both are compared after removing their
local level. For each in-tissue position ``i`` (spot or bin) with all-gene total ``t_i`` and
image signal ``v_i`` (the mean grey level, 0-255, of a thumbnail over one grid step around it):

    a_i = log1p(t_i) - mean of log1p(t_j) over in-tissue j within RADIUS steps (rows, columns)
    b_i = v_i - mean of v_j over the same positions
    r = Spearman(a, b)

computed for the image as placed and for the image flipped up-down, left-right and rotated by
180 degrees (the positions kept: the mistakes a card makes with a y axis, an x axis or both).
The sign of ``r`` depends on the stain, so ``|r|`` is compared. The placement is suspect when a
transformed image matches better by more than :data:`MARGIN` and is itself informative
(``|r| >= MIN_R``); ``bench split`` then warns, it does not refuse (a tissue whose counts do
not follow its image says nothing either way). Why these values: docs/decisions.md,
"Registration check on local residuals".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.data.section import Section

RADIUS = 2  # grid steps: the neighbourhood whose mean is removed
MARGIN = 0.1  # how much better a transformed image must match before the placement is suspect
MIN_R = 0.2  # |r| below this says too little to suspect anything
THUMB_PX = 2000  # long side of the thumbnail the image signal is read from
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "flipped up-down": np.flipud,
    "flipped left-right": np.fliplr,
    "rotated 180 degrees": lambda a: a[::-1, ::-1],
}


@dataclass(frozen=True)
class Registration:
    """``r`` for the image as placed and for each transform (name -> r) over ``n`` positions."""

    section: str
    r: float
    transformed: dict[str, float]
    n: int

    @property
    def suspect(self) -> str | None:
        """The transform that matches better (see the module docstring), else None."""
        name, best = max(self.transformed.items(), key=lambda kv: abs(kv[1]))
        if abs(best) >= MIN_R and abs(best) > abs(self.r) + MARGIN:
            return name
        return None

    def line(self) -> str:
        """One line for ``bench split``."""
        others = ", ".join(f"{k} {v:+.2f}" for k, v in self.transformed.items())
        return f"registration {self.section}: r = {self.r:+.2f} ({others}; {self.n} positions)"


def _residual(values: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """``values`` (n,) at lattice positions minus their mean over positions within RADIUS."""
    from scipy import ndimage

    r, c = row - row.min(), col - col.min()
    grid, seen = np.zeros((r.max() + 1, c.max() + 1)), np.zeros((r.max() + 1, c.max() + 1))
    grid[r, c], seen[r, c] = values, 1.0
    size = 2 * RADIUS + 1
    total = ndimage.uniform_filter(grid, size, mode="constant")
    count = ndimage.uniform_filter(seen, size, mode="constant")
    return values - (total / np.maximum(count, 1e-12))[r, c]


def check(section: Section) -> Registration:
    """The registration of one section (see the module docstring)."""
    from scipy import ndimage, stats

    from bench.data.histology import thumbnail

    rgb, factor = thumbnail(section, THUMB_PX)
    grey = rgb.astype(np.float64).mean(axis=2)
    keep = section.in_tissue & (section.totals > 0)
    row, col = section.row[keep], section.col[keep]
    x, y = (np.c_[col, row, np.ones(len(row))] @ section.to_pixel.T * factor).T
    window = max(1, round(float(np.hypot(*section.to_pixel[:, 0])) * factor))
    counts = _residual(np.log1p(section.totals[keep]).astype(np.float64), row, col)
    h, w = grey.shape
    at = (np.clip(np.rint(y).astype(int), 0, h - 1), np.clip(np.rint(x).astype(int), 0, w - 1))

    def r(image: np.ndarray) -> float:
        if len(counts) < 3:
            return float("nan")
        signal = ndimage.uniform_filter(image, size=window, mode="nearest")[at]
        value = stats.spearmanr(counts, _residual(signal, row, col)).statistic
        return float(value) if np.isfinite(value) else 0.0

    return Registration(
        section=section.id,
        r=r(grey),
        transformed={name: r(turn(grey)) for name, turn in TRANSFORMS.items()},
        n=int(keep.sum()),
    )
