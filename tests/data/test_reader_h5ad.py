"""bench.data.readers.h5ad: real Xenium cells (binned points), a Visium-style h5ad built from
the embryo data, and the one-line errors for broken inputs."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import sparse

from bench.data.readers.h5ad import read_section
from bench.errors import BenchError

XENIUM = "xenium_bone_marrow"
VISIUM = "visium_cytassist_mouse_embryo"
VISIUM_CARD = {
    "read": {},
    "lattice": {"kind": "checkerboard", "pitch_um": [86.6, 50], "spot_diameter_um": 55},
}


def xenium_card(key: str = "spatial", unit: str = "um") -> dict:
    read = {"feature_type": "Gene Expression", "spatial_key": key, "spatial_unit": unit}
    read |= {"um_per_px": 0.425, "bin_um": 32}
    return {"read": read, "lattice": {"kind": "square", "pitch_um": 32}}


@pytest.fixture(scope="module")
def cells(root):
    """The real cells.h5ad read twice (um and px coordinates) plus the raw AnnData."""
    folder = root / XENIUM
    entry = {"h5ad": "cells.h5ad", "image": "dapi_full.jpg"}
    um = read_section("bm", folder, entry, xenium_card())
    px = read_section("bm", folder, entry, xenium_card("spatial_px", "px"))
    return um, px, ad.read_h5ad(folder / "cells.h5ad")


def test_xenium_cells_binned(cells):
    sec, _, raw = cells
    genes = raw.var["feature_type"].to_numpy() == "Gene Expression"
    x = raw.X[:, genes]
    assert len(sec.genes) == 477 and list(sec.genes) == list(raw.var_names[genes])
    assert sec.counts.sum() == x.sum()  # every gene count of every cell, once
    assert np.array_equal(np.asarray(sec.counts.sum(axis=0)).ravel(), np.asarray(x.sum(0)).ravel())
    # independent bin assignment of each cell: occupied bins match, and each cell lands once
    b = np.floor(raw.obsm["spatial"] / 32).astype(np.int64)
    occupied = np.unique(b[:, 1] * 10_000 + b[:, 0])
    assert len(sec.row) == len(occupied)
    assert np.array_equal(np.sort(sec.row * 10_000 + sec.col), occupied)
    assert 10_000 < len(sec.row) < 315 * 113  # measured 11,370 of the 315 x 113 bounding grid
    assert sec.lattice == "square" and sec.pitch_um == (32.0, 32.0) and sec.um_per_px == 0.425
    assert sec.image_size == (24134, 8571)
    assert np.array_equal(sec.in_tissue, sec.totals >= 1) and sec.in_tissue.mean() > 0.95


def test_xenium_px_coordinates_give_the_same_bins(cells):
    um, px, _ = cells
    # px * 0.425 may differ from the stored um values in the last float bit, which can move a
    # cell lying exactly on a bin edge; in this file spatial == spatial_px * 0.425 exactly, so
    # the bins are identical, but only near-identity is the contract.
    a = pd.DataFrame({"r": um.row, "c": um.col, "n": um.totals})
    b = pd.DataFrame({"r": px.row, "c": px.col, "n": px.totals})
    same = a.merge(b, on=["r", "c", "n"])["n"].sum()
    assert same >= 0.99 * um.totals.sum()
    assert np.allclose(um.to_pixel, px.to_pixel)


@pytest.fixture(scope="module")
def visium(root) -> ad.AnnData:
    """A scanpy/squidpy-style Visium AnnData built from the MEX matrix and spatial/ files."""
    import scanpy as sc

    folder = root / VISIUM
    adata = sc.read_10x_mtx(folder / "filtered_feature_bc_matrix")
    pos = pd.read_csv(folder / "spatial" / "tissue_positions.csv", index_col=0)
    pos = pos.loc[adata.obs_names]
    adata.obs = pos[["in_tissue", "array_row", "array_col"]].copy()
    adata.obsm["spatial"] = pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    scalefactors = json.loads((folder / "spatial" / "scalefactors_json.json").read_text())
    lowres = np.asarray(Image.open(folder / "spatial" / "tissue_lowres_image.png").convert("RGB"))
    images = {"lowres": lowres.astype(np.float32) / 255}  # plt.imread convention: [0, 1]
    adata.uns["spatial"] = {"embryo": {"images": images, "scalefactors": scalefactors}}
    return adata


def write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


def test_visium_h5ad(visium, tmp_path):
    write(visium, tmp_path / "v.h5ad")
    sec = read_section("E", tmp_path, {"h5ad": "v.h5ad", "image": "lowres"}, VISIUM_CARD)
    assert sec.counts.shape == (2898, 19465) and sec.in_tissue.all()
    assert sec.counts.sum() == visium.X.sum()
    assert sec.lattice == "checkerboard" and sec.parity == 0
    assert sec.image.dtype == np.uint8 and sec.image.shape == (600, 600, 3)
    lowres = visium.uns["spatial"]["embryo"]["images"]["lowres"]
    assert np.array_equal(sec.image, np.round(lowres * 255).astype(np.uint8))
    assert sec.image_size == (3000, 3000)
    fit = sec.to_pixel @ np.vstack([sec.col, sec.row, np.ones(len(sec.row))])
    assert np.abs(fit.T - visium.obsm["spatial"]).max() < 1.0
    # 65 um / 14.96 px = 4.34 um/px; the 100 um lattice itself implies 4.67 (within 25%)
    assert sec.um_per_px == pytest.approx(65 / 14.964878633873417)
    steps = np.hypot(sec.to_pixel[0, :2], sec.to_pixel[1, :2])  # px per (col, row) step
    assert np.allclose(np.array([50, 86.6]) / steps, 4.67, atol=0.02)


def _dup_obs(a):
    a.obs_names = [a.obs_names[0]] * 2 + list(a.obs_names[2:])


def _negative(a):
    a.X.data[0] = -1


def _misregistered(a):
    a.obsm["spatial"] = a.obsm["spatial"] * 10


def _no_scalefactor(a):
    library = a.uns["spatial"]["embryo"]
    factors = {k: v for k, v in library["scalefactors"].items() if k != "tissue_lowres_scalef"}
    a.uns["spatial"] = {"embryo": {"images": library["images"], "scalefactors": factors}}


def _points(a):
    del a.obs["array_row"], a.obs["array_col"]


EDITS = {  # name: (edit of the AnnData, entry changes, read-option changes, message fragment)
    "duplicated obs": (_dup_obs, {}, {}, "observation"),
    "negative counts": (_negative, {}, {}, "negative counts"),
    "normalised X": (lambda a: setattr(a, "X", a.X / 3), {}, {}, "non-integer counts"),
    "missing obsm key": (lambda a: None, {}, {"spatial_key": "xy"}, "no obsm['xy']"),
    "unknown library": (lambda a: None, {"library_id": "x"}, {}, "known: embryo"),
    "misregistered": (_misregistered, {}, {}, "outside"),
    "no hires image": (lambda a: None, {"image": "hires"}, {}, "no 'hires' image"),
    "no scalefactor": (_no_scalefactor, {}, {}, "tissue_lowres_scalef"),
    "empty": (lambda a: None, {}, {}, "no observations"),
    "no bin_um": (_points, {}, {}, "bin_um"),
}


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
@pytest.mark.parametrize("name", EDITS)
def test_broken_inputs(visium, tmp_path, name):
    edit, entry_changes, read_changes, fragment = EDITS[name]
    adata = visium[:0].copy() if name == "empty" else visium[:, :200].copy()
    adata.X = sparse.csr_matrix(adata.X)
    edit(adata)
    path = write(adata, tmp_path / "bad.h5ad")
    entry = {"h5ad": "bad.h5ad", "image": "lowres"} | entry_changes
    card = {**VISIUM_CARD, "read": read_changes}
    with pytest.raises(BenchError) as err:
        read_section("E", tmp_path, entry, card)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["missing", "truncated"])
def test_unreadable_file(visium, tmp_path, name):
    path = tmp_path / "v.h5ad"
    if name == "truncated":
        data = write(visium[:, :200].copy(), tmp_path / "full.h5ad").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError) as err:
        read_section("E", tmp_path, {"h5ad": "v.h5ad", "image": "lowres"}, VISIUM_CARD)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert ("not found" if name == "missing" else "not a readable .h5ad") in message


def test_counts_layer(visium, tmp_path):
    adata = visium[:, :200].copy()
    adata.layers["counts"] = adata.X.copy()
    adata.X = adata.X / 7  # normalised X next to raw counts, as after scanpy preprocessing
    write(adata, tmp_path / "v.h5ad")
    card = {**VISIUM_CARD, "read": {"layer": "counts"}}
    sec = read_section("E", tmp_path, {"h5ad": "v.h5ad", "image": "lowres"}, card)
    assert sec.counts.sum() == adata.layers["counts"].sum()
