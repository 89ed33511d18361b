"""Lattice helpers every reader shares: the image's size from its header, the card's pitch, and
the parity of a checkerboard lattice (Visium's hexagonal and ST's 2k arrays)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, first_line


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, after decoding it whole (a JPEG at 1/8 scale, which
    still reads every byte), so a truncated or corrupt image fails here, at ``split`` as at
    ``run``, instead of being accepted from its header."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # full-resolution slides exceed PIL's bomb guard by design
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "JPEG":
                im.draft(im.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
            return size
    except Exception as err:  # noqa: BLE001 - PIL raises OSError, struct.error, SyntaxError...
        raise BenchError(
            f"{path}: not a readable image ({first_line(err)}); a truncated or corrupt file: "
            "re-fetch the dataset"
        ) from None


def pitch(lattice: Mapping[str, Any]) -> tuple[float, float]:
    """The card's ``pitch_um`` as (row step, column step) in micrometres."""
    value = lattice["pitch_um"]
    row, col = (value, value) if isinstance(value, int | float) else value
    return float(row), float(col)


def lattice_parity(where: Path, kind: str, row: np.ndarray, col: np.ndarray) -> int:
    """Parity of a checkerboard lattice's positions (0 for square); mixed parities fail."""
    if kind != "checkerboard":
        return 0
    parities = np.unique((row + col) % 2)
    if len(parities) != 1:
        raise BenchError(
            f"{where}: spots on both parities of row + col, so the lattice is not a checkerboard; "
            'set [lattice].kind = "square" in the card'
        )
    return int(parities[0])
