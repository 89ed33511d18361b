"""LR blocks: an HR window pooled into non-overlapping k x k blocks, and which blocks are LR spots.

An (..., H, W) array with H and W divisible by k pools to (..., H/k, W/k) by summing each block.
A block is an LR spot when at least half of its lattice positions are in tissue (on a
checkerboard lattice a block holds k^2 / 2 positions, exactly, for even k) and the counts of its
in-tissue positions are not all 0. The split (:mod:`bench.data.splits`) and spot QC's depth level
(:mod:`bench.data.qc`) both use this one rule.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lr_spots", "pool"]


def pool(a: np.ndarray, k: int) -> np.ndarray:
    """Sum of each non-overlapping k x k block of the last two axes: (..., H, W) -> (..., H/k,
    W/k)."""
    h, w = a.shape[-2:]
    return a.reshape(*a.shape[:-2], h // k, k, w // k, k).sum(axis=(-3, -1))


def lr_spots(tissue: np.ndarray, lattice: np.ndarray, totals: np.ndarray, k: int) -> np.ndarray:
    """(H/k, W/k) bool: the LR spots (module docstring) of a window.

    ``tissue`` (H, W) bool, the in-tissue HR positions with counts; ``lattice`` (H, W) bool, the
    positions at which the lattice has a spot; ``totals`` (H, W) all-gene totals."""
    enough = pool(tissue.astype(np.int64), k) * 2 >= pool(lattice.astype(np.int64), k)
    return enough & (pool(totals * tissue, k) > 0)
