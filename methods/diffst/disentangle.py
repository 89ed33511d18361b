"""Multi-modal disentangling network (contribution 3 of ``diffst``).

Two convolutions shared across the image and LR modalities split each into a "common" and a
"distinct" half. The loss pulls the common parts together and pushes the distinct parts apart.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Added to the denominator of the disentangling loss: when the two distinct parts coincide
#: (e.g. both SiLU outputs are 0 at init on a constant input) the ratio would divide by zero.
EPS = 1e-8


class Disentangle(nn.Module):
    """Split image and LR features into common and distinct parts with shared convs.

    Parameters
    ----------
    channels : int
        Width of both inputs; each part has ``channels // 2`` channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"Disentangle needs >= 2 channels, got {channels}")
        half = channels // 2
        self.common = nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.SiLU())
        self.distinct = nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.SiLU())

    def forward(self, img: Tensor, lr: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Disentangle.

        Parameters
        ----------
        img, lr : Tensor
            ``(B, channels, h, w)`` attended image features and LR features on the same grid.

        Returns
        -------
        common : Tensor
            ``(B, channels // 2, h, w)``, mean of the two modalities' common parts.
        distinct_img, distinct_lr : Tensor
            ``(B, channels // 2, h, w)`` each.
        loss : Tensor
            Scalar ``mean((common_img - common_lr)^2) / (mean((distinct_img - distinct_lr)^2)
            + 1e-8)``.
        """
        if img.shape != lr.shape:
            raise ValueError(f"img and lr must share a shape, got {img.shape} and {lr.shape}")
        common_img, common_lr = self.common(img), self.common(lr)
        distinct_img, distinct_lr = self.distinct(img), self.distinct(lr)
        common = 0.5 * (common_img + common_lr)
        num = torch.mean((common_img - common_lr) ** 2)
        loss = num / (torch.mean((distinct_img - distinct_lr) ** 2) + EPS)
        return common, distinct_img, distinct_lr, loss
