"""HisToGene-style transformer and the control methods, on synthetic colour-coded sections.

Gene 0 of a synthetic section is its position block's mean red (or grey) value, gene 1 its green
value, gene 2 noise, so a method that reads histology can learn gene 0 and one fed shuffled
histology cannot.
"""

from __future__ import annotations

import numpy as np
import pytest

from methods.contract import Sample
from methods.controls import ShuffledHistology, Truth, block_permutation, shuffle_blocks
from methods.histogene import HisToGeneStyle, dihedral_blocks, image_blocks

P = 4  # pixels per HR position
TINY = dict(layers=1, dim=32, heads=2, lr=3e-3, epochs=80, patch_px=2, dropout=0.0)


def colour_sample(seed: int, channels: int = 3, h: int = 6, k: int = 2, hr: bool = True) -> Sample:
    """A (3, 12, 12) section: gene 0 = 3 x red (or grey), gene 1 = 2 x green, gene 2 = noise."""
    rng = np.random.default_rng(seed)
    lr_mask = rng.random((h, h)) > 0.2
    hr_mask = np.kron(lr_mask, np.ones((k, k), dtype=bool))
    n = h * k
    colour = rng.random((channels, n, n))  # one colour per HR position, in [0, 1]
    pixels = np.kron(colour, np.ones((1, P, P))) * 200 + rng.integers(
        0, 40, (channels, n * P, n * P)
    )
    target = (
        np.stack([3 * colour[0], 2 * colour[min(1, channels - 1)], rng.random((n, n))]).astype(
            np.float32
        )
        * hr_mask
    )
    lr = target.reshape(3, h, k, h, k).mean(axis=(2, 4)) * lr_mask
    return Sample(
        region=f"s{seed}",
        genes=("red", "green", "noise"),
        scale=k,
        lr=lr.astype(np.float32),
        lr_mask=lr_mask,
        hr_mask=hr_mask,
        image=pixels.astype(np.uint8),
        hr=target if hr else None,
    )


def pcc(pred: np.ndarray, sample: Sample, gene: int = 0) -> float:
    """Pearson correlation of one gene over the in-tissue positions."""
    return float(np.corrcoef(pred[gene][sample.hr_mask], sample.hr[gene][sample.hr_mask])[0, 1])


def blocks_of(image: np.ndarray, hr_shape: tuple[int, int]) -> np.ndarray:
    """(H W, C p p) uint8 rows, one per HR position (row-major)."""
    return (image_blocks(image, hr_shape, None) * 255).round().reshape(np.prod(hr_shape), -1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine threads that wait on
    each other make a fit ten times slower (measured: 2 s on one thread, 20 s on two)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train() -> list[Sample]:
    return [colour_sample(seed) for seed in range(4)]


@pytest.fixture(scope="module")
def test_sample() -> Sample:
    return colour_sample(100)


@pytest.fixture(scope="module")
def fitted(train) -> HisToGeneStyle:
    m = HisToGeneStyle(preset="quick", seed=0, **TINY)
    m.fit(train)
    return m


# --- HisToGene-style ------------------------------------------------------------------------
def test_histogene_output_is_finite_non_negative_float32_and_needs_no_target(fitted, test_sample):
    pred = fitted.predict([test_sample.without_target(), colour_sample(101, hr=False)])
    assert pred.shape == (2, 3, 12, 12) and pred.dtype == np.float32
    assert np.isfinite(pred).all() and pred.min() >= 0
    assert (pred[0][:, ~test_sample.hr_mask] == 0).all()


def test_histogene_learns_the_colour_gene_on_a_held_out_section(fitted, test_sample):
    pred = fitted.predict([test_sample.without_target()])[0]
    assert pcc(pred, test_sample, 0) > 0.9 and pcc(pred, test_sample, 1) > 0.9
    assert fitted.history[-1] < fitted.history[0]


def test_histogene_is_deterministic_for_a_seed(fitted, train, test_sample):
    again = HisToGeneStyle(preset="quick", seed=0, **TINY)
    again.fit(train)
    other = HisToGeneStyle(preset="quick", seed=1, **TINY)
    other.fit(train)
    x = [test_sample.without_target()]
    np.testing.assert_array_equal(again.predict(x), fitted.predict(x))
    assert not np.allclose(other.predict(x), fitted.predict(x))


def test_histogene_takes_one_channel_images(test_sample):
    grey = [colour_sample(seed, channels=1) for seed in range(4)]
    m = HisToGeneStyle(preset="quick", seed=0, **TINY)
    m.fit(grey)
    held_out = colour_sample(100, channels=1)
    pred = m.predict([held_out.without_target()])
    assert pred.shape == (1, 3, 12, 12) and pcc(pred[0], held_out) > 0.8


def test_histogene_params_presets_and_symmetries():
    m = HisToGeneStyle(preset="paper")
    assert m.params() == {
        "preset": "paper", "layers": 4, "dim": 1024, "heads": 16, "lr": 1e-5, "epochs": 100,
        "steps": None, "batch_size": 1, "patch_px": None, "dropout": 0.1, "augment": False,
    }  # fmt: skip
    assert HisToGeneStyle(preset="quick", dim=32).label_params() == {"preset": "quick", "dim": 32}
    with pytest.raises(ValueError, match="preset"):
        HisToGeneStyle(preset="fast")  # type: ignore[arg-type]
    # a quarter turn of the image moves each block to the turned position, content turned too
    s = colour_sample(3)
    turned = np.rot90(s.image, 1, axes=(1, 2))
    b, m = dihedral_blocks(image_blocks(s.image, (12, 12), None), s.hr, 1, False)
    np.testing.assert_array_equal(b, image_blocks(np.ascontiguousarray(turned), (12, 12), None))
    np.testing.assert_array_equal(m, np.rot90(s.hr, 1, axes=(1, 2)))
    b, m = dihedral_blocks(image_blocks(s.image, (12, 12), None), s.hr, 0, True)
    np.testing.assert_array_equal(b, image_blocks(s.image[:, :, ::-1].copy(), (12, 12), None))


# --- shuffled histology ---------------------------------------------------------------------
def test_block_permutation_is_seeded_and_keeps_background_in_place():
    mask = colour_sample(0).hr_mask
    perm = block_permutation(mask, 0, "a")
    np.testing.assert_array_equal(perm, block_permutation(mask, 0, "a"))
    assert not np.array_equal(perm, block_permutation(mask, 1, "a"))
    assert not np.array_equal(perm, block_permutation(mask, 0, "b"))
    assert sorted(perm) == list(range(mask.size)) and (perm != np.arange(mask.size)).any()
    outside = np.flatnonzero(~mask.ravel())
    np.testing.assert_array_equal(perm[outside], outside)
    assert (perm[mask.ravel()] != np.flatnonzero(mask)).any()
    assert (block_permutation(mask, 0, "a", scope="all")[outside] != outside).any()


def test_shuffled_histology_feeds_the_base_permuted_blocks(register_method, train, test_sample):
    register_method("fakebase", "stub_methods", "Recording")
    m = ShuffledHistology(base="fakebase", seed=3)
    assert m.params()["base"] == "fakebase" and m.control == "negative"
    m.fit(train)
    pred = m.predict([test_sample.without_target()])
    seen = m.base_method.fit_images + m.base_method.predict_images
    for s, image in zip([*train, test_sample], seen, strict=True):
        assert image.shape == s.image.shape and not np.array_equal(image, s.image)
        orig, got = blocks_of(s.image, s.hr_shape), blocks_of(image, s.hr_shape)
        perm = block_permutation(s.hr_mask, 3, s.region)
        np.testing.assert_array_equal(got, orig[perm])
        # the same multiset of blocks, only moved
        np.testing.assert_array_equal(np.sort(orig, axis=0), np.sort(got, axis=0))
    # the base's red-channel read-out no longer matches the truth
    assert pred.shape == (1, 3, 12, 12) and abs(pcc(pred[0], test_sample)) < 0.4
    np.testing.assert_array_equal(shuffle_blocks(test_sample.image, (12, 12), np.arange(144)),
                                  test_sample.image)  # fmt: skip


def test_shuffled_histology_is_seeded(register_method, train):
    register_method("fakebase", "stub_methods", "Recording")
    runs = []
    for seed in (0, 0, 1):
        m = ShuffledHistology(base="fakebase", seed=seed)
        m.fit(train)
        runs.append(m.base_method.fit_images)
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def test_shuffled_histology_averages_draws_of_a_stochastic_base(
    register_method, train, test_sample
):
    register_method("fakegen", "stub_methods", "RecordingStochastic")
    m = ShuffledHistology(base="fakegen")
    m.fit(train)
    pred = m.predict([test_sample.without_target()])
    assert m.base_method.k == 8 and pred.dtype == np.float32
    np.testing.assert_allclose(pred, 3.5)  # the mean of draws 0..7


def test_shuffled_histology_destroys_the_signal_histogene_learns(
    register_method, train, test_sample
):
    register_method("tinyhtg", "methods.histogene", "HisToGeneStyle", **TINY)
    m = ShuffledHistology(base="tinyhtg", preset="quick")
    m.fit(train)
    pred = m.predict([test_sample.without_target()])[0]
    assert isinstance(m.base_method, HisToGeneStyle) and m.base_method.seed == 0
    assert abs(pcc(pred, test_sample)) < 0.4


# --- truth ----------------------------------------------------------------------------------
def test_truth_returns_the_target_and_refuses_without_it(test_sample):
    t = Truth()
    assert t.control == "positive" and t.needs_target
    other = colour_sample(7)
    pred = t.predict([test_sample, other])
    assert pred.dtype == np.float32
    np.testing.assert_array_equal(pred, np.stack([test_sample.hr, other.hr]))
    with pytest.raises(ValueError, match="s100"):
        t.predict([test_sample.without_target()])
