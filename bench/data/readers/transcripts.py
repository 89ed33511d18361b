"""Reader for imaging-platform transcript tables (10x Xenium, Vizgen MERSCOPE, NanoString / Bruker
CosMx, or any table with a column mapping), binned on a square grid.

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``;
every file named here must be listed in the card's ``[files]``):

- ``transcripts``: one row per decoded transcript: ``.parquet``, ``.csv``, ``.tsv`` or either
  gzipped (``.csv.gz``, ``.tsv.gz``, or any ``.gz``, read as comma-separated);
- ``image``: the morphology image (DAPI, a MERSCOPE mosaic, a CosMx CellComposite, an H&E);
  ``image_scale`` (default 1): stored image pixels per coordinate pixel (0.25 for a quarter-size
  copy); the coordinate space = stored size / scale;
- optional ``fov``: keep only the rows whose fov column equals this value, so several fields of
  view of one table become several sections (each with its own image);
- optional ``transform``: a 3 x 3 affine text file mapping the table's (x, y, 1) to image pixels,
  such as MERSCOPE's ``images/micron_to_mosaic_pixel_transform.csv``; ``origin`` / ``affine``
  (as in ``[read]``) per section;
- optional ``experiment``: Xenium's ``experiment.xenium`` (JSON), whose ``pixel_size`` is read.

Options (the card's ``[read]`` table):

- ``format``: a platform preset, or ``"table"`` (give ``columns`` and ``unit``):

  ========== ============================================ ===== ===========================
  format     columns (gene, x, y[, qv][, fov])            unit  pixel size from
  ========== ============================================ ===== ===========================
  xenium     feature_name, x_location, y_location, qv     um    ``um_per_px`` / experiment
  merscope   gene, global_x, global_y, fov                um    the section's ``transform``
  cosmx      target, x_local_px, y_local_px, fov          px    ``um_per_px`` (0.12028 / 0.18)
  table      ``columns`` (required)                       unit  ``um_per_px``
  ========== ============================================ ===== ===========================

- ``columns = {gene, x, y[, qv][, fov]}``: the table's column names (override the preset's);
- ``unit``: "um" or "px" (pixels of the coordinate space) of x / y; x is the image column;
- ``um_per_px``: the image's pixel size; required unless a ``transform`` / ``affine`` from
  micrometres gives it (then a stated value must agree within 2%); ``bin_um`` (required);
- ``origin = [x0, y0]``: the table's coordinates (its unit) of the image's top-left corner, for
  global coordinates that do not start at the image origin; or ``affine = [[a, b, c], [d, e,
  f]]`` (a 2 x 3 or 3 x 3 matrix) from the table's (x, y, 1) to image pixels (not both);
- ``controls``: glob patterns of control / blank probe names, matched case-insensitively (default
  ``CONTROL_PATTERNS``: Xenium's NegControl*, BLANK*, Unassigned*, ..., MERSCOPE's Blank-*,
  CosMx's NegPrb*, FalseCode*, SystemControl*); ``exclude_prefixes`` (older) = patterns
  ``prefix*``; the number dropped per pattern is reported in the section's notes;
- ``min_qv``: transcripts with ``qv < min_qv`` are dropped when a qv column exists (default 20 for
  xenium, none otherwise); a qv column named in ``columns`` must exist;
- ``tissue_min_counts`` (default 1): a bin is in tissue when it holds at least this many
  transcripts and its centre lies inside the image (a partial edge bin may not);
- ``min_tissue_cover`` (default 0.5; 0 switches the check off): the scale check below.

Coordinates. Each transcript's table coordinates go through the affine to coordinate-space
pixels (``origin``: ``px = (x - x0) / um_per_px`` for um, ``x - x0`` for px), then to micrometres
along the image's axes (``px * um_per_px``), where bin ``(row, col)`` holds ``floor(y_um /
bin_um) = row`` and ``floor(x_um / bin_um) = col``
(:func:`bench.data.readers.binning.bin_points`); a bin's centre maps to pixels with
:func:`bench.data.readers.binning.bin_to_pixel`.

Genes (str, or bytes as some Xenium parquet files hold them) are the sorted non-control names
present in the table (a gene seen only at low qv keeps a zero column: it was measured).

Checked: the file reads; the columns exist; coordinates are numeric and finite; every transcript
maps inside the image (a negative pixel names ``[read].origin``); something is left after
dropping controls and low-qv rows; the scale: a transcript table has no spot lattice to
cross-check its pixel size, so the transcripts must cover at least ``min_tissue_cover`` of the
tissue visible in the image (a pixel size 10x too large squeezes them into a tenth of it); each
message names the card keys to change; then :func:`bench.data.section.check_section`.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.readers.binning import bin_points, bin_to_pixel
from bench.data.readers.lattice import image_size
from bench.data.section import UM_PER_PX_RANGE, Section, check_counts, check_section
from bench.errors import BenchError, first_line

XENIUM_COLUMNS = {"gene": "feature_name", "x": "x_location", "y": "y_location", "qv": "qv"}
FORMATS: dict[str, dict[str, Any]] = {
    "xenium": {"columns": XENIUM_COLUMNS, "unit": "um", "min_qv": 20},
    "merscope": {"columns": {"gene": "gene", "x": "global_x", "y": "global_y", "fov": "fov"},
                 "unit": "um", "min_qv": None},
    "cosmx": {"columns": {"gene": "target", "x": "x_local_px", "y": "y_local_px", "fov": "fov"},
              "unit": "px", "min_qv": None},
    "table": {"columns": {}, "unit": None, "min_qv": None},
}  # fmt: skip
COLUMN_KEYS = ("gene", "x", "y", "qv", "fov")
CONTROL_PREFIXES = (
    "NegControl", "BLANK", "Unassigned", "DeprecatedCodeword", "Intergenic", "antisense",  # Xenium
    "NegPrb", "FalseCode", "SystemControl",  # CosMx; MERSCOPE's Blank-* match BLANK*
)  # fmt: skip
CONTROL_PATTERNS = tuple(f"{p}*" for p in CONTROL_PREFIXES)
ENTRY_KEYS = ("transcripts", "image")  # a section's files, each listed in the card's [files]
MIN_POINTS_FOR_COVER = 1000  # fewer transcripts say too little about the scale to judge it
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, UnicodeError, pd.errors.ParserError)


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    keys = ENTRY_KEYS + tuple(k for k in ("transform", "experiment") if k in entry)
    return {key: (entry[key],) for key in keys}


def check_card(where: Path, card: Mapping[str, Any]) -> None:
    """``[read]`` and the sections' placement keys checked whole before any file is read."""
    read = card.get("read", {})
    sections = card.get("sections", {})
    given = all(
        {"transform", "affine", "experiment"} & set(e)
        for e in sections.values()
        if isinstance(e, dict)
    )
    options(where, read, pixel_size_given=given)
    for sid, entry in sections.items():
        placement(where, entry, f"[sections.{sid}]")


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


def options(
    where: Path, read: Mapping[str, Any], pixel_size_given: bool = False
) -> dict[str, Any]:
    """The card's ``[read]`` options with the format's defaults filled in and values checked.

    ``pixel_size_given``: a section's transform or affine states the pixel size, so
    ``um_per_px`` may be left out.
    """
    fmt = read.get("format")
    if fmt not in FORMATS:
        raise BenchError(f"{where}: [read].format {fmt!r} unknown; use one of {list(FORMATS)}")
    preset = FORMATS[fmt]
    given_columns = read.get("columns", {})
    if not isinstance(given_columns, dict) or not all(
        k in COLUMN_KEYS and isinstance(v, str) for k, v in given_columns.items()
    ):
        raise BenchError(
            f"{where}: [read].columns = {given_columns!r} must map {', '.join(COLUMN_KEYS)} "
            "to the table's column names"
        )
    columns = {**preset["columns"], **given_columns}
    if not {"gene", "x", "y"} <= set(columns):
        raise BenchError(
            f'{where}: format "{fmt}" needs [read].columns = {{gene, x, y[, qv][, fov]}}'
        )
    unit = read.get("unit", preset["unit"])
    if unit not in ("um", "px"):
        raise BenchError(f'{where}: [read].unit {unit!r} unknown; use "um" or "px"')
    placed = placement(where, read, "[read]")
    values: dict[str, float | None] = {}
    for key in ("um_per_px", "bin_um"):
        value = read.get(key)
        optional = key == "um_per_px" and (pixel_size_given or "affine" in placed)
        if value is None and optional:
            values[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            hint = " (or a section's transform)" if key == "um_per_px" else ""
            raise BenchError(
                f"{where}: [read].{key} must be a positive number{hint}, got {value!r}"
            )
        values[key] = float(value)
    low, high = UM_PER_PX_RANGE
    if values["um_per_px"] is not None and not low <= values["um_per_px"] <= high:
        raise BenchError(
            f"{where}: [read].um_per_px {values['um_per_px']:g} is implausible (expected "
            f"{low}-{high}); set the image's pixel size in micrometres"
        )
    if "controls" in read:
        patterns = read["controls"]
    elif "exclude_prefixes" in read:
        patterns = (
            [f"{p}*" for p in read["exclude_prefixes"]]
            if isinstance(read["exclude_prefixes"], list)
            else None
        )
    else:
        patterns = list(CONTROL_PATTERNS)
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise BenchError(
            f"{where}: [read].controls must be a list of name patterns such as "
            '["Blank-*", "NegPrb*"]'
        )
    min_qv = read.get("min_qv", preset["min_qv"])
    if min_qv is not None and (isinstance(min_qv, bool) or not isinstance(min_qv, int | float)):
        raise BenchError(f"{where}: [read].min_qv = {min_qv!r} must be a number")
    tissue_min = read.get("tissue_min_counts", 1)
    if isinstance(tissue_min, bool) or not isinstance(tissue_min, int) or tissue_min < 1:
        raise BenchError(
            f"{where}: [read].tissue_min_counts = {tissue_min!r} must be an integer >= 1"
        )
    cover = read.get("min_tissue_cover", 0.5)
    if isinstance(cover, bool) or not isinstance(cover, int | float) or not 0 <= cover <= 1:
        raise BenchError(f"{where}: [read].min_tissue_cover = {cover!r} must be in [0, 1]")
    return {
        "format": fmt,
        "columns": columns,
        "qv_required": "qv" in given_columns,
        "unit": unit,
        "min_qv": min_qv,
        "controls": tuple(patterns),
        "tissue_min_counts": tissue_min,
        "min_tissue_cover": float(cover),
        **placed,
        **values,
    }


def _reader_args(path: Path) -> dict[str, Any] | None:
    """pandas.read_csv arguments for a text table, by its name; None for parquet."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return None
    if name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return {"sep": "\t"}
    if name.endswith((".csv", ".gz")):
        return {"sep": ","}
    raise BenchError(f"{path}: unknown table type; use .parquet, .csv, .tsv or their .gz")


def load_table(
    path: Path, columns: Mapping[str, str], need: tuple[str, ...] | bool = ("gene", "x", "y")
) -> pd.DataFrame:
    """The wanted columns of a transcript table, renamed to gene, x, y (and qv, fov when
    present); every column of ``need`` must exist."""
    if isinstance(need, bool):  # older signature: qv_required
        need = ("gene", "x", "y") + (("qv",) if need else ())
    if not path.is_file():
        raise BenchError(f"{path}: transcripts file missing; re-fetch it or fix the card's path")
    wanted = {name: key for key, name in columns.items()}
    args = _reader_args(path)
    try:
        if args is None:
            import pyarrow.parquet as pq
            from pyarrow import ArrowException

            try:
                names = set(pq.read_schema(path).names)
                frame = pd.read_parquet(path, columns=[n for n in wanted if n in names])
            except ArrowException as err:
                raise ValueError(err) from None
        else:
            frame = pd.read_csv(
                path, usecols=lambda c: c in wanted, dtype={columns["gene"]: str}, **args
            )
    except READ_ERRORS as err:
        raise BenchError(
            f"{path}: unreadable transcript table ({first_line(err)}); re-fetch it"
        ) from None
    missing = [columns[k] for k in need if columns[k] not in frame.columns]
    if missing:
        mapping = ", ".join(f"{k} = {columns[k]!r}" for k in need)
        raise BenchError(
            f"{path}: missing column(s) {', '.join(missing)} (column mapping {mapping}); "
            "set [read].columns to the table's names"
        )
    return frame.rename(columns=wanted)


def coordinates(path: Path, frame: pd.DataFrame, axis: str) -> np.ndarray:
    """(P,) float64 coordinates of one axis, checked numeric and finite."""
    column = frame[axis]
    if not pd.api.types.is_numeric_dtype(column):
        raise BenchError(f"{path}: non-numeric {axis} coordinates; the table needs numbers")
    values = column.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise BenchError(f"{path}: NaN or infinite {axis} coordinates; drop or fix those rows")
    return values


def control_mask(names: np.ndarray, patterns: tuple[str, ...]) -> np.ndarray:
    """(n,) int: index of the first pattern each name matches (case-insensitive glob), or -1."""
    out = np.full(len(names), -1, dtype=np.int64)
    for i, pattern in reversed(list(enumerate(patterns))):
        regex = re.compile(fnmatch.translate(pattern), re.IGNORECASE)
        out[[bool(regex.match(n)) for n in names]] = i
    return out


def gene_codes(
    gene: pd.Series, patterns: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted non-control gene names present; each transcript's index into them (-1: control);
    each transcript's control pattern index (-1: a gene)."""
    names = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in gene.cat.categories])
    codes = gene.cat.codes.to_numpy()
    which = control_mask(names, patterns)
    real = (np.bincount(codes, minlength=len(names)) > 0) & (which < 0)
    genes = np.sort(names[real])
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[real] = np.searchsorted(genes, names[real])
    return genes, lookup[codes], which[codes]


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


def _count(n: int) -> str:
    return f"{n:,}"


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one transcript table into a binned :class:`Section` (see the module docstring)."""
    path, image_path = folder / entry["transcripts"], folder / entry["image"]
    given = "transform" in entry or "affine" in entry or "experiment" in entry
    opts = options(path, card.get("read", {}), pixel_size_given=given)
    placed = placement(path, entry, f"[sections.{section_id}]")
    columns = dict(opts["columns"])
    fov = placed.get("fov")
    if fov is None:
        columns.pop("fov", None)
        if opts["format"] == "cosmx" and columns["x"].endswith("_local_px"):
            raise BenchError(
                f"{path}: CosMx {columns['x']}/{columns['y']} are per field of view; set fov = N "
                f"in [sections.{section_id}] (one section per FOV, with that FOV's image), or "
                'use global coordinates: [read].columns = {x = "x_global_px", y = "y_global_px"}'
                " and [read].origin"
            )
    need = (
        ("gene", "x", "y")
        + (("qv",) if opts["qv_required"] else ())
        + (("fov",) if fov is not None else ())
    )
    frame = load_table(path, columns, need)
    if fov is not None:
        keys = frame["fov"].astype(str).str.strip()
        chosen = (keys == str(fov).strip()).to_numpy()
        if not chosen.any():
            have = sorted(set(keys), key=lambda v: (len(v), v))
            raise BenchError(
                f"{path}: no transcript with {columns['fov']} = {fov!r} (have "
                f"{', '.join(have[:5])}{', ...' if len(have) > 5 else ''}); fix "
                f"[sections.{section_id}].fov"
            )
        frame = frame[chosen]
    if frame.empty:
        raise BenchError(f"{path}: no transcripts (empty section); check the file")
    gene = frame["gene"].astype("category")
    if gene.isna().any():
        raise BenchError(f"{path}: {int(gene.isna().sum())} rows without a gene name; fix them")
    x, y = coordinates(path, frame, "x"), coordinates(path, frame, "y")
    to_um, um_per_px, how = to_image(path, folder, entry, opts, section_id)
    bin_um = opts["bin_um"]
    x_um = to_um[0, 0] * x + to_um[0, 1] * y + to_um[0, 2]
    y_um = to_um[1, 0] * x + to_um[1, 1] * y + to_um[1, 2]
    scale = float(entry.get("image_scale", 1.0))
    stored = image_size(image_path)
    size = (round(stored[0] / scale), round(stored[1] / scale))
    px = np.vstack([x_um / um_per_px, y_um / um_per_px])
    negative = (px < 0).any(axis=0)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise BenchError(
            f"{path}: {int(negative.sum())} transcripts map to negative image pixels (e.g. table "
            f"x {x[i]:g}, y {y[i]:g} -> pixel {px[0, i]:.0f}, {px[1, i]:.0f} via {how}): the "
            f"table's coordinates do not start at the image origin; set [read].origin = [x0, y0],"
            f" the table's coordinates of the image's top-left corner (the smallest here: "
            f"{x.min():g}, {y.min():g}), or a transform / affine"
        )
    outside = (px[0] >= size[0]) | (px[1] >= size[1])
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise BenchError(
            f"{path}: {int(outside.sum())} transcripts outside the {size[0]}x{size[1]} image "
            f"{image_path.name} (e.g. pixel {px[0, i]:.0f}, {px[1, i]:.0f}); misregistered: "
            "check [read].unit, [read].um_per_px, [read].origin / transform, the image and "
            "image_scale"
        )
    genes, codes, control = gene_codes(gene, opts["controls"])
    keep = codes >= 0
    n_controls = int(len(codes) - keep.sum())
    low_qv = np.zeros(len(codes), dtype=bool)
    if "qv" in frame.columns and opts["min_qv"] is not None:
        low_qv = keep & (frame["qv"].to_numpy(dtype=np.float64) < opts["min_qv"])
        keep &= ~low_qv
    if not keep.any():
        raise BenchError(
            f"{path}: nothing left of {len(codes)} transcripts ({n_controls} control probes, "
            "the rest below min_qv): empty section; check [read].controls and min_qv"
        )
    counts_by = np.bincount(control[control >= 0], minlength=len(opts["controls"]))
    dropped = ", ".join(
        f"{opts['controls'][i]}: {_count(int(counts_by[i]))}"
        for i in np.argsort(-counts_by, kind="stable")
        if counts_by[i]
    )
    notes = [
        f"{path.name}{'' if fov is None else f' fov {fov}'}: kept {_count(int(keep.sum()))} of "
        f"{_count(len(codes))} transcripts; dropped {_count(n_controls)} control/blank probe "
        f"transcripts ({dropped or 'none matched [read].controls'})"
        + (
            f" and {_count(int(low_qv.sum()))} below min_qv {opts['min_qv']:g}"
            if low_qv.any()
            else ""
        )
    ]
    cover = check_cover(path, image_path, px[:, keep], size, opts, um_per_px)
    if cover is not None:
        notes.append(f"transcripts reach {cover:.0%} of the tissue in {image_path.name}")
    row, col, counts = bin_points(x_um[keep], y_um[keep], bin_um, codes[keep], len(genes))
    to_pixel = bin_to_pixel(bin_um, um_per_px)
    centre = to_pixel @ np.vstack([col, row, np.ones(len(row))])
    totals = np.asarray(counts.sum(axis=1)).ravel()
    in_image = (centre[0] < size[0]) & (centre[1] < size[1])
    section = Section(
        id=section_id,
        counts=check_counts(path, counts, genes),
        genes=genes,
        row=row,
        col=col,
        in_tissue=(totals >= opts["tissue_min_counts"]) & in_image,
        to_pixel=to_pixel,
        image=image_path,
        image_size=size,
        pitch_um=(bin_um, bin_um),
        um_per_px=um_per_px,
        lattice="square",
        parity=0,
        notes=tuple(notes),
    )
    check_section(path, section, card.get("lattice", {}).get("image_um_per_px"))
    return section
