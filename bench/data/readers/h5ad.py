"""Reader for spatial AnnData (``.h5ad``) files: Visium-style spots or points such as Xenium cells.

Conventions (those of scanpy and squidpy):

- ``obsm[spatial_key]`` (default ``"spatial"``): (x, y) per observation, x = image column, in
  full-resolution image pixels (``[read].spatial_unit = "px"``) or micrometres (``"um"``);
- ``uns["spatial"][library_id]`` = ``{"images": {"hires" | "lowres": array}, "scalefactors":
  {"tissue_<name>_scalef": stored px per full-res px, "spot_diameter_fullres": ...}}``;
- lattice data carry ``obs["array_row"]``, ``obs["array_col"]`` (Visium's doubled-column grid) and
  optionally ``obs["in_tissue"]``; data without them are points and are binned into square bins
  of ``[read].bin_um`` micrometres (:func:`bench.data.readers.binning.bin_points`), a bin being
  in tissue when it holds at least ``[read].tissue_min_counts`` (default 1) counts.

The pixel size is ``[read].um_per_px`` when given (it also converts um coordinates), else
``65 / spot_diameter_fullres``: Space Ranger documents that key as the pixel diameter of a
*theoretical 65 um* spot, not the 55 um physical one (as in :mod:`bench.data.readers.spaceranger`).

Checked: the file opens; the coordinates, library, image and scale factor named by the card
exist; observation names are unique; counts are raw (non-negative integers, unique gene names,
:func:`bench.data.section.check_counts`); then :func:`bench.data.section.check_section`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.readers.binning import bin_points, bin_to_pixel
from bench.data.readers.lattice import image_size, lattice_parity, pitch
from bench.data.section import Section, check_counts, check_section, fit_to_pixel
from bench.errors import BenchError

UNS_IMAGES = ("hires", "lowres")
SYMBOL_COLUMNS = (
    "gene_symbols",
    "gene_symbol",
    "gene_name",
    "gene_names",
    "feature_name",
    "symbol",
)
ENTRY_KEYS = ("h5ad", "image")  # image: "hires" / "lowres" (in the file) or an image file
LATTICE_KEYS = ("pitch_um",)  # the card's [lattice] keys this reader needs


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry names (entry key -> its path), for the card check."""
    out = {"h5ad": (entry["h5ad"],)}
    if entry["image"] not in UNS_IMAGES:
        out["image"] = (entry["image"],)
    return out


FULLRES_SPOT_UM = 65.0  # spot_diameter_fullres spans a theoretical 65 um spot (Space Ranger docs)


def _uint8(where: Path, name: str, image: np.ndarray) -> np.ndarray:
    """An ``uns`` image (float in [0, 1] or uint8; grey, RGB or RGBA) as uint8 HxW or HxWx3."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., 0] if image.shape[2] == 1 else image[..., :3]
    if image.ndim not in (2, 3) or image.dtype.kind not in "fu" or image.size == 0:
        raise BenchError(
            f"{where}: uns image {name!r} has shape {image.shape} and dtype {image.dtype}; "
            "expected HxW or HxWx3, float in [0, 1] or uint8"
        )
    if image.dtype.kind == "f":
        return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    return image.astype(np.uint8)


def _library(where: Path, adata: Any, library_id: str | None) -> tuple[str, Mapping[str, Any]]:
    """The ``uns["spatial"]`` library named by the card (default: the only one)."""
    libs = adata.uns.get("spatial", {})
    if not libs:
        raise BenchError(f"{where}: no uns['spatial']; store images there or name an image file")
    if library_id is None:
        if len(libs) != 1:
            raise BenchError(f"{where}: {len(libs)} libraries {sorted(libs)}; set library_id")
        library_id = next(iter(libs))
    if library_id not in libs:
        raise BenchError(
            f"{where}: library_id {library_id!r} not in uns['spatial'] (known: "
            f"{', '.join(sorted(libs))}); fix library_id in the card"
        )
    return library_id, libs[library_id]


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one section of an ``.h5ad`` file into a :class:`Section` (see the module docstring).

    Parameters
    ----------
    section_id : the section's name in the card.
    folder : the dataset folder; ``entry`` paths are relative to it.
    entry : the card's ``[sections.<id>]`` table: ``h5ad``, ``image`` ("hires", "lowres" or an
        image file), optional ``library_id`` and ``image_scale`` (stored px per coordinate px).
    card : the card; uses ``[read]`` (``layer``, ``feature_type``, ``spatial_key``,
        ``spatial_unit``, ``um_per_px``, ``bin_um``, ``tissue_min_counts``) and ``[lattice]``.

    Returns
    -------
    The section, after :func:`bench.data.section.check_section`.
    """
    import anndata

    path = folder / entry["h5ad"]
    read, lattice = card.get("read", {}), card["lattice"]
    try:
        adata = anndata.read_h5ad(path)
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found; fetch the dataset or fix the card") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
        msg = " ".join(str(err).split())[:200]
        raise BenchError(f"{path}: not a readable .h5ad ({msg}); re-fetch or rewrite it") from None
    if adata.n_obs == 0:
        raise BenchError(f"{path}: no observations (empty AnnData); check the file")
    if adata.obs_names.has_duplicates:
        dup = adata.obs_names[adata.obs_names.duplicated()][0]
        raise BenchError(f"{path}: observation {dup} appears more than once; names must be unique")

    if "feature_type" in read:
        if "feature_type" not in adata.var:
            raise BenchError(f"{path}: no var['feature_type'] column; drop [read].feature_type")
        adata = adata[:, (adata.var["feature_type"] == read["feature_type"]).to_numpy()]
        if adata.n_vars == 0:
            raise BenchError(f"{path}: no feature of type {read['feature_type']!r}; fix the card")
    layer = read.get("layer")
    if layer is not None and layer not in adata.layers:
        raise BenchError(f"{path}: no layer {layer!r} (have {list(adata.layers)}); fix the card")
    values = adata.X if layer is None else adata.layers[layer]
    if values is None:
        raise BenchError(f"{path}: X is empty; name the counts layer in [read].layer")
    genes = adata.var_names.to_numpy(dtype=str)
    symbols = None
    for column in SYMBOL_COLUMNS:  # ids as var_names, symbols beside them (scanpy's layout)
        if column in adata.var and column != adata.var.index.name:
            symbols = adata.var[column].astype(str).to_numpy()
            break
    counts = check_counts(path, values, genes, adata.obs_names.to_numpy(dtype=str))

    key, unit = read.get("spatial_key", "spatial"), read.get("spatial_unit", "px")
    if unit not in ("px", "um"):
        raise BenchError(f"{path}: spatial_unit {unit!r} unknown; use 'px' or 'um'")
    if key not in adata.obsm:
        raise BenchError(
            f"{path}: no obsm[{key!r}] (have {list(adata.obsm)}); fix [read].spatial_key"
        )
    xy = np.asarray(adata.obsm[key], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
        raise BenchError(f"{path}: obsm[{key!r}] is not finite (x, y) per observation")
    xy = xy[:, :2]

    image, library, lib = entry["image"], {}, None
    if image in UNS_IMAGES or "library_id" in entry or len(adata.uns.get("spatial", {})) == 1:
        lib, library = _library(path, adata, entry.get("library_id"))
    scalefactors = library.get("scalefactors", {})
    if image in UNS_IMAGES:
        images = library.get("images", {})
        if image not in images:
            raise BenchError(
                f"{path}: uns['spatial'][{lib!r}] has no {image!r} image (have {list(images)}); "
                "set the card's image to one of those or to an image file"
            )
        scalef = f"tissue_{image}_scalef"
        if scalef not in scalefactors:
            raise BenchError(f"{path}: uns['spatial'][{lib!r}] has no {scalef!r}; add it")
        array = _uint8(path, image, images[image])
        factor = float(scalefactors[scalef])
        size = (round(array.shape[1] / factor), round(array.shape[0] / factor))
    else:
        array = folder / image
        stored, scale = image_size(array), float(entry.get("image_scale", 1.0))
        size = (round(stored[0] / scale), round(stored[1] / scale))

    grid = "array_row" in adata.obs and "array_col" in adata.obs
    um_per_px, fullres = read.get("um_per_px"), scalefactors.get("spot_diameter_fullres")
    if um_per_px is None and fullres:
        um_per_px = FULLRES_SPOT_UM / float(fullres)
    if um_per_px is None and (unit == "um" or not grid):
        raise BenchError(f"{path}: pixel size unknown; set [read].um_per_px")

    if grid:
        row = adata.obs["array_row"].to_numpy(dtype=np.int64)
        col = adata.obs["array_col"].to_numpy(dtype=np.int64)
        in_tissue = np.asarray(adata.obs.get("in_tissue", np.ones(len(row))), dtype=bool)
        pixels = xy / um_per_px if unit == "um" else xy
        to_pixel, pitch_um = fit_to_pixel(col, row, pixels), pitch(lattice)
        kind = lattice.get("kind", "square")
    else:
        bin_um = read.get("bin_um")
        if bin_um is None:
            raise BenchError(f"{path}: point data (no array_row/array_col); set [read].bin_um")
        xy_um = xy * um_per_px if unit == "px" else xy
        if (xy_um < 0).any():
            raise BenchError(f"{path}: negative obsm[{key!r}] coordinates; shift them to >= 0")
        row, col, counts = bin_points(xy_um[:, 0], xy_um[:, 1], float(bin_um), counts)
        totals = np.asarray(counts.sum(axis=1)).ravel()
        in_tissue = totals >= read.get("tissue_min_counts", 1)
        to_pixel, pitch_um = bin_to_pixel(float(bin_um), um_per_px), (float(bin_um),) * 2
        kind = "square"

    section = Section(
        id=section_id,
        counts=counts,
        genes=genes,
        row=row,
        col=col,
        in_tissue=in_tissue,
        to_pixel=to_pixel,
        image=array,
        image_size=size,
        pitch_um=pitch_um,
        um_per_px=None if um_per_px is None else float(um_per_px),
        lattice=kind,
        parity=lattice_parity(path, kind, row, col),
        symbols=symbols,
    )
    check_section(path, section, lattice.get("image_um_per_px"))
    return section
