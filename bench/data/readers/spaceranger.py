"""Reader for 10x Space Ranger output (Visium, including CytAssist).

Files per section (the card's ``[sections.<id>]`` entry, relative to ``<data-dir>/<dataset>``):

- ``matrix``: a feature-barcode matrix, either a MEX directory (``filtered_feature_bc_matrix/`` or
  ``raw_feature_bc_matrix/``: ``matrix.mtx.gz``, ``features.tsv.gz``, ``barcodes.tsv.gz``) or the
  same matrix as a 10x ``.h5`` file; raw UMI counts. Only ``feature_types == "Gene Expression"``
  rows are kept. Genes are named by symbol, made unique the scanpy way: a symbol shared by several
  gene ids keeps its name once, then gets ``-1``, ``-2``, ... (e.g. ``Aldoa``, ``Aldoa-1``);
  read by :mod:`.tenx`, which the Visium HD reader shares.
- ``spatial``: the ``spatial/`` directory with ``tissue_positions.csv`` (Space Ranger >= 2.0, with
  a header) or ``tissue_positions_list.csv`` (older, no header), columns ``barcode in_tissue
  array_row array_col pxl_row_in_fullres pxl_col_in_fullres`` (pixel centres in the
  full-resolution image, row = y, col = x); ``scalefactors_json.json``; and the PNG below.
- ``image``: ``"hires"`` or ``"lowres"`` (default ``"hires"``): the PNG
  ``tissue_<image>_image.png``, the full-resolution image scaled by ``tissue_<image>_scalef``.

Grid: ``row = array_row``, ``col = array_col`` unchanged. Visium's hexagonal lattice is a
checkerboard (``array_row + array_col`` even, odd rows offset by one column step of 50 um), so no
offset row is rounded. Pixels: the full-resolution space, whose size is the PNG's divided by its
scale factor; ``to_pixel`` is fitted to every row of the positions file.

Pixel size: ``um_per_px = 65 / spot_diameter_fullres``; Space Ranger documents that key as the
pixel diameter of a *theoretical 65 um* spot (not the 55 um physical spot).

Checked: readable files (errors name the file), unique barcodes in matrix and positions, every
matrix barcode positioned, raw integer counts (:func:`bench.data.section.check_counts`), one
lattice parity, and the coordinate contract (:func:`bench.data.section.check_section`: in-tissue
spots inside the image, plausible pixel size agreeing with the scale factors and the card's
``image_um_per_px``). Spots are the matrix's (a filtered matrix holds the in-tissue ones, a raw
one all 4,992), each with ``in_tissue`` from the positions file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data.readers.lattice import image_size, lattice_parity, pitch
from bench.data.readers.tenx import MEX_FILES, check_positions, read_counts, read_scalefactors
from bench.data.section import Section, check_section, fit_to_pixel
from bench.errors import BenchError, one_line

POSITION_COLUMNS = (
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
)
POSITION_FILES = ("tissue_positions.csv", "tissue_positions_list.csv")
IMAGES = ("hires", "lowres")
FULLRES_SPOT_UM = 65.0  # spot_diameter_fullres spans a theoretical 65 um spot (Space Ranger docs)
ENTRY_KEYS = ("matrix", "spatial")  # "image" is a name ("hires" / "lowres"), not a path
LATTICE_KEYS = ("pitch_um",)  # the card's [lattice] keys this reader needs


def inputs(entry: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The files a section entry reads (entry key -> alternatives, one of which [files] must
    list): the matrix (``.h5`` or the three MEX files), the positions, scale factors and PNG."""
    matrix, spatial = Path(entry["matrix"]), Path(entry["spatial"])
    kind = entry.get("image", "hires")
    out = {"matrix": (entry["matrix"],)} if matrix.suffix == ".h5" else {}
    for name in [] if matrix.suffix == ".h5" else MEX_FILES:
        out[f"matrix ({name})"] = ((matrix / name).as_posix(),)
    out["spatial (positions)"] = tuple((spatial / n).as_posix() for n in POSITION_FILES)
    out["spatial (scale factors)"] = ((spatial / "scalefactors_json.json").as_posix(),)
    if kind in IMAGES:
        out["image"] = ((spatial / f"tissue_{kind}_image.png").as_posix(),)
    return out


def read_positions(
    spatial: Path, prefer: tuple[str, ...] = POSITION_FILES
) -> tuple[Path, pd.DataFrame]:
    """(file, table indexed by barcode) from ``tissue_positions[_list].csv``, header optional;
    the first of ``prefer`` that exists is read (the card's listed file first)."""
    path = next((spatial / n for n in prefer if (spatial / n).is_file()), None)
    if path is None:
        raise BenchError(f"{spatial}: no {' or '.join(POSITION_FILES)}; re-fetch spatial/")
    try:
        table = pd.read_csv(path, header=None, dtype=str)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise BenchError(f"{path}: unreadable positions ({one_line(err)}); re-fetch it") from None
    if table.shape[1] != len(POSITION_COLUMNS):
        raise BenchError(
            f"{path}: {table.shape[1]} columns, not {len(POSITION_COLUMNS)}; re-fetch it"
        )
    if str(table.iloc[0, 0]).strip() == "barcode":
        table = table.iloc[1:]
    table.columns = list(POSITION_COLUMNS)
    return path, check_positions(path, table.set_index("barcode"))


def read_section(
    section_id: str, folder: Path, entry: Mapping[str, Any], card: Mapping[str, Any]
) -> Section:
    """Read one Space Ranger section (see the module docstring).

    Parameters
    ----------
    section_id : the card's section name.
    folder : ``<data-dir>/<dataset>``; the entry's paths are relative to it.
    entry : the card's ``[sections.<id>]`` table: ``matrix``, ``spatial``, ``image``.
    card : the whole card; ``[lattice]`` gives ``kind``, ``pitch_um`` and ``image_um_per_px``.

    Returns
    -------
    Section
        Counts of the matrix's spots, on the ``array_row``/``array_col`` grid.

    Raises
    ------
    BenchError
        One line naming the offending file and the fix (see the module docstring's checks).
    """
    spatial = folder / entry["spatial"]
    kind = entry.get("image", "hires")
    if kind not in IMAGES:
        raise BenchError(f"section {section_id}: image = {kind!r} unknown; use one of {IMAGES}")
    png = spatial / f"tissue_{kind}_image.png"
    if not png.is_file():
        other = IMAGES[1 - IMAGES.index(kind)]
        raise BenchError(f"{png}: not found; re-fetch it or set image = {other!r} in the card")
    scale = read_scalefactors(
        spatial / "scalefactors_json.json", (f"tissue_{kind}_scalef", "spot_diameter_fullres")
    )
    counts, genes, barcodes = read_counts(folder / entry["matrix"])
    listed = {Path(rel) for rel in card.get("files", {})}
    prefer = sorted(POSITION_FILES, key=lambda n: Path(entry["spatial"]) / n not in listed)
    positions_path, positions = read_positions(spatial, tuple(prefer))
    absent = ~np.isin(barcodes, positions.index.to_numpy(dtype=str))
    if absent.any():
        raise BenchError(
            f"{positions_path}: matrix barcode {barcodes[absent][0]} (and {absent.sum() - 1} "
            "more) has no position; the matrix and spatial/ folder come from different runs"
        )
    spots = positions.loc[barcodes]
    row = spots["array_row"].to_numpy(dtype=np.int64)
    col = spots["array_col"].to_numpy(dtype=np.int64)
    pixels = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    width, height = image_size(png)
    scalef = scale[f"tissue_{kind}_scalef"]
    lattice = card["lattice"]
    lattice_kind = lattice.get("kind", "checkerboard")
    section = Section(
        id=section_id,
        counts=counts,
        genes=genes,
        row=row,
        col=col,
        in_tissue=spots["in_tissue"].to_numpy() == 1,
        to_pixel=fit_to_pixel(
            positions["array_col"].to_numpy(), positions["array_row"].to_numpy(), pixels
        ),
        image=png,
        image_size=(round(width / scalef), round(height / scalef)),
        pitch_um=pitch(lattice),
        um_per_px=FULLRES_SPOT_UM / scale["spot_diameter_fullres"],
        lattice=lattice_kind,
        parity=lattice_parity(positions_path, lattice_kind, row, col),
    )
    check_section(positions_path, section, lattice.get("image_um_per_px"))
    return section
