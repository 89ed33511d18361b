"""Reader for the legacy Spatial Transcriptomics format (Stahl et al. 2016; e.g. her2st).

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``):

- ``counts``: ``spots x genes`` raw UMI table, tab separated (optionally gzip), row index
  ``<x>x<y>`` (array column x, array row y);
- ``spots``: the spot-selection table with columns ``x y pixel_x pixel_y selected`` (``pixel_*`` =
  spot centre in full-resolution image pixels, x = column; ``selected`` 1 = under tissue); not
  every counts row need have a selection row and vice versa;
- ``image``: the full-resolution H&E.

Lattice (the card's ``[lattice]``): ``kind = "square"`` for the 1k array (33 x 35 spots, 200 um
pitch) or ``"checkerboard"`` for the 2k array, whose spots occupy only the positions of one parity
of ``x + y``; ``pitch_um`` is one grid step (a number, or [row, column]).

A spot is kept when it appears in both tables; it is in tissue when ``selected == 1``. The affine
from grid to image pixels is fitted by least squares to all selection rows, then
:func:`bench.data.section.check_section` enforces the coordinate contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.readers.lattice import image_size, lattice_parity, pitch
from bench.data.section import Section, check_counts, check_section, fit_to_pixel
from bench.errors import BenchError

SPOT_COLUMNS = ("x", "y", "pixel_x", "pixel_y", "selected")
ENTRY_KEYS = ("counts", "spots", "image")  # a section's files, each listed in the card's [files]
LATTICE_KEYS = ("pitch_um",)  # the card's [lattice] keys this reader needs


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    return {key: (entry[key],) for key in ENTRY_KEYS}


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one legacy-ST section into a :class:`Section` (see the module docstring)."""
    counts_path, spots_path = folder / entry["counts"], folder / entry["spots"]
    image_path = folder / entry["image"]
    try:
        table = pd.read_csv(counts_path, sep="\t", index_col=0, low_memory=False)
        header = pd.read_csv(counts_path, sep="\t", header=None, nrows=1).iloc[0, 1:]
    except (OSError, EOFError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise BenchError(f"{counts_path}: unreadable counts table ({err}); re-fetch it") from None
    try:
        spots = pd.read_csv(spots_path, sep="\t", low_memory=False)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise BenchError(f"{spots_path}: unreadable spot table ({err}); re-fetch it") from None
    missing = [c for c in SPOT_COLUMNS if c not in spots.columns]
    if missing:
        raise BenchError(
            f"{spots_path}: missing column(s) {', '.join(missing)}; "
            f"expected {' '.join(SPOT_COLUMNS)}"
        )
    for column in SPOT_COLUMNS:  # a number in every cell (text or a gap would fail later)
        values = pd.to_numeric(spots[column], errors="coerce").astype(np.float64)
        bad = ~np.isfinite(values.to_numpy())
        if column in ("x", "y", "selected"):
            bad |= np.isfinite(values.to_numpy()) & (values.to_numpy() != np.round(values))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BenchError(
                f"{spots_path}: {column} = {spots[column].iloc[i]!r} in data row {i + 1} is not "
                f"{'an integer' if column in ('x', 'y', 'selected') else 'a finite number'}; "
                "fix the spot table"
            )
        spots[column] = values.astype(np.int64) if column in ("x", "y", "selected") else values
    keys = spots["x"].astype(str) + "x" + spots["y"].astype(str)
    if keys.duplicated().any():
        raise BenchError(
            f"{spots_path}: duplicate spot {keys[keys.duplicated()].iloc[0]}; each x,y once"
        )
    if header.duplicated().any():  # pandas renames duplicated columns (X, X.1): check raw names
        raise BenchError(
            f"{counts_path}: gene {header[header.duplicated()].iloc[0]} appears more than once; "
            "gene names must be unique"
        )
    if table.index.duplicated().any():
        dup = table.index[table.index.duplicated()][0]
        raise BenchError(f"{counts_path}: spot {dup} appears twice; each spot once")
    spots = spots.set_index(keys)
    shared = spots.index.intersection(table.index, sort=False)
    if len(shared) == 0:
        raise BenchError(
            f"{counts_path}: no row index matches the spot table's <x>x<y> keys; "
            "check the files belong together"
        )
    try:
        values = table.loc[shared].to_numpy(dtype=np.float64)
    except ValueError as err:
        raise BenchError(f"{counts_path}: non-numeric counts ({err}); raw counts only") from None
    counts = check_counts(
        counts_path, values, table.columns.to_numpy(dtype=str), shared.to_numpy(dtype=str)
    )
    spots = spots.loc[shared]
    lattice = card["lattice"]
    row = spots["y"].to_numpy(dtype=np.int64)
    col = spots["x"].to_numpy(dtype=np.int64)
    section = Section(
        id=section_id,
        counts=counts,
        genes=table.columns.to_numpy(dtype=str),
        row=row,
        col=col,
        in_tissue=spots["selected"].to_numpy() == 1,
        to_pixel=fit_to_pixel(col, row, spots[["pixel_x", "pixel_y"]].to_numpy()),
        image=image_path,
        image_size=image_size(image_path),
        pitch_um=pitch(lattice),
        um_per_px=None,  # the format states no pixel size; the card's is checked below
        lattice=lattice.get("kind", "square"),
        parity=lattice_parity(spots_path, lattice.get("kind", "square"), row, col),
    )
    check_section(spots_path, section, lattice.get("image_um_per_px"))
    return section
