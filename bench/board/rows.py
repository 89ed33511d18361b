"""The rows of a leaderboard section: each method's scores, intervals, significance and cost,
aggregated from its records (one per seed). :mod:`bench.board.page` formats them.

Aggregation (``shared/design/metrics.md``): per method, the per-gene values of its seeds are first
averaged per (section, gene) (a NaN or null seed value is left out of that average); the score is
the mean of that (section x gene) table. Its interval comes from
:func:`bench.board.stats.bootstrap_ci_seeds` (seed 0) on the per-seed tables: seeds and genes
within
sections resampled. Table order: sections sorted, genes in the split's order (unknown genes
after, sorted).

Significance: each ranked method's seed-averaged PCC table is compared with the best method's on
the same (section, gene) pairs by a two-sided Wilcoxon signed-rank test
(:func:`bench.board.stats.paired_wilcoxon`); the p-values of all ranked methods but the best are
Holm-corrected together (:func:`bench.board.stats.holm`) and shown in the "vs best" column, marked
``*`` below ``ALPHA`` (different from the best).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bench.board import ranking
from bench.board.stats import bootstrap_ci_seeds
from bench.run.records import Record

__all__ = ["mean_of", "rows", "seed_mean_table"]

MAIN = ("pcc", "ssim", "rmse")  # ranked on the first; all three in the aggregated rank
DIVERSITY = ("spread", "crps", "spread_skill", "coverage", "rvd", "collapse_ratio")
STOCHASTIC = ("spread", "crps", "spread_skill", "collapse_ratio")  # only samplers have these
N_BOOT = 1000
LEVEL = 0.95
ALPHA = 0.05  # significance level of the Holm-corrected paired tests against the best method


def rows(
    group: Sequence[Record], genes: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(ranked, controls)`` rows of one (dataset, fingerprint) group of records (sorted by
    method, seed): ranked rows best PCC first with ``vs_best`` set; controls by kind, then PCC.

    Each row holds ``method``, ``control``, ``seeds``, ``first_seed``, ``<metric>`` = (mean,
    low, high) and ``<metric>_table`` (S, G) for pcc/ssim/rmse, ``excluded``/``pairs``, ``time``,
    ``fit_s``, ``predict_s``, ``memory`` (MiB), ``device``, ``paper_*``, the diversity means,
    ``stochastic``, ``curves`` ((seed, :class:`Curve`) of trained methods) and ``converged``
    (every seed's verdict yes; None without any verdict).
    """
    by_method: dict[str, list[Record]] = defaultdict(list)
    for rec in group:
        if rec.ok:
            by_method[rec.method].append(rec)
    every = [_summarise(m, by_method[m], genes) for m in sorted(by_method)]
    ranked = sorted((r for r in every if not r["control"]), key=_rank_key)
    _significance(ranked)
    controls = sorted(
        (r for r in every if r["control"]), key=lambda r: (str(r["control"]), *_rank_key(r))
    )
    return ranked, controls


def mean_of(values: Iterable[Any]) -> float:
    """Mean of the finite entries (None and NaN left out); NaN when there is none."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(xs) / len(xs) if xs else float("nan")


def seed_mean_table(
    records: Sequence[Record], metric: str, genes: Sequence[str] = ()
) -> tuple[np.ndarray, int]:
    """One method's (section x gene) table of ``metric``, averaged over its seeds (records).

    Parameters
    ----------
    records : the ok records of one method in one split (one per seed).
    metric : a per-map metric column of ``per_gene``, e.g. ``"pcc"``.
    genes : the split's gene order; genes not in it follow, sorted.

    Returns
    -------
    ``(table, excluded)``: float64 ``(S, G)``, NaN where no seed has a value; ``excluded`` is the
    number of (section, gene) pairs that appear in ``per_gene`` but have no value in any seed.
    """
    sums: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for rec in records:
        per_gene = rec.per_gene
        values = per_gene.scores.get(metric)
        if not values:
            continue
        for key in zip(per_gene.region, per_gene.gene, strict=True):
            counts[key] += 0  # register the pair even when its value is null
        pairs = zip(per_gene.region, per_gene.gene, strict=True)
        for key, v in zip(pairs, values, strict=True):
            if v is not None and not math.isnan(float(v)):
                sums[key] += float(v)
                counts[key] += 1
    sections = sorted({s for s, _ in counts})
    order = {g: i for i, g in enumerate(genes)}
    cols = sorted({g for _, g in counts}, key=lambda g: (g not in order, order.get(g, 0), g))
    table = np.full((len(sections), len(cols)), np.nan)
    row, col = {s: i for i, s in enumerate(sections)}, {g: j for j, g in enumerate(cols)}
    for (s, g), c in counts.items():
        if c:
            table[row[s], col[g]] = sums[(s, g)] / c
    return table, sum(1 for c in counts.values() if c == 0)


def _summarise(method: str, recs: list[Record], genes: Sequence[str]) -> dict[str, Any]:
    """Everything one table row needs for one method's ok records (sorted by seed)."""
    row: dict[str, Any] = {"method": method, "control": recs[0].control, "seeds": len(recs)}
    row["first_seed"] = int(recs[0].seed)
    for metric in MAIN:
        table, excluded = seed_mean_table(recs, metric, genes)
        per_seed = [seed_mean_table([rec], metric, genes)[0] for rec in recs]
        if len({t.shape for t in per_seed}) != 1 or per_seed[0].shape != table.shape:
            per_seed = [table]  # seeds on different pair sets: genes-only interval
        _, low, high = bootstrap_ci_seeds(np.stack(per_seed), n_boot=N_BOOT, level=LEVEL, seed=0)
        valid = table[np.isfinite(table)]
        row[metric] = (float(valid.mean()) if valid.size else math.nan, low, high)
        row[f"{metric}_table"] = table
        if metric == "pcc":
            row["excluded"], row["pairs"] = excluded, int(np.isfinite(table).sum()) + excluded
    times = []
    for rec in recs:
        t = rec.timings
        fit, predict = t.get("fit_s"), t.get("predict_s")
        times.append(None if fit is None or predict is None else float(fit) + float(predict))
    row["time"] = mean_of(times)
    for key in ("fit_s", "predict_s"):
        row[key] = mean_of(rec.timings.get(key) for rec in recs)
    row["memory"] = mean_of(rec.peak_memory_mb for rec in recs)
    for key in ("paper_pcc", "paper_ssim", "paper_rmse"):
        values = [rec.metrics.get(key) for rec in recs]
        row[key] = mean_of(values) if any(v is not None for v in values) else None
    row["device"] = ", ".join(sorted({str(rec.device) for rec in recs}))
    for metric in DIVERSITY:
        row[metric] = mean_of(rec.metrics.get(metric) for rec in recs)
    row["stochastic"] = any(m in rec.metrics for rec in recs for m in STOCHASTIC)
    row["curves"] = [(int(rec.seed), rec.curve) for rec in recs if rec.curve]
    verdicts = [rec.converged for rec in recs if rec.converged is not None]
    # converged when every seed with a verdict converged; None when no seed has one
    row["converged"] = all(verdicts) if verdicts else None
    return row


def _significance(ranked: list[dict[str, Any]]) -> None:
    """Set ``row["vs_best"]`` of every ranked row (see the module docstring)."""
    for i, (row, p) in enumerate(zip(ranked, ranking.vs_best(ranked), strict=True)):
        mark = "best" if i == 0 else "n/a" if math.isnan(p) else f"{p:.2g}"
        row["vs_best"] = mark + (" *" if i and p < ALPHA else "")


def _rank_key(row: dict[str, Any]) -> tuple[float, str]:
    pcc = row["pcc"][0]
    return (-pcc if math.isfinite(pcc) else math.inf, row["method"])
