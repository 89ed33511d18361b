"""``sr3``: plain conditional diffusion, conditioned only by the upsampled LR map.

Saharia, Ho, Chan, Salimans, Fleet & Norouzi, "Image Super-Resolution via Iterative Refinement"
(SR3), 2021 (IEEE TPAMI 2022), and the super-resolution model of improved-diffusion (Nichol &
Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021): the noisy HR map x_t
concatenated with the bilinearly upsampled LR map is the input of one time-conditioned U-Net.

Kept from ``diffst`` (``methods/diffst``), so the comparison isolates the conditioning: the
model scale (the LR map is upsampled on it, ``F.interpolate(..., mode="bilinear",
align_corners=False)``), the U-Net pieces and widths (improved-diffusion ResBlocks with
scale-shift norm, residual up/down sampling, diffst's middle block and decoder, output epsilon
and the learned-range variance v in 2G channels), the linear schedule, the hybrid loss
(Charbonnier + variational bound), the respaced DDPM / DDIM samplers (x0 clipped as in diffst),
K draws per input in one batch, AdamW, EMA, augmentation, checkpoints and the presets with the same
channels and iterations (``methods/diffusion/config.py``).

Simplified or left out: no tissue image, cell tiles, gene graph, cross-attention, disentangling
or modulation (the image is never read, so it cannot change a draw). SR3's own choices that the
diffst backbone does not make are not taken: self-attention at low resolutions, dropout, deeper
channel multipliers, and SR3's continuous noise-level conditioning and plain L1/L2 loss (the
schedule and loss are diffst's, so only the conditioning differs). The ablation switches of
diffst's config (``graph``, ``cell_attention``, ``disentangle``, ``modulation``) are REJECTED
(TypeError): sr3 has none of those parts, and ``params()`` reports them all False. The fields
``tile_grid``, ``tile_px`` and ``disentangle_weight`` are accepted and have no effect (there are
no tiles and no auxiliary loss), so one override dict fits diffst and both baselines.
Checkpoints: ``<workdir>/sr3.pt``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.contract import Sample
from methods.diffusion.memo import Memo
from methods.diffusion.trainer import Batch, DiffusionTrainer
from methods.diffusion.unet import (
    Encoder,
    TimeEmbedding,
    check_width,
    check_xt,
    decode,
    decoder_modules,
)


class SR3Net(nn.Module):
    """One time-conditioned U-Net over ``concat[x_t, bilinear(lr)]`` (2G input channels).

    Parameters
    ----------
    genes : int
        Number of genes G (x_t and LR channels; the output has 2G: epsilon, then v).
    channels, channel_mult, num_res_blocks, groups
        Base width, per-level multipliers, ResBlocks per level and GroupNorm groups, as for
        ``DiffSTNet``.
    """

    def __init__(
        self,
        *,
        genes: int,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 1),
        num_res_blocks: int = 1,
        groups: int = 32,
    ) -> None:
        super().__init__()
        check_width("sr3", channels, 2 * genes, "x_t and the upsampled LR map (two per gene)")
        self.genes, self.channel_mult = genes, tuple(channel_mult)
        self.time_embed = TimeEmbedding(channels)
        emb = self.time_embed.dim
        self.encoder = Encoder(2 * genes, channels, channel_mult, num_res_blocks, emb, groups)
        self.middle, self.decoder, self.out = decoder_modules(self.encoder, emb, 2 * genes, groups)

    def forward(self, x_t: Tensor, t: Tensor, lr: Tensor) -> Tensor:
        """Predict epsilon and v.

        Parameters
        ----------
        x_t : Tensor
            ``(B, G, H, W)`` noisy HR map (model scale), H and W divisible by
            ``2**(len(channel_mult) - 1)``.
        t : Tensor
            ``(B,)`` int64 timesteps.
        lr : Tensor
            ``(B, G, h, w)`` LR map on the model scale, any size; upsampled bilinearly to
            ``(H, W)`` (``align_corners=False``).

        Returns
        -------
        Tensor
            ``(B, 2G, H, W)``: channels ``[:G]`` epsilon, ``[G:]`` the learned-variance v.
        """
        b, g, h, w = x_t.shape
        check_xt(x_t, self.genes, self.channel_mult)
        if lr.ndim != 4 or lr.shape[:2] != (b, g) or t.shape != (b,):
            raise ValueError(
                f"lr must be (B={b}, G={g}, h, w) and t (B={b},); got {tuple(lr.shape)} and "
                f"{tuple(t.shape)}"
            )
        up = F.interpolate(lr, size=(h, w), mode="bilinear", align_corners=False)
        emb = self.time_embed(t)
        skips, deep = self.encoder(torch.cat([x_t, up], dim=1), emb)
        return decode(self.middle, self.decoder, self.out, deep, skips, emb)


class PlainConditionalDiffusion(DiffusionTrainer):
    """SR3-style conditional diffusion on the LR map alone (see the module docstring).

    Keyword overrides: the fields of :class:`~methods.diffusion.config.DiffusionConfig`
    except the four ablation switches (TypeError, as for unknown names); ``preset`` as for diffst.
    """

    name: ClassVar[str] = "sr3"
    checkpoint: ClassVar[str] = "sr3.pt"
    fixed: ClassVar[dict[str, Any]] = {
        "graph": False,
        "cell_attention": False,
        "disentangle": False,
        "modulation": False,
    }

    @classmethod
    def input_width(cls, genes: int) -> int:
        """x_t and the upsampled LR map: 2G."""
        return 2 * genes

    def _network(self, sample: Sample, totals: Tensor) -> nn.Module:
        cfg = self.config
        return SR3Net(
            genes=len(sample.genes),
            channels=cfg.channels,
            channel_mult=cfg.channel_mult,
            num_res_blocks=cfg.num_res_blocks,
            groups=cfg.groups,
        )

    def _denoise(
        self,
        net: nn.Module,
        x_t: Tensor,
        t: Tensor,
        batch: Batch,
        ratio: float,
        memo: Memo | None = None,
    ) -> tuple[Tensor, Tensor]:
        """SR3Net's epsilon and v from x_t and the LR map; no auxiliary loss (nothing to keep
        in ``memo``: the LR map enters with x_t)."""
        return net(x_t, t, batch["lr"]), x_t.new_zeros(())
