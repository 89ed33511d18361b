"""Reader for Vizgen MERSCOPE output (``reader = "merscope"``), one region per section: the
transcript table binned on a square grid by the shared core :mod:`.points`, which documents the
section's files, the ``[read]`` options every transcript reader takes, the binning and the checks.

Files: ``detected_transcripts.csv`` (an unnamed index column first, as Vizgen writes it), a
mosaic image (e.g. ``images/mosaic_DAPI_z3.tif``, or a smaller copy with ``image_scale``) and the
section's ``transform = "images/micron_to_mosaic_pixel_transform.csv"`` (3 x 3, from micrometres
of the stage to mosaic pixels, offset included: global coordinates may start anywhere).

Columns (``[read].columns`` may rename any): ``gene``, ``global_x``, ``global_y`` in micrometres
(unit "um", x = image column) and ``fov`` (used when a section sets ``fov``); no qv filter.
Blank-* probes are dropped and counted (they match the default ``[read].controls`` BLANK*).

Pixel size: the transform's, ``1 / sqrt(|det|)`` of its 2 x 2 part; a stated
``[read].um_per_px`` must agree within 2%.
"""

from __future__ import annotations

from bench.data.readers import points

PLATFORM = points.Platform(
    reader="merscope",
    columns={"gene": "gene", "x": "global_x", "y": "global_y", "fov": "fov"},
    unit="um",
    pixel_size="or a section's transform",
)
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs
check_card = PLATFORM.check_card  # [read] and the sections' placement keys, before any file
read_section = PLATFORM.read_section  # one section's table binned into a Section
