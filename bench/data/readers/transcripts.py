"""Reader for any lab's transcript table (``reader = "transcripts"``): one row per transcript
with a gene name and x, y, plus an image of the same tissue, binned on a square grid by the shared
core :mod:`.points`, which documents the section's files, the ``[read]`` options every transcript
reader takes, the binning and the checks. Imaging platforms with a fixed layout have their own
reader (:mod:`.xenium`, :mod:`.merscope`, :mod:`.cosmx`).

Required in ``[read]``: ``columns = {gene, x, y[, qv][, fov]}`` (the table's column names) and
``unit`` ("um", or "px" of the image; x = image column). Pixel size: ``[read].um_per_px``, unless
a section's ``transform`` / ``affine`` from micrometres or ``experiment`` states it. Usually also
``origin`` or ``affine`` (coordinates that do not start at the image's corner) and ``controls``
(the lab's control probe names). No qv filter unless ``[read].min_qv`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.data.readers import points
from bench.data.section import Section

PLATFORM = points.Platform(reader="transcripts")  # columns and unit come from [read]
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs


def check_card(where: Path, card: Mapping[str, Any]) -> None:
    """``[read]`` and the sections' placement keys checked whole before any file is read."""
    points.check_card(where, card, PLATFORM)


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one transcript table into a binned :class:`Section`."""
    return points.read_points(section_id, folder, entry, card, PLATFORM)
