"""diffst's histology inputs and presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.diffst import histology
from methods.diffst.method import DiffST
from methods.diffusion.config import DiffusionConfig, make_config
from methods.sr3 import PlainConditionalDiffusion
from methods.unet_regressor import UNetRegressor


def _image(c: int = 3, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((c, size, size), 200, dtype=np.uint8)
    # a noisy (high-entropy) quadrant and a flat (zero-entropy) rest
    img[:, : size // 2, : size // 2] = rng.integers(0, 256, (c, size // 2, size // 2))
    return img


@pytest.mark.parametrize("channels", [1, 3])
def test_tissue_image_shape_and_range(channels):
    x = histology.tissue_image(_image(channels), (24, 20))
    assert x.shape == (channels, 24, 20) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    flat = histology.tissue_image(np.full((channels, 64, 64), 255, np.uint8), (8, 8))
    assert np.allclose(flat.numpy(), 1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_cell_tiles_are_ordered_by_ascending_entropy(channels):
    img = _image(channels)
    tiles = histology.cell_tiles(img, grid=4, tile_px=8)
    assert tiles.shape == (16, channels, 8, 8)
    entropy = histology.tile_entropy(img, 4)
    assert np.all(np.diff(np.sort(entropy)) >= 0)
    # the 4 noisy tiles (top-left quadrant) have the highest entropy and come last
    assert (entropy > 1).sum() == 4
    last = tiles[-4:].numpy()
    first = tiles[:-4].numpy()
    assert last.std() > 0.1 and np.allclose(first, 200 / 127.5 - 1, atol=1e-5)


def test_tile_entropy_matches_a_direct_computation():
    img = _image(1, size=32, seed=3)
    tile = img[0, :8, :8]
    p = np.bincount(tile.ravel(), minlength=256) / tile.size
    expected = -sum(q * np.log2(q) for q in p if q > 0)
    assert histology.tile_entropy(img, 4)[0] == pytest.approx(expected)


def test_presets():
    paper = make_config("paper", on_gpu=False)
    assert paper == DiffusionConfig()
    assert (paper.channels, paper.channel_mult, paper.num_res_blocks) == (128, (1, 1, 1), 1)
    assert (paper.learning_rate, paper.weight_decay, paper.ema_decay) == (1e-4, 1e-5, 0.9999)
    assert (paper.timesteps, paper.steps, paper.sampler) == (1000, 20, "ddpm")
    assert (paper.iterations, paper.batch_size) == (24751, 8)
    assert make_config("default", on_gpu=True) == paper
    quick = make_config("default", on_gpu=False)
    assert quick == make_config("quick", on_gpu=True) and quick.channels is None  # auto width
    assert make_config("quick", on_gpu=False, graph=False).graph is False
    with pytest.raises(TypeError, match="unknown diffst parameter"):
        make_config("quick", on_gpu=False, chanels=3)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge", on_gpu=False)


def test_the_three_learners_share_the_quick_budget():
    # diffst, sr3 (its backbone without the four contributions) and the unet regressor train the
    # same steps of the same batch at the same rate, so their scores differ by the model alone
    quick = make_config("quick", on_gpu=False)
    budget = ("batch_size", "iterations", "learning_rate", "ema_decay", "checkpoint_every")
    configs = [
        DiffST(preset="quick").config,
        PlainConditionalDiffusion(preset="quick").config,
        UNetRegressor(preset="quick").config,
    ]
    for config in configs:
        assert [getattr(config, f) for f in budget] == [getattr(quick, f) for f in budget]
    assert make_config("paper", on_gpu=False) == DiffusionConfig()
    # the EMA's horizon, 1 / (1 - decay) steps, is a small part of the budget, not most of it
    assert 1 / (1 - quick.ema_decay) <= quick.iterations / 5
    assert make_config("quick", on_gpu=False, iterations=7).iterations == 7
