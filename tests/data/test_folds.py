"""Cross-validation folds: every region tested once, test kept apart from fitting and validation.

The checks of the committed fold files read their JSON and the cards only; the tests that read
real data (rebuilding a fold's genes from its training regions) are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib

import numpy as np
import pytest
import synthetic as syn
from scipy import sparse

from bench import cli
from bench.data import cards, folds, splits
from bench.data.section import Section
from bench.errors import BenchError

DATASETS = cards.dataset_names()


def _committed() -> list[tuple[str, int]]:
    """(dataset, k) of every committed set of fold files."""
    out = []
    for name in DATASETS:
        card = cards.load_card(name)
        out += [(name, k) for k in card.split["pooling"] if splits.fold_count(card, k)]
    return out


COMMITTED = _committed()


def _touch(a: splits.RegionRef, b: splits.RegionRef, canvas: tuple[int, int]) -> bool:
    """Two windows of one section share an edge or a corner, or overlap."""
    return (
        a.section == b.section
        and abs(a.origin[0] - b.origin[0]) <= canvas[0]
        and abs(a.origin[1] - b.origin[1]) <= canvas[1]
    )


def _validation(spec: splits.SplitSpec) -> list[str]:
    """The fold's validation carve, by :attr:`Split.validation` itself (ids stand in for
    samples)."""
    return splits.Split(spec, list(spec.train), [], np.zeros(0)).validation


def test_every_dataset_has_fold_files_at_its_default_k() -> None:
    for name in DATASETS:
        card = cards.load_card(name)
        n = splits.fold_count(card, card.split["default_pooling"])
        want = card.split.get("folds") or len(card.split.get("train", ())) + len(
            card.split.get("test", ())
        )
        assert n == want >= (2 if card.split.get("regions") != "tiles" else 4), name


def test_every_k_has_fold_files_with_the_same_roles_for_the_ladder() -> None:
    """The pooling ladder of a folded dataset is its fold 0 at every k (bench.board.ladder):
    every committed k has fold files, and fold i trains, tests and leaves out the same regions
    at every k, so the ladder's rungs differ only in k."""
    for name in DATASETS:
        card = cards.load_card(name)
        ks = [int(k) for k in card.split["pooling"]]
        roles = {
            k: [(s.train, s.test, s.excluded) for s in splits.fold_specs(card, k)] for k in ks
        }
        assert all(roles[k] == roles[ks[0]] for k in ks), name


@pytest.mark.parametrize("name,k", COMMITTED, ids=[f"{n}-k{k}" for n, k in COMMITTED])
def test_committed_folds_test_every_region_once_and_never_train_on_it(name, k) -> None:
    card = cards.load_card(name)
    specs = splits.fold_specs(card, k)  # fingerprints, inputs, k, fold index checked here
    plain = splits.load_spec(card, k)
    tested: list[str] = []
    for i, spec in enumerate(specs):
        assert spec.fingerprint == splits.fingerprint(spec.to_json())
        assert (spec.fold, spec.folds, spec.k, spec.dataset) == (i, len(specs), k, name)
        assert spec.regions == plain.regions  # the split's regions, other roles
        assert spec.inputs == card.files
        assert spec.test, f"fold {i} tests nothing"
        assert set(spec.test).isdisjoint(spec.train)
        assert set(spec.test).isdisjoint(spec.excluded)
        assert set(spec.train).isdisjoint(spec.excluded)
        assert set(spec.train) | set(spec.test) | set(spec.excluded) == set(spec.regions)
        assert len(spec.train) == len(set(spec.train))
        carve = _validation(spec)
        assert carve, f"fold {i} has an empty validation carve"
        fit = spec.train[: len(spec.train) - len(carve)]
        assert fit and set(fit).isdisjoint(spec.test) and set(carve).isdisjoint(spec.test)
        assert len(spec.genes) == len(set(spec.genes)) == card.raw["genes"]["n"]
        tested += spec.test
    assert sorted(tested) == sorted(plain.regions), "every region is tested exactly once"
    labels = [s.label for s in specs]
    assert len(set(labels)) == len(labels) and plain.label not in labels
    assert len({s.fingerprint for s in specs}) == len(specs)


@pytest.mark.parametrize("name,k", COMMITTED, ids=[f"{n}-k{k}" for n, k in COMMITTED])
def test_committed_tile_folds_keep_test_tiles_away_from_fitting_tiles(name, k) -> None:
    card = cards.load_card(name)
    specs = splits.fold_specs(card, k)
    if card.split.get("regions") != "tiles":
        for spec in specs:  # separate sections: nothing to buffer
            assert spec.excluded == ()
        return
    for spec in specs:
        for t in spec.test:
            for r in spec.train:  # fit and validation alike
                assert not _touch(spec.regions[t], spec.regions[r], spec.canvas), (t, r)
        # the buffer is no larger than needed: every excluded tile touches a test tile
        for x in spec.excluded:
            assert any(_touch(spec.regions[x], spec.regions[t], spec.canvas) for t in spec.test)


def test_her2st_folds_one_per_section_and_patient_b() -> None:
    card = cards.load_card("her2st")
    specs = splits.fold_specs(card, card.split["default_pooling"])
    order = card.split["train"] + card.split["test"]
    assert [s.test for s in specs] == [(sid,) for sid in order]
    for spec in specs:
        assert spec.train == tuple(s for s in order if s not in spec.test)  # card order
    b4 = specs[order.index("B4")]
    assert all(sid.startswith("C") for sid in b4.train)  # B4's fold trains on patient C only
    for spec in specs:
        if spec is not b4:
            assert spec.train[0] == "B4" and "B4" not in _validation(spec)


def test_fold_files_keep_split_files_bytes_and_labels() -> None:
    for name in DATASETS:
        card = cards.load_card(name)
        for k in card.split["pooling"]:
            spec = splits.load_spec(card, k)
            assert spec.fold is None and spec.folds is None and spec.excluded is None
            text = json.dumps(spec.to_json(), indent=1) + "\n"
            assert text == card.split_path(k).read_text()
    spec = splits.load_spec(cards.load_card("her2st"), 2)
    assert spec.label == "her2st"
    assert dataclasses.replace(spec, fold=0, folds=6).label == "her2st-f0"
    assert dataclasses.replace(spec, k=3, fold=1, folds=6).label == "her2st-k3-f1"


def test_tampered_or_missing_fold_files_are_refused(tmp_path) -> None:
    card = cards.load_card("her2st")
    fake = cards.Card(name=card.name, raw=card.raw, folder=tmp_path)
    others = shutil.ignore_patterns("split-k3-*", "split-k4-*")  # k = 2's folds only
    shutil.copytree(card.folder / splits.FOLDS_DIR, tmp_path / splits.FOLDS_DIR, ignore=others)
    assert len(splits.fold_specs(fake, 2)) == 6
    last = splits.fold_path(fake, 2, 5)
    kept = last.read_bytes()
    last.unlink()  # the last fold gone: the others still say six
    with pytest.raises(BenchError, match="says 6 folds beside 5"):
        splits.fold_specs(fake, 2)
    last.write_bytes(kept)
    path = splits.fold_path(fake, 2, 1)
    raw = json.loads(path.read_text())
    raw["train"] = [*raw["train"], *raw["test"]]  # a test region slipped into training
    path.write_text(json.dumps(raw))
    with pytest.raises(BenchError, match="fingerprint does not match"):
        splits.load_spec(fake, 2, 1)
    raw["fingerprint"] = splits.fingerprint(raw)  # even with a matching fingerprint
    path.write_text(json.dumps(raw))
    with pytest.raises(BenchError, match="exactly once"):
        splits.load_spec(fake, 2, 1)
    splits.fold_path(fake, 2, 3).unlink()
    with pytest.raises(BenchError, match="not f0"):
        splits.fold_specs(fake, 2)
    with pytest.raises(BenchError, match="no committed fold 0"):
        splits.load_spec(fake, 3, 0)
    with pytest.raises(BenchError, match="no committed fold files"):
        splits.fold_specs(fake, 4)


# --- block assignment on synthetic grids (no data) ---


def test_balanced_groups_are_contiguous_and_even() -> None:
    assert folds.balanced_groups([1] * 6, 6) == [0, 1, 2, 3, 4, 5]
    assert folds.balanced_groups([1] * 6, 3) == [0, 0, 1, 1, 2, 2]
    counts = [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]  # sums 6, 5, 6, 6
    assert folds.balanced_groups(counts, 4) == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError):
        folds.balanced_groups([1, 1], 3)


def _ring(a, b) -> int:
    """Chebyshev distance of two tile cells (1: they share an edge or a corner)."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]))


def _check_blocks(cells, n, cell_um=(1.0, 1.0)):
    block, shape = folds.tile_blocks(cells, n, cell_um)
    assert sorted(set(block)) == list(range(n))  # every block used, every tile in one block
    tested = []
    for test, buffer in folds.tile_folds(cells, block, n):
        tested += sorted(test)
        train = set(cells) - test - buffer
        assert buffer.isdisjoint(test)
        for c in cells:  # the buffer is exactly the 8-neighbourhood of the test block
            near = c not in test and any(_ring(c, t) == 1 for t in test)
            assert (c in buffer) == near, c
        assert all(_ring(a, b) >= 2 for a in test for b in train)
    assert sorted(tested) == sorted(cells)
    return block, shape


def test_square_grid_makes_a_two_by_two_grid_of_blocks() -> None:
    cells = [(a, b) for a in range(6) for b in range(6)]
    block, shape = _check_blocks(cells, 4)
    assert shape == (2, 2)
    assert [block.count(i) for i in range(4)] == [9, 9, 9, 9]
    assert block[cells.index((0, 0))] == 0 and block[cells.index((5, 5))] == 3


def test_long_grid_makes_bands_across_its_long_axis() -> None:
    cells = [(a, b) for a in range(2) for b in range(12)]
    _, shape = _check_blocks(cells, 4)
    assert shape == (1, 4)
    # the same grid, tiles four times taller than wide in um: bands the other way are squarer
    _, shape = _check_blocks([(b, a) for a, b in cells], 4, (1.0, 1.0))
    assert shape == (4, 1)
    _, shape = _check_blocks(cells, 4, (6.0, 1.0))
    assert shape == (2, 2)


def test_irregular_grid_is_covered_once() -> None:
    rng = np.random.default_rng(0)
    cells = [(a, b) for a in range(7) for b in range(9) if rng.random() < 0.7]
    for n in (2, 3, 4, 6):
        _check_blocks(cells, n)
    with pytest.raises(BenchError, match="lower"):
        folds.tile_blocks(cells[:3], 4)


def _section(sid: str, shape: tuple[int, int]) -> Section:
    rows, cols = np.indices(shape).reshape(2, -1)
    n = len(rows)
    return Section(
        id=sid,
        counts=sparse.csr_matrix(np.ones((n, 1), dtype=np.int32)),
        genes=np.array(["g0"]),
        row=rows,
        col=cols,
        in_tissue=np.ones(n, dtype=bool),
        to_pixel=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        image=np.zeros((1, 1, 3), dtype=np.uint8),
        image_size=(1, 1),
        pitch_um=(1.0, 1.0),
        um_per_px=None,
    )


def test_tile_layouts_cover_each_tile_once_with_a_buffer() -> None:
    sections = {"a": _section("a", (24, 24)), "b": _section("b", (8, 32))}
    cfg = {
        "regions": "tiles",
        "sections": ["a", "b"],
        "canvas": [4, 4],
        "min_tissue": 0.25,
        "test_fraction": 0.25,
        "folds": 4,
    }
    layouts = folds.fold_layouts(sections, cfg)
    regions = layouts[0]["regions"]
    assert len(regions) == 36 + 16
    tested = [r for lay in layouts for r in lay["test"]]
    assert sorted(tested) == sorted(regions)
    for lay in layouts:
        assert {regions[r]["section"] for r in lay["test"]} == {"a", "b"}  # a block of each
        assert len(lay["train"]) >= 2 and lay["fold"] in range(4) and lay["folds"] == 4
        refs = {r: splits.RegionRef(v["section"], tuple(v["origin"])) for r, v in regions.items()}
        for t in lay["test"]:
            assert not any(_touch(refs[t], refs[r], (4, 4)) for r in lay["train"])
        assert list(lay["train"]) == [r for r in regions if r in lay["train"]]  # split order
    cfg["folds"] = 9
    with pytest.raises(BenchError, match="lower"):
        folds.fold_layouts({"b": sections["b"]}, dict(cfg, sections=["b"]))


def test_section_layouts_group_sections_in_card_order() -> None:
    sections = {s: _section(s, (6, 6)) for s in ("p", "q", "r", "s", "t")}
    cfg = {"regions": "sections", "train": ["p", "q", "r"], "test": ["s", "t"], "canvas": [8, 8]}
    layouts = folds.fold_layouts(sections, cfg)
    assert [lay["test"] for lay in layouts] == [["p"], ["q"], ["r"], ["s"], ["t"]]
    assert layouts[0]["train"] == ["q", "r", "s", "t"] and layouts[0]["excluded"] == []
    layouts = folds.fold_layouts(sections, dict(cfg, folds=2))
    assert [lay["test"] for lay in layouts] == [["p", "q"], ["r", "s", "t"]]


def test_card_folds_key_is_checked() -> None:
    from bench.data.cards import check_card

    path = cards.CARDS_DIR / "her2st" / "card.toml"
    raw = tomllib.loads(path.read_text())
    raw["split"]["folds"] = 7  # more folds than her2st's six sections
    with pytest.raises(BenchError, match=r"\[split\]\.folds = 7"):
        check_card(path, "her2st", raw)
    raw["split"]["folds"] = 1
    with pytest.raises(BenchError, match=r"\[split\]\.folds"):
        check_card(path, "her2st", raw)


def test_split_folds_command_writes_checked_fold_files(tmp_path, monkeypatch, capsys) -> None:
    """``bench split --folds`` on a small synthetic tiles dataset: one file per fold, each
    loading and checked; fewer folds later removes the files of the folds that no longer exist;
    the split file is left alone."""
    monkeypatch.setenv("STSR_DATASETS_DIR", str(tmp_path / "cards"))
    ds = syn.transcripts(tmp_path / "cards", tmp_path / "data")
    ds.card["split"]["folds"] = 4
    ds.write_card()
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli.main(["split", "--datasets", ds.name, "--folds", *data]) == 0
    card = cards.load_card(ds.name)
    specs = splits.fold_specs(card, 2)
    assert [s.fold for s in specs] == [0, 1, 2, 3] and not card.split_path(2).exists()
    assert sorted(r for s in specs for r in s.test) == sorted(specs[0].regions)
    assert f"{ds.name}: {splits.fold_path(card, 2, 3)} fingerprint" in capsys.readouterr().out
    ds.card["split"]["folds"] = 2
    ds.write_card()
    assert cli.main(["split", "--datasets", ds.name, "--folds", *data]) == 0
    assert "removed" in capsys.readouterr().out
    assert [s.folds for s in splits.fold_specs(cards.load_card(ds.name), 2)] == [2, 2]


# --- real data (slow) ---


@pytest.mark.slow
def test_her2st_fold_genes_ignore_the_test_section(root, monkeypatch) -> None:
    """Rebuilt from the data, the committed folds come back; scrambling B4 (fold 0's test
    section) leaves fold 0's genes and QC fraction unchanged, and its fingerprint but for B4's
    QC threshold (read from B4's LR input), and changes the others' genes."""
    card = cards.load_card("her2st")
    sections = splits.read_sections(card, root, splits.card_sections(card))
    committed = splits.fold_specs(card, 2)
    assert folds.make_folds(card, root, 2, sections) == committed
    rng = np.random.default_rng(0)
    b4 = sections["B4"]
    noise = sparse.csr_matrix(rng.poisson(5.0, size=b4.counts.shape).astype(np.int32))
    scrambled = dict(sections, B4=dataclasses.replace(b4, counts=noise))
    rebuilt = folds.make_folds(card, root, 2, scrambled)
    assert rebuilt[0].genes == committed[0].genes
    assert rebuilt[0].qc_depth_fraction == committed[0].qc_depth_fraction
    same_qc = dataclasses.replace(rebuilt[0], qc_min_totals=committed[0].qc_min_totals)
    assert splits.fingerprint(same_qc) == committed[0].fingerprint
    assert all(r.genes != c.genes for r, c in zip(rebuilt[1:], committed[1:], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["visium_cytassist_mouse_embryo", "xenium_bone_marrow"])
def test_tile_fold_genes_come_from_its_training_tiles(name, root) -> None:
    """Each fold's genes are the gene rule run on its training tiles alone, and the fold
    materialises (buffer tiles are in neither train nor test)."""
    card = cards.load_card(name)
    k = card.split["default_pooling"]
    sections = splits.read_sections(card, root, splits.card_sections(card))
    gene_cfg = card.raw["genes"]
    for spec in splits.fold_specs(card, k):
        train = [(sections[spec.regions[r].section], spec.regions[r].origin) for r in spec.train]
        genes = splits.select_genes(
            train,
            list(sections.values()),
            spec.canvas,
            gene_cfg["n"],
            spec.normalisation,
            tuple(gene_cfg.get("exclude_prefixes", splits.GENE_EXCLUDE)),
            splits.gene_table(card, root),
        )
        assert tuple(genes) == spec.genes
    split = splits.materialise(spec, sections)
    assert [s.region for s in split.train] == list(spec.train)
    assert [s.region for s in split.test] == list(spec.test)
    assert split.validation and split.fit
