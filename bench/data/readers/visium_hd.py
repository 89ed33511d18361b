"""Reader for 10x Visium HD Space Ranger output: the square bins of ``outs/binned_outputs/``.

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``):

- ``bins``: one bin-size folder of ``binned_outputs/``, e.g. ``"binned_outputs/square_008um"``
  (Space Ranger writes ``square_002um``, ``square_008um`` and ``square_016um``), holding:

  - the matrix, ``matrix`` (default ``"filtered_feature_bc_matrix.h5"``, relative to ``bins``): a
    10x ``.h5`` file or a MEX folder (``"filtered_feature_bc_matrix"``; ``raw_*`` for every bin);
    raw UMI counts, read by :mod:`.tenx` (gene-expression rows, symbols made unique);
  - ``spatial/tissue_positions.parquet``: one row per bin of the capture area, columns ``barcode
    in_tissue array_row array_col pxl_row_in_fullres pxl_col_in_fullres`` (bin indices; bin
    centres in full-resolution pixels, row = y, col = x); barcodes ``s_008um_00012_00034-1``;
  - ``spatial/scalefactors_json.json``: ``bin_size_um``, ``microns_per_pixel`` (full-resolution
    pixel size), ``spot_diameter_fullres`` (one bin in full-resolution pixels) and
    ``tissue_<image>_scalef``.
- ``image``: ``"hires"`` (default) or ``"lowres"``, the PNG ``spatial/tissue_<image>_image.png``
  (the full-resolution image scaled by ``tissue_<image>_scalef``); any other value is the path of
  the full-resolution image given to Space Ranger (with ``image_scale``, stored pixels per
  full-resolution pixel, for a smaller copy; default 1).

HR bins: ``[read].bin_um`` (required), the HR bin edge in micrometres, a whole multiple ``f`` of
the folder's bin size: 8 from ``square_008um`` reads the bins as they are (``f = 1``); 4 from
``square_002um`` sums 2 x 2 blocks of 2 um bins. Block ``(row, col) = (array_row // f,
array_col // f)`` (Space Ranger's own coarser bins are such blocks), a block is in tissue when any
of its bins is, and blocks at the capture area's edge may hold fewer bins. LR bins are the HR bins
pooled by the split's ``k`` (``[split].pooling``): ``bin_um = 8`` with ``k = 2`` scores 16 um LR
bins super-resolved to 8 um.

Lattice: square, one grid step = one HR bin: ``[lattice] kind = "square"``, ``pitch_um =
bin_um`` (checked with the card). Pixels: the full-resolution space, whose size is the PNG's
divided by its scale factor; ``to_pixel`` is fitted to every row of the positions file, then
composed with the block map. Pixel size: ``microns_per_pixel``, else ``bin_size_um /
spot_diameter_fullres``. The folder's bin size: ``bin_size_um``, else the folder's name.

Checked: the card ([read].bin_um a positive multiple of the folder's bin size, equal to the
lattice pitch) before any file is read; ``bin_size_um`` agreeing with a ``square_<NNN>um`` name;
readable files (errors name the file), unique barcodes in
matrix and positions, every matrix barcode positioned, integer bin indices, raw integer counts,
and the coordinate contract (:func:`bench.data.section.check_section`). Bins are the matrix's (a
filtered matrix holds the in-tissue ones), each with ``in_tissue`` from the positions file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from bench.data.readers.binning import bin_points
from bench.data.readers.lattice import image_size, pitch
from bench.data.readers.tenx import MEX_FILES, check_positions, read_counts, read_scalefactors
from bench.data.section import Section, check_section, fit_to_pixel
from bench.errors import BenchError, one_line

POSITIONS = "spatial/tissue_positions.parquet"
SCALEFACTORS = "spatial/scalefactors_json.json"
POSITION_COLUMNS = tuple(
    "barcode in_tissue array_row array_col pxl_row_in_fullres pxl_col_in_fullres".split()
)
IMAGES = ("hires", "lowres")
MATRIX = "filtered_feature_bc_matrix.h5"
FOLDER = re.compile(r"^square_(\d+)um$")  # binned_outputs/square_008um -> 8 um bins
ENTRY_KEYS = ("bins",)  # "matrix" and "image" are optional
LATTICE_KEYS = ("pitch_um",)  # the card's [lattice] keys this reader needs


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry reads (entry key -> the one path [files] must list): the
    matrix (``.h5`` or the three MEX files), the positions, the scale factors and the image."""
    bins = Path(entry["bins"])
    matrix = bins / str(entry.get("matrix", MATRIX))
    if matrix.suffix == ".h5":
        out = {"matrix": (matrix.as_posix(),)}
    else:
        out = {f"matrix ({name})": ((matrix / name).as_posix(),) for name in MEX_FILES}
    out["bins (positions)"] = ((bins / POSITIONS).as_posix(),)
    out["bins (scale factors)"] = ((bins / SCALEFACTORS).as_posix(),)
    image = entry.get("image", "hires")
    if image in IMAGES:
        out["image"] = ((bins / "spatial" / f"tissue_{image}_image.png").as_posix(),)
    elif _image_path(image):
        out["image"] = (image,)
    return out


def _image_path(image: Any) -> bool:
    """Whether an entry's ``image`` names a file (it has a suffix), not ``hires``/``lowres``."""
    return isinstance(image, str) and image not in IMAGES and bool(Path(image).suffix)


def folder_bin_um(bins: str | Path) -> int | None:
    """The bin size a ``square_<NNN>um`` folder's name states, else None."""
    match = FOLDER.match(Path(bins).name)
    return int(match.group(1)) if match else None


def _factor(bin_um: float, source_um: float) -> int | None:
    """``bin_um / source_um`` when it is a whole number >= 1, else None."""
    f = bin_um / source_um
    return round(f) if round(f) >= 1 and math.isclose(f, round(f), rel_tol=1e-6) else None


def _bin_um(where: str, card: Mapping[str, Any]) -> float:
    """The card's ``[read].bin_um`` once it is a positive number equal to the lattice pitch."""
    read = card.get("read", {})
    value = read.get("bin_um") if isinstance(read, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BenchError(
            f"{where}: [read].bin_um = {value!r} must be the HR bin edge in um (a positive number "
            "such as 8, a multiple of the binned_outputs folder's bin size); fix the card"
        )
    lattice = card.get("lattice", {})
    if lattice.get("kind", "square") != "square":
        raise BenchError(
            f"{where}: [lattice].kind = {lattice['kind']!r}; Visium HD bins form a square "
            'lattice: set kind = "square"'
        )
    if "pitch_um" in lattice and any(
        not math.isclose(p, value, rel_tol=1e-6) for p in pitch(lattice)
    ):
        raise BenchError(
            f"{where}: [lattice].pitch_um = {lattice['pitch_um']!r} differs from [read].bin_um = "
            f"{value!r}; one grid step is one HR bin: set pitch_um = {value!r}"
        )
    return float(value)


def check_card(where: Path, raw: Mapping[str, Any]) -> None:
    """``[read].bin_um``, the lattice and each section's bin folder, before any file is read."""
    bin_um = _bin_um(str(where), raw)
    for sid, entry in raw.get("sections", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("bins"), str):
            continue  # the generic card check names a missing bins folder
        if "matrix" in entry and not isinstance(entry["matrix"], str):
            raise BenchError(
                f"{where}: [sections.{sid}].matrix = {entry['matrix']!r} must be a path such as "
                f'"{MATRIX}"; fix the card'
            )
        image = entry.get("image", "hires")
        if image not in IMAGES and not _image_path(image):
            raise BenchError(
                f"{where}: [sections.{sid}].image = {image!r} must be 'hires', 'lowres' or the "
                'path of the full-resolution image (e.g. "tissue_image.tif"); fix the card'
            )
        source = folder_bin_um(entry["bins"])
        if source is not None and _factor(bin_um, source) is None:
            raise BenchError(
                f"{where}: [read].bin_um = {bin_um:g} is not a whole multiple of the {source} um "
                f"bins of [sections.{sid}].bins = {entry['bins']!r}; use a multiple of {source} "
                "or a folder of finer bins"
            )


def read_positions(path: Path) -> pd.DataFrame:
    """``tissue_positions.parquet`` as a table indexed by barcode, every number checked."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise BenchError(f"{path}: not found; re-fetch it or fix the card's bins folder")
    try:
        names = pq.read_schema(path).names
        absent = [c for c in POSITION_COLUMNS if c not in names]
        if absent:
            raise BenchError(f"{path}: no column {absent[0]!r}; re-fetch it (Space Ranger's)")
        table = pd.read_parquet(path, columns=list(POSITION_COLUMNS))
    except BenchError:
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types
        raise BenchError(f"{path}: unreadable positions ({one_line(err)}); re-fetch it") from None
    table = table.set_index(table["barcode"].astype(str)).drop(columns="barcode")
    return check_positions(path, table)


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one Visium HD section at the card's HR bin size (see the module docstring).

    Parameters
    ----------
    section_id : the card's section name.
    folder : ``<data-dir>/<dataset>``; the entry's paths are relative to it.
    entry : the card's ``[sections.<id>]`` table: ``bins``, optional ``matrix`` and ``image``.
    card : the whole card; ``[read].bin_um``, ``[lattice]`` (``pitch_um``, ``image_um_per_px``).

    Returns
    -------
    Section
        Counts of the matrix's bins summed into HR bins, on the ``array_row // f``,
        ``array_col // f`` grid.

    Raises
    ------
    BenchError
        One line naming the offending file or card key and the fix.
    """
    bin_um = _bin_um(f"section {section_id}", card)
    bins = folder / entry["bins"]
    kind = entry.get("image", "hires")
    scales = read_scalefactors(
        bins / SCALEFACTORS,
        (f"tissue_{kind}_scalef",) if kind in IMAGES else (),
        ("bin_size_um", "microns_per_pixel", "spot_diameter_fullres"),
    )
    named = folder_bin_um(entry["bins"])
    source = scales.get("bin_size_um", named)
    if source is None or (named is not None and not math.isclose(source, named, rel_tol=1e-6)):
        said = "no bin_size_um" if source is None else f"bin_size_um = {source:g}"
        raise BenchError(
            f"{bins / SCALEFACTORS}: {said} for the folder {bins.name}; point "
            f"[sections.{section_id}].bins at one of Space Ranger's square_<NNN>um folders"
        )
    f = _factor(bin_um, source)
    if f is None:
        raise BenchError(
            f"section {section_id}: [read].bin_um = {bin_um:g} is not a whole multiple of the "
            f"{source:g} um bins of {bins}; use a multiple of {source:g} or finer bins"
        )
    if "microns_per_pixel" not in scales and "spot_diameter_fullres" not in scales:
        raise BenchError(
            f"{bins / SCALEFACTORS}: neither microns_per_pixel nor spot_diameter_fullres; "
            "re-fetch the file"
        )
    um_per_px = scales.get("microns_per_pixel", source / scales.get("spot_diameter_fullres", 1))
    image, scale = folder / kind, float(entry.get("image_scale", 1.0))  # full resolution
    if kind in IMAGES:
        image, scale = (
            bins / "spatial" / f"tissue_{kind}_image.png",
            scales[f"tissue_{kind}_scalef"],
        )
    if not image.is_file():
        raise BenchError(f"{image}: not found; re-fetch it or fix [sections.{section_id}].image")
    width, height = image_size(image)

    counts, genes, barcodes = read_counts(bins / str(entry.get("matrix", MATRIX)))
    positions = read_positions(bins / POSITIONS)
    at = positions.index.get_indexer(barcodes)
    if (at < 0).any():
        raise BenchError(
            f"{bins / POSITIONS}: matrix barcode {barcodes[at < 0][0]} (and {(at < 0).sum() - 1} "
            "more) has no position; the matrix and spatial/ folder come from different runs"
        )
    grid = positions[["array_row", "array_col", "in_tissue"]].to_numpy(dtype=np.int64)[at]
    row, col, in_tissue = grid[:, 0], grid[:, 1], grid[:, 2] == 1
    notes: tuple[str, ...] = ()
    if f > 1:  # one more column of in-tissue flags sums with the counts, block by block
        both = sparse.hstack([counts, sparse.csr_matrix(in_tissue[:, None].astype(np.int64))])
        row, col, summed = bin_points(col, row, f, both.tocsr())
        counts, in_tissue = summed[:, :-1].tocsr(), summed[:, -1].toarray().ravel() > 0
        notes = (f"summed {f} x {f} blocks of the {source:g} um bins into {bin_um:g} um bins",)
    pixels = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    fitted = fit_to_pixel(
        positions["array_col"].to_numpy(), positions["array_row"].to_numpy(), pixels
    )
    block = np.array([[f, 0.0, (f - 1) / 2], [0.0, f, (f - 1) / 2], [0.0, 0.0, 1.0]])
    section = Section(
        id=section_id,
        counts=counts,
        genes=genes,
        row=row,
        col=col,
        in_tissue=in_tissue,
        to_pixel=fitted @ block,
        image=image,
        image_size=(round(width / scale), round(height / scale)),
        pitch_um=(bin_um, bin_um),
        um_per_px=um_per_px,
        lattice="square",
        notes=notes,
    )
    check_section(bins / POSITIONS, section, card.get("lattice", {}).get("image_um_per_px"))
    return section
