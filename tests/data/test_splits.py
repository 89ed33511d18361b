"""The her2st reader and the committed split: reproducible, train-only genes, exact pooling."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from bench.data import splits
from bench.data.cards import Card, load_card
from bench.data.readers.legacy_st import read_section
from bench.errors import BenchError


@pytest.fixture(scope="module")
def card() -> Card:
    return load_card("her2st")


@pytest.fixture(scope="module")
def sections(card, root):
    cfg = card.split
    return splits.read_sections(card, root, cfg["train"] + cfg["test"])


def test_committed_split_is_rebuilt_exactly_from_the_data(card, root, sections, monkeypatch):
    monkeypatch.setattr(splits, "read_sections", lambda *a, **k: sections)
    assert splits.make_split(card, root, 2) == splits.load_spec(card, 2)


def test_genes_do_not_depend_on_test_sections(card, root, sections, monkeypatch):
    committed = splits.load_spec(card, 2)
    rng = np.random.default_rng(0)
    scrambled = dict(sections)
    for sid in card.split["test"]:
        s = sections[sid]
        noise = sparse.csr_matrix(rng.poisson(5.0, size=s.counts.shape).astype(np.int32))
        scrambled[sid] = dataclasses.replace(s, counts=noise)
    monkeypatch.setattr(splits, "read_sections", lambda *a, **k: scrambled)
    spec = splits.make_split(card, root, 2)
    assert spec.genes == committed.genes
    assert spec.qc_depth_fraction == committed.qc_depth_fraction  # spot QC's cut: train only
    # the test sections' QC thresholds follow their (scrambled) LR input, and nothing else moves
    assert spec.qc_min_totals != committed.qc_min_totals
    same_qc = dataclasses.replace(spec, qc_min_totals=committed.qc_min_totals)
    assert splits.fingerprint(same_qc) == committed.fingerprint
    # ...while scrambling a training section does change them
    train_sid = card.split["train"][0]
    s = sections[train_sid]
    scrambled[train_sid] = dataclasses.replace(
        s, counts=sparse.csr_matrix(rng.poisson(5.0, size=s.counts.shape).astype(np.int32))
    )
    assert splits.make_split(card, root, 2).genes != committed.genes


def test_split_content(her2st, card):
    spec = her2st.spec
    assert set(spec.train).isdisjoint(spec.test)
    assert [s.region for s in her2st.test] == card.split["test"]
    assert len(spec.genes) == card.raw["genes"]["n"] == len(set(spec.genes))
    assert not any(g.startswith(("MT-", "RPL", "RPS")) for g in spec.genes)
    targets = her2st.truth.targets(her2st.test)
    for s in her2st.train + targets:
        assert s.lr.shape == (50, 12, 12) and s.hr.shape == (50, 24, 24)
        assert s.image.shape == (3, 24 * 32, 24 * 32) and s.image.dtype == np.uint8
        assert (s.hr[:, ~s.hr_mask] == 0).all() and (s.lr[:, ~s.lr_mask] == 0).all()
    # spot counts under tissue per section, as documented upstream (minus spots without counts)
    assert {s.region: int(s.hr_mask.sum()) for s in her2st.train + her2st.test} == {
        "B4": 283,
        "C2": 187,
        "C3": 180,
        "C4": 184,
        "C5": 181,
        "C6": 178,
    }
    np.testing.assert_allclose(
        her2st.data_range, np.stack([s.hr for s in her2st.train]).max(axis=(0, 2, 3))
    )


def test_hr_and_lr_values_follow_the_counts(her2st, sections):
    sample, section = her2st.truth.targets(her2st.test)[0], sections[her2st.test[0].region]
    spec, k = her2st.spec, her2st.spec.k
    row0, col0 = spec.regions[section.id].origin
    genes = spec.genes
    counts = section.gene_counts(genes)
    totals = section.totals
    lookup = {
        (r - row0, c - col0): n
        for n, (r, c) in enumerate(zip(section.row, section.col, strict=True))
    }
    # one in-tissue HR position, by hand
    i, j = map(int, np.argwhere(sample.hr_mask)[0])
    n = lookup[(i, j)]
    np.testing.assert_allclose(
        sample.hr[:, i, j], np.log1p(counts[n] / totals[n] * 1e4), rtol=1e-6
    )
    # every LR block, by hand: sum of in-tissue HR spots; LR spot iff >= half the block in tissue
    for bi in range(sample.lr_mask.shape[0]):
        for bj in range(sample.lr_mask.shape[1]):
            members = [
                lookup[(bi * k + a, bj * k + b)]
                for a in range(k)
                for b in range(k)
                if sample.hr_mask[bi * k + a, bj * k + b]
            ]
            assert sample.lr_mask[bi, bj] == (2 * len(members) >= k * k)
            if sample.lr_mask[bi, bj]:
                expected = np.log1p(counts[members].sum(0) / totals[members].sum() * 1e4)
                np.testing.assert_allclose(sample.lr[:, bi, bj], expected, rtol=1e-6)


def test_image_crop_is_registered_with_the_spots(her2st):
    """Tissue is darker than the glass: in-tissue positions must be darker than the rest."""
    for s in her2st.test + her2st.train:
        p = her2st.spec.image_px
        grey = s.image.mean(axis=0).reshape(24, p, 24, p).mean(axis=(1, 3))
        assert grey[s.hr_mask].mean() < grey[~s.hr_mask].mean() - 20


def test_fingerprint_covers_genes_and_tampering_is_refused(card, tmp_path):
    spec = splits.load_spec(card, 2)
    changed = dict(spec.to_json(), genes=spec.genes[::-1])
    assert splits.fingerprint(changed) != spec.fingerprint
    fake = Card(name=card.name, raw=card.raw, folder=tmp_path)
    (tmp_path / "split-k2.json").write_text(json.dumps(changed))
    with pytest.raises(BenchError, match="fingerprint does not match"):
        splits.load_spec(fake, 2)
    with pytest.raises(BenchError, match="no committed split"):
        splits.load_spec(fake, 3)


def test_missing_data_says_where_and_how_to_fetch(card, tmp_path):
    with pytest.raises(BenchError) as err:
        splits.build(card, tmp_path, 2)
    assert str(tmp_path / "her2st") in str(err.value) and "bench fetch" in str(err.value)


def _copy_dataset(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(root / "her2st", dst / "her2st", symlinks=False)
    for p in (dst / "her2st").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_corrupt_file_fails_its_checksum(card, root, tmp_path):
    dst = _copy_dataset(root, tmp_path)
    spots = dst / "her2st" / card.sections["C5"]["spots"]
    spots.write_text(spots.read_text().replace("\t1\n", "\t0\n", 1))
    with pytest.raises(BenchError, match="sha256 .* does not match"):
        splits.build(card, dst, 2)


def test_misregistered_image_is_refused(card, root, tmp_path):
    dst = tmp_path / "sec"
    dst.mkdir()
    src = root / "her2st"
    spots = (src / card.sections["C5"]["spots"]).read_text().splitlines()
    header, rows = spots[0], spots[1:]
    shifted = []
    for line in rows:  # the spot table of a 10x larger image: every spot off the real image
        x, y, nx, ny, px, py, sel = line.split("\t")
        shifted.append("\t".join([x, y, nx, ny, str(float(px) * 10), str(float(py) * 10), sel]))
    (dst / "spots.tsv").write_text("\n".join([header, *shifted]) + "\n")
    entry = {
        "counts": str(src / card.sections["C5"]["counts"]),
        "spots": "spots.tsv",
        "image": str(src / card.sections["C5"]["image"]),
    }
    with pytest.raises(BenchError, match="misregistered"):
        read_section("C5", dst, entry, card.raw)
