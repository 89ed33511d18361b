"""Reader for the legacy Spatial Transcriptomics format (Stahl et al. 2016; e.g. her2st).

Files per section (paths from the dataset card, relative to ``<data-dir>/<dataset>``):

- counts: ``spots x genes`` raw UMI table, tab separated (optionally gzip), row index ``<x>x<y>``
  (array column x, array row y);
- spots: the spot-selection table with columns ``x y new_x new_y pixel_x pixel_y selected``
  (``pixel_*`` = spot centre in full-resolution image pixels, x = column; ``selected`` 1 = under
  tissue); not every counts row need have a selection row and vice versa;
- image: the full-resolution H&E.

A spot is kept when it appears in both tables; it is in tissue when ``selected == 1``. The affine
from lattice to image pixels is fitted by least squares to all selection rows, and the reader
refuses images whose in-tissue spots fall outside the image (misregistration).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from bench.errors import BenchError
from bench.section import Section

SPOT_COLUMNS = ("x", "y", "pixel_x", "pixel_y", "selected")


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # full-resolution slides exceed PIL's bomb guard by design
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as err:
        raise BenchError(f"{path}: not a readable image ({err}); re-fetch the dataset") from None


def read_section(
    section_id: str, counts_path: Path, spots_path: Path, image_path: Path
) -> Section:
    """Read one legacy-ST section into a :class:`Section` (see the module docstring)."""
    try:
        table = pd.read_csv(counts_path, sep="\t", index_col=0)
        spots = pd.read_csv(spots_path, sep="\t")
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as err:
        raise BenchError(
            f"{counts_path.parent}: cannot read section {section_id} ({err}); re-fetch the dataset"
        ) from None
    missing = [c for c in SPOT_COLUMNS if c not in spots.columns]
    if missing:
        raise BenchError(
            f"{spots_path}: missing column(s) {', '.join(missing)}; "
            f"expected {' '.join(SPOT_COLUMNS)}"
        )
    keys = spots["x"].astype(int).astype(str) + "x" + spots["y"].astype(int).astype(str)
    if keys.duplicated().any():
        raise BenchError(
            f"{spots_path}: duplicate spot {keys[keys.duplicated()].iloc[0]}; each x,y once"
        )
    spots = spots.set_index(keys)
    shared = spots.index.intersection(table.index, sort=False)
    if len(shared) == 0:
        raise BenchError(
            f"{counts_path}: no row index matches the spot table's <x>x<y> keys; "
            "check the files belong together"
        )
    spots = spots.loc[shared]
    table = table.loc[shared]

    xy = spots[["x", "y"]].to_numpy(dtype=np.float64)
    design = np.c_[xy, np.ones(len(xy))]
    pixels = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    coef, *_ = np.linalg.lstsq(design, pixels, rcond=None)
    size = _image_size(image_path)
    in_tissue = spots["selected"].to_numpy() == 1
    inside = (pixels >= 0).all(axis=1) & (pixels[:, 0] < size[0]) & (pixels[:, 1] < size[1])
    if not inside[in_tissue].all():
        bad = spots.index[in_tissue & ~inside][0]
        raise BenchError(
            f"{spots_path}: spot {bad} lies outside the {size[0]}x{size[1]} image "
            f"{image_path.name}; "
            "the image and spot table are misregistered (wrong image or scale)"
        )
    return Section(
        id=section_id,
        counts=sparse.csr_matrix(table.to_numpy(dtype=np.int32)),
        genes=table.columns.to_numpy(dtype=str),
        row=spots["y"].to_numpy(dtype=np.int64),
        col=spots["x"].to_numpy(dtype=np.int64),
        in_tissue=in_tissue,
        to_pixel=coef.T,  # (2, 3): [px_x, px_y] = to_pixel @ [col, row, 1]
        image_path=image_path,
        image_size=size,
    )
