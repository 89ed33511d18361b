"""Every dataset card: committed splits rebuilt exactly, spatially blocked regions, exact pooling
on hexagonal and binned grids, the split cache and the AnnData export."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from bench.data import cache, cards, splits
from bench.data.regions import sites
from bench.errors import BenchError
from bench.run import export

SPLITS = [
    (name, k) for name in cards.dataset_names() for k in cards.load_card(name).split["pooling"]
]


@pytest.fixture(scope="module")
def sections(root):
    """Every card's sections, read once."""
    out = {}
    for name in cards.dataset_names():
        card = cards.load_card(name)
        out[name] = splits.read_sections(card, root, splits.card_sections(card))
    return out


@pytest.fixture(scope="module")
def built(root, sections):
    """The default split of every dataset, materialised from the sections read once."""
    return {
        name: splits.materialise(
            splits.load_spec(
                cards.load_card(name), cards.load_card(name).split["default_pooling"]
            ),
            sections[name],
        )
        for name in cards.dataset_names()
    }


def test_three_real_datasets_have_cards():
    assert {"her2st", "visium_cytassist_mouse_embryo", "xenium_bone_marrow"} <= set(
        cards.dataset_names()
    )


@pytest.mark.parametrize("name,k", SPLITS)
def test_committed_split_is_rebuilt_exactly_on_another_day(name, k, root, sections, monkeypatch):
    """Nothing of the clock, time zone or working folder enters a split (same bytes, same hash)."""
    card = cards.load_card(name)
    monkeypatch.setattr(splits, "read_sections", lambda *a, **kw: sections[name])
    first = splits.make_split(card, root, k)
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    monkeypatch.chdir(root)
    second = splits.make_split(card, root, k)
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    assert first == splits.load_spec(card, k)


@pytest.mark.parametrize("name", ["visium_cytassist_mouse_embryo", "xenium_bone_marrow"])
def test_tiles_are_disjoint_and_spatially_blocked(name, built, sections):
    split = built[name]
    spec = split.spec
    h, w = spec.canvas
    assert set(spec.train).isdisjoint(spec.test) and spec.test
    boxes = {r: spec.regions[r].origin for r in spec.train + spec.test}
    for a in boxes:  # no two regions share an HR position
        for b in boxes:
            if a < b:
                ra, ca = boxes[a]
                rb, cb = boxes[b]
                assert abs(ra - rb) >= h or abs(ca - cb) >= w
    section = next(iter(sections[name].values()))
    rows, cols = section.row[section.in_tissue], section.col[section.in_tissue]
    extent = ((np.ptp(rows) + 1) * section.pitch_um[0], (np.ptp(cols) + 1) * section.pitch_um[1])
    axis = 0 if extent[0] >= extent[1] else 1
    # blocked: every test tile lies beyond every training tile along the long axis
    assert max(boxes[r][axis] for r in spec.train) < min(boxes[r][axis] for r in spec.test)
    assert len(spec.test) >= 0.25 * len(boxes)


def test_hexagonal_lattice_is_kept_exact(built, sections):
    """Visium: only one parity of (row + col) is measured, LR blocks sum the right spots."""
    split = built["visium_cytassist_mouse_embryo"]
    section = sections["visium_cytassist_mouse_embryo"]["embryo"]
    k = split.spec.k
    for s in split.train + split.test:
        origin = tuple(split.spec.regions[s.region].origin)
        lattice = sites(section, origin, s.hr_shape)
        assert not (s.hr_mask & ~lattice).any()  # nothing on the missing parity
        assert s.hr_mask.sum() > 0
    s = split.test[0]
    origin = split.spec.regions[s.region].origin
    i, j = np.argwhere(s.lr_mask)[0]
    block = (section.row >= origin[0] + i * k) & (section.row < origin[0] + (i + 1) * k)
    block &= (section.col >= origin[1] + j * k) & (section.col < origin[1] + (j + 1) * k)
    block &= section.in_tissue
    assert block.sum() <= k * k // 2  # a k x k block holds k^2/2 hexagonal spots
    counts = section.gene_counts(split.genes)[block].sum(axis=0)
    expected = np.log1p(counts / section.totals[block].sum() * 1e4)
    np.testing.assert_allclose(s.lr[:, i, j], expected, rtol=1e-5, atol=1e-6)


def test_binned_transcripts_use_the_area_scale(built):
    """Xenium: HR = log1p(count per bin); LR = log1p(block sum / k^2) (metrics.md)."""
    split = built["xenium_bone_marrow"]
    k = split.spec.k
    assert split.spec.normalisation == "log1p_area" and k == 4
    for s, hr in zip(split.test[:3], split.truth.hr, strict=False):
        counts = np.expm1(hr.astype(np.float64)) * s.hr_mask
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # whole transcripts
        g, h, w = counts.shape
        pooled = counts.reshape(g, h // k, k, w // k, k).sum(axis=(2, 4)) / k**2
        np.testing.assert_allclose(s.lr[:, s.lr_mask], np.log1p(pooled)[:, s.lr_mask], atol=1e-4)
        assert s.image.shape == (1, h * split.spec.image_px, w * split.spec.image_px)


def test_cache_is_used_and_invalidated(root, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    card = cards.load_card("her2st")
    calls = []
    real_build = cache.build
    monkeypatch.setattr(cache, "build", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    first = cache.load(card, root, 2)
    second = cache.load(card, root, 2)
    assert len(calls) == 1 and second.spec == first.spec
    for a, b in zip(first.train + first.test, second.train + second.test, strict=True):
        assert a.region == b.region
        for field in ("lr", "lr_mask", "hr_mask", "image", "hr"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(first.data_range, second.data_range)
    (entry,) = (tmp_path / "cache").glob("her2st-k2-*.npz")
    entry.write_bytes(b"not an npz")  # a damaged cache is rebuilt, never trusted
    cache.load(card, root, 2)
    assert len(calls) == 2
    # the cache is keyed on the inputs' verified content, not their modification times
    data = tmp_path / "data"
    for n, rel in enumerate(sorted(card.files)):
        (data / "her2st" / rel).parent.mkdir(parents=True, exist_ok=True)
        if n == 0:  # a fresh copy: same bytes, new modification time
            shutil.copy(root / "her2st" / rel, data / "her2st" / rel)
        else:
            os.symlink(root / "her2st" / rel, data / "her2st" / rel)
    cache.load(card, data, 2)
    assert len(calls) == 2  # same bytes, new modification time: served from the cache
    changed = data / "her2st" / sorted(card.files)[0]
    with open(changed, "ab") as fh:
        fh.write(b"\0")  # same name, different bytes: refused, never served from the cache
    with pytest.raises(BenchError, match="sha256"):
        cache.load(card, data, 2)
    assert len(calls) == 2


def test_export_writes_anndata_on_the_hr_grid(built, sections, tmp_path):
    import anndata as ad

    split = built["her2st"]
    rng = np.random.default_rng(0)
    pred = rng.random((len(split.test), len(split.genes), *split.test[0].hr_shape))
    spread = rng.random(pred.shape).astype(np.float32)
    adata = export.to_anndata(split, sections["her2st"], pred.astype(np.float32), "x", 0, spread)
    out = export.write_h5ad(adata, tmp_path / "p.h5ad")
    back = ad.read_h5ad(out)
    assert "spread" not in export.to_anndata(split, sections["her2st"], pred, "x", 0).layers
    assert list(back.var_names) == list(split.genes)
    assert back.uns["stsr"]["fingerprint"] == split.fingerprint
    first = back[back.obs.region == split.test[0].region]
    i, j = first.obs.hr_row.to_numpy(), first.obs.hr_col.to_numpy()
    np.testing.assert_allclose(first.X, pred[0][:, i, j].T, rtol=1e-6)
    np.testing.assert_array_equal(first.layers["spread"], spread[0][:, i, j].T)
    measured = first.obs.measured.to_numpy()
    assert measured.sum() == split.test[0].hr_mask.sum()
    np.testing.assert_allclose(
        first.layers["truth"][measured], split.truth.hr[0][:, i[measured], j[measured]].T
    )
    # obsm["spatial"] is the spot centre in full-resolution pixels (the selection table's)
    section = sections["her2st"][split.test[0].region]
    lookup = {
        (r, c): section.to_pixel @ [c, r, 1] for r, c in zip(section.row, section.col, strict=True)
    }
    rows, cols = first.obs.grid_row.to_numpy(), first.obs.grid_col.to_numpy()
    expect = np.array(
        [lookup[(r, c)] for r, c in zip(rows[measured], cols[measured], strict=True)]
    )
    np.testing.assert_allclose(first.obsm["spatial"][measured], expect, atol=1e-6)
