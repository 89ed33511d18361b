"""Where a transcript table lands on its image, shared by the transcript readers (not a reader).

Each transcript's table coordinates go through an affine to coordinate-space pixels, then to
micrometres along the image's axes (``px * um_per_px``), where the reader bins them. The affine is
the section's ``transform`` file (a 3 x 3 text file mapping the table's (x, y, 1) to image pixels,
such as MERSCOPE's ``images/micron_to_mosaic_pixel_transform.csv``) or ``affine``, else
``[read].affine``, else ``origin`` (section, then ``[read]``) with the unit: ``px = (x - x0) /
um_per_px`` for um, ``x - x0`` for px. The pixel size is ``[read].um_per_px``, else the
transform's (for micrometre tables: ``1 / sqrt(|det|)``), else the section's ``experiment``
(Xenium's ``experiment.xenium``, whose ``pixel_size`` is read); a stated value must agree with a
transform's or experiment's within 2%.

The scale check: a transcript table has no spot lattice to cross-check its pixel size, so the
transcripts must cover at least ``[read].min_tissue_cover`` of the tissue visible in the image
(Otsu's threshold on a coarse grid; a pixel size 10x too large squeezes them into a tenth of it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.section import UM_PER_PX_RANGE
from bench.errors import BenchError, first_line

MIN_POINTS_FOR_COVER = 1000  # fewer transcripts say too little about the scale to judge it


def _matrix(where: Path, key: str, value: Any) -> np.ndarray:
    """A 2 x 3 affine from a card's 2 x 3 or 3 x 3 list of numbers (non-singular)."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    ok = matrix.ndim == 2 and matrix.shape in ((2, 3), (3, 3)) and np.isfinite(matrix).all()
    if ok and matrix.shape == (3, 3):
        ok = np.allclose(matrix[2], [0, 0, 1])
    if not ok or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise BenchError(
            f"{where}: {key} = {value!r} must be a non-singular affine [[a, b, c], [d, e, f]] "
            "(optionally with [0, 0, 1]) from the table's (x, y, 1) to image pixels; fix the card"
        )
    return matrix[:2]


def _pair(where: Path, key: str, value: Any) -> tuple[float, float]:
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not all(math.isfinite(v) for v in value):
        raise BenchError(f"{where}: {key} = {value!r} must be [x, y] numbers; fix the card")
    return float(value[0]), float(value[1])


def placement(where: Path, entry: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The optional ``origin`` / ``affine`` / ``fov`` of a ``[read]`` table or section entry."""
    out: dict[str, Any] = {}
    if "origin" in entry and "affine" in entry:
        raise BenchError(f"{where}: {key} sets both origin and affine; keep one")
    if "origin" in entry:
        out["origin"] = _pair(where, f"{key}.origin", entry["origin"])
    if "affine" in entry:
        out["affine"] = _matrix(where, f"{key}.affine", entry["affine"])
    if "fov" in entry:
        fov = entry["fov"]
        if isinstance(fov, bool) or not isinstance(fov, int | str):
            raise BenchError(f"{where}: {key}.fov = {fov!r} must be an integer or a name")
        out["fov"] = fov
    return out


def read_transform(path: Path) -> np.ndarray:
    """The 2 x 3 affine of a 3 x 3 text file (whitespace or comma separated, e.g. MERSCOPE's
    ``micron_to_mosaic_pixel_transform.csv``)."""
    try:
        text = path.read_text()
        rows = [r for r in (line.replace(",", " ").split() for line in text.splitlines()) if r]
        matrix = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except (OSError, ValueError, UnicodeError) as err:
        raise BenchError(
            f"{path}: unreadable transform ({first_line(err)}); it must be 3 lines of 3 numbers"
        ) from None
    return _matrix(path, "the transform", matrix.tolist())


def read_pixel_size(path: Path) -> float:
    """``pixel_size`` (um) from a Xenium ``experiment.xenium`` JSON file."""
    try:
        value = json.loads(path.read_text()).get("pixel_size")
    except (OSError, ValueError, AttributeError) as err:
        raise BenchError(f"{path}: unreadable ({first_line(err)}); re-fetch it") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BenchError(f"{path}: no positive pixel_size; fix the card's experiment entry")
    return float(value)


def to_image(
    where: Path, folder: Path, entry: Mapping[str, Any], opts: Mapping[str, Any], sid: str
) -> tuple[np.ndarray, float, str]:
    """(2 x 3 affine from table coordinates to image-axis micrometres, um_per_px, description).

    The affine to pixels is the section's ``transform`` file or ``affine``, else ``[read]``'s
    ``affine``, else ``origin`` (section, then ``[read]``) with the unit; the pixel size is the
    card's ``um_per_px``, else the transform's (for micrometre tables), else ``experiment``'s.
    """
    placed = placement(where, entry, f"[sections.{sid}]")
    unit, stated = opts["unit"], opts["um_per_px"]
    if "experiment" in entry:
        found = read_pixel_size(folder / entry["experiment"])
        if stated is not None and not 0.98 <= stated / found <= 1 / 0.98:
            raise BenchError(
                f"{folder / entry['experiment']}: pixel_size {found:g} um disagrees with "
                f"[read].um_per_px = {stated:g}; drop [read].um_per_px or fix it"
            )
        stated = found if stated is None else stated
    if "transform" in entry:
        affine, how = read_transform(folder / entry["transform"]), entry["transform"]
    elif "affine" in placed or "affine" in opts:
        affine = placed.get("affine", opts.get("affine"))
        how = f"[sections.{sid}].affine" if "affine" in placed else "[read].affine"
    else:
        x0, y0 = placed.get("origin", opts.get("origin", (0.0, 0.0)))
        if stated is None:
            raise BenchError(f"{where}: [read].um_per_px is required (no transform gives it)")
        if unit == "um":  # exact micrometres: no round trip through pixels
            return np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), stated, "origin"
        return (
            np.array([[stated, 0.0, -x0 * stated], [0.0, stated, -y0 * stated]]),
            stated,
            "origin",
        )
    implied = 1.0 / math.sqrt(abs(np.linalg.det(affine[:, :2])))  # um per px, for um tables
    if unit == "um":
        if stated is not None and not 0.98 <= stated / implied <= 1 / 0.98:
            raise BenchError(
                f"{where}: {how} maps 1 um to {1 / implied:.4g} px ({implied:.4g} um/px) but "
                f"[read].um_per_px = {stated:g}; drop [read].um_per_px or fix one of them"
            )
        stated = implied if stated is None else stated
    elif stated is None:
        raise BenchError(f"{where}: [read].um_per_px is required for a pixel table")
    low, high = UM_PER_PX_RANGE
    if not low <= stated <= high:
        raise BenchError(
            f"{where}: {how} gives {stated:.3g} um/px, implausible (expected {low}-{high}); "
            "check the transform and [read].unit"
        )
    return affine * stated, stated, how


def check_inside(
    where: Path,
    image: Path,
    xy: tuple[np.ndarray, np.ndarray],
    px: np.ndarray,
    size: tuple[int, int],
    how: str,
) -> None:
    """Every transcript maps inside the ``size`` image; a negative pixel names ``origin``."""
    x, y = xy
    negative = (px < 0).any(axis=0)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise BenchError(
            f"{where}: {int(negative.sum())} transcripts map to negative image pixels (e.g. table "
            f"x {x[i]:g}, y {y[i]:g} -> pixel {px[0, i]:.0f}, {px[1, i]:.0f} via {how}): the "
            f"table's coordinates do not start at the image origin; set [read].origin = [x0, y0],"
            f" the table's coordinates of the image's top-left corner (the smallest here: "
            f"{x.min():g}, {y.min():g}), or a transform / affine"
        )
    outside = (px[0] >= size[0]) | (px[1] >= size[1])
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise BenchError(
            f"{where}: {int(outside.sum())} transcripts outside the {size[0]}x{size[1]} image "
            f"{image.name} (e.g. pixel {px[0, i]:.0f}, {px[1, i]:.0f}); misregistered: "
            "check [read].unit, [read].um_per_px, [read].origin / transform, the image and "
            "image_scale"
        )


def tissue_cells(image: Path, grid: tuple[int, int]) -> np.ndarray | None:
    """(gh, gw) bool: cells of a coarse grid over the image mostly covered by tissue (Otsu's
    threshold: bright on dark for one-channel fluorescence, dark on white for colour); None when
    the image shows no clear foreground (under 3% or over 97% of it)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    gh, gw = grid
    with Image.open(image) as im:
        if im.format == "JPEG":
            im.draft(im.mode, (gw * 8, gh * 8))
        colour = im.mode not in ("L", "I;16", "I", "F", "1")
        if im.mode in ("I;16", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
        else:
            arr = np.asarray(im.convert("L"), dtype=np.float64)
    small = Image.fromarray(arr.astype(np.float32)).resize((gw * 4, gh * 4), Image.Resampling.BOX)
    small = np.asarray(small, dtype=np.float64)
    if np.ptp(small) == 0:
        return None
    hist, edges = np.histogram(small, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    threshold = centres[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))]
    fore = small < threshold if colour else small > threshold
    if not 0.03 <= fore.mean() <= 0.97:
        return None
    return fore.reshape(gh, 4, gw, 4).mean(axis=(1, 3)) > 0.5


def check_cover(
    path: Path,
    image: Path,
    px: np.ndarray,
    size: tuple[int, int],
    opts: Mapping[str, Any],
    um_per_px: float,
) -> float | None:
    """The scale check (module docstring): share of the image's tissue cells the transcripts
    reach; raises naming the card keys when it is below ``[read].min_tissue_cover``."""
    if opts["min_tissue_cover"] <= 0 or px.shape[1] < MIN_POINTS_FOR_COVER:
        return None
    cell = max(size) / 48.0
    grid = (max(1, round(size[1] / cell)), max(1, round(size[0] / cell)))
    tissue = tissue_cells(image, grid)
    if tissue is None or tissue.sum() < 4:
        return None
    i = np.clip((px[1] / size[1] * grid[0]).astype(np.int64), 0, grid[0] - 1)
    j = np.clip((px[0] / size[0] * grid[1]).astype(np.int64), 0, grid[1] - 1)
    reached = np.zeros(grid, dtype=bool)
    reached[i, j] = True
    cover = float((reached & tissue).sum() / tissue.sum())
    if cover >= opts["min_tissue_cover"]:
        return cover
    ti, tj = np.nonzero(tissue)
    cell_w, cell_h = size[0] / grid[1], size[1] / grid[0]
    tissue_extent = math.sqrt((np.ptp(tj) + 1) * cell_w * (np.ptp(ti) + 1) * cell_h)
    point_extent = math.sqrt(max(np.ptp(px[0]), 1.0) * max(np.ptp(px[1]), 1.0))
    ratio = tissue_extent / point_extent
    keys = "[read].unit, [read].um_per_px (or the transform), [read].origin, "
    keys += "[lattice].image_um_per_px"
    guess = (
        f"; points spanning the tissue would need a pixel size ~{ratio:.2g}x smaller "
        f"([read].um_per_px ~ {um_per_px / ratio:.3g})"
        if opts["unit"] == "um" and ratio > 1.5
        else ""
    )
    raise BenchError(
        f"{path}: the transcripts reach only {cover:.0%} of the tissue in {image.name} (at "
        f"{um_per_px:.3g} um/px they span {np.ptp(px[0]) * um_per_px:.0f} x "
        f"{np.ptp(px[1]) * um_per_px:.0f} um of a {size[0] * um_per_px:.0f} x "
        f"{size[1] * um_per_px:.0f} um image){guess}: a wrong scale or offset; check {keys} "
        "(set [read].min_tissue_cover = 0 for a small region of a larger image)"
    )
