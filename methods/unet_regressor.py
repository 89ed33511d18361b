"""``unet``: the U-Net regressor, diffst's backbone and inputs trained with a regression loss.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, for the encoder-decoder with skips; the backbone itself is diffst's improved-diffusion
U-Net (Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021) as
configured by Wang et al. (MICCAI 2024), whose later work reports such a U-Net as a baseline.

Kept from ``diffst`` (``methods/diffst``), so the comparison isolates the objective: the network
(``DiffSTNet`` with the gene graph, cell-to-tissue attention, disentangling and modulation, and
the same ablation switches), the inputs (LR map, tissue image, entropy-ordered cell tiles, the
cell-tile curriculum), the model scale, augmentation, AdamW, EMA, checkpoints and the presets
with the same iterations (``methods/diffusion/config.py``).

Changed: the loss is the mean squared error between the first G output channels and the
model-scale HR map (over every position, as diffst's loss) plus the disentangling loss with the
same weight (``disentangle_weight``, 0.01); the prediction is one deterministic map.

Simplified: the network is called with ``x_t = 0`` and ``t = 0`` in training and prediction,
so its x_t encoder sees a constant input (it still adds learned, input-independent features to
the skips) and the time embedding is a constant: the LR and image encoders carry the
information. The G learned-variance channels are ignored (they receive no gradient). The
prediction is clipped to the model scale's [-1, 1], as diffst's sampler clips x0. The diffusion
fields of the config (``timesteps``, ``steps``, ``sampler``, ``prediction``) are accepted and have
no effect; ``residual`` regresses ``HR - bicubic(LR)`` (``methods/diffusion/trainer.py``), as the
``quick`` preset does.
Same seed, same training data: identical output (on one device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from methods.contract import Sample
from methods.diffst.histology import HistologyInputs
from methods.diffst.method import diffst_network
from methods.diffusion.trainer import Batch, UNetTrainer


class UNetRegressor(HistologyInputs, UNetTrainer):
    """diffst's network and inputs trained by MSE; one deterministic prediction.

    Keyword overrides: any :class:`~methods.diffusion.config.DiffusionConfig`
    field (unknown names raise TypeError); ``preset`` as for diffst. Checkpoints:
    ``<workdir>/unet.pt``.
    """

    name: ClassVar[str] = "unet"
    checkpoint: ClassVar[str] = "unet.pt"

    def label_params(self) -> dict[str, Any]:
        """As the trainer's, without ``prediction``: a regressor has no parameterisation."""
        label = super().label_params()
        label.pop("prediction")
        return label

    def _network(self, sample: Sample, totals: Tensor) -> nn.Module:
        return diffst_network(self.config, sample, totals)

    def _regress(
        self, net: nn.Module, batch: Batch, hw: Sequence[int], ratio: float
    ) -> tuple[Tensor, Tensor]:
        """Model-scale ``(B, G, *hw)`` prediction from ``x_t = 0, t = 0`` (``hw``: the HR grid),
        and the scalar disentangling loss."""
        lr = batch["lr"]
        b, g = lr.shape[:2]
        x_t = lr.new_zeros((b, g, *hw))
        t = torch.zeros(b, dtype=torch.long, device=lr.device)
        out, aux = net(x_t, t, lr, batch["image"], batch["tiles"], ratio=ratio)
        return out[:, :g], aux

    def _loss(self, batch: Batch, generator: torch.Generator, ratio: float) -> Tensor:
        """MSE to the model-scale HR map (or to ``x0 - base`` with ``residual``) +
        ``disentangle_weight`` x disentangling loss."""
        with self._autocast():
            pred, aux = self._regress(self.net, batch, batch["x0"].shape[-2:], ratio)
        mse = ((pred.float() - self._target(batch)) ** 2).mean()
        return mse + self.config.disentangle_weight * aux.float()

    @torch.no_grad()
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """HR prediction ``(N, G, H, W)`` float32, log1p-CP10k, for samples without ``hr``."""

        def run(lo: int, part: Batch, shape: tuple[int, ...]) -> Tensor:
            return self._finish(part, self._regress(self.ema, part, shape[-2:], 1.0)[0].float())

        return self._infer(self._encode(samples), samples[0].hr_shape, 1, run)[:, 0]
