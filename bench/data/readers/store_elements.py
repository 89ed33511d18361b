"""Elements of a SpatialData store as the project needs them (not a reader itself; the
:mod:`.spatialdata_store` reader uses it): the store opened, an element looked up by kind and name,
an element's affine to a coordinate system, an image element as uint8 pixels.

Images: uint8 as stored; float in [0, 1] scaled to 0-255; other integer types (16-bit morphology)
scaled so that their 99.9th percentile is 255. A multiscale image is read at full resolution
(``scale0``); of its channels (c, y, x) the first three are RGB, else the first is grey.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, first_line

PERCENTILE = 99.9  # of a non-8-bit image, mapped to 255


def open_store(path: Path) -> Any:  # -> spatialdata.SpatialData
    try:
        import spatialdata
    except ImportError:
        raise BenchError(
            f"{path}: reading a SpatialData store needs the spatialdata package; install it "
            "with pip install -e '.[spatialdata]'"
        ) from None
    if not path.is_dir():
        raise BenchError(f"{path}: store not found (a .zarr folder); fetch it or fix the card")
    try:
        return spatialdata.read_zarr(path)
    except Exception as err:  # noqa: BLE001 - any failure to open is the store's
        raise BenchError(
            f"{path}: not a readable SpatialData store ({type(err).__name__}: "
            f"{first_line(err)[:200]}); rewrite it with spatialdata"
        ) from None


def element(path: Path, elements: Mapping[str, Any], kind: str, name: str, key: str) -> Any:
    if name not in elements:
        have = ", ".join(sorted(elements)) or "none"
        raise BenchError(
            f"{path}: no {kind} element {name!r} (the store's {kind}: {have}); fix {key} in "
            "the card"
        )
    return elements[name]


def affine(path: Path, element: Any, name: str, system: str) -> np.ndarray:
    """(3, 3) affine over (x, y, 1) from the element's own coordinates to ``system``."""
    from spatialdata.transformations import get_transformation

    systems = get_transformation(element, get_all=True)
    if system not in systems:
        raise BenchError(
            f"{path}: element {name!r} is not placed in coordinate system {system!r} (it is in: "
            f"{', '.join(sorted(systems)) or 'none'}); set [read].coordinate_system"
        )
    matrix = systems[system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    return np.asarray(matrix, dtype=np.float64)


def image_array(path: Path, element: Any, name: str) -> np.ndarray:
    """The image element at full resolution as (H, W) or (H, W, 3) uint8 (module docstring)."""
    if hasattr(element, "children") and "scale0" in getattr(element, "children", {}):
        element = element["scale0"].ds[next(iter(element["scale0"].ds.data_vars))]
    array = np.asarray(element.transpose("y", "x", "c").values)
    array = array[..., :3] if array.shape[2] >= 3 else array[..., 0]  # RGB(A) or the first
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    if array.dtype.kind in "ui":
        top = max(float(np.percentile(array, PERCENTILE)), 1.0)
        return np.round(np.clip(array / top, 0.0, 1.0) * 255).astype(np.uint8)
    raise BenchError(f"{path}: image {name!r} has dtype {array.dtype}; expected uint or float")


def place(to_image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(P, 2) positions through a (3, 3) affine."""
    return xy @ to_image[:2, :2].T + to_image[:2, 2]
