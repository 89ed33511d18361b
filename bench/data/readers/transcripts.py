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

from bench.data.readers import points

PLATFORM = points.Platform(reader="transcripts")  # columns and unit come from [read]
ENTRY_KEYS = points.ENTRY_KEYS  # a section's files, each listed in the card's [files]
inputs = points.inputs
check_card = PLATFORM.check_card  # [read] and the sections' placement keys, before any file
read_section = PLATFORM.read_section  # one section's table binned into a Section
