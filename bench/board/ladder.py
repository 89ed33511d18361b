"""The pooling ladder: how each method's PCC falls as the resolution gap k grows.

``python -m bench run --ladder`` runs a dataset's ladder at the first seed: for a cross-validated
dataset its fold 0 at every committed k (tasks ``<dataset>-k<k>-f0``, fold files made by ``bench
split --k K --folds``; the own k's fold 0 is a fold of the page already), else its single split
at every committed k (``<dataset>-k<k>``, :meth:`bench.data.splits.SplitSpec.label`). The other-k
tasks are not ranked sections of the page. With the records of the dataset's own k (its fold 0,
or its single split) they form its ladder: per method (variant) and k, the mean PCC over the
split's (region, gene) pairs with its 95% bootstrap interval (:func:`bench.board.rows.rows`), and
the noise ceiling of that split; a table (method x k) and a figure (PCC against k, one line per
method, the ceiling dashed). Every rung tests the same regions (a fold's test regions do not
depend on k), so the rungs differ only in the resolution gap and what it changes.

Seeds: only the seeds scored at every k of the dataset count (a ladder run at seed 0 beside a
page at seeds 0-2 compares seed 0 with seed 0). Each k's split chooses its own genes and spot QC
from its own training regions (the same test regions), so a point is that split's verdict, not
the same genes on a coarser grid. Records of a ``-k<k>`` task whose dataset has no records at its
own k stay a section (a user who ran only ``--k 3``), as do the folds of a ``--k 3 --folds all``
run (more folds of that k than fold 0).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.board import rows as board_rows
from bench.board.ranking import ceilings
from bench.run import plots
from bench.run.records import Record

__all__ = ["Ladder", "figure", "section", "take"]


@dataclass(frozen=True)
class Ladder:
    """One dataset's records by pooling factor: ``by_k[k]`` the records of its split (or of its
    fold ``fold``) at k."""

    dataset: str
    by_k: dict[int, list[Record]] = field(default_factory=dict)
    fold: int | None = None  # the fold every rung tests (0), or None: single splits

    @property
    def name(self) -> str:
        """The dataset, with the fold when the rungs are a fold's: ``her2st fold 0``."""
        return self.dataset if self.fold is None else f"{self.dataset} fold {self.fold}"

    @property
    def ks(self) -> list[int]:
        return sorted(self.by_k)

    def seeds(self) -> list[int]:
        """The seeds with a successful record at every k."""
        sets = [{int(r.seed) for r in recs if r.ok} for recs in self.by_k.values()]
        return sorted(set.intersection(*sets)) if sets else []

    def table(self) -> tuple[dict[str, dict[int, tuple[float, float, float]]], dict[int, float]]:
        """``(pcc, ceiling)``: per ranked variant ``{k: (mean, low, high)}`` over the common
        seeds, in the order of the smallest k's ranking; and the noise ceiling's PCC per k."""
        keep = set(self.seeds())
        pcc: dict[str, dict[int, tuple[float, float, float]]] = defaultdict(dict)
        ceiling: dict[int, float] = {}
        order: list[str] = []
        for k in self.ks:
            group = sorted(
                (r for r in self.by_k[k] if int(r.seed) in keep),
                key=lambda r: (str(r.method), int(r.seed)),
            )
            genes = next((list(r.split.genes) for r in group if r.split.genes), [])
            ranked, controls = board_rows.rows(group, genes)
            for row in ranked:
                pcc[row["variant"]][k] = tuple(float(x) for x in row["pcc"])
                if row["variant"] not in order:
                    order.append(row["variant"])
            plain, _ = ceilings(controls)
            if plain is not None:
                ceiling[k] = float(plain["pcc"][0])
        return {v: pcc[v] for v in order}, ceiling


def _rung(record: Record) -> tuple[str, int | None] | None:
    """``(dataset, fold)`` of a rung at another k: ``<dataset>-k<k>`` (a single split, fold None)
    or ``<dataset>-k<k>-f0`` (fold 0); None for any other record."""
    fold, name = record.split.fold, str(record.dataset)
    suffix = f"-k{record.split.k}" + ("" if fold is None else f"-f{fold}")
    if record.split.k and fold in (None, 0) and name.endswith(suffix):
        return name.removesuffix(suffix), fold
    return None


def _own(dataset: str, fold: int | None) -> str:
    """The label of the own-k rung of ``dataset``'s ladder over ``fold``."""
    return dataset if fold is None else f"{dataset}-f{fold}"


def take(
    records: Sequence[Record], folded: Collection[str] = ()
) -> tuple[list[Record], list[Ladder]]:
    """``(section records, ladders)``: records of other-k tasks whose dataset has records at its
    own k move into that dataset's :class:`Ladder`: fold 0 at other k (``<dataset>-k<k>-f0``,
    a rung only when no other fold of that k is among the records) with the dataset's fold 0,
    or single splits at other k (``<dataset>-k<k>``) with its single split. The own-k records
    stay in their section (fold 0 in the pooled folds), except a single split of a ``folded``
    dataset (an older page's ladder: its section is its pooled folds, so the single split's
    records are the ladder's own-k rung only). A dataset without other-k records has no
    ladder."""
    names = {str(r.dataset) for r in records}
    extra: dict[tuple[str, int | None], list[Record]] = defaultdict(list)
    kept = []
    for rec in records:
        rung = _rung(rec)
        # fold 0 at another k is a rung, not a pooled section, when its k has no other fold
        alone = rung is None or rung[1] is None or f"{rung[0]}-k{rec.split.k}-f1" not in names
        if rung is not None and alone and _own(*rung) in names:
            extra[rung].append(rec)
        else:
            kept.append(rec)
    rungs_only = {base for base, fold in extra if fold is None and base in folded}
    kept = [r for r in kept if str(r.dataset) not in rungs_only]
    ladders = []
    for base, fold in sorted(extra, key=lambda key: (key[0], key[1] is not None)):
        by_k: dict[int, list[Record]] = defaultdict(list)
        own = (r for r in records if str(r.dataset) == _own(base, fold))
        for rec in [*extra[(base, fold)], *own]:
            by_k[int(rec.split.k)].append(rec)
        ladders.append(Ladder(base, dict(by_k), fold))
    return kept, ladders


def figure(
    ladder: Ladder,
    path: Path,
    table: tuple[dict[str, dict[int, tuple[float, float, float]]], dict[int, float]] | None = None,
) -> Path:
    """PCC against k per method (95% intervals as bars), the noise ceiling dashed; written
    atomically (:func:`bench.run.plots.save_png`). ``table``: ``ladder.table()`` when the
    caller already has it (its intervals are bootstraps)."""
    from matplotlib.figure import Figure

    pcc, ceiling = table if table is not None else ladder.table()
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    for variant, points in pcc.items():
        ks = sorted(points)
        mean = np.array([points[k][0] for k in ks])
        err = np.array([[points[k][0] - points[k][1], points[k][2] - points[k][0]] for k in ks])
        ax.errorbar(ks, mean, yerr=err.T, marker="o", ms=3, capsize=2, lw=1, label=variant)
    if ceiling:
        ks = sorted(ceiling)
        ax.plot(ks, [ceiling[k] for k in ks], "k--", lw=1.5, label="noise ceiling")
    ax.set_xticks(ladder.ks)
    ax.set_xlabel("pooling factor k (LR spot = k x k HR positions)")
    ax.set_ylabel("PCC (mean over region x gene)")
    ax.set_title(f"{ladder.name}: pooling ladder, seeds {_seeds(ladder)}", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return plots.save_png(fig, path)


def _seeds(ladder: Ladder) -> str:
    return ", ".join(str(s) for s in ladder.seeds()) or "none"


def _cell(point: tuple[float, float, float] | None) -> str:
    if point is None or not math.isfinite(point[0]):
        return "–"
    return f"{point[0]:.3f} [{point[1]:.3f}, {point[2]:.3f}]"


def section(
    ladders: Sequence[Ladder], folder: Path | None, figures: str
) -> tuple[list[str], list[Path]]:
    """The page's ladder section and the figures drawn in ``folder`` (none without it), linked
    as ``<figures>/<file>``; no lines without a ladder."""
    if not ladders:
        return [], []
    out = [
        "## Pooling ladder",
        "",
        "Each dataset at several pooling factors k (`python -m bench run --ladder`): for a "
        "cross-validated dataset its fold 0 at every k (the k of its section is that fold's "
        "records), else its single split; scored like a section: mean PCC over (region, gene) "
        "pairs with 95% bootstrap intervals, over the seeds scored at every k. Each k's split "
        "picks its own genes and spot QC from its training regions; the test regions are the "
        "same at every k. Drop: PCC at the largest k less PCC at the smallest (negative: falls "
        "as the gap grows).",
        "",
    ]
    drawn: list[Path] = []
    for ladder in ladders:
        table = ladder.table()
        pcc, ceiling = table
        ks = ladder.ks
        out += [
            f"### {ladder.name} · k = {', '.join(str(k) for k in ks)} · seeds {_seeds(ladder)}",
            "",
        ]
        if folder is not None and pcc:
            name = f"{_own(ladder.dataset, ladder.fold)}-ladder.png"
            path = figure(ladder, Path(folder) / name, table)
            drawn.append(path)
            out += [f"![{ladder.name} pooling ladder]({figures}/{path.name})", ""]
        out += [
            "| method | " + " | ".join(f"k = {k}" for k in ks) + " | drop |",
            "|---|" + "---:|" * (len(ks) + 1),
        ]
        for variant, points in pcc.items():
            first, last = points.get(ks[0]), points.get(ks[-1])
            drop = f"{last[0] - first[0]:+.3f}" if first and last else "–"
            cells = [_cell(points.get(k)) for k in ks]
            out.append(f"| {variant} | " + " | ".join(cells) + f" | {drop} |")
        if ceiling:
            cells = [f"{ceiling[k]:.3f}" if k in ceiling else "–" for k in ks]
            out.append("| *noise ceiling* | " + " | ".join(cells) + " | |")
        out.append("")
    return out, drawn
