"""``lr_smooth``: the LR map repeated over its k x k blocks, then Gaussian-smoothed in tissue.

For each gene, with ``u`` the nearest-neighbour upsampled LR map (``(H, W)``, H = k h) and ``m``
the HR tissue mask, the prediction is the normalised convolution

    y = G_s * (u m) / G_s * m      (0 where G_s * m = 0),

with ``G_s`` a Gaussian of ``s = sigma_blocks k`` HR positions, so tissue edges are not pulled
towards the empty background. Training-free and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from methods.contract import Method, Preset, Sample


class LRSmooth(Method):
    """Smooth the blocky LR map inside the tissue (see the module docstring)."""

    def __init__(self, *, preset: Preset = "default", seed: int = 0, sigma_blocks: float = 0.5):
        super().__init__(preset=preset, seed=seed)
        if not sigma_blocks > 0:
            raise ValueError(f"sigma_blocks must be positive, not {sigma_blocks!r}")
        self.sigma_blocks = float(sigma_blocks)

    def params(self) -> dict[str, Any]:
        return {"sigma_blocks": self.sigma_blocks}

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """(N, G, H, W) float32 predictions on the LR map's scale."""
        out = []
        for s in samples:
            k = s.scale
            u = np.repeat(np.repeat(s.lr, k, axis=1), k, axis=2)
            m = s.hr_mask.astype(np.float64)
            sigma = (0, self.sigma_blocks * k, self.sigma_blocks * k)
            num = ndimage.gaussian_filter(u * m, sigma, mode="constant")
            den = ndimage.gaussian_filter(m, sigma[1:], mode="constant")
            y = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0) * m
            out.append(y.astype(np.float32))
        return np.stack(out)
