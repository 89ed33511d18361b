"""The core the transcript readers share (not a reader itself): one table of decoded transcripts
per section, binned on a square grid into a :class:`bench.data.section.Section`.

Each platform's reader (:mod:`.xenium`, :mod:`.merscope`, :mod:`.cosmx`, and :mod:`.transcripts`
for any table) is a :class:`Platform` (its column names, unit, default ``min_qv`` and what gives
its pixel size) handed to :func:`read_points`; the table is read by :mod:`.table_io` and placed on
its image by :mod:`.placement`.

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``;
every file named here must be listed in the card's ``[files]``):

- ``transcripts``: one row per decoded transcript (``.parquet``, ``.csv``, ``.tsv`` or gzipped);
- ``image``: the morphology image (DAPI, a MERSCOPE mosaic, a CosMx CellComposite, an H&E);
  ``image_scale`` (default 1): stored image pixels per coordinate pixel (0.25 for a quarter-size
  copy); the coordinate space = stored size / scale;
- optional ``fov``: keep only the rows whose fov column equals this value, so several fields of
  view of one table become several sections (each with its own image);
- optional ``transform`` (a 3 x 3 affine text file), ``origin`` / ``affine`` (as in ``[read]``)
  and ``experiment`` (Xenium's ``experiment.xenium``): see :mod:`.placement`.

Options every transcript reader takes (the card's ``[read]`` table):

- ``columns = {gene, x, y[, qv][, fov]}``: the table's column names (override the platform's);
- ``unit``: "um" or "px" (pixels of the coordinate space) of x / y; x is the image column;
- ``um_per_px``: the image's pixel size; required unless a ``transform`` / ``affine`` from
  micrometres or an ``experiment`` gives it (then a stated value must agree within 2%);
  ``bin_um`` (required);
- ``origin = [x0, y0]``: the table's coordinates (its unit) of the image's top-left corner, or
  ``affine = [[a, b, c], [d, e, f]]`` (2 x 3 or 3 x 3) from the table's (x, y, 1) to image pixels
  (not both);
- ``controls``: glob patterns of control / blank probe names, matched case-insensitively (default
  :data:`.table_io.CONTROL_PATTERNS`); ``exclude_prefixes`` (older) = patterns ``prefix*``; the
  number dropped per pattern is reported in the section's notes;
- ``min_qv``: transcripts with ``qv < min_qv`` are dropped when a qv column exists (default: the
  platform's); a qv column named in ``columns`` must exist;
- ``tissue_min_counts`` (default 1): a bin is in tissue when it holds at least this many
  transcripts and its centre lies inside the image (a partial edge bin may not);
- ``min_tissue_cover`` (default 0.5; 0 switches the check off): the scale check of
  :mod:`.placement`.

The platform is the card's ``reader``; ``[read].format`` (its older name) is refused.

Binning: bin ``(row, col)`` holds ``floor(y_um / bin_um) = row`` and ``floor(x_um / bin_um) =
col`` (:func:`.binning.bin_points`); a bin's centre maps to pixels by
:func:`.binning.bin_to_pixel`. Genes are the sorted non-control names present in the table (a
gene seen only at low qv keeps a zero column: it was measured).

Checked: the file reads; the columns exist; coordinates are numeric and finite; every transcript
maps inside the image (a negative pixel names ``[read].origin``); something is left after
dropping controls and low-qv rows; the scale; each message names the card keys to change; then
:func:`bench.data.section.check_section`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.readers.binning import bin_points, bin_to_pixel
from bench.data.readers.lattice import image_size
from bench.data.readers.placement import check_cover, check_inside, placement, to_image
from bench.data.readers.table_io import (
    CONTROL_PATTERNS,
    coordinates,
    drop_controls,
    load_table,
    select_fov,
)
from bench.data.section import UM_PER_PX_RANGE, Section, check_counts, check_section
from bench.errors import BenchError

COLUMN_KEYS = ("gene", "x", "y", "qv", "fov")
ENTRY_KEYS = ("transcripts", "image")  # a section's files, each listed in the card's [files]
PLATFORMS = ("xenium", "merscope", "cosmx")  # the former [read].format presets, now readers


@dataclass(frozen=True)
class Platform:
    """A transcript platform's fixed facts; a card's ``[read]`` may override each."""

    reader: str  # the card's reader = "<name>"
    columns: Mapping[str, str] = field(default_factory=dict)  # gene, x, y[, qv][, fov] -> names
    unit: str | None = None  # "um" / "px" of x and y; None: [read].unit is required
    min_qv: float | None = None  # default [read].min_qv
    pixel_size: str = "or a section's transform"  # after a missing [read].um_per_px: what else
    # states the pixel size, or its usual values
    # a section without fov: (table path, section id, columns) -> raise when the columns need one
    without_fov: Callable[[Path, str, Mapping[str, str]], None] | None = None

    def check_card(self, where: Path, card: Mapping[str, Any]) -> None:
        """A platform reader's ``check_card``: :func:`check_card` for this platform."""
        check_card(where, card, self)

    def read_section(
        self, section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
    ) -> Section:
        """A platform reader's ``read_section``: :func:`read_points` for this platform."""
        return read_points(section_id, folder, entry, card, self)


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    keys = ENTRY_KEYS + tuple(k for k in ("transform", "experiment") if k in entry)
    return {key: (entry[key],) for key in keys}


def check_card(where: Path, card: Mapping[str, Any], platform: Platform) -> None:
    """``[read]`` and the sections' placement keys checked whole before any file is read."""
    read = card.get("read", {})
    sections = card.get("sections", {})
    given = all(
        {"transform", "affine", "experiment"} & set(e)
        for e in sections.values()
        if isinstance(e, dict)
    )
    options(where, read, platform, pixel_size_given=given)
    for sid, entry in sections.items():
        placement(where, entry, f"[sections.{sid}]")


def _no_format(where: Path, read: Mapping[str, Any], platform: Platform) -> None:
    """``[read].format`` chose the platform before each had its reader: refused with the fix."""
    if "format" not in read:
        return
    fmt = read["format"]
    target = "transcripts" if fmt == "table" else fmt  # the generic reader read "table"
    if target == platform.reader:
        fix = f'keep reader = "{target}"'
    elif target in (*PLATFORMS, "transcripts"):
        fix = f'set reader = "{target}" (not reader = "{platform.reader}" with format = "{fmt}")'
    else:
        fix = f"set reader to one of {[*PLATFORMS, 'transcripts']} (transcripts: any table)"
    raise BenchError(
        f"{where}: [read].format = {fmt!r} is no longer read: the card's reader names the "
        f"platform; {fix} and delete [read].format"
    )


def _number(where: Path, key: str, value: Any, hint: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BenchError(f"{where}: [read].{key} must be a positive number{hint}, got {value!r}")
    return float(value)


def options(
    where: Path, read: Mapping[str, Any], platform: Platform, pixel_size_given: bool = False
) -> dict[str, Any]:
    """The card's ``[read]`` options with the platform's defaults filled in and values checked.

    ``pixel_size_given``: a section's transform, affine or experiment states the pixel size, so
    ``um_per_px`` may be left out.
    """
    _no_format(where, read, platform)
    given_columns = read.get("columns", {})
    if not isinstance(given_columns, dict) or not all(
        k in COLUMN_KEYS and isinstance(v, str) for k, v in given_columns.items()
    ):
        raise BenchError(
            f"{where}: [read].columns = {given_columns!r} must map {', '.join(COLUMN_KEYS)} "
            "to the table's column names"
        )
    columns = {**platform.columns, **given_columns}
    if not {"gene", "x", "y"} <= set(columns):
        raise BenchError(
            f'{where}: reader "{platform.reader}" needs '
            "[read].columns = {gene, x, y[, qv][, fov]}"
        )
    unit = read.get("unit", platform.unit)
    if unit not in ("um", "px"):
        raise BenchError(f'{where}: [read].unit {unit!r} unknown; use "um" or "px"')
    placed = placement(where, read, "[read]")
    um_per_px = read.get("um_per_px")
    if um_per_px is not None or not (pixel_size_given or "affine" in placed):
        um_per_px = _number(where, "um_per_px", um_per_px, f" ({platform.pixel_size})")
    bin_um = _number(where, "bin_um", read.get("bin_um"))
    low, high = UM_PER_PX_RANGE
    if um_per_px is not None and not low <= um_per_px <= high:
        raise BenchError(
            f"{where}: [read].um_per_px {um_per_px:g} is implausible (expected {low}-{high}); "
            "set the image's pixel size in micrometres"
        )
    if "controls" in read:
        patterns = read["controls"]
    elif "exclude_prefixes" in read:
        prefixes = read["exclude_prefixes"]
        patterns = [f"{p}*" for p in prefixes] if isinstance(prefixes, list) else None
    else:
        patterns = list(CONTROL_PATTERNS)
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise BenchError(
            f"{where}: [read].controls must be a list of name patterns such as "
            '["Blank-*", "NegPrb*"]'
        )
    min_qv = read.get("min_qv", platform.min_qv)
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
        "columns": columns,
        "qv_required": "qv" in given_columns,
        "unit": unit,
        "min_qv": min_qv,
        "controls": tuple(patterns),
        "tissue_min_counts": tissue_min,
        "min_tissue_cover": float(cover),
        **placed,
        "um_per_px": um_per_px,
        "bin_um": bin_um,
    }


def read_points(
    section_id: str,
    folder: Path,
    entry: Mapping[str, Any],
    card: Mapping[str, Any],
    platform: Platform,
) -> Section:
    """Read one transcript table into a binned :class:`Section` (see the module docstring)."""
    path, image_path = folder / entry["transcripts"], folder / entry["image"]
    given = "transform" in entry or "affine" in entry or "experiment" in entry
    opts = options(path, card.get("read", {}), platform, pixel_size_given=given)
    placed = placement(path, entry, f"[sections.{section_id}]")
    columns = dict(opts["columns"])
    fov = placed.get("fov")
    if fov is None:
        columns.pop("fov", None)
        if platform.without_fov is not None:
            platform.without_fov(path, section_id, columns)
    need = (
        ("gene", "x", "y")
        + (("qv",) if opts["qv_required"] else ())
        + (("fov",) if fov is not None else ())
    )
    frame = load_table(path, columns, need)
    if fov is not None:
        frame = select_fov(path, frame, columns["fov"], fov, section_id)
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
    check_inside(path, image_path, (x, y), px, size, how)
    with_qv = "qv" in frame.columns and opts["min_qv"] is not None
    qv = frame["qv"].to_numpy(dtype=np.float64) if with_qv else None
    label = f"{path.name}{'' if fov is None else f' fov {fov}'}"
    genes, codes, keep, note = drop_controls(
        path, gene, qv, opts["controls"], opts["min_qv"], label
    )
    notes = [note]
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
