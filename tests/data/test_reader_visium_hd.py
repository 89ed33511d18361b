"""bench.data.readers.visium_hd on a small Visium HD tree written as Space Ranger lays it out:
``binned_outputs/square_002um``, ``square_008um`` and ``square_016um``, each with its 10x ``.h5``
matrix (the 8 um folder also as MEX) and ``spatial/`` (``tissue_positions.parquet``, scale
factors, hires and lowres PNGs). The 2 um bins are drawn (Poisson counts over a smooth cell
density that also darkens the H&E-like image); the 8 and 16 um folders are their block sums, as
Space Ranger's are. Checked: counts, grid and pixel positions as read; any multiple of a folder's
bin size (4 um from 2 um) summing blocks; bad bin sizes and missing or broken files are one line;
and the tree split and run from the command line."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import synthetic as syn
from PIL import Image
from scipy import io, ndimage, sparse

from bench.data.cards import check_card
from bench.data.readers.visium_hd import read_section
from bench.errors import BenchError

REPO = Path(__file__).resolve().parents[2]
NAME = "synth_visium_hd"
MPP = 0.2738  # um per full-resolution pixel, as a Visium HD microscope image
GRID = (112, 80)  # 2 um bins of the capture area: rows, columns
TISSUE = (8, 104, 8, 72)  # 2 um rows [8, 104) and columns [8, 72) are tissue (16 um aligned)
ORIGIN = np.array([60.0, 50.0])  # full-resolution pixel (x, y) of the grid's corner
THETA = np.deg2rad(0.6)  # the slide's small rotation in the image
FULLRES = (720, 940)  # full-resolution image (width, height)
SCALEF = {"hires": 0.5, "lowres": 0.15}
GENES = [f"Gene{i:02d}" for i in range(11)] + ["mt-Co1"]
BINS = (2, 8, 16)


def _to_px(x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
    """(n, 2) full-resolution pixels (x, y) of points in micrometres of the capture area."""
    c, s = np.cos(THETA), np.sin(THETA)
    return ORIGIN + np.c_[c * x_um - s * y_um, s * x_um + c * y_um] / MPP


def _density(rng: np.random.Generator) -> Callable:
    """A smooth cell density in [0.3, 1] over the capture area (micrometres -> value)."""
    coarse = rng.uniform(0.3, 1.0, size=(GRID[0] * 2 // 10 + 2, GRID[1] * 2 // 10 + 2))
    return lambda x, y: ndimage.map_coordinates(coarse, [y / 10, x / 10], order=1, mode="nearest")


def _barcode(b: int, row: int, col: int) -> str:
    return f"s_{b:03d}um_{row:05d}_{col:05d}-1"


def _write_h5(path: Path, counts: sparse.csr_matrix, barcodes: list[str]) -> None:
    """A 10x (Cell Ranger >= 3) feature-barcode ``.h5``: genes x barcodes CSC under /matrix."""
    csc = sparse.csc_matrix(counts.T)
    with h5py.File(path, "w") as f:
        group = f.create_group("matrix")
        group["barcodes"] = np.array(barcodes, dtype="S")
        group["data"] = csc.data.astype(np.int32)
        group["indices"] = csc.indices.astype(np.int64)
        group["indptr"] = csc.indptr.astype(np.int64)
        group["shape"] = np.array(csc.shape, dtype=np.int32)
        feats = group.create_group("features")
        feats["id"] = np.array([f"ENSMUSG{i:011d}" for i in range(len(GENES))], dtype="S")
        feats["name"] = np.array(GENES, dtype="S")
        feats["feature_type"] = np.full(len(GENES), b"Gene Expression")
        feats["genome"] = np.full(len(GENES), b"GRCm39")
        feats["_all_tag_keys"] = np.array([b"genome"])


def _write_mex(folder: Path, counts: sparse.csr_matrix, barcodes: list[str]) -> None:
    folder.mkdir()
    io.mmwrite(folder / "matrix.mtx", sparse.coo_matrix(counts.T), field="integer")
    (folder / "matrix.mtx.gz").write_bytes(gzip.compress((folder / "matrix.mtx").read_bytes()))
    (folder / "matrix.mtx").unlink()
    ids = [f"ENSMUSG{i:011d}" for i in range(len(GENES))]
    rows = "".join(f"{i}\t{g}\tGene Expression\n" for i, g in zip(ids, GENES, strict=True))
    (folder / "features.tsv.gz").write_bytes(gzip.compress(rows.encode()))
    (folder / "barcodes.tsv.gz").write_bytes(
        gzip.compress("".join(b + "\n" for b in barcodes).encode())
    )


def write_tree(folder: Path, seed: int = 0) -> dict[int, pd.DataFrame]:
    """Space Ranger's ``binned_outputs/`` under ``folder``; returns each bin size's table of
    in-tissue bins (barcode, row, col, counts as a dense (n, genes) array in ``"counts"``)."""
    rng = np.random.default_rng(seed)
    density = _density(rng)
    r0, r1, c0, c1 = TISSUE
    rows, cols = np.mgrid[0 : GRID[0], 0 : GRID[1]]
    rows, cols = rows.ravel(), cols.ravel()
    tissue = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
    means = np.geomspace(1.0, 0.02, len(GENES))
    fine = rng.poisson(np.outer(density(2 * cols + 1.0, 2 * rows + 1.0), means))
    fine[~tissue] = 0
    truth = {}
    for b in BINS:
        f = b // 2
        key = [rows // f, cols // f]
        summed = pd.DataFrame(fine).groupby(key).sum()
        in_tissue = pd.Series(tissue).groupby(key).any()
        r, c = (summed.index.get_level_values(n).to_numpy() for n in (0, 1))
        barcodes = [_barcode(b, i, j) for i, j in zip(r, c, strict=True)]
        px = _to_px((c + 0.5) * b, (r + 0.5) * b)
        spatial = folder / "binned_outputs" / f"square_{b:03d}um" / "spatial"
        spatial.mkdir(parents=True)
        pd.DataFrame(
            {
                "barcode": barcodes,
                "in_tissue": in_tissue.to_numpy().astype(np.int32),
                "array_row": r.astype(np.int32),
                "array_col": c.astype(np.int32),
                "pxl_row_in_fullres": px[:, 1],
                "pxl_col_in_fullres": px[:, 0],
            }
        ).to_parquet(spatial / "tissue_positions.parquet", index=False)
        scale = {
            "spot_diameter_fullres": b / MPP,
            "bin_size_um": float(b),
            "microns_per_pixel": MPP,
            "regist_target_img_scalef": SCALEF["hires"],
            "tissue_lowres_scalef": SCALEF["lowres"],
            "fiducial_diameter_fullres": 160.0 / MPP,
            "tissue_hires_scalef": SCALEF["hires"],
        }
        (spatial / "scalefactors_json.json").write_text(json.dumps(scale, indent=4))
        keep = in_tissue.to_numpy()
        counts = sparse.csr_matrix(summed.to_numpy()[keep])
        kept = [bc for bc, k in zip(barcodes, keep, strict=True) if k]
        _write_h5(spatial.parent / "filtered_feature_bc_matrix.h5", counts, kept)
        if b == 8:
            _write_mex(spatial.parent / "filtered_feature_bc_matrix", counts, kept)
        truth[b] = pd.DataFrame({"barcode": kept, "row": r[keep], "col": c[keep]})
        truth[b]["counts"] = list(summed.to_numpy()[keep])
    _write_images(folder / "binned_outputs", density)
    return truth


def _write_images(binned: Path, density: Callable) -> None:
    """H&E-like PNGs: darker where cells are dense, pale background outside the tissue."""
    inverse = np.linalg.inv(
        np.array([[np.cos(THETA), -np.sin(THETA)], [np.sin(THETA), np.cos(THETA)]])
    )
    r0, r1, c0, c1 = TISSUE
    for kind, s in SCALEF.items():
        w, h = round(FULLRES[0] * s), round(FULLRES[1] * s)
        yy, xx = np.mgrid[0:h, 0:w]
        px = np.c_[(xx.ravel() + 0.5) / s, (yy.ravel() + 0.5) / s] - ORIGIN
        um = (px * MPP) @ inverse.T
        d = density(um[:, 0], um[:, 1])
        inside = (
            (um[:, 1] >= 2 * r0) & (um[:, 1] < 2 * r1) & (um[:, 0] >= 2 * c0) & (um[:, 0] < 2 * c1)
        )
        d = np.where(inside, d, 0.0).reshape(h, w)
        rgb = np.stack([250 - 80 * d, 245 - 190 * d, 250 - 90 * d], axis=-1)
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        for b in BINS:
            image.save(binned / f"square_{b:03d}um" / "spatial" / f"tissue_{kind}_image.png")


def card(bin_um: float = 8, folder: str = "square_008um", **lattice: object) -> dict:
    """The card as far as the reader reads it."""
    base = {"kind": "square", "pitch_um": bin_um, "image_um_per_px": MPP}
    return {
        "read": {"bin_um": bin_um},
        "lattice": {**base, **lattice},
        "sections": {"tissue": {"bins": f"binned_outputs/{folder}"}},
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[int, pd.DataFrame]]:
    folder = tmp_path_factory.mktemp("hd") / NAME
    return folder, write_tree(folder)


def read(folder: Path, bin_um: float = 8, folder_name: str = "square_008um", **entry: object):
    c = card(bin_um, folder_name)
    return read_section("tissue", folder, {**c["sections"]["tissue"], **entry}, c)


def one_line(call, *names: str) -> str:
    """The one-line BenchError message of ``call()``, checked to contain each of ``names``."""
    with pytest.raises(BenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(n in message for n in names), message
    return message


@pytest.mark.parametrize("b", BINS)
def test_reads_each_bin_folder_as_written(tree, b: int) -> None:
    folder, truth = tree
    s = read(folder, b, f"square_{b:03d}um")
    want = truth[b]
    assert s.counts.shape == (len(want), len(GENES)) and s.counts.dtype == np.int64
    assert list(s.genes) == GENES and s.in_tissue.all() and s.notes == ()
    assert (s.row == want["row"].to_numpy()).all() and (s.col == want["col"].to_numpy()).all()
    assert (s.counts.toarray() == np.stack(want["counts"])).all()
    assert s.lattice == "square" and s.pitch_um == (b, b) and s.um_per_px == MPP
    assert s.image_size == FULLRES and s.image.name == "tissue_hires_image.png"
    fitted = s.to_pixel @ np.vstack([s.col, s.row, np.ones(len(s.row))])
    stated = _to_px((s.col + 0.5) * b, (s.row + 0.5) * b).T
    assert np.abs(fitted - stated).max() < 1e-6
    if b == 8:  # 96 x 64 in-tissue 2 um bins make 24 x 16 bins of 8 um
        assert (s.row.min(), s.row.max(), s.col.min(), s.col.max()) == (2, 25, 2, 17)


def test_coarser_bins_sum_blocks_of_finer_ones(tree) -> None:
    folder, truth = tree
    for bin_um, source in ((8, "square_002um"), (16, "square_008um"), (16, "square_002um")):
        made = read(folder, bin_um, source)
        written = read(folder, bin_um, f"square_{bin_um:03d}um")
        assert (made.counts != written.counts).nnz == 0
        assert (made.row == written.row).all() and (made.col == written.col).all()
        assert np.allclose(made.to_pixel, written.to_pixel, atol=1e-6)
        assert len(made.notes) == 1 and "blocks" in made.notes[0]
    four = read(folder, 4, "square_002um")  # a size Space Ranger does not write
    assert four.counts.shape[0] == 48 * 32 and four.counts.sum() == truth[2]["counts"].sum().sum()
    assert four.pitch_um == (4, 4) and four.image_size == FULLRES


def test_mex_matrix_lowres_image_and_full_resolution_image(tree, tmp_path: Path) -> None:
    folder, _ = tree
    h5 = read(folder)
    mex = read(folder, matrix="filtered_feature_bc_matrix", image="lowres")
    assert (mex.counts != h5.counts).nnz == 0 and (mex.row == h5.row).all()
    assert mex.image.name == "tissue_lowres_image.png"  # sized by the PNG / its scale factor
    assert np.abs(np.subtract(mex.image_size, FULLRES)).max() <= 1 / SCALEF["lowres"]
    png = folder / "binned_outputs" / "square_008um" / "spatial" / "tissue_hires_image.png"
    Image.open(png).resize(FULLRES).save(folder / "tissue_image.tif")
    full = read(folder, image="tissue_image.tif")
    assert full.image_size == FULLRES and np.allclose(full.to_pixel, h5.to_pixel)
    half = (FULLRES[0] // 2, FULLRES[1] // 2)  # a half-size copy of it, stated by image_scale
    Image.open(png).resize(half).save(folder / "tissue_image_half.tif")
    assert read(folder, image="tissue_image_half.tif", image_scale=0.5).image_size == FULLRES
    (folder / "tissue_image.tif").unlink()
    (folder / "tissue_image_half.tif").unlink()


def test_bad_bin_sizes_are_one_line(tree) -> None:
    folder, _ = tree
    one_line(lambda: read(folder, 5, "square_002um"), "[read].bin_um = 5", "multiple of 2")
    one_line(lambda: read(folder, 4, "square_008um"), "[read].bin_um = 4", "square_008um")
    c = card(8, pitch_um=16)
    one_line(lambda: read_section("tissue", folder, c["sections"]["tissue"], c), "pitch_um = 16")
    c = card(8, kind="checkerboard")
    one_line(lambda: read_section("tissue", folder, c["sections"]["tissue"], c), "[lattice].kind")
    c = {**card(8), "read": {}}
    one_line(lambda: read_section("tissue", folder, c["sections"]["tissue"], c), "[read].bin_um")


def test_the_card_check_names_the_key(tmp_path: Path) -> None:
    where = tmp_path / NAME / "card.toml"
    raw = example_card({}, 8, "square_008um")
    raw["files"] = dict.fromkeys(raw["files"], "0" * 64)
    check_card(where, NAME, raw)
    for bin_um, source, key in (
        (6, "square_008um", "[read].bin_um = 6"),
        (3, "square_002um", "multiple of 2"),
    ):
        bad = example_card({}, bin_um, source)
        bad["files"] = dict.fromkeys(bad["files"], "0" * 64)
        one_line(lambda bad=bad: check_card(where, NAME, bad), str(where), key)
    bad = {**raw, "lattice": {**raw["lattice"], "pitch_um": 16}}
    one_line(lambda: check_card(where, NAME, bad), str(where), "[lattice].pitch_um = 16")
    sections = {"tissue": {**raw["sections"]["tissue"], "image": "hire"}}
    one_line(lambda: check_card(where, NAME, {**raw, "sections": sections}), "image = 'hire'")
    files = {k: v for k, v in raw["files"].items() if not k.endswith(".parquet")}
    one_line(lambda: check_card(where, NAME, {**raw, "files": files}), "tissue_positions.parquet")


def test_missing_or_broken_files_are_one_line(tree, tmp_path: Path) -> None:
    folder, _ = tree
    copy = tmp_path / NAME
    spatial = copy / "binned_outputs" / "square_008um" / "spatial"
    for path in (folder / "binned_outputs" / "square_008um").rglob("*"):
        target = copy / path.relative_to(folder)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    positions = spatial / "tissue_positions.parquet"
    table = pd.read_parquet(positions)
    table[table["in_tissue"] == 0].to_parquet(positions, index=False)
    one_line(lambda: read(copy), str(positions), "no position")
    table.drop(columns="pxl_row_in_fullres").to_parquet(positions, index=False)
    one_line(lambda: read(copy), str(positions), "pxl_row_in_fullres")
    positions.write_bytes(b"PAR1 truncated")
    one_line(lambda: read(copy), str(positions), "unreadable")
    positions.unlink()
    one_line(lambda: read(copy), str(positions), "not found")
    table.to_parquet(positions, index=False)
    scale = spatial / "scalefactors_json.json"
    values = json.loads(scale.read_text())
    scale.write_text(json.dumps({**values, "bin_size_um": 2.0}))
    one_line(lambda: read(copy), str(scale), "bin_size_um = 2 for", "square_008um")
    scale.write_text(json.dumps({**values, "microns_per_pixel": 3 * MPP}))
    assert "the reader states" in one_line(lambda: read(copy), str(positions))
    del values["microns_per_pixel"], values["spot_diameter_fullres"]
    scale.write_text(json.dumps(values))
    one_line(lambda: read(copy), str(scale), "microns_per_pixel")
    scale.write_text("{not json")
    one_line(lambda: read(copy), str(scale), "unreadable scale factors")
    h5 = spatial.parent / "filtered_feature_bc_matrix.h5"
    h5.write_bytes(h5.read_bytes()[:3000])
    scale.write_text(json.dumps({**values, "spot_diameter_fullres": 8 / MPP}))
    assert read(copy, matrix="filtered_feature_bc_matrix").um_per_px == pytest.approx(MPP)
    one_line(lambda: read(copy), str(h5), "unreadable matrix")
    mtx = spatial.parent / "filtered_feature_bc_matrix" / "matrix.mtx.gz"
    mtx.unlink()
    one_line(lambda: read(copy, matrix="filtered_feature_bc_matrix"), str(mtx), "not found")
    (spatial / "tissue_hires_image.png").unlink()
    one_line(lambda: read(copy), "tissue_hires_image.png", "not found")


# ---------------------------------------------------------------- end to end from the CLI


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def example_card(files: dict[str, str], bin_um: float = 8, source: str = "square_008um") -> dict:
    """A whole card: 8 um HR bins, k = 2 (16 um LR), tiles of 8 x 8 HR bins (64 um)."""
    bins = f"binned_outputs/{source}"
    paths = [
        f"{bins}/filtered_feature_bc_matrix.h5",
        f"{bins}/spatial/tissue_positions.parquet",
        f"{bins}/spatial/scalefactors_json.json",
        f"{bins}/spatial/tissue_hires_image.png",
    ]
    return {
        "name": NAME,
        "title": "synthetic Visium HD for tests",
        "platform": "visium_hd",
        "reader": "visium_hd",
        "citation": "synthetic",
        "licence": "synthetic",
        "source": {"repository": "none", "mirrors": []},
        "read": {"bin_um": bin_um},
        "lattice": {"kind": "square", "pitch_um": bin_um, "image_um_per_px": MPP},
        "split": {
            "regions": "tiles",
            "sections": ["tissue"],
            "canvas": [8, 8],
            "min_tissue": 0.25,
            "test_fraction": 0.25,
            "pooling": [2],
            "default_pooling": 2,
            "image_px": 4,
            "normalisation": "log1p_area",
        },
        "genes": {
            "n": 5,
            "exclude_prefixes": ["mt-"],
            "rule": "top 5 by mean log1p(counts per bin)",
        },
        "sections": {"tissue": {"bins": bins, "image": "hires"}},
        "files": {p: files.get(p, "<sha256>") for p in paths},
    }


@pytest.mark.slow
@pytest.mark.subprocess
def test_split_and_run_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = data / NAME
    write_tree(folder)
    raw = example_card({})
    raw["files"] = {p: sha256(folder / p) for p in raw["files"]}
    (tmp_path / "cards" / NAME).mkdir(parents=True)
    (tmp_path / "cards" / NAME / "card.toml").write_text(syn.to_toml(raw))
    env = {
        **os.environ,
        "STSR_DATASETS_DIR": str(tmp_path / "cards"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env["STSR_CACHE_DIR"] = str(tmp_path / "cache")

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bench", *args, "--data-dir", str(data)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    split = bench("split", "--datasets", NAME)
    assert split.returncode == 0, split.stderr[-2000:]
    assert "warning" not in split.stderr  # the image sits on the bins as placed (registration)
    spec = json.loads((tmp_path / "cards" / NAME / "split-k2.json").read_text())
    assert spec["train"] and spec["test"] and "mt-Co1" not in spec["genes"]
    run = bench(
        "run", "--datasets", NAME, "--methods", "bicubic", "--seeds", "0", "--jobs", "1",
        "--results-dir", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "LB.md"),
        "--no-progress",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((tmp_path / "results" / NAME / "bicubic" / "seed-0.json").read_text())
    assert record["status"] == "ok", record.get("error")
    assert np.isfinite(record["metrics"]["pcc"]) and np.isfinite(record["metrics"]["rmse"])
