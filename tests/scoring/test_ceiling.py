"""The noise ceilings on synthetic Poisson maps whose rates are known.

The true ceiling of a map is ``corr(E[Y | Z], Y)`` (``Z`` the rates, ``E[Y | Z]`` by Monte Carlo
over independent truths); the LR oracle is ``E[Y | Z, S]`` (``S`` the LR block sums), by Monte
Carlo over re-allocations of each block's counts to its positions (multinomial by the rates).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, zoom

from bench.data.splits import normalise
from bench.scoring.ceiling import ceiling
from bench.scoring.metrics import pcc

SHAPE = (48, 48)


def smooth_fields(rng: np.random.Generator, genes: int, shape=SHAPE) -> np.ndarray:
    """(G, H, W) smooth random fields of mean 1 (sums of a few bumps)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]] / shape[0]
    out = []
    for _ in range(genes):
        field = np.zeros(shape)
        for _ in range(4):
            cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
            field += rng.uniform(0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / w**2)
        out.append(field / field.mean())
    return np.stack(out)


def norm(how: str):
    return lambda c, t, m, area: normalise(c, t, m, how, area)


class Sim:
    """Rates of one region: genes ``lam`` (G, H, W) and the other counts ``rest`` (H, W), 0
    outside ``tissue``; draws of the truth, its expected map and the LR oracle."""

    def __init__(self, how, lam, rest, tissue, rng):
        self.how, self.lam, self.rest, self.tissue, self.rng = how, lam, rest, tissue, rng

    def draw(self):
        c = self.rng.poisson(self.lam)
        return c, c.sum(axis=0) + self.rng.poisson(self.rest)

    def values(self, c, t, mask):
        return normalise(c, t, mask & (t > 0), self.how).astype(np.float64)

    def expected(self, mask, draws=300):
        return np.mean([self.values(*self.draw(), mask) for _ in range(draws)], axis=0)

    def lr_oracle(self, c, t, mask, k, draws=200):
        """E[Y | Z, S]: each block's counts of every gene (and of the rest) re-allocated to its
        positions, multinomially by the rates, ``draws`` times."""
        g, h, w = c.shape

        def blocks(x):  # (..., H, W) -> (..., B, k * k)
            lead = x.shape[:-2]
            x = x.reshape(*lead, h // k, k, w // k, k)
            x = np.moveaxis(x, -3, -2).reshape(*lead, (h // k) * (w // k), k * k)
            return x

        def unblock(x):
            lead = x.shape[:-2]
            x = x.reshape(*lead, h // k, w // k, k, k)
            return np.moveaxis(x, -2, -3).reshape(*lead, h, w)

        rates = np.concatenate([self.lam, self.rest[None]])
        obs = np.concatenate([c, (t - c.sum(axis=0))[None]])
        p = blocks(rates)
        total = blocks(obs).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.nan_to_num(p / p.sum(axis=-1, keepdims=True))
        acc = 0.0
        for _ in range(draws):
            left = total.copy()
            rem = np.ones_like(left, dtype=np.float64)
            out = np.zeros(p.shape, dtype=np.int64)
            for j in range(k * k):
                q = np.clip(np.where(rem > 0, share[..., j] / np.maximum(rem, 1e-300), 0), 0, 1)
                out[..., j] = self.rng.binomial(left, q)
                left -= out[..., j]
                rem -= share[..., j]
            re = unblock(out)
            acc = acc + self.values(re[:g], re.sum(axis=0), mask)
        return acc / draws


def skewed(how: str, seed: int = 0, shape=SHAPE, checker: bool = False) -> Sim:
    """Skewed per-position depth (lognormal, sigma 1): her2st-like spot totals (median ~11,600,
    ~400 to ~40,000 after QC) for log1p_cp10k, Xenium-like bins (median 9, 1 to ~50) for
    log1p_area; 6 genes with smooth rate fields, each a share of the depth."""
    rng = np.random.default_rng(seed)
    tissue = np.ones(shape, dtype=bool)
    if checker:  # a hexagonal lattice on a checkerboard grid: 2 positions per 2 x 2 block
        tissue = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 2) == 0
    if how == "log1p_cp10k":
        depth = np.clip(11600 * rng.lognormal(0, 1, shape), 400, 40000)
        shares = np.geomspace(5e-5, 2e-3, 6)[:, None, None]
    else:
        depth = np.clip(9 * rng.lognormal(0, 0.8, shape), 1, 50)
        shares = np.geomspace(0.02, 0.15, 6)[:, None, None]
    lam = depth * shares * smooth_fields(rng, 6, shape) * tissue
    rest = np.maximum(depth - lam.sum(axis=0), 0) * tissue
    return Sim(how, lam, rest, tissue, rng)


def constant_case(how: str, depth: float, seed: int = 0):
    """Near-constant depth: rates, one observed truth (counts, totals, mask), its values and the
    expected map E[truth], plus 40 independent truths' values."""
    rng = np.random.default_rng(seed)
    lam = depth * smooth_fields(rng, 6)
    sim = Sim(how, lam, np.full(SHAPE, 200.0), np.ones(SHAPE, dtype=bool), rng)
    mask = sim.tissue
    counts, totals = sim.draw()
    truth = sim.values(counts, totals, mask)
    many = np.stack([sim.values(*sim.draw(), mask) for _ in range(300)])
    return counts, totals, mask, truth, many.mean(axis=0), many[:40]


@pytest.mark.parametrize("how", ["log1p_area", "log1p_cp10k"])
@pytest.mark.parametrize("depth", [0.3, 3.0])
def test_the_ceiling_recovers_what_the_expected_map_scores(how, depth):
    counts, totals, mask, truth, expected, others = constant_case(how, depth)
    got = ceiling(counts[None], totals[None], mask[None], norm(how), 2, repeats=20, seed=1)
    # what a method that returns the expected map scores, against many independent truths
    known = pcc(np.repeat(expected[None], 40, 0), others, np.ones((40, *SHAPE), bool))
    # per gene within 0.07 (one truth's thinning noise at 0.3 counts per position), on average
    # within 0.035 (log1p is far from linear at 0.3 counts per position)
    np.testing.assert_allclose(got.pcc[0], known.mean(axis=0), atol=0.07)
    assert abs(got.pcc[0].mean() - known.mean()) < 0.035
    # ... and on the one truth the ceiling was computed from
    mine = pcc(expected[None], truth[None], mask[None])[0]
    np.testing.assert_allclose(got.pcc[0], mine, atol=0.08)
    assert (got.pcc[0] < 0.99).all() and (got.pcc[0] > 0.2).all()  # a real, informative ceiling
    assert (got.r_half[0] > 0).all() and (got.r_half[0] < got.pcc[0]).all()


@pytest.mark.parametrize("how", ["log1p_area", "log1p_cp10k"])
def test_the_ceiling_holds_under_skewed_depth(how):
    sim = skewed(how)
    mask = sim.tissue
    expected = sim.expected(mask, 300)
    c, t = sim.draw()
    true = pcc(expected[None], sim.values(c, t, mask)[None], mask[None])[0]
    got = ceiling(c[None], t[None], mask[None], norm(how), 2, repeats=2)
    assert abs(got.pcc[0].mean() - true.mean()) < 0.02
    np.testing.assert_allclose(got.pcc[0], true, atol=0.05)


def lr_methods(how: str, c: np.ndarray, t: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Upsamplings of the LR map (block sums, normalised on the split's LR scale)."""
    g, h, w = c.shape
    s = c.reshape(g, h // k, k, w // k, k).sum(axis=(2, 4))
    tt = t.reshape(h // k, k, w // k, k).sum(axis=(1, 3))
    lr = np.log1p(s / np.maximum(tt, 1) * 1e4) if how == "log1p_cp10k" else np.log1p(s / k**2)
    nearest = np.repeat(np.repeat(lr, k, 1), k, 2)
    return {
        "nearest": nearest,
        "bilinear": np.stack([zoom(x, k, order=1, grid_mode=True, mode="nearest") for x in lr]),
        "bicubic": np.stack([zoom(x, k, order=3, grid_mode=True, mode="nearest") for x in lr]),
        "smoothed": np.stack([gaussian_filter(x, k / 2) for x in nearest]),
    }


@pytest.mark.parametrize(
    "how, checker", [("log1p_area", False), ("log1p_cp10k", False), ("log1p_area", True)]
)
def test_the_lr_bound_is_above_every_method_that_sees_the_lr_input(how, checker):
    k = 2
    sim = skewed(how, seed=1, checker=checker)
    mask = sim.tissue
    c, t = sim.draw()
    y = sim.values(c, t, mask)
    got = ceiling(c[None], t[None], mask[None], norm(how), k, repeats=1)
    assert (got.pcc_lr >= got.pcc).all()
    oracle = pcc(sim.lr_oracle(c, t, mask, k, 150)[None], y[None], mask[None])[0]
    assert (got.pcc_lr[0] >= oracle - 0.02).all(), (got.pcc_lr[0], oracle)
    for name, pred in lr_methods(how, c, t, k).items():
        score = pcc(pred[None], y[None], mask[None])[0]
        assert (got.pcc_lr[0] >= score).all(), (name, got.pcc_lr[0], score)
        assert (score <= oracle + 0.02).all()  # the oracle is the best such method


def test_every_statistic_is_over_exactly_the_mask():
    """A scored position whose thinned halves are always one empty and one not still counts
    (the ceiling used to drop it, so it was computed on other positions than the scores)."""
    rng = np.random.default_rng(3)
    sim = Sim("log1p_area", 3.0 * smooth_fields(rng, 2, (8, 8)), np.zeros((8, 8)), None, rng)
    c, t = sim.draw()
    c[:, 0, 0], t[0, 0] = 0, 1  # one transcript of another gene: a half is always empty
    c[:, 0, 1], t[0, 1] = 1, 2  # one of each gene: half totals 0 to 2
    mask = np.ones((8, 8), dtype=bool)
    got = ceiling(c[None], t[None], mask[None], norm("log1p_area"), 2, repeats=3)
    mask[0, :2] = False
    less = ceiling(c[None], t[None], mask[None], norm("log1p_area"), 2, repeats=3)
    assert (less.r_half != got.r_half).all() and (less.pcc != got.pcc).all()
    assert (less.pcc_lr != got.pcc_lr).all()


def test_sparser_truth_has_a_lower_ceiling():
    low = constant_case("log1p_area", 0.3)
    high = constant_case("log1p_area", 10.0)
    c_low = ceiling(low[0][None], low[1][None], low[2][None], norm("log1p_area"), 2, repeats=1)
    c_high = ceiling(high[0][None], high[1][None], high[2][None], norm("log1p_area"), 2, repeats=1)
    assert c_low.pcc.mean() < c_high.pcc.mean() - 0.1


def test_bad_input_is_refused():
    c = np.ones((1, 1, 2, 2))
    m = np.ones((1, 2, 2), bool)
    with pytest.raises(ValueError, match="integers"):
        ceiling(c * 0.5, np.ones((1, 2, 2)), m, norm("log1p_area"), 2)
    with pytest.raises(ValueError, match="totals"):
        ceiling(c, np.ones((1, 3, 2)), m, norm("log1p_area"), 2)
    with pytest.raises(ValueError, match="divisible"):
        ceiling(c, np.ones((1, 2, 2)), m, norm("log1p_area"), 3)
