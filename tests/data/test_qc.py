"""Spot QC (bench/data/qc.py): the threshold from training depths, one mask for every score."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.data import qc


def test_threshold_is_the_lower_mad_outlier_rule_on_log_depth():
    rng = np.random.default_rng(0)
    totals = np.round(np.exp(rng.normal(8.0, 0.5, 2000))).astype(int)
    logs = np.log(totals)
    mad = 1.4826 * np.median(np.abs(logs - np.median(logs)))
    expected = math.ceil(math.exp(np.median(logs) - 3 * mad))
    assert qc.min_total(totals) == expected
    assert qc.min_total(totals, nmads=1.0) > expected  # fewer MADs: a stricter rule
    assert qc.min_total(np.ones(10)) == 1  # never below one count
    assert qc.min_total(np.array([0, 0])) == 1


def test_scored_positions_are_tissue_at_or_above_the_threshold():
    totals = np.array([[0, 1, 5], [9, 10, 200]])
    tissue = totals > 0
    np.testing.assert_array_equal(
        qc.scored(totals, tissue, 10), [[False, False, False], [False, True, True]]
    )


def test_her2st_threshold_from_training_regions_drops_the_near_empty_spots(her2st, root):
    from bench.data.cards import load_card
    from bench.data.regions import in_window
    from bench.data.splits import read_sections

    spec = her2st.spec
    sections = read_sections(load_card("her2st"), root, spec.section_ids(spec.train))
    train = np.concatenate(
        [
            s.totals[in_window(s, spec.regions[s.id].origin, spec.canvas) & (s.totals > 0)]
            for s in sections.values()
        ]
    )
    assert spec.qc_min_total == qc.min_total(train)  # fixed from the training regions only
    truth = her2st.truth
    tissue_totals = truth.totals[truth.tissue]
    assert truth.dropped == int((tissue_totals < spec.qc_min_total).sum())
    assert truth.dropped >= 4 and (truth.totals[truth.scored] >= spec.qc_min_total).all()
    # the audit's four near-empty spots (1 to 3 counts in total) are all dropped
    assert not (truth.scored & (truth.totals <= 3)).any()


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
