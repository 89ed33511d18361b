"""Reader for SpatialData stores (``.zarr``), the scverse format that ``spatialdata-io`` writes for
Visium, Visium HD, Xenium, CosMx, MERSCOPE, Stereo-seq and more: any platform it reads comes in
here through a card, without a reader of ours.

One section = one store (or one set of elements of a store). The card's ``[sections.<id>]``:

- ``store``: the ``.zarr`` folder, relative to ``<data-dir>/<dataset>``; ``[files]`` lists it as a
  folder whose digest is :func:`bench.data.fetch.sha256` of a folder (the sha256 of the lines
  ``sha256sum`` prints for its files, sorted by path);
- ``image``: the image element (H&E or morphology); a multiscale image is read at full resolution
  (``scale0``); of its channels (c, y, x) the first three are RGB, else the first is grey;
- ``table`` (default ``"table"``): an AnnData table of counts annotating a shapes element (spots,
  bins or cells: circles or polygons, placed at their centroids), matched row by row through the
  table's ``spatialdata_attrs`` (``region``, ``region_key``, ``instance_key``); optional
  ``shapes`` names the element when the table annotates several;
- or ``points``: a points element of transcripts (``x``, ``y`` and its ``feature_key``), binned.

Coordinates: every element is placed through the store's own transformations to
``[read].coordinate_system`` (default ``"global"``): a position ``p`` of an element goes to image
pixels as ``A_image^-1 A_element p`` (3 x 3 affines over x, y). The coordinate space of the section
is the image element's own pixel grid (``image_size`` its width x height).

Lattice or bins: a table whose ``obs`` has ``array_row`` and ``array_col`` (Visium, legacy ST)
keeps that grid, ``obs["in_tissue"]`` when present, and fits ``to_pixel`` to the placed
centroids; any other table (cells) and any points element is binned into square bins of
``[read].bin_um`` micrometres (:func:`bench.data.readers.binning.bin_points`), a bin in tissue
when it holds at least ``[read].tissue_min_counts`` (default 1) counts. Micrometres are image
pixels times ``[read].um_per_px`` (required for binning; a store's transformations carry no
unit).

Options (``[read]``): ``coordinate_system``, ``um_per_px``, ``bin_um``, ``tissue_min_counts``,
``layer`` (the table's counts layer, default ``X``), ``controls`` (glob patterns of control probes
dropped from points, default :data:`bench.data.readers.table_io.CONTROL_PATTERNS`).

Images as :mod:`.store_elements` reads them (uint8 RGB or grey at full resolution).

Checked: the store opens; every element named exists with the expected kind; the table annotates
the shapes element and every row finds its shape; counts are raw
(:func:`bench.data.section.check_counts`); then :func:`bench.data.section.check_section`. Each
error is one line naming the store, the element and the card key to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.readers.binning import bin_points, bin_to_pixel
from bench.data.readers.lattice import lattice_parity, pitch
from bench.data.readers.store_elements import affine, element, image_array, open_store, place
from bench.data.readers.table_io import CONTROL_PATTERNS, control_mask
from bench.data.section import Section, check_counts, check_section, fit_to_pixel
from bench.errors import BenchError

ENTRY_KEYS = ("store", "image")
LATTICE_KEYS = ()  # [lattice].pitch_um when the table carries a grid; bins need [read].bin_um
GRID = ("array_row", "array_col")


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry reads: the store folder (listed in [files] as a folder)."""
    return {"store": (entry["store"],)}


def check_card(where: Path, raw: Mapping[str, Any]) -> None:
    """Each section names a table or points element (not both); bins need ``bin_um`` and
    ``um_per_px``; a one-line error names the card key."""
    read = raw.get("read", {})
    for sid, entry in raw["sections"].items():
        if "points" in entry and "table" in entry:
            raise BenchError(
                f"{where}: [sections.{sid}] names both table and points; keep one (points: "
                "transcripts to bin, table: counts per spot or cell)"
            )
        for key in ("image", "table", "points", "shapes"):
            if key in entry and not isinstance(entry[key], str):
                raise BenchError(
                    f"{where}: [sections.{sid}].{key} = {entry[key]!r} must be an element name; "
                    "fix the card"
                )
    for key in ("um_per_px", "bin_um"):
        value = read.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
        ):
            raise BenchError(
                f"{where}: [read].{key} = {value!r} must be a number > 0; fix the card"
            )
    if not isinstance(read.get("coordinate_system", ""), str):
        raise BenchError(
            f"{where}: [read].coordinate_system = {read['coordinate_system']!r} must be a name; "
            "fix the card"
        )


def _table_counts(
    path: Path, sdata: Any, entry: Mapping[str, Any], read: Mapping[str, Any], system: str
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(table obs, counts (S, G), genes, spot names, (S, 2) centroids in ``system``)."""
    name = entry.get("table", "table")
    table = element(path, sdata.tables, "table", name, f"[sections].table = {name!r}")
    attrs = table.uns.get("spatialdata_attrs", {})
    region_key, instance_key = attrs.get("region_key"), attrs.get("instance_key")
    regions = attrs.get("region")
    regions = [regions] if isinstance(regions, str) else list(regions or [])
    if not regions or region_key not in table.obs or instance_key not in table.obs:
        raise BenchError(
            f"{path}: table {name!r} annotates no element (spatialdata_attrs region / region_key "
            "/ instance_key); write it with spatialdata.models.TableModel.parse(region=...)"
        )
    shapes_name = entry.get("shapes")
    if shapes_name is None:
        if len(regions) != 1:
            raise BenchError(
                f"{path}: table {name!r} annotates {len(regions)} elements {regions}; name one "
                'with shapes = "..." in the section\'s entry'
            )
        shapes_name = regions[0]
    shapes = element(path, sdata.shapes, "shapes", shapes_name, "shapes")
    table = table[(table.obs[region_key] == shapes_name).to_numpy()]
    if table.n_obs == 0:
        raise BenchError(f"{path}: table {name!r} has no row for shapes {shapes_name!r}")
    centres = shapes.geometry.centroid
    lookup = dict(zip(shapes.index, range(len(shapes)), strict=True))
    rows = [lookup.get(i) for i in table.obs[instance_key]]
    if any(r is None for r in rows):
        missing = next(i for i, r in zip(table.obs[instance_key], rows, strict=True) if r is None)
        raise BenchError(
            f"{path}: table {name!r} row with {instance_key} = {missing!r} has no shape in "
            f"{shapes_name!r}; rewrite the store"
        )
    xy = np.c_[centres.x.to_numpy(), centres.y.to_numpy()][rows]
    xy = place(affine(path, shapes, shapes_name, system), xy)
    layer = read.get("layer")
    if layer is not None and layer not in table.layers:
        raise BenchError(
            f"{path}: table {name!r} has no layer {layer!r} (have {list(table.layers)}); fix "
            "[read].layer"
        )
    values = table.X if layer is None else table.layers[layer]
    genes = table.var_names.to_numpy(dtype=str)
    spots = table.obs_names.to_numpy(dtype=str)
    counts = check_counts(path, values, genes, spots)
    return table.obs, counts, genes, spots, xy


def _points_counts(
    path: Path, sdata: Any, entry: Mapping[str, Any], read: Mapping[str, Any], system: str
) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """(counts as gene index per transcript, genes, (P, 2) positions in ``system``, note)."""
    name = entry["points"]
    points = element(path, sdata.points, "points", name, f"[sections].points = {name!r}")
    feature = points.attrs.get("spatialdata_attrs", {}).get("feature_key")
    frame = points.compute()
    if feature is None or feature not in frame:
        raise BenchError(
            f"{path}: points {name!r} have no feature_key column naming each transcript's gene; "
            "write them with spatialdata.models.PointsModel.parse(feature_key=...)"
        )
    xy = place(affine(path, points, name, system), frame[["x", "y"]].to_numpy(np.float64))
    names = frame[feature].astype(str).to_numpy()
    controls = tuple(read.get("controls", CONTROL_PATTERNS))
    every, codes = np.unique(names, return_inverse=True)
    real = control_mask(every, controls) < 0
    genes = every[real]
    keep = real[codes]
    lookup = np.cumsum(real) - 1
    note = (
        f"{name}: kept {int(keep.sum()):,} of {len(names):,} transcripts; dropped "
        f"{int((~keep).sum()):,} control/blank probe transcripts"
    )
    return lookup[codes][keep], genes, xy[keep], note


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one section of a SpatialData store into a :class:`Section` (module docstring).

    Parameters
    ----------
    section_id : the section's name in the card.
    folder : the dataset folder; ``entry["store"]`` is relative to it.
    entry : the card's ``[sections.<id>]``: ``store``, ``image``, and ``table`` (optionally
        ``shapes``) or ``points``.
    card : the card; uses ``[read]`` and ``[lattice]``.

    Returns
    -------
    The section, after :func:`bench.data.section.check_section`.
    """
    path = folder / entry["store"]
    read, lattice = card.get("read", {}), card.get("lattice", {})
    system = read.get("coordinate_system", "global")
    sdata = open_store(path)
    image_el = element(path, sdata.images, "image", entry["image"], "image")
    image = image_array(path, image_el, entry["image"])
    from_image = affine(path, image_el, entry["image"], system)
    try:
        to_image = np.linalg.inv(from_image)
    except np.linalg.LinAlgError:
        raise BenchError(
            f"{path}: image {entry['image']!r} has a singular transformation to {system!r}"
        ) from None
    um_per_px = read.get("um_per_px")
    notes: tuple[str, ...] = ()
    if "points" in entry:
        codes, genes, xy, note = _points_counts(path, sdata, entry, read, system)
        values: Any = codes
        obs, notes = None, (note,)
    else:
        obs, values, genes, _, xy = _table_counts(path, sdata, entry, read, system)
    pixels = place(to_image, xy)

    if obs is not None and all(c in obs for c in GRID):
        if "pitch_um" not in lattice:
            raise BenchError(
                f"{path}: the table carries a grid ({', '.join(GRID)}); set [lattice].pitch_um"
            )
        row = obs["array_row"].to_numpy(dtype=np.int64)
        col = obs["array_col"].to_numpy(dtype=np.int64)
        in_tissue = np.asarray(obs.get("in_tissue", np.ones(len(row))), dtype=bool)
        counts = values
        to_pixel, pitch_um = fit_to_pixel(col, row, pixels), pitch(lattice)
        kind = lattice.get("kind", "square")
    else:
        bin_um = read.get("bin_um")
        if bin_um is None or um_per_px is None:
            raise BenchError(
                f"{path}: {'transcripts' if obs is None else 'cells'} without a grid are binned; "
                "set [read].bin_um and [read].um_per_px (the image's pixel size)"
            )
        xy_um = pixels * float(um_per_px)
        if (xy_um < 0).any():
            raise BenchError(
                f"{path}: positions left of or above the image {entry['image']!r} in "
                f"{system!r}; check the store's transformations"
            )
        n_genes = len(genes) if obs is None else None
        row, col, counts = bin_points(xy_um[:, 0], xy_um[:, 1], float(bin_um), values, n_genes)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        in_tissue = totals >= read.get("tissue_min_counts", 1)
        to_pixel, pitch_um = bin_to_pixel(float(bin_um), float(um_per_px)), (float(bin_um),) * 2
        kind = "square"

    section = Section(
        id=section_id,
        counts=counts,
        genes=genes,
        row=row,
        col=col,
        in_tissue=in_tissue,
        to_pixel=to_pixel,
        image=image,
        image_size=(image.shape[1], image.shape[0]),
        pitch_um=pitch_um,
        um_per_px=None if um_per_px is None else float(um_per_px),
        lattice=kind,
        parity=lattice_parity(path, kind, row, col),
        notes=notes,
    )
    check_section(path, section, lattice.get("image_um_per_px"))
    return section
