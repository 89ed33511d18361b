"""The noise ceiling on synthetic Poisson maps whose expected map is known."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.splits import normalise
from bench.scoring.ceiling import ceiling, spearman_brown
from bench.scoring.metrics import pcc

SHAPE = (48, 48)


def smooth_rates(rng: np.random.Generator, genes: int, depth: float) -> np.ndarray:
    """(G, H, W) Poisson rates: smooth random fields (sums of a few bumps) scaled to ``depth``."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]] / SHAPE[0]
    out = []
    for _ in range(genes):
        field = np.zeros(SHAPE)
        for _ in range(4):
            cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
            field += rng.uniform(0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / w**2)
        out.append(depth * field / field.mean())
    return np.stack(out)


def case(how: str, depth: float, seed: int = 0):
    """Rates, one observed truth (counts, totals, mask), its values and the expected map
    E[truth] (Monte Carlo over 400 independent truths), plus those truths' values."""
    rng = np.random.default_rng(seed)
    rates = smooth_rates(rng, 6, depth)
    other = np.full(SHAPE, 200.0)  # the rest of the transcriptome
    mask = np.ones(SHAPE, dtype=bool)

    def draw():
        c = rng.poisson(rates)
        t = c.sum(axis=0) + rng.poisson(other)
        return c, t, normalise(c, t, mask, how).astype(np.float64)

    counts, totals, truth = draw()
    many = np.stack([draw()[2] for _ in range(400)])
    return counts, totals, mask, truth, many.mean(axis=0), many[:40]


def norm(how: str):
    return lambda c, t, m, area: normalise(c, t, m, how, area)


@pytest.mark.parametrize("how", ["log1p_area", "log1p_cp10k"])
@pytest.mark.parametrize("depth", [0.3, 3.0])
def test_the_ceiling_recovers_what_the_expected_map_scores(how, depth):
    counts, totals, mask, truth, expected, others = case(how, depth)
    got = ceiling(counts[None], totals[None], mask[None], norm(how), repeats=20, seed=1)
    # what a method that returns the expected map scores, against many independent truths
    known_pcc = pcc(np.repeat(expected[None], 40, 0), others, np.ones((40, *SHAPE), bool))
    # per gene within 0.07 (one truth's thinning noise at 0.3 counts per position), on average
    # within 0.035 (measured: -0.03 to +0.015 from 0.3 to 10 counts per position)
    np.testing.assert_allclose(got.pcc[0], known_pcc.mean(axis=0), atol=0.07)
    assert abs(got.pcc[0].mean() - known_pcc.mean()) < 0.035
    # ... and on the one truth the ceiling was computed from
    mine = pcc(expected[None], truth[None], mask[None])[0]
    np.testing.assert_allclose(got.pcc[0], mine, atol=0.08)
    assert (got.pcc[0] < 0.99).all() and (got.pcc[0] > 0.2).all()  # a real, informative ceiling


def test_sparser_truth_has_a_lower_ceiling():
    low = case("log1p_area", 0.3)
    high = case("log1p_area", 10.0)
    c_low = ceiling(low[0][None], low[1][None], low[2][None], norm("log1p_area"))
    c_high = ceiling(high[0][None], high[1][None], high[2][None], norm("log1p_area"))
    assert c_low.pcc.mean() < c_high.pcc.mean() - 0.1


def test_spearman_brown():
    got = spearman_brown(np.array([0.5, 0.0, -0.2, np.nan, 1.0]))
    np.testing.assert_allclose(got[[0, 1, 2, 4]], [np.sqrt(2 / 3), 0.0, 0.0, 1.0])
    assert np.isnan(got[3])


def test_bad_counts_are_refused():
    c = np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="integers"):
        ceiling(c * 0.5, np.ones((1, 2, 2)), np.ones((1, 2, 2), bool), norm("log1p_area"))
    with pytest.raises(ValueError, match="totals"):
        ceiling(c, np.ones((1, 3, 2)), np.ones((1, 2, 2), bool), norm("log1p_area"))
