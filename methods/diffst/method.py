"""``diffst``: the cross-modal conditional diffusion model (Wang, Huang, Price & Li, MICCAI 2024).

Wang, Huang, Price, Li, "Cross-modal Diffusion Modelling for Super-resolved Spatial
Transcriptomics", MICCAI 2024 (arXiv 2404.12973). The paper's own parts live here: the network
:class:`DiffSTNet` (``network.py``, section 2 and Fig. 1: U-Net with x_t, LR and image encoders),
the co-expression gene graph (``graph.py``, section 2.1), the dynamic cell-to-tissue attention
(``attention.py``, section 2.2), the multi-modal disentangling (``disentangle.py``, section 2.3),
the cross-modal adaptive modulation and condition injection (``modulation.py``, section 2.4) and
the histology inputs (``histology.py``). The diffusion (schedule, samplers, hybrid loss), the U-Net
backbone, the hyperparameters and the trainer (AdamW, EMA, checkpoints, batched sampling) are
shared with the two same-budget baselines (``methods/unet_regressor.py``, ``methods/sr3.py``) and
live in ``methods/diffusion``.

As released: the modulation (a P x P position affinity per part, ``Linear(P, P)`` and softmax
re-weighting each modality's own positions), the injection (the cross-attention output replaces
the deepest x_t features), one middle ResBlock after it, and the gene graph's G -> G conv. The
``paper`` preset has 13.34 M parameters at 25 genes against the release's 13.36 M (tested).

Deviations from the released code, each deliberate:

- Scale: the release min-max scales every (region, gene) map to [0, 1] using the target's own
  range. Here the split's scale is used (log1p-CP10k) and mapped to the diffusion's [-1, 1] by
  the per-gene maximum over the TRAINING HR maps, ``x = 2 v / r_g - 1`` (LR maps the same way), so
  no score depends on the target's range. Positions outside tissue (0 in the split) are -1, as
  in the release (``outside="floor"``; decided on validation regions: ``docs/decisions.md``,
  "Outside tissue: the release's floor"). Outside tissue is never scored.
- The release concatenates a constant channel to x_t that its first conv does not accept (it
  crashes): x_t is fed alone.
- The release hard-codes the cell-tile ratio to 1; the 0.25 / 0.5 / 1.0 curriculum is implemented
  (ratio 1 at sampling).
- The release scores one sample per region; here K samples are drawn per input in one batch and
  the point prediction is their mean; the runner scores diversity.
- Training data are a handful of sections, so the 8 symmetries of the square (flips and 90-degree
  rotations of map, LR and image together; 4 flips when the grid is not square) are used as
  augmentation (``augment``), precomputed once.
- The variational-bound term's t = 0 case uses a continuous Gaussian likelihood (see schedule.py).
- ``quick`` preset: smaller sizes, batch 8 for 500 steps at learning rate 7e-4 and EMA 0.98
  (the budget ``sr3`` and ``unet`` share; config.py says why), and a
  width that passes the genes through (``channels=None``, config.py): at 32 channels for 50 genes
  the noise prediction had an error floor and the samples were clipped noise (issue 13).
- Parameterisation: ``prediction`` (``eps`` as in the paper, ``x0`` or ``v``) and ``residual``
  (generate HR minus the bicubic upsampled LR map) are config fields; the paper's is
  ``eps`` without residual (``methods/diffusion/schedule.py`` and ``trainer.py``). The run name
  always carries both.
- The modulation's affinity is scaled by ``1 / sqrt(c)`` (not published; ``modulation.py``).
- Mixed precision: the network trains and samples under bfloat16 autocast (``amp``,
  ``methods/diffusion/config.py``); the sampler's update of x_t stays float32.

Checkpoints (``<workdir>/diffst.pt``) hold model, EMA, optimiser, step, RNG state and the fit
seconds spent so far (``resumed_fit_s`` after a resume; the runner adds them to the recorded fit
time); they are written atomically every ``checkpoint_every`` steps and loaded with
``weights_only=True``. A run with the same config and training data resumes from one (or skips
training when it is complete).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from methods.contract import Sample
from methods.diffst.histology import HistologyInputs
from methods.diffusion.config import DiffusionConfig
from methods.diffusion.memo import Memo
from methods.diffusion.trainer import Batch, DiffusionTrainer

CHECKPOINT = "diffst.pt"


def diffst_network(config: DiffusionConfig, sample: Sample, totals: Tensor) -> nn.Module:
    """The ``DiffSTNet`` of ``config`` for ``sample``'s genes, image and LR grid; the gene graph
    is built from ``totals`` ``(G,)``, the per-gene sums of the TRAINING HR maps."""
    from methods.diffst.network import DiffSTNet

    net = DiffSTNet(
        genes=len(sample.genes),
        image_channels=sample.image.shape[0],
        channels=config.channels,
        channel_mult=config.channel_mult,
        num_res_blocks=config.num_res_blocks,
        groups=config.groups,
        lr_hw=sample.lr.shape[-2:],
        hr_hw=sample.hr_shape,
        tile_px=config.tile_px,
        graph=config.graph,
        cell_attention=config.cell_attention,
        disentangle=config.disentangle,
        modulation=config.modulation,
    )
    net.set_gene_totals(totals)
    return net


class DiffST(HistologyInputs, DiffusionTrainer):
    """Cross-modal conditional diffusion for ST super-resolution (see the module docstring).

    Keyword overrides: any :class:`~methods.diffusion.config.DiffusionConfig`
    field (unknown names raise TypeError), including the four ablation switches; ``preset``
    as in ``config.py``.
    """

    name: ClassVar[str] = "diffst"
    checkpoint: ClassVar[str] = CHECKPOINT

    def _network(self, sample: Sample, totals: Tensor) -> nn.Module:
        return diffst_network(self.config, sample, totals)

    def _denoise(
        self,
        net: nn.Module,
        x_t: Tensor,
        t: Tensor,
        batch: Batch,
        ratio: float,
        memo: Memo | None = None,
    ) -> tuple[Tensor, Tensor]:
        """DiffSTNet's epsilon and v, and its disentangling loss; at inference (``batch`` has
        ``input``, each row's input) the conditioning streams run once per input, and once per
        timestep for all the batches of draws that share ``memo``."""
        lr, image, tiles = batch["lr"], batch["image"], batch["tiles"]
        rows = batch.get("input")
        if rows is None:
            return net(x_t, t, lr, image, tiles, ratio=ratio)
        first = torch.searchsorted(rows, torch.arange(int(rows[-1]) + 1, device=rows.device))
        return net(
            x_t, t, lr[first], image[first], tiles[first], ratio=ratio, rows=rows, memo=memo
        )
