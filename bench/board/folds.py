"""Folded datasets on the page (issue 24): the fold tasks of one dataset pooled into one section.

``python -m bench run --folds all`` runs each cross-validation fold as a task of its own, with
records under the fold's label (``her2st-f0``, ``her2st-k3-f0``). :func:`group` gathers the fold
tasks of one dataset (same base label, so the same dataset and k, and the same fold count) into a
:class:`Pooled` group; each fold keeps its own split fingerprint (records of one fold under
another fingerprint, e.g. from before a re-split, get a section of their own as a plain split).
The fold is the record's ``split.fold`` (``split.folds`` the count); records written before they
carried it are read from the label's ``-f<i>`` suffix, the count then inferred as the largest
fold seen plus one.

Pooling: every test region is scored once, in the fold that tests it, so a method's records of
one seed over all pooled folds are merged into one :class:`PooledRecord` whose per-(region, gene)
table holds every fold's pairs; the page ranks on their mean. A variant (method and parameters,
:func:`bench.board.rows.variant`) is ranked only with an ok record in every pooled fold; the
others are ``incomplete``. Scalar metrics of a merged record (collapse, diversity, alternative
protocols, paper metrics) are the folds' values weighted by their (region, gene) pairs; timings
are summed over the folds (the whole cross-validation's cost), peak memory is the largest; the
influence column is each fold's scaled by that fold's share of the valid PCC pairs (dropping a
position moves the pooled mean by that share of its fold mean's change).

Power (:func:`power_rows`): per ranked method, the smallest mean PCC difference from the best that
the page's paired test (the signed-rank test on region means) detects at ``POWER`` and ``ALPHA``,
from the observed variance of their paired differences with the regions' design effect
(:func:`bench.board.stats.detectable_difference`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.board import rows as board_rows
from bench.board.rows import ALPHA
from bench.board.stats import detectable_difference, intraclass_correlation, min_signed_rank_p
from bench.run.records import PerGene, Record, SplitRef

__all__ = ["POWER", "Pooled", "PooledRecord", "fold_of", "group", "power_rows"]

POWER = 0.8  # the power at which the page states the detectable difference
_FOLD_LABEL = re.compile(r"^(?P<base>.+)-f(?P<fold>\d+)$")


def fold_of(record: Record) -> tuple[str, int, int | None] | None:
    """``(base label, fold, fold count or None)`` of a fold task's record; None for a split's.

    The base label is the record's dataset less its ``-f<i>`` suffix (``her2st-k3-f0`` ->
    ``her2st-k3``)."""
    found = _FOLD_LABEL.match(str(record.dataset))
    fold = record.split.fold
    if fold is not None:
        same = found is not None and int(found.group("fold")) == fold
        base = found.group("base") if same else str(record.dataset)
        return base, int(fold), record.split.folds
    if found is None:
        return None
    return found.group("base"), int(found.group("fold")), None


@dataclass(eq=False)
class PooledRecord(Record):
    """A method's records of one seed over the pooled folds, merged (module docstring);
    ``parts`` = the (fold, record) pairs it was merged from, in fold order."""

    parts: tuple[tuple[int, Record], ...] = ()


@dataclass
class Pooled:
    """The fold tasks of one dataset pooled into one page section.

    ``base``: the base label; ``folds``: the fold count (``inferred`` when no record states it);
    ``by_fold``: each pooled fold's records (one fingerprint each, sorted by method and seed);
    ``split``: the pooled split reference (every fold's test regions, the genes of any fold in
    fold order, scored and dropped positions summed); ``complete`` / ``incomplete``: merged
    records of the variants with / without an ok record in every pooled fold; ``missing``: per
    incomplete variant label, the pooled folds it lacks; ``failed``: the failed records."""

    base: str
    folds: int
    inferred: bool
    by_fold: dict[int, list[Record]]
    split: SplitRef = field(default_factory=SplitRef)
    complete: list[Record] = field(default_factory=list)
    incomplete: list[Record] = field(default_factory=list)
    missing: dict[str, list[int]] = field(default_factory=dict)
    failed: list[Record] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the pooled folds and their fingerprints."""
        blob = json.dumps([[f, self.fold_split(f).fingerprint] for f in sorted(self.by_fold)])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """The section's name in the summary: ``<base> (<n> folds)``."""
        return f"{self.base} ({self.folds} folds)"

    def fold_split(self, fold: int) -> SplitRef:
        """The split reference of one pooled fold (its first record that has one)."""
        recs = self.by_fold[fold]
        return next((r.split for r in recs if r.split.k), recs[0].split)

    def fold_label(self, fold: int) -> str:
        return str(self.by_fold[fold][0].dataset)

    @property
    def maps_source(self) -> tuple[str, str]:
        """(label, fingerprint) of the first pooled fold: its files draw the gene-map figures."""
        first = min(self.by_fold)
        return self.fold_label(first), self.fold_split(first).fingerprint


def group(records: Sequence[Record]) -> tuple[list[Record], list[Pooled]]:
    """``(plain, pooled)``: the records of splits (and of folds under a fingerprint not pooled),
    and the fold tasks grouped by dataset (module docstring), sorted by base label and count."""
    plain: list[Record] = []
    tasks: dict[str, dict[int | None, list[tuple[int, Record]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for rec in records:
        found = fold_of(rec)
        if found is None:
            plain.append(rec)
        else:
            base, fold, folds = found
            tasks[base][folds].append((fold, rec))
    pooled = []
    for base in sorted(tasks):
        counts = tasks[base]
        declared = sorted(c for c in counts if c is not None)
        if None in counts and len(declared) == 1:  # old records join the one declared count
            counts[declared[0]] += counts.pop(None)
        for count in sorted(counts, key=lambda c: (c is None, c or 0)):
            kept, stale = _one_fingerprint_per_fold(counts[count])
            plain += stale
            if not kept:
                continue
            n = count if count is not None else max(kept) + 1
            pooled.append(_pool(base, n, count is None, kept))
    return plain, pooled


def _one_fingerprint_per_fold(
    pairs: list[tuple[int, Record]],
) -> tuple[dict[int, list[Record]], list[Record]]:
    """Per fold, the records of its fingerprint with the most ok records (then the latest
    finished, then the larger fingerprint); the records of its other fingerprints."""
    by: dict[int, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for fold, rec in pairs:
        by[fold][rec.split.fingerprint].append(rec)
    kept, stale = {}, []
    for fold in sorted(by):
        prints = by[fold]

        def rank(fp: str, prints: dict[str, list[Record]] = prints) -> tuple[int, int, str]:
            recs = prints[fp]
            return (sum(r.ok for r in recs), max(r.finished_ms for r in recs), fp)

        chosen = max(prints, key=rank)
        kept[fold] = sorted(prints[chosen], key=lambda r: (str(r.method), int(r.seed)))
        stale += [r for fp in sorted(prints) if fp != chosen for r in prints[fp]]
    return kept, stale


def _variant_key(rec: Record) -> tuple[str, str, str]:
    """The key :func:`bench.board.rows.rows` groups rows by: method, label and parameters."""
    params = {k: v for k, v in rec.params.items() if k != "seed"}
    return rec.method, board_rows.variant(rec), json.dumps(params, sort_keys=True, default=str)


def _pool(base: str, folds: int, inferred: bool, by_fold: dict[int, list[Record]]) -> Pooled:
    out = Pooled(base=base, folds=folds, inferred=inferred, by_fold=by_fold)
    splits = [out.fold_split(f) for f in sorted(by_fold)]
    genes = list(dict.fromkeys(g for s in splits for g in s.genes))
    out.split = SplitRef(
        fingerprint=out.fingerprint,
        k=next((s.k for s in splits if s.k), 0),
        genes=tuple(genes),
        test=tuple(r for s in splits for r in s.test),
        qc_min_totals={r: t for s in splits for r, t in s.qc_min_totals.items()},
        scored=sum(s.scored for s in splits),
        dropped=sum(s.dropped for s in splits),
        folds=folds,
    )
    variants: dict[tuple[str, str, str], dict[int, list[Record]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for fold in sorted(by_fold):
        for rec in by_fold[fold]:
            if rec.ok:
                variants[_variant_key(rec)][fold].append(rec)
            else:
                out.failed.append(rec)
    for key in sorted(variants):
        present = variants[key]
        merged = [
            _merge(base, out.split, seed, [(f, r) for f in sorted(present) for r in present[f]
                                           if int(r.seed) == seed])
            for seed in sorted({int(r.seed) for recs in present.values() for r in recs})
        ]  # fmt: skip
        lacking = [f for f in sorted(by_fold) if f not in present]
        if lacking:
            out.incomplete += merged
            label = key[1] if sum(k[1] == key[1] for k in variants) == 1 else f"{key[1]} {key[2]}"
            out.missing[label] = lacking
        else:
            out.complete += merged
    return out


def _valid_pcc(rec: Record) -> int:
    values = rec.per_gene.scores.get("pcc") or []
    return sum(1 for v in values if v is not None and not math.isnan(float(v)))


def _column(rec: Record, key: str) -> list[float | None]:
    """A per-gene score column of ``rec``, None throughout when it lacks it."""
    return list(rec.per_gene.scores.get(key) or [None] * len(rec.per_gene.region))


def _merge(base: str, split: SplitRef, seed: int, parts: list[tuple[int, Record]]) -> Record:
    """One seed's records of one variant over its folds as one record (module docstring)."""
    first = parts[0][1]
    recs = [r for _, r in parts]
    keys = list(dict.fromkeys(k for r in recs for k in r.per_gene.scores))
    per_gene = PerGene(
        region=[x for r in recs for x in r.per_gene.region],
        gene=[x for r in recs for x in r.per_gene.gene],
        scores={k: [x for r in recs for x in _column(r, k)] for k in keys},
    )
    weights = [len(r.per_gene.region) for r in recs]
    metrics: dict[str, float | None] = {}
    for key in dict.fromkeys(k for r in recs for k in r.metrics):
        found = [
            (float(r.metrics[key]), w)
            for r, w in zip(recs, weights, strict=True)
            if r.metrics.get(key) is not None and not math.isnan(float(r.metrics[key]))
        ]
        total = sum(w for _, w in found)
        metrics[key] = (
            sum(v * w for v, w in found) / total if total else (found[0][0] if found else None)
        )
    timings: dict[str, float] = {}
    for key in dict.fromkeys(k for r in recs for k in r.timings):
        values = [r.timings.get(key) for r in recs]
        if all(v is not None for v in values):
            timings[key] = float(sum(float(v) for v in values))
    pairs = [_valid_pcc(r) for r in recs]
    influence: list[float | None] = []
    if all(r.influence for r in recs) and sum(pairs):
        for r, n in zip(recs, pairs, strict=True):
            share = n / sum(pairs)
            influence += [None if v is None else float(v) * share for v in r.influence]
    verdicts = [r.converged for r in recs if r.converged is not None]
    draws = [r.draws_used for r in recs if r.draws_used is not None]
    return PooledRecord(
        dataset=base,
        method=first.method,
        seed=seed,
        split=split,
        params=dict(first.params),
        status="ok",
        control=first.control,
        name=first.name,
        metrics=metrics,
        per_gene=per_gene,
        timings=timings,
        peak_memory_mb=max(r.peak_memory_mb for r in recs),
        device=", ".join(sorted({str(r.device) for r in recs})),
        code_version=first.code_version,
        converged=all(verdicts) if verdicts else None,
        influence=influence,
        draws_used=round(sum(draws) / len(draws)) if draws else None,
        parts=tuple(parts),
    )


def power_rows(ranked: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ranked row after the first: its comparison with the best in numbers.

    Each dict holds ``variant``, ``diff`` (mean PCC difference from the best over the pairs both
    score, negative: below), ``sd`` (of the paired differences), ``icc``
    (:func:`bench.board.stats.intraclass_correlation` of the differences within regions),
    ``regions`` and ``pairs`` (with a valid difference), ``mde`` (the smallest mean difference the
    signed-rank test on region means detects at ``POWER``, two-sided ``ALPHA`` per comparison,
    before Holm: :func:`bench.board.stats.detectable_difference` with the regions' design
    effect; NaN when it cannot be estimated) and ``reachable`` (False when the exact test on
    that many regions cannot reach p < ``ALPHA`` at all,
    :func:`bench.board.stats.min_signed_rank_p`).
    Rows' ``pcc_table`` rows are regions (:func:`bench.board.rows.seed_mean_table`)."""
    if not ranked:
        return []
    best = ranked[0]["pcc_table"]
    out = []
    for r in ranked[1:]:
        table = r["pcc_table"]
        if table.shape != best.shape or table.ndim != 2:
            continue
        d = (table - best).reshape(-1)
        region = np.repeat(np.arange(table.shape[0]), table.shape[1])
        keep = ~np.isnan(d)
        regions = int(np.unique(region[keep]).size)
        out.append(
            {
                "variant": r["variant"],
                "diff": float(d[keep].mean()) if keep.any() else math.nan,
                "sd": float(d[keep].std(ddof=1)) if keep.sum() > 1 else math.nan,
                "icc": intraclass_correlation(d[keep], region[keep]) if keep.any() else math.nan,
                "regions": regions,
                "pairs": int(keep.sum()),
                "mde": detectable_difference(d, power=POWER, alpha=ALPHA, region_ids=region),
                "reachable": min_signed_rank_p(regions) < ALPHA,
            }
        )
    return out
