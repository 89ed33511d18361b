"""A user's own data, end to end through ``$STSR_DATASETS_DIR`` cards and the command line, without
editing the data: MERSCOPE, CosMx (two fields of view), any lab's table and a legacy ST 2k
checkerboard array are split and run (``mean``, ``bicubic``); a checkerboard cell is exported and
opened with scanpy, its positions checked against the spot table and drawn headless with
``sc.pl.spatial``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic as syn

from bench import cli

MAKERS = {
    "synth_merscope": syn.merscope,
    "synth_cosmx": syn.cosmx,
    "synth_table": syn.generic_table,
    "synth_st2k": syn.legacy_st_2k,
}


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    """Four user datasets split and run once; returns the folder holding cards, data, results."""
    tmp = tmp_path_factory.mktemp("user")
    mp = pytest.MonkeyPatch()
    mp.setenv("STSR_DATASETS_DIR", str(tmp / "cards"))
    mp.setenv("STSR_CACHE_DIR", str(tmp / "cache"))
    for make in MAKERS.values():
        make(tmp / "cards", tmp / "data")
    data = ["--data-dir", str(tmp / "data")]
    for name in MAKERS:
        assert cli.main(["split", "--datasets", name, *data]) == 0
    status = cli.main(
        ["run", "--datasets", ",".join(MAKERS), "--methods", "mean,bicubic", *data,
         "--results-dir", str(tmp / "results"), "--leaderboard", str(tmp / "LB.md"),
         "--no-progress"]
    )  # fmt: skip
    assert status == 0
    yield tmp
    mp.undo()


@pytest.mark.parametrize("name", list(MAKERS))
def test_user_card_splits_and_runs(user: Path, name: str) -> None:
    spec = json.loads((user / "cards" / name / "split-k2.json").read_text())
    assert spec["train"] and spec["test"]
    for method in ("mean", "bicubic"):
        record = json.loads((user / "results" / name / method / "seed-0.json").read_text())
        assert record["status"] == "ok", record.get("error")
        assert np.isfinite(record["metrics"]["rmse"])


def test_transcript_splits_report_dropped_controls_and_honour_test_fraction(user: Path) -> None:
    for name, probe in (("synth_merscope", "BLANK*"), ("synth_cosmx", "NegPrb*")):
        spec = json.loads((user / "cards" / name / "split-k2.json").read_text())
        assert any(probe in note and "dropped" in note for note in spec["notes"]), spec["notes"]
        n = len(spec["train"]) + len(spec["test"])
        assert len(spec["test"]) == -(-n // 4), (name, n, len(spec["test"]))


def _export(user: Path, out: Path) -> None:
    """``bench export`` of the checkerboard dataset's bicubic cell to ``out`` (exit 0)."""
    args = ["export", "--dataset", "synth_st2k", "--method", "bicubic", "--data-dir"]
    args += [str(user / "data"), "--results-dir", str(user / "results"), "--out", str(out)]
    mp = pytest.MonkeyPatch()
    mp.setenv("STSR_DATASETS_DIR", str(user / "cards"))
    mp.setenv("STSR_CACHE_DIR", str(user / "cache"))
    try:
        assert cli.main(args) == 0
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def exported(user: Path):
    import anndata as ad

    out = user / "export" / "st2k.h5ad"
    _export(user, out)
    return ad.read_h5ad(out)


def test_checkerboard_export_has_only_real_spots_at_their_centres(user: Path, exported) -> None:
    obs = exported.obs
    assert ((obs.grid_row + obs.grid_col) % 2 == 0).all()  # the array's parity only
    assert len(obs) > 0 and obs.measured.any()
    spots = pd.read_csv(user / "data" / "synth_st2k" / "spots" / "B1_selection.tsv", sep="\t")
    centre = {(y, x): (px, py) for x, y, px, py in spots[["x", "y", "pixel_x", "pixel_y"]].values}
    b1 = exported[exported.obs.library_id == "B1"]
    for (row, col), xy in zip(
        b1.obs[["grid_row", "grid_col"]].values, b1.obsm["spatial"], strict=True
    ):
        np.testing.assert_allclose(xy, centre[(row, col)], atol=1e-6)
    um = exported.uns["spatial"]["B1"]["metadata"]["um_per_px"]
    assert um == pytest.approx(10.0, rel=1e-3)
    np.testing.assert_allclose(exported.obsm["spatial_um"], exported.obsm["spatial"] * um)
    spot = exported.uns["spatial"]["B1"]["scalefactors"]["spot_diameter_fullres"]
    assert spot == pytest.approx(10.0, rel=1e-3)  # neighbours 100 um apart at 10 um/px


def test_export_opens_in_scanpy_and_draws_without_spot_size(exported, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    assert not np.isnan(exported.layers["truth"]).any()
    sc.pp.pca(exported, n_comps=2, layer="truth")
    lib = "B1"
    one = exported[exported.obs.library_id == lib].copy()
    axes = sc.pl.spatial(one, library_id=lib, color=one.var_names[0], show=False)
    axes[0].figure.savefig(tmp_path / "spatial.png")
    assert (tmp_path / "spatial.png").stat().st_size > 1000
    (spots,) = [c for c in axes[0].collections if len(c.get_paths()) == one.n_obs]
    centres = np.array([(p.vertices.min(0) + p.vertices.max(0)) / 2 for p in spots.get_paths()])
    scalef = one.uns["spatial"][lib]["scalefactors"]["tissue_hires_scalef"]
    want = one.obsm["spatial"] * scalef  # the spots drawn on the image (scanpy sorts them)
    order = lambda a: a[np.lexsort((a[:, 1].round(3), a[:, 0].round(3)))]  # noqa: E731
    np.testing.assert_allclose(order(centres), order(want), atol=1e-3)


def test_leaderboard_names_tiles_and_the_cards_folder(user: Path) -> None:
    page = (user / "LB.md").read_text()
    assert f"STSR_DATASETS_DIR={user / 'cards'} python -m bench run" in page
    by_dataset = {part.split(" ", 1)[0]: part for part in page.split("\n## ")[1:]}
    assert "Regions are tiles" in by_dataset["synth_merscope"]
    assert "Regions are whole sections" in by_dataset["synth_st2k"]


def test_export_as_spatialdata_store_aligns_positions_lr_and_image(user: Path, exported) -> None:
    """``--out x.zarr`` writes a SpatialData store: the prediction table equals the AnnData
    export, its circles sit at ``obsm["spatial"]`` in "global", each LR spot at the centre of its
    k x k HR block, and the image lands on the positions it was cut from."""
    from spatialdata import read_zarr
    from spatialdata.transformations import get_transformation

    out = user / "export" / "st2k.zarr"
    _export(user, out)
    store = read_zarr(out)
    table = store.tables["prediction"]
    np.testing.assert_array_equal(table.X, exported.X)
    np.testing.assert_array_equal(table.layers["truth"], exported.layers["truth"])
    assert set(store.images) == {f"{s}_image" for s in exported.obs.library_id.cat.categories}
    b1 = (table.obs.library_id == "B1").to_numpy()
    circles = store.shapes["B1_hr"]
    xy = np.c_[circles.geometry.x, circles.geometry.y][table.obs.instance_id[b1]]
    np.testing.assert_allclose(xy, exported.obsm["spatial"][b1])
    image = store.images["B1_image"]
    scale = get_transformation(image, "global").to_affine_matrix(("x", "y"), ("x", "y"))
    scalef = exported.uns["spatial"]["B1"]["scalefactors"]["tissue_hires_scalef"]
    np.testing.assert_allclose(np.diag(scale)[:2], [1 / scalef] * 2)
    stored = np.moveaxis(np.asarray(image.values), 0, 2)
    np.testing.assert_array_equal(stored, exported.uns["spatial"]["B1"]["images"]["hires"])
    lr = store.tables["lr"]
    assert lr.n_vars == exported.n_vars and lr.n_obs > 0
    k = json.loads((user / "cards" / "synth_st2k" / "split-k2.json").read_text())["k"]
    lr_xy = store.shapes["B1_lr"].geometry
    for _, spot in lr.obs[lr.obs.library_id == "B1"].iloc[:5].iterrows():
        obs = exported.obs
        block = (obs.region == spot.region) & (obs.hr_row // k == spot.lr_row)
        block &= obs.hr_col // k == spot.lr_col
        # every real position under an LR spot is exported; on the 2k array's checkerboard
        # with k = 2 they are a diagonal pair, whose mean is the block's centre as well
        want = exported.obsm["spatial"][block.to_numpy()].mean(0)
        got = [lr_xy.x.iloc[spot.instance_id], lr_xy.y.iloc[spot.instance_id]]
        np.testing.assert_allclose(got, want, atol=1e-6)
