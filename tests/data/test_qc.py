"""Spot QC (bench/data/qc.py): the cut from training depths relative to each section's depth
level, each test region's threshold from its own section's LR input, one mask for every score."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import sparse

from bench.data import qc
from bench.data.section import Section

CANVAS = (16, 16)


def _section(sid: str, totals: np.ndarray) -> Section:
    """A square-lattice section whose (H, W) grid of all-gene ``totals`` is all in tissue (one
    gene holds every count)."""
    rows, cols = np.indices(totals.shape)
    return Section(
        id=sid,
        counts=sparse.csr_matrix(totals.reshape(-1, 1).astype(np.int64)),
        genes=np.array(["g"]),
        row=rows.ravel(),
        col=cols.ravel(),
        in_tissue=np.ones(totals.size, dtype=bool),
        to_pixel=np.eye(2, 3),
        image=np.zeros((4, 4), dtype=np.uint8),
        image_size=(4, 4),
        pitch_um=(100.0, 100.0),
        um_per_px=None,
    )


def _depths(rng: np.random.Generator, median: float, sd: float) -> np.ndarray:
    return np.maximum(1, np.round(np.exp(rng.normal(math.log(median), sd, CANVAS))))


def _pooled_min_total(train_totals: np.ndarray, nmads: float = 3.0) -> int:
    """The rule before it was relative: one threshold from the pooled training totals."""
    logs = np.log(train_totals[train_totals > 0])
    mad = 1.4826 * np.median(np.abs(logs - np.median(logs)))
    return max(1, math.ceil(math.exp(np.median(logs) - nmads * mad) - 1e-9))


def test_fraction_is_the_lower_mad_outlier_rule_on_log_relative_depth():
    rng = np.random.default_rng(0)
    totals = np.round(np.exp(rng.normal(8.0, 0.5, 2000)))
    depths = np.where(np.arange(2000) < 1000, 3000.0, 300.0)
    r = np.log(totals) - np.log(depths)
    mad = 1.4826 * np.median(np.abs(r - np.median(r)))
    expected = math.exp(np.median(r) - 3 * mad)
    assert qc.depth_fraction(totals, depths) == pytest.approx(expected, rel=1e-3)
    assert qc.depth_fraction(totals, depths) == float(f"{expected:.{qc.FRACTION_DIGITS}g}")
    assert qc.depth_fraction(totals, depths, nmads=1.0) > expected  # fewer MADs: stricter
    assert qc.depth_fraction(np.array([0, 0]), np.array([5.0, 5.0])) == 0.0


def test_threshold_and_depth_level_formulas():
    assert qc.min_total(1000.0, 0.1234) == 124  # ceil(123.4)
    assert qc.min_total(1000.0, 0.125) == 125  # exact products are not rounded up
    assert qc.min_total(3.0, 0.01) == 1 and qc.min_total(50.0, 0.0) == 1  # never below one count
    # counts per lattice position of each LR spot, median over the spots
    assert qc.depth_level(np.array([40, 80, 400]), np.array([4, 4, 2])) == 20.0


def test_scored_positions_are_tissue_at_or_above_each_regions_threshold():
    totals = np.array([[[0, 1, 5], [9, 10, 200]], [[0, 1, 5], [9, 10, 200]]])
    tissue = totals > 0
    np.testing.assert_array_equal(
        qc.scored(totals, tissue, 10)[0], [[False, False, False], [False, True, True]]
    )
    per_region = qc.scored(totals, tissue, np.array([10, 5])[:, None, None])
    np.testing.assert_array_equal(per_region[1], [[False, False, True], [True, True, True]])


def _two_depths():
    """Two deep training sections and a test section sequenced 10x shallower, whose only
    near-empty positions are three spots of 1, 2 and 3 counts."""
    rng = np.random.default_rng(3)
    deep = [_section(f"D{i}", _depths(rng, 1000.0, 0.3)) for i in (1, 2)]
    shallow_totals = _depths(rng, 100.0, 0.2)
    shallow_totals[[2, 7, 12], [3, 9, 5]] = [1, 2, 3]
    shallow = _section("S", shallow_totals)
    windows = {s.id: (s, (0, 0)) for s in [*deep, shallow]}
    return windows, shallow_totals


def test_a_shallow_test_section_keeps_all_but_its_near_empty_positions():
    windows, shallow = _two_depths()
    found = qc.for_split(windows, ["D1", "D2"], ["S"], CANVAS, k=2)
    assert found.depths["S"] == pytest.approx(100.0, rel=0.2)
    assert found.depths["D1"] == pytest.approx(1000.0, rel=0.2)
    threshold = found.min_totals["S"]
    assert sorted(shallow[shallow < threshold]) == [1, 2, 3]  # the near-empty spots alone
    # the pooled rule (one threshold from the deep training sections) drops most of the section
    train = np.concatenate([windows[s][0].totals for s in ("D1", "D2")])
    assert (shallow < _pooled_min_total(train)).mean() > 0.9
    # its note reports the threshold and what it drops
    (note,) = qc.notes(found, windows, ["S"], CANVAS)
    assert f"threshold {threshold} counts; drops 3 of 256 in-tissue test positions" in note


def test_a_test_threshold_reads_the_lr_input_not_the_hr_truth():
    """Moving counts between the HR positions of each LR block leaves the LR input (block totals
    and LR spots) as it was and changes the HR totals: the threshold does not move."""
    windows, shallow = _two_depths()
    found = qc.for_split(windows, ["D1", "D2"], ["S"], CANVAS, k=2)
    blocks = shallow.reshape(8, 2, 8, 2).sum(axis=(1, 3))
    moved = np.ones_like(shallow)  # every position keeps a count, so stays in tissue
    moved[::2, ::2] = blocks - 3  # the rest of each block's counts on one position
    assert (moved != shallow).mean() > 0.9
    np.testing.assert_array_equal(moved.reshape(8, 2, 8, 2).sum(axis=(1, 3)), blocks)
    again = qc.for_split(
        dict(windows, S=(_section("S", moved), (0, 0))), ["D1", "D2"], ["S"], CANVAS, k=2
    )
    assert again == found
    # ...while a deeper LR input raises the section's threshold in proportion
    deeper = qc.for_split(
        dict(windows, S=(_section("S", 2 * shallow), (0, 0))), ["D1", "D2"], ["S"], CANVAS, k=2
    )
    assert deeper.fraction == found.fraction
    assert abs(deeper.min_totals["S"] - 2 * found.min_totals["S"]) <= 1


def test_tiles_of_one_section_keep_the_pooled_threshold():
    """When train and test regions are tiles of one section the depth level cancels: the
    threshold is the pooled training rule's, up to the rounding of the stored fraction."""
    rng = np.random.default_rng(5)
    totals = np.concatenate([_depths(rng, 300.0, 0.6), _depths(rng, 300.0, 0.6)], axis=1)
    section = _section("one", totals)
    windows = {"left": (section, (0, 0)), "right": (section, (0, 16))}
    found = qc.for_split(windows, ["left"], ["right"], CANVAS, k=2)
    assert abs(found.min_totals["right"] - _pooled_min_total(totals[:, :16].ravel())) <= 1
    assert list(found.depths) == ["one"]


def test_her2st_thresholds_from_lr_depth_drop_the_near_empty_spots(her2st, root):
    from bench.data.cards import load_card
    from bench.data.splits import read_sections

    spec = her2st.spec
    sections = read_sections(load_card("her2st"), root, spec.section_ids())
    windows = {
        r: (sections[spec.regions[r].section], spec.regions[r].origin) for r in spec.regions
    }
    found = qc.for_split(windows, spec.train, spec.test, spec.canvas, spec.k)
    assert (found.fraction, found.min_totals) == (spec.qc_depth_fraction, spec.qc_min_totals)
    truth = her2st.truth
    for i, region in enumerate(spec.test):
        in_tissue = truth.totals[i][truth.tissue[i]]
        assert (truth.totals[i][truth.scored[i]] >= spec.qc_min_totals[region]).all()
        assert int((in_tissue < spec.qc_min_totals[region]).sum()) == int(
            truth.tissue[i].sum() - truth.scored[i].sum()
        )
    # the audit's four near-empty spots (1 to 3 counts in total) are all dropped
    assert truth.dropped >= 4 and not (truth.scored & (truth.totals <= 3)).any()


def test_a_split_file_from_before_per_section_qc_says_regenerate(tmp_path):
    from bench.data import splits
    from bench.data.cards import Card, load_card
    from bench.errors import BenchError

    card = load_card("her2st")
    old = splits.load_spec(card, 2).to_json()
    del old["qc_depth_fraction"], old["qc_min_totals"]
    old["qc_min_total"] = 138
    (tmp_path / "split-k2.json").write_text(json.dumps(old))
    with pytest.raises(BenchError) as err:
        splits.load_spec(Card(name=card.name, raw=card.raw, folder=tmp_path), 2)
    message = str(err.value)
    assert "\n" not in message and "predates spot QC" in message and "qc_min_totals" in message
    assert "'python -m bench split --datasets her2st --k 2'" in message


@pytest.mark.slow
def test_every_score_uses_the_one_scored_mask(her2st):
    from bench.run.cell import score
    from bench.scoring import metrics

    truth = her2st.truth
    rng = np.random.default_rng(1)
    pred = truth.hr + rng.normal(0, 0.5, truth.hr.shape).astype(np.float32)
    scalars, per_gene, influence = score(her2st, pred, None, "cpu")
    expected = metrics.pcc(pred, truth.hr, truth.scored)
    np.testing.assert_allclose(
        np.array(per_gene.scores["pcc"], dtype=float), expected.ravel(), atol=1e-12
    )
    assert len(influence) == int(truth.scored.sum())
    noqc = np.nanmean(metrics.pcc(pred, truth.hr, truth.tissue))
    assert scalars["alt_pcc_noqc"] == pytest.approx(noqc)
    assert scalars["pcc"] != pytest.approx(noqc)  # the dropped spots did move the score
