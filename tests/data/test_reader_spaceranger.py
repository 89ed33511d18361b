"""bench.data.readers.spaceranger on the real Visium CytAssist mouse embryo and on corrupted
copies of it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import io, sparse

from bench.data.readers.spaceranger import read_section
from bench.errors import BenchError

DATASET = "visium_cytassist_mouse_embryo"
MATRIX = "filtered_feature_bc_matrix"
ENTRY = {"matrix": MATRIX, "spatial": "spatial", "image": "lowres"}
MEX = ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz")
SPATIAL = ("tissue_positions.csv", "scalefactors_json.json", "tissue_lowres_image.png")


def embryo_card(**lattice: object) -> dict:
    """The embryo's card as far as the reader reads it; keyword arguments override [lattice]."""
    base = {"kind": "checkerboard", "pitch_um": [86.6025, 50.0], "spot_diameter_um": 55}
    return {"name": DATASET, "lattice": {**base, **lattice}, "sections": {"E": ENTRY}}


def read(folder: Path, entry: dict = ENTRY, card: dict | None = None):
    return read_section("E", folder, entry, card or embryo_card())


def fails(folder: Path, culprit: Path, entry: dict = ENTRY) -> str:
    """The one-line BenchError message, checked to name ``culprit``."""
    with pytest.raises(BenchError) as info:
        read(folder, entry)
    message = str(info.value)
    assert "\n" not in message and str(culprit) in message, message
    return message


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in the staged copy (a symlink to the original is removed)."""
    path.unlink()
    path.write_bytes(data)


def write_mex(folder: Path, matrix: sparse.spmatrix, barcodes: list[str], field: str) -> None:
    """Replace the staged MEX matrix and barcodes (features stay the real ones)."""
    io.mmwrite(folder / "matrix.mtx", sparse.coo_matrix(matrix), field=field)
    replace(folder / "matrix.mtx.gz", gzip.compress((folder / "matrix.mtx").read_bytes(), 1))
    (folder / "matrix.mtx").unlink()
    replace(
        folder / "barcodes.tsv.gz", gzip.compress("".join(b + "\n" for b in barcodes).encode())
    )


@pytest.fixture(scope="module")
def embryo(root):
    return read(root / DATASET)


@pytest.fixture(scope="module")
def mex(root) -> tuple[sparse.csc_matrix, list[str], pd.DataFrame]:
    """The real MEX files: (genes x barcodes counts, barcodes, features table)."""
    folder = root / DATASET / MATRIX
    matrix = sparse.csc_matrix(io.mmread(folder / "matrix.mtx.gz"))
    barcodes = pd.read_csv(folder / "barcodes.tsv.gz", header=None)[0].tolist()
    return matrix, barcodes, pd.read_csv(folder / "features.tsv.gz", header=None, sep="\t")


@pytest.fixture
def staged(root, tmp_path) -> Path:
    """The dataset's folder rebuilt in tmp_path from symlinks to the (read-only) originals."""
    folder = tmp_path / DATASET
    for sub, names in ((MATRIX, MEX), ("spatial", SPATIAL)):
        (folder / sub).mkdir(parents=True)
        for name in names:
            (folder / sub / name).symlink_to(root / DATASET / sub / name)
    return folder


def positions(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / DATASET / "spatial" / "tissue_positions.csv")


def test_real_embryo(embryo, root):
    s = embryo
    assert s.counts.shape == (2898, 19465) and s.counts.dtype == np.int64
    assert s.in_tissue.all() and ((s.row + s.col) % 2 == 0).all() and s.parity == 0
    assert s.lattice == "checkerboard" and s.pitch_um == (86.6025, 50.0)
    assert 0 <= s.row.min() and s.row.max() <= 77 and 0 <= s.col.min() and s.col.max() <= 127
    assert len(set(s.genes)) == len(s.genes) and {"Aldoa", "Aldoa-1"} <= set(s.genes)
    assert 150 <= np.median(s.totals) <= 350
    assert s.um_per_px == pytest.approx(65 / 14.964878633873417)
    assert s.image_size == (3000, 3000) and s.image.name == "tissue_lowres_image.png"
    table = positions(root).set_index("barcode")
    order = pd.read_csv(root / DATASET / MATRIX / "barcodes.tsv.gz", header=None)[0]
    spots = table.loc[order]
    assert (spots["array_row"].to_numpy() == s.row).all()
    fitted = s.to_pixel @ np.vstack([s.col, s.row, np.ones(len(s.row))])
    stated = spots[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy().T
    assert np.abs(fitted - stated).max() < 1.0  # no offset row rounded onto its neighbour


def test_odd_rows_sit_half_a_column_pitch_over(root):
    table = positions(root).set_index(["array_row", "array_col"])
    x = table["pxl_col_in_fullres"]
    odd = table.index[table.index.get_level_values(0) % 2 == 1]
    odd = [(r, c) for r, c in odd if (r - 1, c - 1) in x.index and (r - 1, c + 1) in x.index]
    assert len(odd) > 2000
    left = x.loc[[(r - 1, c - 1) for r, c in odd]].to_numpy()
    right = x.loc[[(r - 1, c + 1) for r, c in odd]].to_numpy()
    assert np.abs(x.loc[odd].to_numpy() - (left + right) / 2).max() < 0.5
    assert np.median(right - left) == pytest.approx(2 * 10.69, abs=0.1)  # 100 um = 2 columns


def test_positions_list_without_header_reads_the_same(embryo, staged, root):
    spatial = staged / "spatial"
    (spatial / "tissue_positions.csv").unlink()
    positions(root).to_csv(spatial / "tissue_positions_list.csv", header=False, index=False)
    s = read(staged)
    assert (s.counts != embryo.counts).nnz == 0 and (s.genes == embryo.genes).all()
    for name in ("row", "col", "in_tissue"):
        assert (getattr(s, name) == getattr(embryo, name)).all()
    assert np.allclose(s.to_pixel, embryo.to_pixel) and s.image_size == embryo.image_size
    assert (s.um_per_px, s.parity) == (embryo.um_per_px, embryo.parity)


def test_h5_matrix_reads_the_same(embryo, mex, staged):
    matrix, barcodes, features = mex
    path = staged / "matrix.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("matrix")
        group["barcodes"] = np.array(barcodes, dtype="S")
        group["data"] = matrix.data.astype(np.int32)
        group["indices"] = matrix.indices.astype(np.int64)
        group["indptr"] = matrix.indptr.astype(np.int64)
        group["shape"] = np.array(matrix.shape, dtype=np.int32)
        feats = group.create_group("features")
        feats["id"] = features[0].to_numpy(dtype="S")
        feats["name"] = features[1].to_numpy(dtype="S")
        feats["feature_type"] = features[2].to_numpy(dtype="S")
        feats["genome"] = np.full(len(features), b"mm10")
    s = read(staged, {**ENTRY, "matrix": "matrix.h5"})
    assert (s.counts != embryo.counts).nnz == 0 and (s.genes == embryo.genes).all()
    assert (s.row == embryo.row).all() and (s.col == embryo.col).all()
    replace(path, path.read_bytes()[:5000])
    fails(staged, path, {**ENTRY, "matrix": "matrix.h5"})


def test_missing_or_truncated_matrix(staged):
    fails(staged, staged / "raw_feature_bc_matrix", {**ENTRY, "matrix": "raw_feature_bc_matrix"})
    mtx = staged / MATRIX / "matrix.mtx.gz"
    data = mtx.read_bytes()
    replace(mtx, data[: len(data) // 2])
    fails(staged, mtx)


def test_duplicated_barcodes(staged, root, mex):
    path = staged / "spatial" / "tissue_positions.csv"
    table = positions(root)
    replace(path, pd.concat([table, table.iloc[[7]]]).to_csv(index=False).encode())
    assert "appears more than once" in fails(staged, path)
    matrix, barcodes, _ = mex
    write_mex(staged / MATRIX, matrix[:, :50], [barcodes[0], *barcodes[:49]], "integer")
    assert barcodes[0] in fails(staged, staged / MATRIX / "barcodes.tsv.gz")


def test_matrix_barcode_without_position(staged, root):
    path = staged / "spatial" / "tissue_positions.csv"
    table = positions(root)
    replace(path, table[table["in_tissue"] == 0].to_csv(index=False).encode())
    assert "no position" in fails(staged, path)


@pytest.mark.parametrize("value, field", [(-1, "integer"), (1.5, "real")])
def test_counts_must_be_raw(staged, mex, value, field):
    matrix, barcodes, _ = mex
    small = matrix[:, :50].astype(np.float64).tocoo()
    small.data[3] = value
    write_mex(staged / MATRIX, small, barcodes[:50], field)
    message = fails(staged, staged / MATRIX / "matrix.mtx.gz")
    assert ("negative" if value < 0 else "non-integer") in message


def test_misregistered_positions(staged, root):
    path = staged / "spatial" / "tissue_positions.csv"
    table = positions(root)
    table[["pxl_row_in_fullres", "pxl_col_in_fullres"]] *= 10
    replace(path, table.to_csv(index=False).encode())
    assert "outside the 3000x3000 image" in fails(staged, path)


def test_wrong_scale_factor_and_missing_key(staged, root):
    path = staged / "spatial" / "scalefactors_json.json"
    scale = json.loads((root / DATASET / "spatial" / path.name).read_text())
    replace(
        path,
        json.dumps(
            {**scale, "spot_diameter_fullres": 3 * scale["spot_diameter_fullres"]}
        ).encode(),
    )
    assert "scale factor" in fails(staged, staged / "spatial" / "tissue_positions.csv")
    del scale["tissue_lowres_scalef"]
    replace(path, json.dumps(scale).encode())
    assert "tissue_lowres_scalef" in fails(staged, path)
    replace(path, b"{not json")
    fails(staged, path)


def test_empty_section(staged, root):
    path = staged / "spatial" / "tissue_positions.csv"
    replace(path, positions(root).assign(in_tissue=0).to_csv(index=False).encode())
    assert "no spot under tissue" in fails(staged, path)


def test_missing_hires_image(staged):
    path = staged / "spatial" / "tissue_hires_image.png"
    assert "lowres" in fails(staged, path, {**ENTRY, "image": "hires"})
