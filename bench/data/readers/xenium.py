"""Reader for 10x Xenium output (``reader = "xenium"``): the transcript table binned on a square
grid by the shared core :mod:`.points`, which documents the section's files, the ``[read]``
options every transcript reader takes, the binning and the checks.

Files: ``transcripts.parquet`` (or ``transcripts.csv.gz``) and the morphology image (e.g.
``morphology_focus/morphology_focus_0000.ome.tif``, or a smaller copy with ``image_scale``).

Columns (``[read].columns`` may rename any): ``feature_name`` (the gene; str, or bytes as some
parquet files hold them), ``x_location``, ``y_location`` in micrometres (unit "um", x = image
column) and ``qv``; transcripts with ``qv < 20`` are dropped (``[read].min_qv``). Control probes
NegControl*, BLANK*, Unassigned*, DeprecatedCodeword*, Intergenic*, antisense* are dropped and
counted (the default ``[read].controls``).

Pixel size: ``[read].um_per_px``, or the section's ``experiment = "experiment.xenium"``, whose
``pixel_size`` (um per pixel of the morphology image) is read; when both are given they must agree
within 2%.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.data.readers import points
from bench.data.section import Section

PLATFORM = points.Platform(
    reader="xenium",
    columns={"gene": "feature_name", "x": "x_location", "y": "y_location", "qv": "qv"},
    unit="um",
    min_qv=20,
    pixel_size="or the section's experiment.xenium",
)
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs


def check_card(where: Path, card: Mapping[str, Any]) -> None:
    """``[read]`` and the sections' placement keys checked whole before any file is read."""
    points.check_card(where, card, PLATFORM)


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one Xenium section into a binned :class:`Section`."""
    return points.read_points(section_id, folder, entry, card, PLATFORM)
