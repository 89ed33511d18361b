"""Reader for NanoString / Bruker CosMx SMI flat files (``reader = "cosmx"``), one field of view
per section: the transcript table binned on a square grid by the shared core :mod:`.points`,
which documents the section's files, the ``[read]`` options every transcript reader takes, the
binning and the checks.

Files: one ``*_tx_file.csv.gz`` for the slide and one ``CellComposite/CellComposite_F<nnn>.jpg``
per field of view; each section names the table, its ``fov = N`` and that FOV's image.

Columns (``[read].columns`` may rename any): ``target`` (the gene), ``x_local_px``,
``y_local_px`` in pixels of the FOV image (unit "px", x = image column) and ``fov``; no qv filter.
Local coordinates are per field of view, so a section without ``fov`` is refused unless
``[read].columns`` maps x / y to the global ``x_global_px`` / ``y_global_px``, placed with
``origin`` (the FOV's corner). NegPrb*, FalseCode* and SystemControl* probes are dropped and
counted (the default ``[read].controls``).

Pixel size: ``[read].um_per_px`` is required (no CosMx file states it): 0.12028 um per pixel, or
0.18 on newer instruments.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench.data.readers import points
from bench.errors import BenchError


def _needs_fov(path: Path, section_id: str, columns: Mapping[str, str]) -> None:
    """Local coordinates without a field of view would pile every FOV onto one image."""
    if columns["x"].endswith("_local_px"):
        raise BenchError(
            f"{path}: CosMx {columns['x']}/{columns['y']} are per field of view; set fov = N "
            f"in [sections.{section_id}] (one section per FOV, with that FOV's image), or "
            'use global coordinates: [read].columns = {x = "x_global_px", y = "y_global_px"}'
            " and [read].origin"
        )


PLATFORM = points.Platform(
    reader="cosmx",
    columns={"gene": "target", "x": "x_local_px", "y": "y_local_px", "fov": "fov"},
    unit="px",
    pixel_size="0.12028 for the commercial CosMx instrument, 0.18 for the older prototype",
    without_fov=_needs_fov,
)
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs
check_card = PLATFORM.check_card  # [read] and the sections' placement keys, before any file
read_section = PLATFORM.read_section  # one section's table binned into a Section
