"""Negative control ``mean``: every HR position gets its gene's mean over the training HR maps.

Spatially flat, so its PCC is 0 by definition (constant prediction); it frames every other score
from below and checks that the metrics punish a map with no spatial information.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from methods.contract import Method, Sample, stack


class TrainingMean(Method):
    """Per-gene mean of the training HR maps over in-tissue positions, broadcast over the grid."""

    control: ClassVar[str | None] = "negative"

    def fit(self, train: Sequence[Sample]) -> None:
        hr = stack(train, "hr")  # (N, G, H, W)
        mask = stack(train, "hr_mask")[:, None]  # (N, 1, H, W)
        total = (hr * mask).sum(axis=(0, 2, 3), dtype=np.float64)
        self.gene_mean = (total / mask.sum()).astype(np.float32)  # (G,)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        h, w = samples[0].hr_shape
        out = np.broadcast_to(
            self.gene_mean[None, :, None, None], (len(samples), len(self.gene_mean), h, w)
        )
        return np.ascontiguousarray(out)
