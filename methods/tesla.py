"""TESLA-style imputation (Hu et al., "Deciphering tumor ecosystems at super resolution from
spatial transcriptomics with TESLA", Cell Systems 2023): training-free, colour-aware IDW.

Kept from TESLA's imputation:

- every HR position ("pseudo-spot") gets the inverse-distance-weighted mean of its
  ``n_neighbors = 10`` nearest measured spots, weights ``1 / d**power`` with ``power = 2``,
  normalised to sum to 1, on the log-scale expression the LR map already carries;
- distances live in (x, y, z) space: x, y the lattice coordinates, z the histology colour,
  summarised as TESLA does as the channel-variance-weighted mean colour
  ``c = sum_ch var_ch * colour_ch / sum_ch var_ch`` (variances over the in-tissue positions; a
  1-channel image gives its grey level), standardised and rescaled so that
  ``std(z) = s * max(std(x), std(y))`` over the in-tissue positions (TESLA's ``z_scale`` with
  its scale factor ``s``, here ``z_weight = 1``).

Adapted / simplified (stated):

- x, y are HR lattice units; measured spots are the LR spots, placed at their block centres
  ``(a k + (k - 1) / 2, b k + (k - 1) / 2)`` with their LR values; a position's colour is the
  mean of its ``p x p`` pixel block, a spot's colour the mean over its ``k x k`` block (TESLA
  reads a square window around each point).
- One colour transform (weights, mean, std from the in-tissue positions) serves both positions
  and spots, so a spot's z is the mean of its positions' z; TESLA standardises known and
  pseudo-spots separately (and uses the grey level for the known ones).
- A position at zero distance from a spot takes that spot's value (TESLA adds 0.1 pixel to all
  distances instead); TESLA's extra distance cut-off (a global quantile of all distances) is
  dropped: the inverse-square weights already make far neighbours negligible.
- Neighbour search is vectorised with ``sklearn.neighbors.NearestNeighbors``; every HR position
  is predicted (scores read only in-tissue ones). Deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from methods.contract import Method, Preset, Sample
from methods.features import block_means


def colour_axis(colour: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """TESLA's one-dimensional colour: channel means weighted by their variance.

    Parameters
    ----------
    colour : (..., C) mean colours in [0, 1].
    reference : (n, C) colours whose per-channel variances set the weights (in-tissue
        positions). Equal weights when all variances are 0.

    Returns
    -------
    (...) float64.
    """
    var = reference.var(axis=0) if len(reference) else np.zeros(colour.shape[-1])
    weights = var / var.sum() if var.sum() > 0 else np.full_like(var, 1.0 / len(var))
    return colour @ weights


def coordinates(sample: Sample, z_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, z) of every HR position and of every LR spot.

    Returns
    -------
    positions : (H W, 3) float64, row-major over the HR grid.
    spots : (S, 3) float64, the LR spots in row-major order of ``lr_mask``.
    """
    k = sample.scale
    h, w = sample.hr_shape
    colour = block_means(sample.image, (h, w))  # (H, W, C)
    tissue = sample.hr_mask if sample.hr_mask.any() else np.ones((h, w), bool)
    c = colour_axis(colour, colour[tissue])  # (H, W)
    ii, jj = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    z_scale = z_weight * max(ii[tissue].std(), jj[tissue].std())
    mu, sd = c[tissue].mean(), c[tissue].std()
    z = (c - mu) / sd * z_scale if sd > 1e-12 else np.zeros_like(c)
    positions = np.stack([ii.ravel(), jj.ravel(), z.ravel()], axis=1)

    hl, wl = sample.lr_mask.shape
    spot_z = z.reshape(hl, k, wl, k).mean(axis=(1, 3))  # z is linear in colour: mean of blocks
    a, b = np.nonzero(sample.lr_mask)
    centre = (k - 1) / 2.0
    spots = np.stack([a * k + centre, b * k + centre, spot_z[a, b]], axis=1).astype(np.float64)
    return positions, spots


def idw(distance: np.ndarray, power: float) -> np.ndarray:
    """Normalised inverse-distance weights ``(Q, n)`` from neighbour distances ``(Q, n)``.

    A row with a zero distance puts all its weight, equally, on its zero-distance neighbours.
    """
    zero = distance <= 1e-12
    with np.errstate(divide="ignore"):
        weights = np.where(zero, 0.0, 1.0 / np.power(np.maximum(distance, 1e-300), power))
    has_zero = zero.any(axis=1, keepdims=True)
    weights = np.where(has_zero, zero.astype(np.float64), weights)
    return weights / weights.sum(axis=1, keepdims=True)


class TeslaStyle(Method):
    """Inverse-distance-weighted mean of the nearest LR spots in (x, y, colour) space."""

    def __init__(
        self,
        *,
        n_neighbors: int = 10,
        power: float = 2.0,
        z_weight: float = 1.0,
        preset: Preset = "default",
        seed: int = 0,
    ) -> None:
        super().__init__(preset=preset, seed=seed)
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, not {n_neighbors!r}")
        if power <= 0:
            raise ValueError(f"power must be positive, not {power!r}")
        self.n_neighbors = int(n_neighbors)
        self.power = float(power)
        self.z_weight = float(z_weight)

    def params(self) -> dict[str, Any]:
        return {"n_neighbors": self.n_neighbors, "power": self.power, "z_weight": self.z_weight}

    def label_params(self) -> dict[str, Any]:
        """Nothing: one variant (its parameters are fixed)."""
        return {}

    def predict_one(self, sample: Sample) -> np.ndarray:
        """HR prediction ``(G, H, W)`` float32 of one sample (LR scale)."""
        from sklearn.neighbors import NearestNeighbors

        g = sample.lr.shape[0]
        h, w = sample.hr_shape
        if not sample.lr_mask.any():  # nothing measured: nothing to interpolate
            return np.zeros((g, h, w), np.float32)
        positions, spots = coordinates(sample, self.z_weight)
        values = sample.lr[:, sample.lr_mask].T.astype(np.float64)  # (S, G)
        n = min(self.n_neighbors, len(spots))
        distance, index = NearestNeighbors(n_neighbors=n).fit(spots).kneighbors(positions)
        weights = idw(distance, self.power)  # (H W, n)
        pred = np.einsum("qn,qng->gq", weights, values[index])
        return pred.reshape(g, h, w).astype(np.float32)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.stack([self.predict_one(s) for s in samples])
