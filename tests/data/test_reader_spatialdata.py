"""The SpatialData reader (``reader = "spatialdata_store"``): stores built here, from a committed
section and from synthetic elements, read back through their own coordinate transformations; the
committed her2st dataset as six stores splits and scores exactly as read directly."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import spatialdata as sd  # noqa: E402  (a declared test dependency)
from spatialdata.models import Image2DModel, PointsModel, ShapesModel, TableModel  # noqa: E402
from spatialdata.transformations import Affine, Identity, Scale  # noqa: E402

from bench.data import cards, splits, stores
from bench.data.fetch import sha256
from bench.data.readers import spatialdata_store as reader
from bench.data.readers.binning import bin_points
from bench.errors import BenchError

DATA = cards.data_dir()
UM_PER_PX = 0.5


def _image(h: int = 200, w: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(3, h, w), dtype=np.uint8)


def _card(**read) -> dict:
    return {"read": {"um_per_px": UM_PER_PX, **read}, "lattice": {"kind": "square"}}


def _points_store(path: Path, flip: bool = False) -> tuple[Path, pd.DataFrame]:
    """Transcripts given in micrometres ("micrometres" = pixels x 0.5), the image in pixels
    placed by Scale(0.5); returns the store and the transcripts in image pixels."""
    rng = np.random.default_rng(1)
    n = 2000
    px = pd.DataFrame(
        {
            "x": rng.uniform(0, 299, n),
            "y": rng.uniform(0, 199, n),
            "gene": pd.Categorical(rng.choice(["A", "B", "C", "NegControlProbe_1"], n)),
        }
    )
    um = px.assign(x=px.x * UM_PER_PX, y=px.y * UM_PER_PX)
    image = Image2DModel.parse(
        _image(),
        dims=("c", "y", "x"),
        transformations={"micrometres": Scale([0.5, 0.5], ("x", "y"))},
    )
    points = PointsModel.parse(
        um, coordinates={"x": "x", "y": "y"}, feature_key="gene",
        transformations={"micrometres": Identity()},
    )  # fmt: skip
    stores.write_store(sd.SpatialData(images={"he": image}, points={"tx": points}), path)
    return path, px


def test_points_are_placed_through_the_store_transformations_and_binned(tmp_path: Path) -> None:
    store, px = _points_store(tmp_path / "s.zarr")
    entry = {"store": "s.zarr", "image": "he", "points": "tx"}
    section = reader.read_section(
        "S", tmp_path, entry, _card(bin_um=10, coordinate_system="micrometres")
    )
    real = px[px.gene != "NegControlProbe_1"]
    genes = np.array(["A", "B", "C"])
    codes = np.searchsorted(genes, real.gene.astype(str))
    row, col, counts = bin_points(
        real.x.to_numpy() * UM_PER_PX, real.y.to_numpy() * UM_PER_PX, 10.0, codes, 3
    )
    assert list(section.genes) == list(genes)
    np.testing.assert_array_equal(section.row, row)
    np.testing.assert_array_equal(section.col, col)
    assert (section.counts != counts).nnz == 0
    assert section.image_size == (300, 200) and section.image.shape == (200, 300, 3)
    assert "dropped" in section.notes[0] and f"{len(px) - len(real):,}" in section.notes[0]


def test_spots_table_keeps_its_grid_and_maps_through_an_affine(tmp_path: Path) -> None:
    """Circles given in a rotated, scaled frame (Affine to "global"), the image in "global"
    by Identity: the reader's positions are the circles' pixels, whatever the frame."""
    rows, cols = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    px = np.c_[40 + 30 * cols, 30 + 30 * rows].astype(float)  # pixel centres
    frame = np.array([[0.0, -2.0, 500.0], [2.0, 0.0, 10.0], [0.0, 0.0, 1.0]])  # px -> frame
    own = px @ frame[:2, :2].T + frame[:2, 2]
    to_global = Affine(np.linalg.inv(frame), input_axes=("x", "y"), output_axes=("x", "y"))
    shapes = ShapesModel.parse(own, geometry=0, radius=np.ones(len(own)),
                               transformations={"global": to_global})  # fmt: skip
    import anndata as ad

    counts = np.random.default_rng(2).poisson(5, size=(len(px), 7))
    obs = pd.DataFrame(
        {"array_row": rows, "array_col": cols, "region": pd.Categorical(["spots"] * len(px)),
         "instance_id": np.arange(len(px))[::-1]},
        index=[f"s{i}" for i in range(len(px))],
    )  # fmt: skip
    table = ad.AnnData(X=counts[::-1].copy(), obs=obs)  # rows in another order than the shapes
    table.var_names = [f"g{i}" for i in range(7)]
    table = TableModel.parse(
        table, region="spots", region_key="region", instance_key="instance_id"
    )
    image = Image2DModel.parse(
        _image(), dims=("c", "y", "x"), transformations={"global": Identity()}
    )
    data = sd.SpatialData(images={"he": image}, shapes={"spots": shapes}, tables={"table": table})
    stores.write_store(data, tmp_path / "spots.zarr")
    card = {"read": {}, "lattice": {"kind": "square", "pitch_um": 55.0}}
    section = reader.read_section("S", tmp_path, {"store": "spots.zarr", "image": "he"}, card)
    grid = np.c_[section.col, section.row, np.ones(len(section.row))]
    np.testing.assert_allclose(grid @ section.to_pixel.T, px[::-1], atol=1e-9)
    np.testing.assert_array_equal(section.counts.toarray(), counts[::-1])


MU = {"coordinate_system": "micrometres"}


@pytest.mark.parametrize(
    ("entry", "read", "says"),
    [
        ({"image": "nope", "points": "tx"}, {"bin_um": 10, **MU}, "no image element 'nope'"),
        ({"image": "he", "points": "nope"}, {"bin_um": 10, **MU}, "no points element 'nope'"),
        ({"image": "he", "points": "tx"}, {"bin_um": 10}, "not placed in coordinate system"),
        ({"image": "he", "points": "tx"}, MU, "set [read].bin_um"),
        ({"image": "he", "table": "table"}, MU, "no table element"),
    ],
)
def test_store_mistakes_are_one_line(tmp_path: Path, entry: dict, read: dict, says: str) -> None:
    _points_store(tmp_path / "s.zarr")
    card = {"read": {"um_per_px": UM_PER_PX, **read}, "lattice": {"kind": "square"}}
    with pytest.raises(BenchError) as err:
        reader.read_section("S", tmp_path, {"store": "s.zarr", **entry}, card)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_missing_or_broken_store_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="store not found"):
        reader.read_section("S", tmp_path, {"store": "x.zarr", "image": "he"}, _card())
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(BenchError, match="not a readable SpatialData store") as err:
        reader.read_section("S", tmp_path, {"store": "x.zarr", "image": "he"}, _card())
    assert "\n" not in str(err.value)


def test_a_folder_digest_is_sha256sum_of_its_files(tmp_path: Path) -> None:
    import hashlib

    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "a" / "0").write_bytes(b"x")
    (tmp_path / "s" / "zarr.json").write_text("{}")
    lines = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {name}\n"
        for name, p in sorted(
            (("a/0", tmp_path / "s/a/0"), ("zarr.json", tmp_path / "s/zarr.json"))
        )
    )
    assert sha256(tmp_path / "s") == hashlib.sha256(lines.encode()).hexdigest()
    before = sha256(tmp_path / "s")
    (tmp_path / "s" / "a" / "0").write_bytes(b"y")
    assert sha256(tmp_path / "s") != before


@pytest.mark.slow
def test_her2st_as_spatialdata_stores_splits_and_scores_as_read_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each committed her2st section written as a store (image, spot circles, counts table);
    a card naming the stores builds a split with the committed split's genes, regions and QC
    threshold, whose LR and HR maps, masks and truth are the direct read's, and bicubic scores
    the same on both. Images come back as stored; the direct reader decodes JPEG at a reduced
    draft scale, so crops agree closely rather than bit for bit."""
    from bench.run.cell import score
    from methods import create

    direct_card = cards.load_card("her2st")
    ids = splits.card_sections(direct_card)
    direct_sections = splits.read_sections(direct_card, DATA, ids)
    folder = tmp_path / "data" / "her2st_sd"
    for sid, section in direct_sections.items():
        stores.section_store(section, folder / f"{sid}.zarr")
    raw = tomllib.loads((direct_card.folder / "card.toml").read_text())
    card_dir = tmp_path / "cards" / "her2st_sd"
    card_dir.mkdir(parents=True)
    lines = ['name = "her2st_sd"', 'title = "her2st as SpatialData stores"',
             'platform = "legacy_st"', 'reader = "spatialdata_store"',
             'citation = "as her2st"', 'licence = "as her2st"', "",
             "[source]", 'repository = "built by this test"', "mirrors = []", "",
             "[lattice]", 'kind = "square"', f"pitch_um = {raw['lattice']['pitch_um']}",
             ""]  # fmt: skip
    lines += ["[split]"] + [f"{k} = {json.dumps(v)}" for k, v in raw["split"].items()]
    lines += ["", "[genes]"] + [f"{k} = {json.dumps(v)}" for k, v in raw["genes"].items()]
    lines += ["", "[sections]"]
    lines += [f'{sid} = {{ store = "{sid}.zarr", image = "image" }}' for sid in ids]
    lines += ["", "[files]"] + [
        f'"{sid}.zarr" = "{sha256(folder / f"{sid}.zarr")}"' for sid in ids
    ]
    (card_dir / "card.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    store_card = cards.load_card("her2st_sd")

    direct_spec = splits.load_spec(direct_card, 2)
    store_spec = splits.make_split(store_card, tmp_path / "data", 2)
    assert store_spec.genes == direct_spec.genes
    assert store_spec.qc_min_totals == direct_spec.qc_min_totals
    assert store_spec.qc_depth_fraction == direct_spec.qc_depth_fraction
    assert {r: (v.section, v.origin) for r, v in store_spec.regions.items()} == {
        r: (v.section, v.origin) for r, v in direct_spec.regions.items()
    }
    direct = splits.materialise(direct_spec, direct_sections)
    sections = splits.read_sections(store_card, tmp_path / "data", ids)
    store = splits.materialise(store_spec, sections)
    for a, b in zip(direct.test, store.test, strict=True):
        np.testing.assert_array_equal(a.lr, b.lr)
        np.testing.assert_array_equal(a.lr_mask, b.lr_mask)
        np.testing.assert_array_equal(a.hr_mask, b.hr_mask)
        x, y = a.image.astype(float).ravel(), b.image.astype(float).ravel()
        r, gap = np.corrcoef(x, y)[0, 1], np.abs(x - y).mean()
        print(f"{a.region}: crops r = {r:.4f}, mean |difference| {gap:.2f} grey levels")
        assert r > 0.9 and gap < 0.05 * 255, f"{a.region}: crops r = {r:.3f}, gap {gap:.1f}"
    for name in ("hr", "scored", "tissue", "totals"):
        np.testing.assert_array_equal(getattr(direct.truth, name), getattr(store.truth, name))
    scores = []
    for split in (direct, store):
        method = create("bicubic")
        method.fit(split.train)
        scores.append(score(split, method.predict(split.test), None, "cpu")[0])
    assert scores[0] == scores[1] and np.isfinite(scores[0]["pcc"])
    shutil.rmtree(folder)
