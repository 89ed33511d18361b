"""Interpolation baselines: ``nearest``, ``bilinear`` and ``bicubic`` upsampling of the LR map.

Procedure for each sample (the simplification ``baselines.md`` allows, stated here):

1. Empty LR blocks (outside ``lr_mask``) are filled with the value of the nearest LR spot
   (Euclidean distance on the LR lattice, ties broken by scipy's EDT order), so tissue edges are
   not dragged towards 0 by empty neighbours.
2. The filled map ``(G, h, w)`` is upsampled by the pooling factor ``k`` with
   ``torch.nn.functional.interpolate`` (``align_corners=False``: LR spot centres sit at the centres
   of their k x k HR blocks, which is exactly how the LR map was pooled). ``bicubic`` uses the
   Keys kernel with a = -0.75 (PyTorch's choice).
3. Values are clipped at 0 (the log1p scale is non-negative; bicubic can undershoot).

Training-free and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from methods.contract import Method, Preset, Sample

Mode = Literal["nearest", "bilinear", "bicubic"]


def fill_empty(lr: np.ndarray, lr_mask: np.ndarray) -> np.ndarray:
    """Fill positions outside ``lr_mask`` from the nearest LR spot.

    Parameters
    ----------
    lr : (G, h, w) float array
    lr_mask : (h, w) bool; if it is empty the map is returned unchanged.
    """
    if lr_mask.all() or not lr_mask.any():
        return lr.copy()
    _, (ii, jj) = ndimage.distance_transform_edt(~lr_mask, return_indices=True)
    return lr[:, ii, jj]


def upsample(lr: np.ndarray, scale: int, mode: Mode) -> np.ndarray:
    """Upsample a batch ``(N, G, h, w)`` by ``scale`` to ``(N, G, h scale, w scale)``, float32."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32))
    if mode == "nearest":
        y = F.interpolate(x, scale_factor=scale, mode="nearest")
    else:
        y = F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
    return y.numpy()


class Interpolation(Method):
    """Upsample the (gap-filled) LR map by the pooling factor; see the module docstring."""

    def __init__(self, *, mode: Mode, preset: Preset = "default", seed: int = 0) -> None:
        super().__init__(preset=preset, seed=seed)
        if mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"mode must be nearest, bilinear or bicubic, not {mode!r}")
        self.mode = mode

    def params(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def label_params(self) -> dict[str, Any]:
        """Nothing: the registered name says the mode."""
        return {}

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        scale = samples[0].scale
        filled = np.stack([fill_empty(s.lr, s.lr_mask) for s in samples])
        return np.clip(upsample(filled, scale, self.mode), 0.0, None)
