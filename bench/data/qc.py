"""Spot QC: the rule that drops near-empty truth positions from every score.

A position's all-gene total ``t`` is its depth. Under ``log1p_cp10k`` a single count at a spot
of total 1 becomes ``log1p(1e4)`` = 9.2, the value of a highly expressed gene at full depth, so a
handful of near-empty spots can move a whole section's PCC. The rule is the single-cell field's
library-size outlier rule (scater's ``isOutlier(log = TRUE, type = "lower")``), fixed per split
from its TRAINING regions only:

``min_total = ceil(exp(median(log t) - nmads * MAD(log t)))``, at least 1,

with ``t`` the totals of every in-tissue HR position of the training regions and ``MAD`` the
median absolute deviation scaled to a normal's standard deviation (x 1.4826,
``scipy.stats.median_abs_deviation(scale="normal")``). ``nmads`` is the card's
``[split].qc_nmads`` (default :data:`NMADS`). A test position is *scored* when it is in tissue and
``t >= min_total``; every score (methods, controls, the ceiling) uses that one mask. The LR input
is unchanged: a dropped position's counts still sum into its LR block, as the instrument measured
them.

Arrays: ``totals`` any shape of non-negative all-gene totals; masks bool of the same shape.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NMADS", "min_total", "scored"]

NMADS = 3.0


def min_total(train_totals: np.ndarray, nmads: float = NMADS) -> int:
    """The QC threshold (module docstring) from the in-tissue training totals (1-D, > 0)."""
    from scipy.stats import median_abs_deviation

    t = np.asarray(train_totals, dtype=np.float64).ravel()
    t = t[t > 0]
    if t.size == 0:
        return 1
    logs = np.log(t)
    cut = float(np.median(logs)) - nmads * float(median_abs_deviation(logs, scale="normal"))
    return max(1, math.ceil(math.exp(cut) - 1e-9))


def scored(totals: np.ndarray, tissue: np.ndarray, threshold: int) -> np.ndarray:
    """The scored positions: in ``tissue`` with an all-gene total of at least ``threshold``."""
    return np.asarray(tissue, dtype=bool) & (np.asarray(totals) >= threshold)
