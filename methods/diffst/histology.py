"""Histology inputs of diffst, cut from a sample's image crop (RGB H&E or one-channel DAPI).

- Tissue-level image: the whole crop resized (antialiased bilinear) to ``size``, the HR grid's
  size in the paper (256 x 256 for a 256 x 256 map).
- Cell-level tiles: the crop cut into a ``grid`` x ``grid`` lattice of tiles (the paper: 16 x 16
  tiles of 320 px), each resized to ``tile_px`` x ``tile_px`` (paper: 16), ordered by the Shannon
  entropy of the tile's grey-level histogram (256 bins, computed on the tile at full crop
  resolution), ascending, as released.

Both are scaled from uint8 to [-1, 1], float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float -> (N, C, *size), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def tissue_image(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """The tissue-level image.

    Parameters
    ----------
    image : (C, Hp, Wp) uint8 crop, C = 1 or 3.
    size : (h, w) output size.

    Returns
    -------
    (C, h, w) float32 in [-1, 1].
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).float()[None] / 127.5 - 1.0
    return _resize(x, size)[0].clamp(-1.0, 1.0)


def _edges(n: int, parts: int) -> np.ndarray:
    return np.linspace(0, n, parts + 1).round().astype(int)


def tile_entropy(image: np.ndarray, grid: int) -> np.ndarray:
    """Shannon entropy (bits) of each tile's grey-level histogram, (grid * grid,) row-major."""
    grey = image.mean(axis=0).astype(np.uint8) if image.shape[0] > 1 else image[0]
    rows, cols = _edges(grey.shape[0], grid), _edges(grey.shape[1], grid)
    out = np.empty(grid * grid)
    for i in range(grid):
        for j in range(grid):
            tile = grey[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            p = np.bincount(tile.ravel(), minlength=256) / max(tile.size, 1)
            p = p[p > 0]
            out[i * grid + j] = float(-(p * np.log2(p)).sum())
    return out


def cell_tiles(image: np.ndarray, grid: int, tile_px: int) -> torch.Tensor:
    """The entropy-ordered cell-level tiles.

    Parameters
    ----------
    image : (C, Hp, Wp) uint8 crop.
    grid : tiles per side (grid * grid tiles cover the crop).
    tile_px : output side of each tile in pixels.

    Returns
    -------
    (grid * grid, C, tile_px, tile_px) float32 in [-1, 1], lowest entropy first (stable order on
    ties, so the result is deterministic).
    """
    order = np.argsort(tile_entropy(image, grid), kind="stable")
    x = torch.from_numpy(np.ascontiguousarray(image)).float() / 127.5 - 1.0  # (C, Hp, Wp)
    rows, cols = _edges(x.shape[1], grid), _edges(x.shape[2], grid)
    # each tile resized on its own, so no filter reaches across a tile border
    tiles = [
        _resize(x[None, :, rows[i] : rows[i + 1], cols[j] : cols[j + 1]], (tile_px, tile_px))[0]
        for i in range(grid)
        for j in range(grid)
    ]
    return torch.stack(tiles)[torch.from_numpy(order)].clamp(-1.0, 1.0)


class HistologyInputs:
    """Mixin for :class:`~methods.diffusion.trainer.UNetTrainer` subclasses that run
    ``DiffSTNet``: the tissue image and cell tiles as extra inputs, and the cell-tile curriculum
    (``attention.curriculum_ratio``) while training when cell attention is on."""

    config: Any

    def _extra_inputs(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """``image (N, C, H, W)`` at the HR grid and ``tiles (N, T, C, p, p)``."""
        cfg, hw = self.config, samples[0].hr_shape
        return {
            "image": torch.stack([tissue_image(s.image, hw) for s in samples]),
            "tiles": torch.stack(
                [cell_tiles(s.image, cfg.tile_grid, cfg.tile_px) for s in samples]
            ),
        }

    def _ratio(self, step: int) -> float:
        from methods.diffst.attention import curriculum_ratio

        cfg = self.config
        return curriculum_ratio(step, cfg.iterations) if cfg.cell_attention else 1.0
