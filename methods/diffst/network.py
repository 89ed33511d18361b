"""``DiffSTNet``: the cross-modal conditional denoiser of ``diffst`` (Wang et al., MICCAI 2024).

Three time-conditioned encoders (noisy HR x_t, LR map, tissue image) whose per-level features are
averaged into the U-Net skips; at the deepest level the image features attend to the cell tiles,
image and LR features are disentangled and modulated, and the condition is injected into the x_t
features by cross-attention; then the middle block and an improved-diffusion decoder predict
epsilon and the learned-variance interpolation v (2G channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.diffst.attention import CellToTissueAttention
from methods.diffst.disentangle import Disentangle
from methods.diffst.graph import Adjacency, GeneGraph
from methods.diffst.modulation import AdaptiveModulation, ConditionInjection
from methods.diffusion.memo import Memo
from methods.diffusion.unet import (
    Encoder,
    TimeEmbedding,
    check_width,
    check_xt,
    decode,
    decoder_modules,
)


def _to_size(x: Tensor, size: Sequence[int], mode: str) -> Tensor:
    """Resize ``(B, C, h, w)`` to ``size`` with ``mode`` unless it already has that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


class DiffSTNet(nn.Module):
    """Denoising network of ``diffst``.

    Parameters
    ----------
    genes : int
        Number of genes G (x_t and LR channels; the output has 2G).
    image_channels : int
        Channels of the tissue image and the cell tiles (3 for H&E, 1 for grey).
    channels : int
        Base width (128 in the paper).
    channel_mult : tuple of int
        Width multipliers per level ((1, 1, 1) in the paper).
    num_res_blocks : int
        Non-downsampling ResBlocks per encoder level.
    groups : int
        GroupNorm groups (falls back to a divisor of small channel counts).
    lr_hw : tuple of int
        LR grid ``(h, w)`` the gene graph is built for (26 x 26 in the paper).
    hr_hw : tuple of int
        HR grid ``(H, W)``; the modulation's ``Linear(P, P)`` is sized from its deepest grid.
    tile_px : int
        Side of a cell tile (16 in the paper).
    graph, cell_attention, disentangle, modulation : bool
        The four contributions; switching one off creates none of its parameters. Without
        ``disentangle`` each modality gets its own conv3x3 + SiLU to half the width, the common
        part is zero and the loss is 0.
    graph_adjacency, graph_threshold, graph_normalize
        Options of :class:`GeneGraph` (defaults: the release's ratio adjacency, unnormalised).
    """

    def __init__(
        self,
        *,
        genes: int,
        image_channels: int,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 1),
        num_res_blocks: int = 1,
        groups: int = 32,
        lr_hw: tuple[int, int],
        hr_hw: tuple[int, int],
        tile_px: int = 16,
        graph: bool = True,
        cell_attention: bool = True,
        disentangle: bool = True,
        modulation: bool = True,
        graph_adjacency: Adjacency = "ratio",
        graph_threshold: float = 0.0,
        graph_normalize: bool = False,
    ) -> None:
        super().__init__()
        check_width("diffst", channels, genes, "x_t (one per gene)")
        mult = tuple(channel_mult)
        self.genes, self.image_channels, self.channel_mult = genes, image_channels, mult
        self.time_embed = TimeEmbedding(channels)
        emb = self.time_embed.dim
        self.gene_graph = (
            GeneGraph(genes, lr_hw, graph_adjacency, graph_threshold, graph_normalize)
            if graph
            else None
        )
        self.xt_encoder = Encoder(genes, channels, mult, num_res_blocks, emb, groups)
        self.lr_encoder = Encoder(genes, channels, mult, num_res_blocks, emb, groups)
        self.image_encoder = Encoder(
            image_channels, channels, mult, num_res_blocks, emb, groups, shared=self.xt_encoder
        )
        deep = self.xt_encoder.out_channels
        half = deep // 2
        self.cell_attention = (
            CellToTissueAttention(deep, image_channels, tile_px) if cell_attention else None
        )
        if disentangle:
            self.disentangle = Disentangle(deep)
        else:
            self.disentangle = None
            self.distinct_img = nn.Sequential(nn.Conv2d(deep, half, 3, padding=1), nn.SiLU())
            self.distinct_lr = nn.Sequential(nn.Conv2d(deep, half, 3, padding=1), nn.SiLU())
        factor = 2 ** (len(mult) - 1)
        self.lr_side = factor  # the LR encoder's downsampling: the smallest LR side it takes
        deep_hw = (int(hr_hw[0]) // factor, int(hr_hw[1]) // factor)
        self.modulation = AdaptiveModulation(half, deep_hw) if modulation else None
        self.inject = ConditionInjection(deep, 3 * half)
        self.middle, self.decoder, self.out = decoder_modules(
            self.xt_encoder, emb, 2 * genes, groups
        )

    def set_gene_totals(self, totals: Tensor) -> None:
        """Build the gene graph from ``(G,)`` per-gene totals of the TRAINING HR maps.

        Does nothing when ``graph=False`` (there is no graph to build).
        """
        if self.gene_graph is not None:
            self.gene_graph.set_adjacency(totals)

    def _check(
        self, x_t: Tensor, t: Tensor, lr: Tensor, image: Tensor, tiles: Tensor, u: int | None
    ) -> None:
        """Shapes of one call; ``u`` conditioning inputs (None: one per x_t row)."""
        b, g = x_t.shape[:2]
        u = b if u is None else u
        check_xt(x_t, self.genes, self.channel_mult)
        if lr.ndim != 4 or lr.shape[:2] != (u, g) or min(lr.shape[-2:]) < 1:
            raise ValueError(f"lr must be (U={u}, G={g}, h, w); got {tuple(lr.shape)}")
        if image.ndim != 4 or image.shape[:2] != (u, self.image_channels):
            raise ValueError(
                f"image must be (U={u}, {self.image_channels}, Hi, Wi); got {tuple(image.shape)}"
            )
        if tiles.ndim != 5 or tiles.shape[0] != u or t.shape != (b,):
            raise ValueError(
                f"tiles must be (U={u}, T, C, p, p) and t (B={b},); got {tuple(tiles.shape)} "
                f"and {tuple(t.shape)}"
            )

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        lr: Tensor,
        image: Tensor,
        tiles: Tensor,
        ratio: float = 1.0,
        rows: Tensor | None = None,
        memo: Memo | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Predict epsilon and v.

        Parameters
        ----------
        x_t : Tensor
            ``(B, G, H, W)`` noisy HR map, H and W divisible by ``2**(len(channel_mult) - 1)``
            (and by ``2**len(channel_mult)`` with ``modulation``: its 2 x 2 parts need an even
            deepest grid).
        t : Tensor
            ``(B,)`` int64 timesteps.
        lr : Tensor
            ``(U, G, h, w)`` LR map, any size (odd included); ``lr_hw`` with the gene graph.
            A side shorter than the LR encoder's downsampling (``lr_side``) is first repeated
            by the smallest integer that reaches it (nearest upsampling: every LR value kept,
            none mixed), since the encoder's skips are resized to the HR grid by nearest
            anyway (a coarse pooling of small tiles gives such maps).
        image : Tensor
            ``(U, C_img, Hi, Wi)`` tissue-level image.
        tiles : Tensor
            ``(U, T, C_img, p, p)`` cell tiles in ascending entropy order.
        ratio : float
            Fraction of tiles kept (:func:`~methods.diffst.attention.curriculum_ratio`; 1.0 at
            inference).
        rows : Tensor, optional
            ``(B,)`` int64: the conditioning input (row of ``lr``, ``image``, ``tiles``) of each
            ``x_t`` row. None: ``U = B``, row i conditions row i. K draws of one input at one
            step share their conditioning streams (everything but ``x_t``'s encoder and the
            decoder depends on the input and ``t`` only), so a sampler passes each input once
            and the streams run on U rows instead of B; rows that share an input must share t.
        memo : Memo, optional
            With ``rows``: the streams' outputs for these U inputs and their timesteps are
            taken from ``memo`` when present and put there when not, so further batches of
            draws of the same inputs (same weights; the caller's promise) skip them. Keyed by
            ``ratio`` and the U timesteps; the caller keys the inputs (:meth:`Memo.chunk`).

        Returns
        -------
        out : Tensor
            ``(B, 2G, H, W)``: channels ``[:G]`` epsilon, ``[G:]`` the learned-variance v.
        loss : Tensor
            Scalar disentangling loss (0 without ``disentangle``), over the U inputs.
        """
        u = lr.shape[0]
        if rows is None:
            rows_t = t
        else:
            if rows.shape != t.shape or int(rows.min()) < 0 or int(rows.max()) >= u:
                raise ValueError(f"rows must be (B={t.shape[0]},) indices below {u}")
            rows_t = t.new_zeros(u).scatter_reduce(0, rows, t, "amax", include_self=False)
            if not torch.equal(rows_t[rows], t):
                raise ValueError("rows that share a conditioning input must share t")
        self._check(x_t, t, lr, image, tiles, u if rows is not None else None)
        emb = self.time_embed(t)
        xt_skips, h = self.xt_encoder(x_t, emb)
        sizes = [s.shape[-2:] for s in xt_skips]
        key = (ratio, *rows_t.tolist()) if memo is not None and rows is not None else None
        kept = memo.get(key) if key is not None else None
        if kept is None:
            cond_skips, cond, loss = self._condition(
                self.time_embed(rows_t) if rows is not None else emb,
                lr,
                image,
                tiles,
                ratio,
                sizes,
                h.shape[-2:],
            )
            if key is not None:
                memo.put(key, (*cond_skips, cond, loss))
        else:
            *cond_skips, cond, loss = kept
        if rows is not None:
            cond_skips, cond = [c[rows] for c in cond_skips], cond[rows]
        # Each stream runs on its own; only the skips handed to the decoder are averaged.
        skips = [(xs + c) / 3 for xs, c in zip(xt_skips, cond_skips, strict=True)]
        h = self.inject(h, cond)
        return decode(self.middle, self.decoder, self.out, h, skips, emb), loss

    def _condition(
        self,
        emb: Tensor,
        lr: Tensor,
        image: Tensor,
        tiles: Tensor,
        ratio: float,
        sizes: list[torch.Size],
        deep: torch.Size,
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """The streams that do not see x_t, on U inputs with their ``(U, E)`` time embedding:
        per skip level the LR plus image skips resized to ``sizes``, the injected condition
        ``(U, 3 C/2, *deep)`` (common, distinct image, distinct LR) and the disentangling loss."""
        if self.gene_graph is not None:
            lr = self.gene_graph(lr)
        short = min(lr.shape[-2:])
        if short < self.lr_side:
            lr = F.interpolate(lr, scale_factor=-(-self.lr_side // short), mode="nearest")
        lr_skips, lr_deep = self.lr_encoder(lr, emb)
        img_skips, img_deep = self.image_encoder(image, emb)
        skips = [
            _to_size(ls, size, "nearest") + _to_size(im, size, "bilinear")
            for ls, im, size in zip(lr_skips, img_skips, sizes, strict=True)
        ]
        # Condition at the deepest x_t grid: image resized first, so attention runs there.
        img_deep = _to_size(img_deep, deep, "bilinear")
        lr_deep = _to_size(lr_deep, deep, "nearest")
        if self.cell_attention is not None:
            img_deep = self.cell_attention(img_deep, tiles, ratio)
        if self.disentangle is not None:
            common, distinct_img, distinct_lr, loss = self.disentangle(img_deep, lr_deep)
        else:
            distinct_img, distinct_lr = self.distinct_img(img_deep), self.distinct_lr(lr_deep)
            common = torch.zeros_like(distinct_img)
            loss = lr.new_zeros(())
        if self.modulation is not None:
            distinct_img, distinct_lr = self.modulation(distinct_img, distinct_lr)
        return skips, torch.cat([common, distinct_img, distinct_lr], dim=1), loss
