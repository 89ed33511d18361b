"""``histogene``: a HisToGene-style vision transformer over the HR positions of a section.

Pang, Su & Li, "Leveraging information in spatial transcriptomics to predict super-resolution gene
expression from histology images in tumors", bioRxiv 2021 (code: github.com/maxpmx/HisToGene).

Kept from the release: every position of a section is one token; its image patch is flattened
and linearly embedded; learned row and column position embeddings (two ``nn.Embedding`` tables
indexed by the grid position) are added; a pre-norm transformer encoder (heads 16, MLP width
``2 dim``, dropout 0.1 on the embeddings and in the encoder) mixes the tokens of a section; a
LayerNorm + linear head gives all genes per token; MSE loss, Adam, one section per step and
learning rate 1e-5 (``paper``: 4 layers as in the README, dim 1024, 100 epochs as in the tutorial).
No LR input: the method predicts from histology and position alone.

Adapted or simplified:

- Tokens are the in-tissue HR (sub-spot) positions, each with its own ``p x p`` image block
  (area-averaged to ``patch_px`` when set), so training on HR maps and predicting at every HR
  position is the super-resolution (the release trains on spots and predicts at sub-spot patches).
  Sections of different token counts are batched with a key padding mask.
- The position tables have ``max(H, W)`` rows of the training grid (the release fixes ``n_pos``).
- Pixels are standardised per channel and targets z-scored per gene with training statistics, so
  one learning rate serves all genes; predictions are mapped back and clipped at 0 (a clip rather
  than a softplus keeps the release's plain MSE on a linear head).
- ``augment``: the symmetries of the square (rot90 and flips of the grid, applied to positions and
  block contents together; flips only on a non-square grid), one drawn per section and step.
- ``quick`` (CPU): 2 layers, dim 64, 4 heads, 8 px patches, learning rate 1e-3, batches of 4
  regions, a fixed budget of 150 steps (an epoch budget would grow with the number of tiles of a
  large section); ``default`` is ``paper`` on a GPU and ``quick`` on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from methods.contract import (
    PRESETS,
    Method,
    Preset,
    Sample,
    device_preset,
    load_module_states,
    module_states,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        layers=4,
        dim=1024,
        heads=16,
        lr=1e-5,
        epochs=100,
        steps=None,
        batch_size=1,
        patch_px=None,
        dropout=0.1,
        augment=False,
    ),
    "quick": dict(
        layers=2,
        dim=64,
        heads=4,
        lr=1e-3,
        epochs=None,
        # a fixed budget: many small regions (tiled sections) cost no more. 150, not 300
        # (docs/decisions.md, "histogene quick: 150 steps")
        steps=150,
        batch_size=4,
        patch_px=8,
        dropout=0.1,
        augment=True,
    ),
}


def image_blocks(image: np.ndarray, hr_shape: tuple[int, int], patch_px: int | None) -> np.ndarray:
    """Cut an image into its HR position blocks.

    Parameters
    ----------
    image : (C, H p, W p) uint8.
    hr_shape : (H, W).
    patch_px : side of each block after area averaging; None or 0: the native ``p``.

    Returns
    -------
    (H, W, C, q, q) float32 in [0, 1], ``q = patch_px or p``.
    """
    (h, w), (c, ph, pw) = hr_shape, image.shape
    p = ph // h
    if ph != h * p or pw != w * p or p == 0:
        raise ValueError(f"image {image.shape} is not a whole number of blocks over grid {(h, w)}")
    blocks = image.reshape(c, h, p, w, p).transpose(1, 3, 0, 2, 4).astype(np.float32) / 255.0
    if patch_px and patch_px != p:
        t = torch.from_numpy(np.ascontiguousarray(blocks)).reshape(h * w, c, p, p)
        blocks = F.adaptive_avg_pool2d(t, patch_px).reshape(h, w, c, patch_px, patch_px).numpy()
    return np.ascontiguousarray(blocks)


def dihedral_blocks(
    blocks: np.ndarray, maps: np.ndarray, k: int, flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one symmetry of the grid to blocks ``(H, W, C, q, q)`` and maps ``(..., H, W)``.

    Rotating the whole image rotates the grid and every block's content alike, so both move here.
    """
    b = np.rot90(np.rot90(blocks, k, axes=(0, 1)), k, axes=(3, 4))
    m = np.rot90(maps, k, axes=(-2, -1))
    if flip:
        b, m = b[:, ::-1, ..., ::-1], m[..., ::-1]
    return np.ascontiguousarray(b), np.ascontiguousarray(m)


class HisToGeneNet(nn.Module):
    """Patch embedding + row/column embeddings -> transformer encoder -> per-token genes."""

    def __init__(
        self,
        patch_dim: int,
        genes: int,
        n_pos: int,
        layers: int,
        dim: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.patch_embedding = nn.Linear(patch_dim, dim)
        self.row_embed = nn.Embedding(n_pos, dim)
        self.col_embed = nn.Embedding(n_pos, dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, genes))

    def forward(self, patches: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """patches (B, T, F), pos (B, T, 2) long, pad (B, T) bool (True: padding) -> (B, T, G)."""
        x = (
            self.patch_embedding(patches)
            + self.row_embed(pos[..., 0])
            + self.col_embed(pos[..., 1])
        )
        return self.head(self.encoder(self.dropout(x), src_key_padding_mask=pad))


class HisToGeneStyle(Method):
    """HisToGene-style transformer over a section's HR positions (see the module docstring)."""

    def __init__(
        self,
        *,
        preset: Preset = "default",
        seed: int = 0,
        layers: int | None = None,
        dim: int | None = None,
        heads: int | None = None,
        lr: float | None = None,
        epochs: int | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        patch_px: int | None = None,
        dropout: float | None = None,
        augment: bool | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(preset=device_preset(preset, self.device.type == "cuda"), seed=seed)
        given = dict(
            layers=layers,
            dim=dim,
            heads=heads,
            lr=lr,
            epochs=epochs,
            steps=steps,
            batch_size=batch_size,
            patch_px=patch_px,
            dropout=dropout,
            augment=augment,
        )
        self.overrides = {k: v for k, v in given.items() if v is not None}
        self.config: dict[str, Any] = {**_PRESETS[self.preset], **self.overrides}
        if epochs is not None and steps is None:  # asking for epochs means an epoch budget
            self.config["steps"] = None
        if self.config["dim"] % self.config["heads"]:
            raise ValueError(f"dim {self.config['dim']} is not a multiple of heads")
        self.history: list[float] = []

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.config}

    def label_params(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.overrides}

    # --- inputs -----------------------------------------------------------------------------
    def _tokens(
        self, blocks: np.ndarray, mask: np.ndarray, hr: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """In-tissue tokens of one section: patches (T, F), positions (T, 2), targets (T, G)."""
        rows, cols = np.nonzero(mask)
        patches = (blocks[rows, cols] - self.pixel_mean) / self.pixel_std  # (T, C, q, q)
        pos = torch.from_numpy(np.stack([rows, cols], axis=1)).long()
        target = None
        if hr is not None:
            target = torch.from_numpy((hr[:, rows, cols].T - self.gene_mean) / self.gene_std)
        return torch.from_numpy(patches.reshape(len(rows), -1)).float(), pos, target

    def _batch(self, items: list[tuple]) -> tuple[torch.Tensor, ...]:
        """Pad token lists to one batch: patches, pos, pad mask (True: padding), targets."""
        t = max(1, max(len(it[0]) for it in items))
        n, f = len(items), items[0][0].shape[1]
        patches, pos = torch.zeros(n, t, f), torch.zeros(n, t, 2, dtype=torch.long)
        pad = torch.ones(n, t, dtype=torch.bool)
        target = torch.zeros(n, t, len(self.gene_mean))
        for i, (x, p, y) in enumerate(items):
            patches[i, : len(x)], pos[i, : len(x)], pad[i, : len(x)] = x, p, False
            if y is not None:
                target[i, : len(x)] = y
        return tuple(a.to(self.device) for a in (patches, pos, pad, target))

    # --- fit / predict ----------------------------------------------------------------------
    def fit(self, train: Sequence[Sample]) -> None:
        """Train on the training sections' HR maps (MSE over in-tissue positions)."""
        cfg = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        blocks = [image_blocks(s.image, s.hr_shape, cfg["patch_px"]) for s in train]
        inside = np.concatenate([b[s.hr_mask] for b, s in zip(blocks, train, strict=True)])
        self.pixel_mean = inside.mean(axis=(0, 2, 3), keepdims=True)[0]  # (C, 1, 1)
        self.pixel_std = inside.std(axis=(0, 2, 3), keepdims=True)[0] + 1e-3
        values = np.concatenate([s.hr[:, s.hr_mask] for s in train], axis=1)  # (G, T)
        self.gene_mean = values.mean(axis=1).astype(np.float32)
        self.gene_std = values.std(axis=1).astype(np.float32) + 1e-3
        self.n_pos = max(max(s.hr_shape) for s in train)
        self.net = HisToGeneNet(
            int(np.prod(blocks[0].shape[2:])),
            len(self.gene_mean),
            self.n_pos,
            cfg["layers"],
            cfg["dim"],
            cfg["heads"],
            cfg["dropout"],
        ).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg["lr"])
        square = all(s.hr_shape[0] == s.hr_shape[1] for s in train)
        symmetries = [(k, f) for k in (range(4) if square else (0, 2)) for f in (False, True)]
        bs = min(cfg["batch_size"], len(train))
        self.net.train()
        self.history = []
        per_epoch = math.ceil(len(train) / bs)
        total = cfg["steps"] or cfg["epochs"] * per_epoch
        for epoch in range(math.ceil(total / per_epoch)):
            order = rng.permutation(len(train))
            for start in range(0, len(order), bs)[: total - epoch * per_epoch]:
                items = []
                for i in order[start : start + bs]:
                    s, b = train[i], blocks[i]
                    maps = np.concatenate([s.hr, s.hr_mask[None].astype(np.float32)])
                    if cfg["augment"]:
                        k, flip = symmetries[rng.integers(len(symmetries))]
                        b, maps = dihedral_blocks(b, maps, k, flip)
                    items.append(self._tokens(b, maps[-1] > 0.5, maps[:-1]))
                patches, pos, pad, target = self._batch(items)
                err = (self.net(patches, pos, pad) - target) ** 2
                keep = (~pad)[..., None].float()
                loss = (err * keep).sum() / (keep.sum() * err.shape[-1]).clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.history.append(float(loss.detach()))
                if not math.isfinite(self.history[-1]):
                    raise FloatingPointError(f"training loss is {self.history[-1]}")
                if self.report("train", len(self.history), total, self.history[-1]):
                    return  # early stopping: the runner restores the best snapshot()
                self.net.train()  # a learning-curve predict() in report() left it in eval mode

    def snapshot(self) -> object | None:
        """The network's weights now; None before fit."""
        return module_states(net=self.net) if hasattr(self, "net") else None

    def restore(self, state: object) -> None:
        load_module_states(state, net=self.net)  # type: ignore[arg-type]

    @torch.no_grad()
    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """HR maps ``(N, G, H, W)`` float32 >= 0 from histology and position (0 outside tissue)."""
        if not hasattr(self, "net"):
            raise RuntimeError("HisToGeneStyle.predict called before fit")
        self.net.eval()
        h, w = samples[0].hr_shape
        if max(h, w) > self.n_pos:
            raise ValueError(f"grid {(h, w)} exceeds the trained position range {self.n_pos}")
        out = np.zeros((len(samples), len(self.gene_mean), h, w), np.float32)
        for i, s in enumerate(samples):
            blocks = image_blocks(s.image, s.hr_shape, self.config["patch_px"])
            patches, pos, pad, _ = self._batch([self._tokens(blocks, s.hr_mask, None)])
            z = self.net(patches, pos, pad)[0, : int(s.hr_mask.sum())].cpu().numpy()
            values = z * self.gene_std + self.gene_mean  # (T, G), dataset scale
            out[i][:, s.hr_mask] = np.clip(values, 0.0, None).T
        return out
