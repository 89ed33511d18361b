"""Alternative scoring protocols (bench/scoring/protocols.py): what lies outside the scored
positions never reaches a score, even where expm1 of it would overflow."""

from __future__ import annotations

import numpy as np

from bench.scoring.protocols import alternatives


def _maps(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    hr = rng.gamma(2.0, 1.0, (2, 3, 8, 8))
    pred = hr + rng.normal(0.0, 0.5, hr.shape)
    tissue = np.ones((2, 8, 8), bool)
    tissue[:, :, :2] = False
    scored = tissue.copy()
    scored[:, 0, 2] = False
    return pred, hr, tissue, scored, hr.max(axis=(0, 2, 3))


def test_an_unscored_extrapolation_does_not_overflow_the_linear_scale() -> None:
    pred, hr, tissue, scored, data_range = _maps()
    before = alternatives(pred, hr, tissue, scored, data_range)
    wild = pred.copy()
    wild[:, :, :, :2] = 2066.0  # log scale, outside tissue: expm1 overflows float64 there
    after = alternatives(wild, hr, tissue, scored, data_range)
    assert before["alt_pcc_linear"] is not None
    assert after["alt_pcc_linear"] == before["alt_pcc_linear"]
    assert after["alt_pcc_noqc"] == before["alt_pcc_noqc"]


def test_the_linear_scale_sees_every_scored_position() -> None:
    pred, hr, tissue, scored, data_range = _maps()
    moved = pred.copy()
    moved[:, :, 4, 4] += 3.0  # a scored position: the score must move
    a = alternatives(pred, hr, tissue, scored, data_range)["alt_pcc_linear"]
    b = alternatives(moved, hr, tissue, scored, data_range)["alt_pcc_linear"]
    assert a is not None and b is not None and abs(a - b) > 1e-3
