"""``spot_table``: one CSV per section, a spot per row on a square lattice.

Files per section (the card's ``[sections.<id>]`` entry): ``spots``, a CSV with columns ``row``,
``col`` (integer lattice position), ``x_px``, ``y_px`` (spot centre in image pixels, x = image
column), ``in_tissue`` (0 or 1) and then one column of raw counts per gene; ``image``, the H&E.
The card's ``[lattice]`` gives ``pitch_um`` (one grid step, micrometres) and, optionally,
``image_um_per_px``. The grid-to-pixel affine is fitted by least squares to the spot centres.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from bench.data.section import Section, check_counts, check_section, fit_to_pixel
from bench.errors import BenchError

ENTRY_KEYS = ("spots", "image")
COLUMNS = ("row", "col", "x_px", "y_px", "in_tissue")


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    return {key: (entry[key],) for key in ENTRY_KEYS}


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one section's spot table into a :class:`bench.data.section.Section`."""
    path, image = folder / entry["spots"], folder / entry["image"]
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise BenchError(f"{path}: unreadable spot table ({err}); fix or re-export it") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise BenchError(f"{path}: missing column(s) {', '.join(missing)}; expected {COLUMNS}")
    genes = np.array([c for c in table.columns if c not in COLUMNS], dtype=str)
    counts = check_counts(path, table[list(genes)].to_numpy(dtype=np.float64), genes)
    row, col = table["row"].to_numpy(np.int64), table["col"].to_numpy(np.int64)
    pitch = float(card["lattice"]["pitch_um"])
    with Image.open(image) as im:
        size = im.size
    section = Section(
        id=section_id,
        counts=counts,
        genes=genes,
        row=row,
        col=col,
        in_tissue=table["in_tissue"].to_numpy() == 1,
        to_pixel=fit_to_pixel(col, row, table[["x_px", "y_px"]].to_numpy()),
        image=image,
        image_size=size,
        pitch_um=(pitch, pitch),
        um_per_px=None,
    )
    check_section(path, section, card["lattice"].get("image_um_per_px"))
    return section
