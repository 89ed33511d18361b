"""Shared 10x Genomics helpers for the Space Ranger readers (:mod:`.spaceranger` for Visium,
:mod:`.visium_hd` for Visium HD): the feature-barcode matrix, the tissue positions' checks and
``scalefactors_json.json``.

Matrix: a MEX directory (``matrix.mtx.gz``, ``features.tsv.gz``, ``barcodes.tsv.gz``) or the same
matrix as a 10x ``.h5`` file; raw UMI counts. Only ``feature_types == "Gene Expression"`` rows
are kept. Genes are named by symbol, made unique the scanpy way: a symbol shared by several gene
ids keeps its name once, then gets ``-1``, ``-2``, ... (e.g. ``Aldoa``, ``Aldoa-1``). Checked:
the files exist and decode (errors name the first bad file), barcodes are unique, counts are raw
integers (:func:`bench.data.section.check_counts`).
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from bench.data.section import check_counts
from bench.errors import BenchError, one_line

MEX_FILES = ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz")
GRID_COLUMNS = ["in_tissue", "array_row", "array_col"]


def check_positions(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """A tissue-positions table indexed by barcode (``in_tissue array_row array_col
    pxl_row_in_fullres pxl_col_in_fullres``) as float64, once it has rows, every value is finite,
    the flag and grid indices are non-negative integers and each barcode appears once; else a
    one-line :class:`BenchError` naming ``path``."""
    try:
        table = table.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise BenchError(f"{path}: non-numeric position ({one_line(err)}); re-fetch it") from None
    grid = table[GRID_COLUMNS].to_numpy()
    finite = np.isfinite(table.to_numpy()).all()
    if table.empty or not finite or (grid != np.round(grid)).any() or (grid < 0).any():
        raise BenchError(
            f"{path}: no positions, or in_tissue/array_row/array_col not non-negative integers; "
            "re-fetch it"
        )
    if table.index.has_duplicates:
        dup = table.index[table.index.duplicated()][0]
        raise BenchError(f"{path}: barcode {dup} appears more than once; each barcode once")
    return table


def _culprit(folder: Path) -> Path:
    """The first gzip file of a MEX directory that does not decompress, else the directory."""
    for name in MEX_FILES:
        try:
            with gzip.open(folder / name) as stream:
                while stream.read(1 << 22):
                    pass
        except (OSError, EOFError, ValueError):
            return folder / name
    return folder


def read_counts(path: Path) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """(spots x genes counts, unique gene symbols, barcodes) of a MEX directory or 10x ``.h5``."""
    import anndata
    import scanpy as sc

    mex = path.is_dir()
    for file in [path / n for n in MEX_FILES] if mex else [path]:
        if not file.is_file():
            raise BenchError(f"{file}: not found; re-fetch it or fix the card's matrix path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicated names are handled below
        try:
            if mex:
                adata = sc.read_10x_mtx(path, make_unique=False, gex_only=False)
            else:
                adata = sc.read_10x_h5(path, gex_only=False)
        except Exception as err:  # noqa: BLE001 - scanpy/h5py raise many types, even Exception
            where = _culprit(path) if mex else path
            raise BenchError(
                f"{where}: unreadable matrix ({one_line(err)}); re-fetch it"
            ) from None
        keep = np.ones(adata.n_vars, dtype=bool)
        if "feature_types" in adata.var:
            keep = (adata.var["feature_types"] == "Gene Expression").to_numpy()
        genes = anndata.utils.make_index_unique(adata.var_names[keep]).to_numpy(dtype=str)
    source = path / "matrix.mtx.gz" if mex else path
    if not keep.any():
        raise BenchError(f"{source}: no 'Gene Expression' features; use a gene-expression matrix")
    if adata.obs_names.duplicated().any():
        dup = adata.obs_names[adata.obs_names.duplicated()][0]
        where = path / "barcodes.tsv.gz" if mex else path
        raise BenchError(f"{where}: barcode {dup} appears more than once; each barcode once")
    counts = check_counts(
        source, sparse.csr_matrix(adata.X)[:, keep], genes, adata.obs_names.to_numpy(dtype=str)
    )
    return counts, genes, adata.obs_names.to_numpy(dtype=str)


def read_scalefactors(
    path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, float]:
    """The named positive numbers from ``scalefactors_json.json``: every one of ``keys``, and
    those of ``optional`` the file holds (each, when present, a positive number too)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(
            f"{path}: unreadable scale factors ({one_line(err)}); re-fetch it"
        ) from None
    values = {}
    for key in keys + optional:
        value = data.get(key) if isinstance(data, dict) else None
        if value is None and key in optional:
            continue
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise BenchError(f"{path}: no positive number {key!r}; re-fetch the file")
        values[key] = float(value)
    return values
