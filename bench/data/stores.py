"""SpatialData stores written from the project's objects: a tissue section as a store that the
``spatialdata_store`` reader reads back (:func:`section_store`), and the elements every store of
ours shares (:func:`image_element`, :func:`circles`).

Coordinate systems of every store written here:

- ``"global"``: the section's coordinate pixel space (:class:`bench.data.section.Section`: the
  space of ``to_pixel``, full-resolution pixels for Visium), x = image column;
- ``"micrometres"``: the same space times the pixel size, when the section states one.

Requires the ``spatialdata`` package (the ``spatialdata`` extra).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.section import Section
from bench.errors import BenchError
from bench.files import atomic_write_dir

GLOBAL = "global"
MICROMETRES = "micrometres"


def _spatialdata() -> Any:
    try:
        import spatialdata
    except ImportError:
        raise BenchError(
            "SpatialData stores need the spatialdata package; install it with "
            "pip install -e '.[spatialdata]'"
        ) from None
    return spatialdata


def systems(scale: float, um_per_px: float | None) -> dict[str, Any]:
    """Transformations from an element's own coordinates, in which one unit is ``1 / scale``
    coordinate-space pixels, to ``"global"`` and (when the pixel size is known)
    ``"micrometres"``."""
    from spatialdata.transformations import Identity, Scale

    out: dict[str, Any] = {
        GLOBAL: Identity() if scale == 1.0 else Scale([1 / scale, 1 / scale], axes=("x", "y"))
    }
    if um_per_px is not None:
        out[MICROMETRES] = Scale([um_per_px / scale] * 2, axes=("x", "y"))
    return out


def image_element(image: np.ndarray, scale: float, um_per_px: float | None) -> Any:
    """An Image2DModel of ``image`` (H, W) or (H, W, 3) uint8, whose pixels are ``scale`` times
    the coordinate space's."""
    from spatialdata.models import Image2DModel

    array = image[None] if image.ndim == 2 else np.moveaxis(image, 2, 0)
    return Image2DModel.parse(
        np.ascontiguousarray(array),
        dims=("c", "y", "x"),
        transformations=systems(scale, um_per_px),
    )


def circles(xy: np.ndarray, radius: float, um_per_px: float | None) -> Any:
    """A ShapesModel of circles at ``xy`` (P, 2) coordinate-space pixels, ``radius`` pixels;
    index 0..P-1 (the instance ids tables annotate)."""
    from spatialdata.models import ShapesModel

    return ShapesModel.parse(
        np.asarray(xy, dtype=np.float64),
        geometry=0,
        radius=np.full(len(xy), float(radius)),
        transformations=systems(1.0, um_per_px),
    )


def write_store(store: Any, path: Path) -> Path:
    """Write a SpatialData object to ``path`` whole or not at all (an existing store is
    replaced); zarr's notice about its future default chunk layout is not shown."""

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="zarr v3 autosharding", category=UserWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ome_zarr")
            store.write(tmp)

    return atomic_write_dir(path, write)


def section_image(section: Section) -> tuple[np.ndarray, float]:
    """The section's image as stored (uint8) and its pixels per coordinate-space pixel."""
    from PIL import Image

    if isinstance(section.image, np.ndarray):
        array = section.image
    else:
        with Image.open(section.image) as im:
            array = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    return array, array.shape[1] / section.image_size[0]


def section_store(section: Section, path: Path) -> Path:
    """Write ``section`` as a SpatialData store at ``path``: image ``"image"`` (as stored,
    placed in ``"global"``), circles ``"spots"`` at the positions' centres (``to_pixel``), and
    table ``"table"`` (raw counts, positions x genes; ``obs`` ``array_row``, ``array_col``,
    ``in_tissue``) annotating them; written whole or not at all. The reader's card entry is
    then ``{store = ..., image = "image", table = "table"}``."""
    import anndata as ad
    import pandas as pd

    sd = _spatialdata()
    from spatialdata.models import TableModel

    image, scale = section_image(section)
    xy = (section.to_pixel @ np.vstack([section.col, section.row, np.ones(len(section.row))])).T
    step = float(np.hypot(*section.to_pixel[:, 0]))
    obs = pd.DataFrame(
        {
            "array_row": section.row,
            "array_col": section.col,
            "in_tissue": section.in_tissue.astype(np.int64),
            "region": pd.Categorical(["spots"] * len(xy)),
            "instance_id": np.arange(len(xy)),
        },
        index=[f"spot{i}" for i in range(len(xy))],
    )
    table = ad.AnnData(X=section.counts.astype(np.int64), obs=obs)
    table.var_names = list(section.genes)
    store = sd.SpatialData(
        images={"image": image_element(image, scale, section.um_per_px)},
        shapes={"spots": circles(xy, step / 2, section.um_per_px)},
        tables={
            "table": TableModel.parse(
                table, region="spots", region_key="region", instance_key="instance_id"
            )
        },
    )
    return write_store(store, path)
