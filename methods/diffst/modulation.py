"""Cross-modal adaptive modulation (contribution 4 of ``diffst``) and condition injection.

Wang et al. (MICCAI 2024), section 2.4 ("cross-modal adaptive modulation") and the released
code, as ``../shared/design/diffst.md`` states it: each modality's distinct features are cut into
a 2 x 2 grid of parts; inside each part a position-by-position affinity between the two
modalities, ``F = lr^T img`` (P x P for P positions per part: 1024 x 1024 at paper size), goes
through ``Linear(P, P)`` and a softmax, and the result re-weights the modality's own positions;
``distinct = 0.9 distinct + 0.1 modulated``. The condition ``[common, distinct_img, distinct_lr]``
then enters the deepest x_t features through cross-attention, whose output replaces them (as
released).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from methods.diffst.attention import CrossAttention


def _parts(x: Tensor) -> Tensor:
    """``(B, c, h, w)`` -> ``(B, 4, c, h/2, w/2)``, parts in row-major order (TL, TR, BL, BR)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, 4, c, h // 2, w // 2)


def _unparts(x: Tensor) -> Tensor:
    """Inverse of :func:`_parts`: ``(B, 4, c, h/2, w/2)`` -> ``(B, c, h, w)``."""
    b, _, c, ph, pw = x.shape
    x = x.reshape(b, 2, 2, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, 2 * ph, 2 * pw)


class AdaptiveModulation(nn.Module):
    """Modulate each modality's distinct features by its affinity to the other, part by part.

    For one part, with ``lr`` and ``img`` the ``(c, P)`` distinct features of its P positions::

        F     = lr^T img / sqrt(c)                  (P lr positions x P img positions)
        W_lr  = softmax(Linear_lr(F))               row i: weights over lr's own positions
        W_img = softmax(Linear_img(F^T))            row i: weights over img's own positions
        lr'   = 0.9 lr  + 0.1 lr  W_lr^T
        img'  = 0.9 img + 0.1 img W_img^T

    The two ``Linear(P, P)`` layers hold ``2 (P^2 + P)`` parameters (2,099,200 at paper size, a
    64 x 64 deepest grid). **Decision**: ``F`` is scaled by ``1 / sqrt(c)`` (the release's scaling
    is not published; unscaled dot products of 64-channel features saturate the softmax).

    Parameters
    ----------
    channels_half : int
        Width ``c`` of the distinct maps (half the deepest width).
    grid_hw : tuple of int
        The deepest feature grid ``(h, w)``; ``P = ceil(h / 2) ceil(w / 2)``.

    **Decision**: an odd ``h`` or ``w`` (the Visium embryo's 12 x 24 HR regions give a 3 x 6
    deepest grid) is padded by one row or column, replicating the edge, to cut the 2 x 2 parts,
    and cropped back after; the paper's 256 x 256 maps always give an even grid.
    """

    def __init__(self, channels_half: int, grid_hw: tuple[int, int]) -> None:
        super().__init__()
        h, w = int(grid_hw[0]), int(grid_hw[1])
        if h < 1 or w < 1:
            raise ValueError(f"the feature grid must be at least 1 x 1, got {(h, w)}")
        self.channels_half, self.grid_hw = channels_half, (h, w)
        positions = ((h + 1) // 2) * ((w + 1) // 2)
        self.weight_lr = nn.Linear(positions, positions)
        self.weight_img = nn.Linear(positions, positions)

    def forward(self, distinct_img: Tensor, distinct_lr: Tensor) -> tuple[Tensor, Tensor]:
        """Modulate.

        Parameters
        ----------
        distinct_img, distinct_lr : Tensor
            ``(B, c, h, w)`` on the ``grid_hw`` grid.

        Returns
        -------
        tuple of Tensor
            ``(distinct_img, distinct_lr)``, each ``0.9 * own + 0.1 * modulated``,
            ``(B, c, h, w)``.
        """
        b, c, h, w = distinct_lr.shape
        if distinct_img.shape != distinct_lr.shape or (c, (h, w)) != (
            self.channels_half,
            self.grid_hw,
        ):
            raise ValueError(
                f"distinct maps must both be (B, {self.channels_half}, {self.grid_hw[0]}, "
                f"{self.grid_hw[1]}), got {tuple(distinct_img.shape)} and "
                f"{tuple(distinct_lr.shape)}"
            )
        pad = (0, w % 2, 0, h % 2)  # an odd grid: one replicated column / row (docstring)
        even_img = nn.functional.pad(distinct_img, pad, mode="replicate")
        even_lr = nn.functional.pad(distinct_lr, pad, mode="replicate")
        ph, pw = (h + 1) // 2, (w + 1) // 2
        img = _parts(even_img).flatten(-2)  # (B, 4, c, P)
        lr = _parts(even_lr).flatten(-2)
        affinity = lr.transpose(-2, -1) @ img / math.sqrt(c)  # (B, 4, P lr, P img)
        w_lr = torch.softmax(self.weight_lr(affinity), dim=-1)
        w_img = torch.softmax(self.weight_img(affinity.transpose(-2, -1)), dim=-1)
        mod_lr = _unparts((lr @ w_lr.transpose(-2, -1)).reshape(b, 4, c, ph, pw))[..., :h, :w]
        mod_img = _unparts((img @ w_img.transpose(-2, -1)).reshape(b, 4, c, ph, pw))[..., :h, :w]
        return 0.9 * distinct_img + 0.1 * mod_img, 0.9 * distinct_lr + 0.1 * mod_lr


class ConditionInjection(nn.Module):
    """Cross-attention from the deepest x_t features to the condition tokens, as released.

    Queries come from the x_t features, keys and values from a linear projection of the
    condition; the attention output (width ``channels``) replaces the x_t features, as in the
    release. The x_t information still reaches the decoder through the encoder skips.

    Parameters
    ----------
    channels : int
        Width of the deepest x_t features (queries, and the output).
    cond_channels : int
        Width of the condition ``[common, distinct_img, distinct_lr]`` (keys/values).
    """

    def __init__(self, channels: int, cond_channels: int) -> None:
        super().__init__()
        self.attention = CrossAttention(channels, cond_channels, channels)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        """``(B, channels, h, w)``, ``(B, cond_channels, h', w')`` -> ``(B, channels, h, w)``."""
        b, c, hh, ww = h.shape
        queries = h.flatten(2).transpose(1, 2)  # (B, h*w, channels)
        context = cond.flatten(2).transpose(1, 2)  # (B, h'*w', cond_channels)
        return self.attention(queries, context).transpose(1, 2).reshape(b, c, hh, ww)
