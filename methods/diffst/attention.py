"""Dynamic cell-to-tissue cross-attention (contribution 2 of ``diffst``) and a generic block.

Cell-level tiles arrive ordered by ascending Shannon entropy; a curriculum keeps a growing
fraction of them (the least textured first), their embeddings are averaged into a cell-level map
that the tissue-level features attend to.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


def curriculum_ratio(step: int, total_steps: int) -> float:
    """Fraction of cell tiles kept at a training step (the paper's curriculum).

    0.25 while ``step < 2.5%`` of ``total_steps``, 0.5 while ``step < 5%``, then 1.0. Inference
    uses 1.0 (call the network with ``ratio=1.0``).
    """
    if total_steps < 1 or step < 0:
        raise ValueError(f"need total_steps >= 1 and step >= 0, got {total_steps} and {step}")
    # Integer comparisons: step < total / 40 and step < total / 20 without float rounding.
    if 40 * step < total_steps:
        return 0.25
    if 20 * step < total_steps:
        return 0.5
    return 1.0


def kept_tiles(ratio: float, count: int) -> int:
    """``ceil(ratio * count)`` tiles, at least 1; ``ratio`` must lie in (0, 1]."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    # round() first so that e.g. 0.1 * 30 = 3.0000000000000004 keeps 3 tiles, not 4.
    return max(1, min(count, math.ceil(round(ratio * count, 9))))


class CrossAttention(nn.Module):
    """Single-head scaled dot-product attention between two token sets.

    Parameters
    ----------
    query_dim, context_dim : int
        Widths of the query tokens and the context (key/value) tokens.
    dim : int
        Width of queries, keys and values; the output has this width (no output projection:
        callers add their own where they need one).
    """

    def __init__(self, query_dim: int, context_dim: int, dim: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(query_dim, dim)
        self.to_k = nn.Linear(context_dim, dim)
        self.to_v = nn.Linear(context_dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``(B, N, query_dim)``, ``(B, M, context_dim)`` -> ``(B, N, dim)``."""
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        return F.scaled_dot_product_attention(q, k, v)


class CellToTissueAttention(nn.Module):
    """Tissue-level features attend to averaged cell-tile embeddings.

    Parameters
    ----------
    channels : int
        Width of the tissue-level features (and of the tile embedding).
    image_channels : int
        Channels of the tiles (3 for RGB H&E, 1 for a grey image).
    tile_px : int
        Side of one tile ``p``; the stride-1 conv keeps the embedding at ``p x p`` (16 x 16 in
        the paper is already small).
    """

    def __init__(self, channels: int, image_channels: int, tile_px: int) -> None:
        super().__init__()
        self.channels, self.image_channels, self.tile_px = channels, image_channels, tile_px
        self.embed = nn.Sequential(nn.Conv2d(image_channels, channels, 3, padding=1), nn.SiLU())
        self.attention = CrossAttention(channels, channels, channels)

    def forward(self, tissue: Tensor, tiles: Tensor, ratio: float = 1.0) -> Tensor:
        """Attend.

        Parameters
        ----------
        tissue : Tensor
            ``(B, channels, h, w)`` tissue-level image features.
        tiles : Tensor
            ``(B, T, image_channels, p, p)`` cell tiles in ascending entropy order.
        ratio : float
            Fraction of tiles kept (the first ``ceil(ratio * T)``), in (0, 1].

        Returns
        -------
        Tensor
            ``(B, channels, h, w)``: ``0.9 * tissue + 0.1 * attention``.
        """
        b, t, c, p, q = tiles.shape
        if (c, p, q) != (self.image_channels, self.tile_px, self.tile_px):
            raise ValueError(
                f"tiles must be (B, T, {self.image_channels}, {self.tile_px}, {self.tile_px}), "
                f"got {tuple(tiles.shape)}"
            )
        k = kept_tiles(ratio, t)
        # Only the kept tiles are embedded: the rest cannot influence the output.
        emb = self.embed(tiles[:, :k].reshape(b * k, c, p, q))
        cell = emb.reshape(b, k, self.channels, p, q).mean(dim=1)  # (B, channels, p, p)
        h, w = tissue.shape[-2:]
        cell = F.interpolate(cell, size=(h, w), mode="bilinear", align_corners=False)
        queries = tissue.flatten(2).transpose(1, 2)  # (B, h*w, channels)
        context = cell.flatten(2).transpose(1, 2)
        attn = self.attention(queries, context).transpose(1, 2).reshape(b, self.channels, h, w)
        return 0.9 * tissue + 0.1 * attn
