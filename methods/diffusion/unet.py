"""U-Net backbone pieces of ``diffst``: timestep embedding, residual block, encoder.

The design follows improved-diffusion (Nichol & Dhariwal 2021): residual blocks with scale-shift
norm (FiLM from the time embedding), residual up/down sampling (nearest x2 / average-pool x2 on
both the main path and the skip) and zero-initialised output convolutions, so every residual
block starts as the identity (or its 1x1 skip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, or the largest divisor of ``channels`` below it.

    The paper uses 32 groups on 128 channels; the quick preset has channel counts (e.g. 24) that
    32 does not divide, and falling back to a divisor keeps those presets valid.
    """
    if channels < 1 or groups < 1:
        raise ValueError(f"channels and groups must be >= 1, got {channels} and {groups}")
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero and return it (identity-at-init residuals)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of diffusion timesteps (Transformer positional encoding).

    Parameters
    ----------
    t : Tensor
        ``(B,)`` timesteps, integer or float.
    dim : int
        Embedding width; an odd width is padded with one zero column.
    max_period : float
        Longest period of the sinusoids.

    Returns
    -------
    Tensor
        ``(B, dim)`` float32 embedding: ``[cos(t * f_k), sin(t * f_k)]``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """sinusoidal(C) -> Linear(4C) -> SiLU -> Linear(4C); 128 -> 512 -> 512 at C = 128."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.dim = 4 * channels
        self.mlp = nn.Sequential(
            nn.Linear(channels, self.dim), nn.SiLU(), nn.Linear(self.dim, self.dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """``(B,)`` timesteps -> ``(B, 4C)`` embedding, in the dtype of the module's weights."""
        return self.mlp(timestep_embedding(t, self.channels).to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """Residual block with scale-shift norm and optional residual up/down sampling.

    Parameters
    ----------
    channels : int
        Input channels.
    emb_dim : int
        Width of the time embedding.
    out_channels : int, optional
        Output channels (default: ``channels``); a 1x1 conv skip is used when they differ.
    up, down : bool
        Nearest x2 upsampling / average-pool x2 downsampling of both paths.
    groups : int
        GroupNorm groups (see :func:`group_norm`).
    """

    def __init__(
        self,
        channels: int,
        emb_dim: int,
        out_channels: int | None = None,
        up: bool = False,
        down: bool = False,
        groups: int = 32,
    ) -> None:
        super().__init__()
        if up and down:
            raise ValueError("a ResBlock cannot both upsample and downsample")
        out_channels = out_channels or channels
        self.channels, self.out_channels = channels, out_channels
        self.up, self.down = up, down
        self.in_norm = group_norm(channels, groups)
        self.in_conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        # SiLU before the projection as in improved-diffusion's emb_layers.
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels))
        self.out_norm = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(0.0)  # the release trains without dropout
        self.out_conv = zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``(B, C, H, W)``, ``(B, E)`` -> ``(B, C_out, H', W')`` with H' = 2H, H // 2 or H."""
        h = F.silu(self.in_norm(x))
        # Resample after the activation and before the conv, on both paths (improved-diffusion).
        h = self.in_conv(self._resample(h))
        x = self._resample(x)
        scale, shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """Time-conditioned U-Net encoder (improved-diffusion "input blocks").

    Input conv, then per level ``num_res_blocks`` ResBlocks, then a ``down=True`` ResBlock
    between levels (not after the last).

    Parameters
    ----------
    in_channels : int
        Channels of the input map.
    channels : int
        Base width; level ``k`` has ``channels * channel_mult[k]`` channels.
    channel_mult : sequence of int
        Width multipliers, one per level.
    num_res_blocks : int
        Non-downsampling ResBlocks per level.
    emb_dim : int
        Width of the time embedding.
    groups : int
        GroupNorm groups.
    shared : Encoder, optional
        Reuse this encoder's non-downsampling ResBlocks (the same module objects, hence the same
        parameter tensors); the input conv and the down blocks stay this encoder's own. Used for
        the tissue-image encoder, which shares weights with the x_t encoder.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        emb_dim: int,
        groups: int = 32,
        shared: Encoder | None = None,
    ) -> None:
        super().__init__()
        mult = tuple(channel_mult)
        if not mult or num_res_blocks < 1:
            raise ValueError(
                f"need >= 1 level and >= 1 res block, got {mult} and {num_res_blocks}"
            )
        if shared is not None and (
            shared.channels,
            shared.channel_mult,
            shared.num_res_blocks,
        ) != (channels, mult, num_res_blocks):
            raise ValueError("a shared encoder must have the same channels, mult and blocks")
        self.channels, self.channel_mult, self.num_res_blocks = channels, mult, num_res_blocks
        self.input_conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.skip_channels: list[int] = [channels]
        levels, downs = [], []
        ch = channels
        for level, m in enumerate(mult):
            blocks = []
            for i in range(num_res_blocks):
                if shared is None:
                    blocks.append(ResBlock(ch, emb_dim, channels * m, groups=groups))
                else:
                    blocks.append(shared.res_blocks[level][i])
                ch = channels * m
                self.skip_channels.append(ch)
            levels.append(nn.ModuleList(blocks))
            if level != len(mult) - 1:
                downs.append(ResBlock(ch, emb_dim, ch, down=True, groups=groups))
                self.skip_channels.append(ch)
        self.res_blocks = nn.ModuleList(levels)
        self.down_blocks = nn.ModuleList(downs)
        self.out_channels = ch

    def forward(self, x: Tensor, emb: Tensor) -> tuple[list[Tensor], Tensor]:
        """Encode ``x``.

        Parameters
        ----------
        x : Tensor
            ``(B, C_in, H, W)``.
        emb : Tensor
            ``(B, E)`` time embedding.

        Returns
        -------
        skips : list of Tensor
            Every block's output in order (input conv first), ``len = 1 + L * n + (L - 1)``;
            level ``k`` maps are ``H // 2**k`` (floor for odd sizes).
        h : Tensor
            The deepest features, ``(B, channels * channel_mult[-1], H // 2**(L-1), ...)``.
        """
        h = self.input_conv(x)
        skips = [h]
        for level, blocks in enumerate(self.res_blocks):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if level < len(self.down_blocks):
                h = self.down_blocks[level](h, emb)
                skips.append(h)
        return skips, h


def decoder_modules(
    encoder: Encoder, emb_dim: int, out_channels: int, groups: int = 32
) -> tuple[nn.ModuleList, nn.ModuleList, nn.Sequential]:
    """Middle block, decoder and output head matching ``encoder`` (improved-diffusion).

    The middle block is one ResBlock: the release's middle block is ResBlock, attention,
    ResBlock, but diffst's condition injection takes the attention's place (``DiffSTNet``), so
    one ResBlock follows it; no self-attention (the release instantiates none). The decoder has,
    per
    level from the deepest, ``num_res_blocks + 1`` ResBlocks, each taking one encoder skip
    (concatenated), and an ``up=True`` ResBlock closing every level but the shallowest. The head
    is GroupNorm, SiLU and a zero-initialised conv3x3 to ``out_channels``. Returns ``(middle,
    decoder, out)``, to be run by :func:`decode`; shared by :class:`DiffSTNet` and the SR3
    baseline (``methods/sr3.py``).
    """
    channels, mult, n = encoder.channels, encoder.channel_mult, encoder.num_res_blocks
    ch = encoder.out_channels
    middle = nn.ModuleList([ResBlock(ch, emb_dim, groups=groups)])
    decoder = nn.ModuleList()
    skip_channels = list(encoder.skip_channels)
    for level, m in reversed(list(enumerate(mult))):
        for i in range(n + 1):
            blocks = [ResBlock(ch + skip_channels.pop(), emb_dim, channels * m, groups=groups)]
            ch = channels * m
            if level and i == n:
                blocks.append(ResBlock(ch, emb_dim, ch, up=True, groups=groups))
            decoder.append(nn.ModuleList(blocks))
    out = nn.Sequential(
        group_norm(ch, groups), nn.SiLU(), zero_module(nn.Conv2d(ch, out_channels, 3, padding=1))
    )
    return middle, decoder, out


def decode(
    middle: nn.ModuleList,
    decoder: nn.ModuleList,
    out: nn.Module,
    h: Tensor,
    skips: list[Tensor],
    emb: Tensor,
) -> Tensor:
    """Run :func:`decoder_modules`' parts on the deepest features ``h`` ``(B, C, h, w)``.

    ``skips`` are the encoder's skips in encoder order (consumed from the end, the list is left
    unchanged); ``emb`` ``(B, E)`` the time embedding. Returns ``(B, out_channels, H, W)``.
    """
    skips = list(skips)
    for block in middle:
        h = block(h, emb)
    for blocks in decoder:
        h = torch.cat([h, skips.pop()], dim=1)
        for block in blocks:
            h = block(h, emb)
    return out(h)


def check_xt(x_t: Tensor, genes: int, channel_mult: Sequence[int]) -> int:
    """Check ``x_t`` is ``(B, genes, H, W)`` with H, W divisible by the U-Net's downsampling
    factor ``2 ** (levels - 1)``; returns that factor."""
    factor = 2 ** (len(channel_mult) - 1)
    _, g, h, w = x_t.shape
    if g != genes or h % factor or w % factor:
        raise ValueError(
            f"x_t must be (B, {genes}, H, W) with H, W divisible by {factor}; "
            f"got {tuple(x_t.shape)}"
        )
    return factor


def check_width(name: str, channels: int, needed: int, what: str) -> None:
    """Refuse a first layer narrower than its input (config.py: the bottleneck of issue 13).

    ``needed`` channels (``what`` says which) must pass the first conv of width ``channels``.
    """
    if channels < needed:
        raise ValueError(
            f"{name}: channels={channels} is narrower than the {needed} channels of {what} that "
            f"its first layer must pass through; set channels >= {needed} (or channels=None to "
            "size it from the genes)"
        )
