"""Control methods that frame every score (OpenProblems practice; see metrics.md, "Controls").

- ``shuffled`` (negative): the best histology-using method fed histology whose HR position blocks
  are permuted within each section, at fit and at predict. The blocks still look like tissue and
  their statistics are unchanged, but they no longer line up with expression, so the drop from the
  base method's score to this control is the part of the score the histology carries (what is
  left comes from the LR input, positions and gene means).
- ``truth`` (positive): the HR target itself passed through the pipeline; it checks that the
  metric code reaches its optimum (PCC 1, SSIM 1, RMSE 0). It is the only method that may see the
  target at prediction time (``needs_target``).

Kept from OpenProblems: controls are ordinary methods run by the same runner and marked by
``control``. Simplified: one shuffled-histology wrapper for any registered base method.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from methods.contract import Method, Preset, Sample
from methods.registry import create

DRAWS = 8  # draws averaged when the base method is stochastic (a fixed K for the controls)


def block_permutation(
    hr_mask: np.ndarray, seed: int, region: str, scope: Literal["tissue", "all"] = "tissue"
) -> np.ndarray:
    """A seeded permutation of HR positions, ``(H W,)`` int: position ``i`` gets block ``perm[i]``.

    ``scope="tissue"`` permutes the in-tissue positions among themselves (background blocks stay
    where they are, as the tissue outline is known from ``hr_mask`` anyway); ``"all"`` permutes
    every position. The generator is seeded by ``seed`` and the region name, so a section's
    permutation does not depend on the order in which sections arrive.
    """
    if scope not in ("tissue", "all"):
        raise ValueError(f"scope must be 'tissue' or 'all', got {scope!r}")
    rng = np.random.default_rng([seed, zlib.crc32(region.encode())])
    flat = hr_mask.ravel() if scope == "tissue" else np.ones(hr_mask.size, bool)
    perm = np.arange(hr_mask.size)
    chosen = np.flatnonzero(flat)
    perm[chosen] = chosen[rng.permutation(len(chosen))]
    return perm


def shuffle_blocks(image: np.ndarray, hr_shape: tuple[int, int], perm: np.ndarray) -> np.ndarray:
    """Move the ``p x p`` blocks of an image by a permutation of HR positions.

    Parameters
    ----------
    image : (C, H p, W p) uint8.
    hr_shape : (H, W).
    perm : (H W,) int, from :func:`block_permutation`.

    Returns
    -------
    (C, H p, W p) uint8, block ``i`` (row-major) replaced by the original block ``perm[i]``.
    """
    (h, w), (c, ph, pw) = hr_shape, image.shape
    p = ph // h
    if p == 0 or ph != h * p or pw != w * p:
        raise ValueError(f"image {image.shape} is not a whole number of blocks over grid {(h, w)}")
    blocks = image.reshape(c, h, p, w, p).transpose(1, 3, 0, 2, 4).reshape(h * w, c, p, p)
    moved = blocks[perm].reshape(h, w, c, p, p).transpose(2, 0, 3, 1, 4)
    return np.ascontiguousarray(moved.reshape(c, ph, pw))


class ShuffledHistology(Method):
    """Negative control: a registered method trained and run on block-shuffled histology.

    Parameters
    ----------
    base : registered name of the method to wrap (default ``"istar"``); it is created with the
        same preset and seed when :meth:`fit` is called.
    scope : which positions' blocks are permuted, ``"tissue"`` (default) or ``"all"``.
    """

    control: ClassVar[str | None] = "negative"

    def __init__(
        self,
        *,
        preset: Preset = "default",
        seed: int = 0,
        base: str = "istar",
        scope: Literal["tissue", "all"] = "tissue",
    ) -> None:
        super().__init__(preset=preset, seed=seed)
        if scope not in ("tissue", "all"):
            raise ValueError(f"scope must be 'tissue' or 'all', got {scope!r}")
        self.base, self.scope = base, scope
        self.base_method: Method | None = None

    def params(self) -> dict[str, Any]:
        return {"preset": self.preset, "base": self.base, "scope": self.scope}

    def shuffled(self, samples: Sequence[Sample]) -> list[Sample]:
        """The same samples with each image's position blocks permuted (seeded per section)."""
        out = []
        for s in samples:
            perm = block_permutation(s.hr_mask, self.seed, s.region, self.scope)
            out.append(dataclasses.replace(s, image=shuffle_blocks(s.image, s.hr_shape, perm)))
        return out

    def fit(self, train: Sequence[Sample]) -> None:
        self.base_method = create(self.base, preset=self.preset, seed=self.seed)
        self.base_method.workdir = self.workdir
        self.base_method.fit(self.shuffled(train))
        self.resumed_fit_s = self.base_method.resumed_fit_s

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """``(N, G, H, W)`` float32: the base prediction (mean of ``DRAWS`` if stochastic)."""
        if self.base_method is None:
            raise RuntimeError("ShuffledHistology.predict called before fit")
        inputs = self.shuffled(samples)
        if self.base_method.stochastic:
            pred = self.base_method.predict(inputs, k=DRAWS)  # type: ignore[call-arg]
        else:
            pred = self.base_method.predict(inputs)
        return np.asarray(pred, dtype=np.float32)


class Truth(Method):
    """Positive control: returns the HR target ``(N, G, H, W)`` float32 unchanged."""

    control: ClassVar[str | None] = "positive"
    needs_target: ClassVar[bool] = True

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        missing = [s.region for s in samples if s.hr is None]
        if missing:
            raise ValueError(
                f"the truth control needs the target at prediction time; samples "
                f"{', '.join(missing)} have hr=None (the runner passes it when needs_target)"
            )
        return np.stack([np.asarray(s.hr, dtype=np.float32) for s in samples])
