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

Folded sections (``clustered``, :mod:`bench.board.folds`): the records are a method's folds merged
per seed, so a table holds every fold's test regions. Regions are then clusters of correlated
pairs: intervals come from :func:`bench.board.stats.hierarchical_bootstrap_ci` (seeds, regions,
then genes within each drawn region) and the paired test is the signed-rank test on the region
means of the PCC difference (:func:`bench.board.stats.paired_wilcoxon_regions`), Holm-corrected
as above.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bench.board import ranking
from bench.board.stats import bootstrap_ci_seeds, hierarchical_bootstrap_ci
from bench.run.records import Record

__all__ = ["mean_of", "rows", "seed_mean_table"]

MAIN = ("pcc", "ssim", "rmse")  # ranked on the first; all three in the aggregated rank
DIVERSITY = ("spread", "crps", "spread_skill", "coverage", "draw_diversity", "rvd")
STOCHASTIC = ("spread", "crps", "spread_skill", "draw_diversity")  # only samplers have these
COLLAPSE = "input_response"  # every method's (bench.scoring.diversity.input_response)
ALTERNATIVES = ("alt_pcc_noqc", "alt_pcc_pooled", "alt_pcc_linear", "alt_ssim_uniform7")
N_BOOT = 1000
LEVEL = 0.95
ALPHA = 0.05  # significance level of the Holm-corrected paired tests against the best method


def rows(
    group: Sequence[Record], genes: Sequence[str], clustered: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(ranked, controls)`` rows of one (dataset, fingerprint) group of records (sorted by
    method, seed): ranked rows best PCC first with ``vs_best`` set; controls by kind, then PCC.

    One row per variant (:func:`variant`): records of one method with different parameters are
    never averaged. Each row holds ``method``, ``variant`` (its label and key), ``control``,
    ``seeds``, ``first_seed``, ``<metric>`` = (mean, low, high) and ``<metric>_table`` (S, G) for
    pcc/ssim/rmse, ``excluded``/``pairs``, ``time``, ``fit_s``, ``predict_s``, ``memory`` (MiB),
    ``draws`` (a sampler's K, seeds' mean), ``device``, ``paper_*``, the diversity means,
    ``input_response``, the alternative protocols' means, ``influence`` (the seed-mean change
    of its mean PCC per scored position, or None), ``stochastic``, ``curves`` ((seed,
    :class:`Curve`) of trained methods) and ``converged`` (every seed's verdict yes; None
    without any verdict). The ``ceiling`` record gives two
    control rows: the noise ceiling and the LR-aware bound (``ceiling (LR-aware)``).

    ``clustered`` (a folded section, see the module docstring): regions resampled in the
    intervals and the tests on region means. Records merged from folds (``parts``: their (fold,
    record) pairs) give each row ``fold_pcc`` ({fold: mean PCC over that fold's pairs, seeds
    averaged per pair first}; the LR-aware bound's from its ``pcc_lr``) and every fold's
    curves, labelled ``"<seed> in f<fold>"``.
    """
    by_variant: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for rec in group:
        if rec.ok:
            params = {k: v for k, v in rec.params.items() if k != "seed"}
            key = (rec.method, variant(rec), json.dumps(params, sort_keys=True, default=str))
            by_variant[key].append(rec)
    labels = Counter(v for _, v, _ in by_variant)
    every = [  # the label alone names the variant, unless other parameters differ too
        _summarise(m, v if labels[v] == 1 else f"{v} {p}", by_variant[(m, v, p)], genes, clustered)
        for m, v, p in sorted(by_variant)
    ]
    every += [_lr_bound(r) for r in every if r["control"] == "ceiling" and r.get("pcc_lr")]
    ranked = sorted((r for r in every if not r["control"]), key=_rank_key)
    _significance(ranked, clustered)
    controls = sorted(
        (r for r in every if r["control"]), key=lambda r: (str(r["control"]), *_rank_key(r))
    )
    return ranked, controls


def variant(record: Record) -> str:
    """The row label and key of a record: its method with the parameters that name its run
    (``Record.name``: preset, parameterisation, overrides), the seed left out; e.g.
    ``diffst[prediction=v,preset=quick,residual=True]``. Controls keep their method name."""
    name = record.name or record.method
    if record.control or not name.startswith(record.method + "["):
        return record.method
    inner = name[len(record.method) + 1 : -1]
    parts = [p for p in inner.split(",") if not p.startswith("seed=")]
    return f"{record.method}[{','.join(parts)}]" if parts else record.method


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


def _summarise(
    method: str, label: str, recs: list[Record], genes: Sequence[str], clustered: bool = False
) -> dict[str, Any]:
    """Everything one table row needs for one variant's ok records (sorted by seed)."""
    row: dict[str, Any] = {"method": method, "variant": label, "control": recs[0].control}
    row["seeds"], row["first_seed"] = len(recs), int(recs[0].seed)
    for metric in (*MAIN, "pcc_lr"):
        if metric == "pcc_lr" and not any("pcc_lr" in r.per_gene.scores for r in recs):
            continue
        table, excluded = seed_mean_table(recs, metric, genes)
        per_seed = [seed_mean_table([rec], metric, genes)[0] for rec in recs]
        if len({t.shape for t in per_seed}) != 1 or per_seed[0].shape != table.shape:
            per_seed = [table]  # seeds on different pair sets: genes-only interval
        if clustered:
            _, low, high = _clustered_ci(np.stack(per_seed))
        else:
            _, low, high = bootstrap_ci_seeds(
                np.stack(per_seed), n_boot=N_BOOT, level=LEVEL, seed=0
            )
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
    row["draws"] = mean_of(rec.draws_used for rec in recs)  # NaN: not a sampler's record
    for key in ("paper_pcc", "paper_ssim", "paper_rmse"):
        values = [rec.metrics.get(key) for rec in recs]
        row[key] = mean_of(values) if any(v is not None for v in values) else None
    row["device"] = ", ".join(sorted({str(rec.device) for rec in recs}))
    for metric in (*DIVERSITY, COLLAPSE, *ALTERNATIVES):
        row[metric] = mean_of(rec.metrics.get(metric) for rec in recs)
    row["influence"] = _influence(recs)
    row["stochastic"] = any(m in rec.metrics for rec in recs for m in STOCHASTIC)
    row["curves"] = [(int(rec.seed), rec.curve) for rec in recs if rec.curve]
    verdicts = [rec.converged for rec in recs if rec.converged is not None]
    # converged when every seed with a verdict converged; None when no seed has one
    row["converged"] = all(verdicts) if verdicts else None
    parts = sorted(
        ((int(f), p) for rec in recs for f, p in getattr(rec, "parts", ())),
        key=lambda fp: (fp[0], int(fp[1].seed)),
    )
    if parts:  # merged from folds (bench.board.folds)
        row["curves"] = [(f"{int(p.seed)} in f{f}", p.curve) for f, p in parts if p.curve]
        by_fold: dict[int, list[Record]] = defaultdict(list)
        for f, p in parts:
            by_fold[f].append(p)
        for metric in ("pcc", "pcc_lr") if "pcc_lr" in row else ("pcc",):
            row[f"fold_{metric}"] = {}
            for f, fold_recs in sorted(by_fold.items()):
                table = seed_mean_table(fold_recs, metric, genes)[0]
                valid = table[np.isfinite(table)]
                row[f"fold_{metric}"][f] = float(valid.mean()) if valid.size else math.nan
    return row


def _clustered_ci(per_seed: np.ndarray) -> tuple[float, float, float]:
    """:func:`bench.board.stats.hierarchical_bootstrap_ci` of ``(seeds, regions, genes)``
    tables: each table row is a region."""
    n_seeds, n_regions, n_genes = per_seed.shape
    if per_seed.size == 0:
        return math.nan, math.nan, math.nan
    region = np.repeat(np.arange(n_regions), n_genes)
    values = per_seed.reshape(n_seeds, n_regions * n_genes)
    return hierarchical_bootstrap_ci(values, region, n_boot=N_BOOT, level=LEVEL, seed=0)


def _influence(recs: list[Record]) -> np.ndarray | None:
    """The seed-mean influence column (one value per scored position), None when a seed lacks
    it or the seeds disagree on the positions."""
    cols = [r.influence for r in recs]
    if not cols or not cols[0] or len({len(c) for c in cols}) != 1:
        return None
    stacked = np.array([[np.nan if v is None else float(v) for v in c] for c in cols])
    return np.nanmean(stacked, axis=0) if np.isfinite(stacked).any() else None


def _lr_bound(ceiling: dict[str, Any]) -> dict[str, Any]:
    """The LR-aware bound as a control row of its own, from the ``ceiling`` row."""
    row = dict(ceiling)
    row["variant"] = "ceiling (LR-aware)"
    row["pcc"], row["pcc_table"] = ceiling["pcc_lr"], ceiling["pcc_lr_table"]
    if "fold_pcc_lr" in ceiling:  # merged from folds
        row["fold_pcc"] = ceiling["fold_pcc_lr"]
    return row


def _significance(ranked: list[dict[str, Any]], clustered: bool = False) -> None:
    """Set ``row["vs_best"]`` of every ranked row (see the module docstring)."""
    for i, (row, p) in enumerate(zip(ranked, ranking.vs_best(ranked, clustered), strict=True)):
        mark = "best" if i == 0 else "n/a" if math.isnan(p) else f"{p:.2g}"
        row["vs_best"] = mark + (" *" if i and p < ALPHA else "")


def _rank_key(row: dict[str, Any]) -> tuple[float, str]:
    pcc = row["pcc"][0]
    return (-pcc if math.isfinite(pcc) else math.inf, row["variant"])
