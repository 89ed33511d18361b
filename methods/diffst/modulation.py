"""Cross-modal adaptive modulation (contribution 4 of ``diffst``) and condition injection.

Each modality's distinct features are split into a 2 x 2 grid of parts; an affinity between the
two modalities' parts weights how much of each part of the other modality is mixed in. The
condition ``[common, distinct_img, distinct_lr]`` then enters the deepest x_t features through
cross-attention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from methods.diffst.attention import CrossAttention
from methods.diffst.unet import group_norm


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
    """Modulate each modality's distinct features by the other's, part by part.

    Parameters
    ----------
    channels_half : int
        Width ``c`` of the distinct maps (half the deepest width).
    """

    def __init__(self, channels_half: int) -> None:
        super().__init__()
        self.channels_half = channels_half
        # Separate weights for the two directions: F for lr <- img, F^T for img <- lr.
        self.weight_lr = nn.Linear(4, 4)
        self.weight_img = nn.Linear(4, 4)

    def forward(self, distinct_img: Tensor, distinct_lr: Tensor) -> tuple[Tensor, Tensor]:
        """Modulate.

        Parameters
        ----------
        distinct_img, distinct_lr : Tensor
            ``(B, c, h, w)`` with ``h`` and ``w`` even.

        Returns
        -------
        tuple of Tensor
            ``(distinct_img, distinct_lr)``, each ``0.9 * own + 0.1 * modulated``,
            ``(B, c, h, w)``.
        """
        b, c, h, w = distinct_lr.shape
        if distinct_img.shape != distinct_lr.shape or c != self.channels_half:
            raise ValueError(
                f"distinct maps must both be (B, {self.channels_half}, h, w), got "
                f"{tuple(distinct_img.shape)} and {tuple(distinct_lr.shape)}"
            )
        if h % 2 or w % 2:
            raise ValueError(f"the 2 x 2 part grid needs an even feature grid, got {(h, w)}")
        parts_img, parts_lr = _parts(distinct_img), _parts(distinct_lr)
        tok_img, tok_lr = parts_img.mean(dim=(-2, -1)), parts_lr.mean(dim=(-2, -1))  # (B, 4, c)
        affinity = tok_lr @ tok_img.transpose(1, 2) / math.sqrt(c)  # (B, 4 lr, 4 img)
        w_lr = torch.softmax(self.weight_lr(affinity), dim=-1)  # lr part i <- img part j
        w_img = torch.softmax(self.weight_img(affinity.transpose(1, 2)), dim=-1)
        mod_lr = _unparts(torch.einsum("bij,bjchw->bichw", w_lr, parts_img))
        mod_img = _unparts(torch.einsum("bij,bjchw->bichw", w_img, parts_lr))
        return 0.9 * distinct_img + 0.1 * mod_img, 0.9 * distinct_lr + 0.1 * mod_lr


class ConditionInjection(nn.Module):
    """Cross-attention from the deepest x_t features to the condition tokens, as a residual.

    Parameters
    ----------
    channels : int
        Width of the deepest x_t features (queries).
    cond_channels : int
        Width of the condition ``[common, distinct_img, distinct_lr]`` (keys/values).
    dim : int, optional
        Attention width (default: ``channels``).
    groups : int
        GroupNorm groups of the query normalisation.
    """

    def __init__(
        self, channels: int, cond_channels: int, dim: int | None = None, groups: int = 32
    ) -> None:
        super().__init__()
        dim = dim or channels
        # Normalised queries, as in improved-diffusion's attention blocks: the residual stream's
        # scale grows with depth and would otherwise sharpen the softmax arbitrarily.
        self.norm = group_norm(channels, groups)
        self.attention = CrossAttention(channels, cond_channels, dim)
        # Zero-initialised so the untrained network starts as the plain U-Net.
        self.proj_out = nn.Linear(dim, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        """``(B, channels, h, w)``, ``(B, cond_channels, h', w')`` -> ``(B, channels, h, w)``."""
        b, c, hh, ww = h.shape
        queries = self.norm(h).flatten(2).transpose(1, 2)  # (B, h*w, channels)
        context = cond.flatten(2).transpose(1, 2)  # (B, h'*w', cond_channels)
        attn = self.proj_out(self.attention(queries, context))
        return h + attn.transpose(1, 2).reshape(b, c, hh, ww)
