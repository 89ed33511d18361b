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

computed for the image as placed and for the image flipped up-down, left-right, rotated by 90,
180 and 270 degrees (a quarter turn stretched back to the image's own frame) and shifted by one
grid step in each direction (the positions kept: the mistakes a card makes with a y axis, an x
axis, both, a rotated scan or an origin).
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


def turned(a: np.ndarray, quarter_turns: int) -> np.ndarray:
    """``a`` rotated by 90 degrees ``quarter_turns`` times counter-clockwise and stretched back to
    its own height x width (bilinear), so the positions read it in the same frame."""
    from scipy import ndimage

    rotated = np.rot90(a, quarter_turns)
    return ndimage.zoom(
        rotated, (a.shape[0] / rotated.shape[0], a.shape[1] / rotated.shape[1]), order=1
    )


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) pixels, edges repeated."""
    from scipy import ndimage

    return ndimage.shift(a, (dy, dx), order=0, mode="nearest")


# image -> transformed image, at the grid step ``step`` (thumbnail pixels between neighbours)
TRANSFORMS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "flipped up-down": lambda a, step: np.flipud(a),
    "flipped left-right": lambda a, step: np.fliplr(a),
    "rotated 180 degrees": lambda a, step: a[::-1, ::-1],
    "rotated 90 degrees": lambda a, step: turned(a, 1),
    "rotated 270 degrees": lambda a, step: turned(a, 3),
    "shifted one step right": lambda a, step: _shifted(a, 0, step),
    "shifted one step left": lambda a, step: _shifted(a, 0, -step),
    "shifted one step down": lambda a, step: _shifted(a, step, 0),
    "shifted one step up": lambda a, step: _shifted(a, -step, 0),
}
# the card keys that place a section's positions on its image, named by a warning
KEYS = "[read].origin / affine, the direction of y, [sections.<id>].image_scale"


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
        transformed={name: r(turn(grey, window)) for name, turn in TRANSFORMS.items()},
        n=int(keep.sum()),
    )
