"""diffst's histology inputs and presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.diffst import histology
from methods.diffst.method import DiffST
from methods.diffusion.config import DiffusionConfig, make_config
from methods.sr3 import PlainConditionalDiffusion


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


def test_diffst_quick_trains_the_trio_s_samples_in_half_the_steps():
    shared = make_config("quick", on_gpu=False)
    diffst = make_config("quick", on_gpu=False, method="diffst")
    assert make_config("quick", on_gpu=False, method="sr3") == shared  # sr3, unet: the preset
    assert make_config("paper", on_gpu=False, method="diffst") == DiffusionConfig()
    samples = diffst.batch_size * diffst.iterations
    assert samples == shared.batch_size * shared.iterations
    assert diffst.iterations < shared.iterations
    # the EMA averages over the same number of training samples: batch / (1 - decay)
    assert diffst.batch_size / (1 - diffst.ema_decay) == pytest.approx(
        shared.batch_size / (1 - shared.ema_decay)
    )
    assert diffst.learning_rate == pytest.approx(shared.learning_rate * 2**0.5, rel=0.02)
    # the method's changes come before the caller's overrides
    assert make_config("quick", on_gpu=False, method="diffst", iterations=7).iterations == 7
    assert DiffST(preset="quick").config == diffst
    sr3 = PlainConditionalDiffusion(preset="quick").config  # the four contributions pinned off
    assert (sr3.batch_size, sr3.iterations, sr3.ema_decay) == (4, 1000, shared.ema_decay)
