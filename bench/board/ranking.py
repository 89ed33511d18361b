"""Comparisons between methods on the leaderboard: significance against the best, scores scaled
between the controls, and the aggregated rank across datasets and metrics. Numbers only; the
leaderboard formats them. Rows are the leaderboard's per-method dicts (``row[metric]`` = (mean,
low, high), ``row["pcc_table"]`` = the seed-averaged (section x gene) PCC table).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.board.stats import holm, paired_wilcoxon, paired_wilcoxon_regions

Row = dict[str, Any]


def vs_best(ranked: Sequence[Row], clustered: bool = False) -> list[float]:
    """Holm-corrected p of each ranked row's PCC against the first row's (NaN for the first).

    Two-sided Wilcoxon signed-rank tests on the same (section, gene) pairs
    (:func:`bench.board.stats.paired_wilcoxon`), corrected together with
    :func:`bench.board.stats.holm`. ``clustered``: on the region (table row) means of the
    paired differences instead (:func:`bench.board.stats.paired_wilcoxon_regions`).
    """
    if not ranked:
        return []
    best = ranked[0]["pcc_table"]
    test = paired_wilcoxon_regions if clustered else paired_wilcoxon
    raw = [
        test(r["pcc_table"], best) if r["pcc_table"].shape == best.shape else math.nan
        for r in ranked[1:]
    ]
    return [math.nan, *holm(raw).tolist()]


def negative_control(controls: Sequence[Row]) -> Row | None:
    """The ``mean`` negative control when present, else the first negative one, else None."""
    negatives = [r for r in controls if r["control"] == "negative"]
    return next(
        (r for r in negatives if r["method"] == "mean"), negatives[0] if negatives else None
    )


def control_pair(controls: Sequence[Row]) -> tuple[Row, Row] | None:
    """(negative, positive) controls for scaling: :func:`negative_control` and the first positive
    one; None when either is missing."""
    neg = negative_control(controls)
    pos = next((r for r in controls if r["control"] == "positive"), None)
    return None if neg is None or pos is None else (neg, pos)


def ceilings(controls: Sequence[Row]) -> tuple[Row | None, Row | None]:
    """(noise ceiling, LR-aware bound) rows (:mod:`bench.run.ceiling`), each None if missing."""
    rows = [r for r in controls if r["control"] == "ceiling"]
    plain = next((r for r in rows if r["variant"] == "ceiling"), None)
    lr = next((r for r in rows if r["variant"] != "ceiling"), None)
    return plain, lr


def scaled(row: Row, neg: Row, pos: Row, metric: str) -> float:
    """``(x - neg) / (pos - neg)`` on the means: 0 at the negative control, 1 at the positive one
    (for RMSE too, where lower is better); NaN when the controls tie."""
    span = pos[metric][0] - neg[metric][0]
    return (row[metric][0] - neg[metric][0]) / span if span else math.nan


def kendall(ranked: Sequence[Row], metric: str, lower: bool = False) -> tuple[float, list[str]]:
    """Kendall's tau-b between the ranked rows' order (the headline ranking) and their order by
    ``metric`` (the rows' mean of an alternative protocol; ``lower`` is better when True), and
    the top three under ``metric``. Rows without a finite value are left out; NaN with fewer
    than two."""
    from scipy.stats import kendalltau

    kept = [(i, r) for i, r in enumerate(ranked) if _finite(r.get(metric))]
    if len(kept) < 2:
        return math.nan, []
    sign = 1.0 if lower else -1.0
    alt = sorted(kept, key=lambda p: (sign * float(p[1][metric]), p[0]))
    position = {i: k for k, (i, _) in enumerate(alt)}
    tau = kendalltau([i for i, _ in kept], [position[i] for i, _ in kept]).statistic
    return float(tau), [r["variant"] for _, r in alt[:3]]


def _finite(x: Any) -> bool:
    return x is not None and not isinstance(x, tuple) and math.isfinite(float(x))


def aggregated_rank(
    sections: Sequence[Sequence[Row]], metrics: Sequence[tuple[str, bool]]
) -> list[tuple[str, float, int, int]]:
    """(method, mean rank, ranks counted, first places), best first.

    Rule: in each section, ranked methods are ranked on each metric by their mean (``metrics``
    = (name, lower is better); ties share the average rank; a non-finite mean ranks last); a
    method's aggregated rank is the mean of its ranks. Methods with fewer ranks (scored on fewer
    sections) come after those with more, whatever their mean; then by mean rank, then name.
    """
    from scipy.stats import rankdata

    ranks: dict[str, list[float]] = defaultdict(list)
    wins: dict[str, int] = defaultdict(int)
    for ranked in sections:
        for metric, lower in metrics:
            sign = 1.0 if lower else -1.0
            keyed = [
                sign * r[metric][0] if math.isfinite(r[metric][0]) else math.inf for r in ranked
            ]
            for r, rank in zip(ranked, rankdata(keyed, method="average"), strict=True):
                ranks[r["variant"]].append(float(rank))
                wins[r["variant"]] += int(rank == 1.0)
    order = sorted(ranks, key=lambda m: (-len(ranks[m]), sum(ranks[m]) / len(ranks[m]), m))
    return [(m, sum(ranks[m]) / len(ranks[m]), len(ranks[m]), wins[m]) for m in order]
