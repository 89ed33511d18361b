"""Reader for imaging-platform transcript tables (10x Xenium, generic), binned on a square grid.

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``):

- ``transcripts``: one row per decoded transcript, ``.parquet``, ``.csv`` or ``.csv.gz``;
- ``image``: the morphology image (e.g. DAPI); ``image_scale`` (default 1): stored image pixels per
  coordinate pixel (0.25 for a quarter-size copy); the coordinate space = stored size / scale.

Options (the card's ``[read]`` table):

- ``format = "xenium"``: 10x names ``feature_name``, ``x_location``, ``y_location`` (um), ``qv``;
  ``format = "table"``: ``columns = {gene, x, y[, qv]}`` names the columns (for "xenium" it
  overrides the 10x names) and ``unit`` is required;
- ``unit``: "um" or "px" (pixels of the coordinate space) of x/y; x is the image column;
- ``um_per_px`` (required): image pixel size, ``um = px * um_per_px``; ``bin_um`` (required);
- ``min_qv``: transcripts with ``qv < min_qv`` are dropped when a qv column exists (default 20 for
  xenium, none for table); a qv column named in ``columns`` must exist;
- ``exclude_prefixes`` (default ``CONTROL_PREFIXES``: NegControl, BLANK, Unassigned, ...): gene
  names starting with these are control probes, dropped before binning;
- ``tissue_min_counts`` (default 1): a bin is in tissue when it holds at least this many
  transcripts and its centre lies inside the image (a partial edge bin may not).

Genes (str, or bytes as some Xenium parquet files hold them) are the sorted non-control names
present in the table (a gene seen only at low qv keeps a zero column: it was measured). Bin
``(row, col)`` holds the transcripts with ``floor(y_um / bin_um) = row`` and ``floor(x_um /
bin_um) = col`` (:func:`bench.data.readers.binning.bin_points`); its centre maps to
pixels with :func:`bench.data.readers.binning.bin_to_pixel` (um and pixels share their origin).

Checked: the file reads; the columns exist; coordinates are numeric, finite and non-negative;
every transcript lies inside the image (else misregistered); something is left after dropping
controls and low-qv rows; then :func:`bench.data.section.check_section` on the binned section.
"""

from __future__ import annotations

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
CONTROL_PREFIXES = (
    "NegControl", "BLANK", "Unassigned", "DeprecatedCodeword", "Intergenic", "antisense",
)  # fmt: skip
ENTRY_KEYS = ("transcripts", "image")  # a section's files, each listed in the card's [files]
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, UnicodeError, pd.errors.ParserError)


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    return {key: (entry[key],) for key in ENTRY_KEYS}


def check_card(where: Path, card: Mapping[str, Any]) -> None:
    """The card's ``[read]`` table checked whole (:func:`options`) before any file is read."""
    options(where, card.get("read", {}))


def options(where: Path, read: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``[read]`` options with defaults filled in and values checked."""
    fmt = read.get("format")
    if fmt not in ("xenium", "table"):
        raise BenchError(f'{where}: [read].format {fmt!r} unknown; use "xenium" or "table"')
    columns = dict(XENIUM_COLUMNS) if fmt == "xenium" else {}
    columns.update(read.get("columns", {}))
    if fmt == "table" and not {"gene", "x", "y"} <= set(columns):
        raise BenchError(f'{where}: format "table" needs [read].columns = {{gene, x, y[, qv]}}')
    unit = read.get("unit", "um" if fmt == "xenium" else None)
    if unit not in ("um", "px"):
        raise BenchError(f'{where}: [read].unit {unit!r} unknown; use "um" or "px"')
    values = {}
    for key in ("um_per_px", "bin_um"):
        value = read.get(key)
        if not isinstance(value, int | float) or not value > 0:
            raise BenchError(f"{where}: [read].{key} must be a positive number, got {value!r}")
        values[key] = float(value)
    low, high = UM_PER_PX_RANGE
    if not low <= values["um_per_px"] <= high:
        raise BenchError(
            f"{where}: [read].um_per_px {values['um_per_px']:g} is implausible (expected "
            f"{low}-{high}); set the image's pixel size in micrometres"
        )
    return {
        "columns": columns,
        "qv_required": "qv" in read.get("columns", {}),
        "unit": unit,
        "min_qv": read.get("min_qv", 20 if fmt == "xenium" else None),
        "prefixes": tuple(read.get("exclude_prefixes", CONTROL_PREFIXES)),
        "tissue_min_counts": read.get("tissue_min_counts", 1),
        **values,
    }


def load_table(path: Path, columns: Mapping[str, str], qv_required: bool) -> pd.DataFrame:
    """The needed columns of a transcript table, renamed to gene, x, y (and qv when present)."""
    if not path.is_file():
        raise BenchError(f"{path}: transcripts file missing; re-fetch it or fix the card's path")
    wanted = {name: key for key, name in columns.items()}
    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq
            from pyarrow import ArrowException

            try:
                names = set(pq.read_schema(path).names)
                frame = pd.read_parquet(path, columns=[n for n in wanted if n in names])
            except ArrowException as err:
                raise ValueError(err) from None
        elif path.name.endswith((".csv", ".csv.gz")):
            frame = pd.read_csv(path, usecols=lambda c: c in wanted, dtype={columns["gene"]: str})
        else:
            raise BenchError(f"{path}: unknown table type; use .parquet, .csv or .csv.gz")
    except READ_ERRORS as err:
        raise BenchError(
            f"{path}: unreadable transcript table ({first_line(err)}); re-fetch it"
        ) from None
    need = ["gene", "x", "y"] + (["qv"] if qv_required else [])
    missing = [columns[k] for k in need if columns[k] not in frame.columns]
    if missing:
        mapping = ", ".join(f"{k} = {columns[k]!r}" for k in need)
        raise BenchError(
            f"{path}: missing column(s) {', '.join(missing)} (column mapping {mapping}); "
            "set [read].columns to the table's names"
        )
    return frame.rename(columns=wanted)


def coordinates(path: Path, frame: pd.DataFrame, axis: str) -> np.ndarray:
    """(P,) float64 coordinates of one axis, checked numeric, finite and non-negative."""
    column = frame[axis]
    if not pd.api.types.is_numeric_dtype(column):
        raise BenchError(f"{path}: non-numeric {axis} coordinates; the table needs numbers")
    values = column.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise BenchError(f"{path}: NaN or infinite {axis} coordinates; drop or fix those rows")
    if (values < 0).any():
        raise BenchError(
            f"{path}: negative {axis} coordinate ({values.min():g}); coordinates must start at "
            "the image origin (shift them or use the matching image)"
        )
    return values


def gene_codes(gene: pd.Series, prefixes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted non-control gene names present; each transcript's index into them (-1: control)."""
    names = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in gene.cat.categories])
    codes = gene.cat.codes.to_numpy()
    control = np.array([name.startswith(prefixes) for name in names], dtype=bool)
    real = (np.bincount(codes, minlength=len(names)) > 0) & ~control
    genes = np.sort(names[real])
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[real] = np.searchsorted(genes, names[real])
    return genes, lookup[codes]


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one transcript table into a binned :class:`Section` (see the module docstring)."""
    path, image_path = folder / entry["transcripts"], folder / entry["image"]
    opts = options(path, card.get("read", {}))
    frame = load_table(path, opts["columns"], opts["qv_required"])
    if frame.empty:
        raise BenchError(f"{path}: no transcripts (empty section); check the file")
    gene = frame["gene"].astype("category")
    if gene.isna().any():
        raise BenchError(f"{path}: {int(gene.isna().sum())} rows without a gene name; fix them")
    x, y = coordinates(path, frame, "x"), coordinates(path, frame, "y")
    um_per_px, bin_um = opts["um_per_px"], opts["bin_um"]
    scale = float(entry.get("image_scale", 1.0))
    if not scale > 0:
        raise BenchError(f"{path}: image_scale {scale!r} must be positive (stored px / coord px)")
    stored = image_size(image_path)
    size = (round(stored[0] / scale), round(stored[1] / scale))
    factor = 1.0 if opts["unit"] == "px" else 1.0 / um_per_px
    outside = (x * factor >= size[0]) | (y * factor >= size[1])
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise BenchError(
            f"{path}: {int(outside.sum())} transcripts outside the {size[0]}x{size[1]} image "
            f"{image_path.name} (e.g. pixel {x[i] * factor:.0f}, {y[i] * factor:.0f}); "
            "misregistered: check unit, um_per_px, image and image_scale"
        )
    genes, codes = gene_codes(gene, opts["prefixes"])
    keep = codes >= 0
    n_controls = int(len(codes) - keep.sum())
    if "qv" in frame.columns and opts["min_qv"] is not None:
        keep &= frame["qv"].to_numpy(dtype=np.float64) >= opts["min_qv"]
    if not keep.any():
        raise BenchError(
            f"{path}: nothing left of {len(codes)} transcripts ({n_controls} control probes, "
            "the rest below min_qv): empty section; check [read].exclude_prefixes and min_qv"
        )
    scale_um = um_per_px if opts["unit"] == "px" else 1.0
    row, col, counts = bin_points(
        x[keep] * scale_um, y[keep] * scale_um, bin_um, codes[keep], len(genes)
    )
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
    )
    check_section(path, section, card.get("lattice", {}).get("image_um_per_px"))
    return section
