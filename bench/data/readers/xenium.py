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

from bench.data.readers import points

PLATFORM = points.Platform(
    reader="xenium",
    columns={"gene": "feature_name", "x": "x_location", "y": "y_location", "qv": "qv"},
    unit="um",
    min_qv=20,
    pixel_size="or the section's experiment.xenium",
)
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs
check_card = PLATFORM.check_card  # [read] and the sections' placement keys, before any file
read_section = PLATFORM.read_section  # one section's table binned into a Section
