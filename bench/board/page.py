"""The leaderboard: one markdown page rendered from the result records.

``render`` is pure: the same records (in any order) give the same bytes. There are no timestamps,
and every loop runs over sorted keys. ``write`` also draws each section's figures
(:mod:`bench.board.figures`) and links those it drew, so its page is a function of the records and
the runner's prediction files beside them. One section per (dataset, split fingerprint) so scores
from different splits never share a table; the cross-validation folds of one dataset pool into one
section (:mod:`bench.board.folds`), each fold on its own split. Within a section, methods are
ranked by mean PCC. Control methods (``Record.control`` set) get their own table and no rank.
Failed runs are listed with their reason. A dataset's splits at other pooling factors k form its
pooling ladder at the end of the page (:mod:`bench.board.ladder`), not sections of their own.

Rows (scores, intervals, significance, cost) are computed in :mod:`bench.board.rows`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.board import figures as board_figures
from bench.board import folds as board_folds
from bench.board import ladder as board_ladder
from bench.board import ranking
from bench.board import rows as board_rows
from bench.board.rows import ALPHA, LEVEL, N_BOOT
from bench.files import atomic_write_text
from bench.run.learning import (
    EVAL_EVERY,
    FIRST,
    MIN_DELTA,
    MIN_GAIN,
    PATIENCE,
    WARM_UP,
    verdict_points,
)
from bench.run.records import Record, SplitRef, read_records

__all__ = ["render", "write"]

MAIN = tuple(zip(board_rows.MAIN, ("PCC ↑", "SSIM ↑", "RMSE ↓"), strict=True))
DIVERSITY = tuple(
    zip(
        board_rows.DIVERSITY,
        (
            "spread",
            "CRPS ↓",
            "spread-skill (→1)",
            "coverage (→0.9)",
            "draw diversity",
            "RVD ↓",
        ),
        strict=True,
    )
)
VERDICT = {True: "yes", False: "**no**", None: "–"}  # "–": not trained, or no verdict
FIGURES = "figures"  # folder of the figures, beside the leaderboard file
# draws a section's figures: (rows in display order, file stem, title, split label, fingerprint)
Draw = Callable[[list[dict[str, Any]], str, str, str, str], list[Path]]


def _num(x: Any, digits: int = 3) -> str:
    """Fixed-point text; None and NaN are shown as "n/a", and "-0.000" as "0.000"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _cell(text: Any) -> str:
    """One markdown table cell or list item: a single line with pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _fingerprint(record: Record) -> str:
    return record.split.fingerprint


def _scaled(ranked: list[dict[str, Any]], controls: list[dict[str, Any]]) -> list[str]:
    """The table of :func:`bench.board.ranking.scaled` scores, or nothing without both controls."""
    pair = ranking.control_pair(controls)
    if not ranked or pair is None:
        return []
    neg, pos = pair
    out = [
        "",
        "### Scaled between controls",
        "",
        f"(score - `{neg['method']}`) / (`{pos['method']}` - `{neg['method']}`) per metric: 0 = "
        "the negative control, 1 = the positive control.",
        "",
        "| method | " + " | ".join(label.split()[0] for _, label in MAIN) + " |",
        "|---|" + "---:|" * len(MAIN),
    ]
    for r in ranked:
        cells = [_num(ranking.scaled(r, neg, pos, metric)) for metric, _ in MAIN]
        out.append(f"| {_cell(r['variant'])} | " + " | ".join(cells) + " |")
    return out


def _share_of_ceiling(ranked: list[dict[str, Any]], controls: list[dict[str, Any]]) -> list[str]:
    """PCC against the two ceilings, above the negative control; nothing without them."""
    neg = ranking.negative_control(controls)
    plain, lr = ranking.ceilings(controls)
    if not ranked or neg is None or lr is None or plain is None:
        return []
    top = max(ranked, key=lambda r: r["pcc"][0])
    above = [r["variant"] for r in ranked if r["pcc"][0] > lr["pcc"][0]]
    held = (
        f"No ranked method exceeds the LR-aware bound (best: `{_cell(top['variant'])}` "
        f"{_num(top['pcc'][0])} against {_num(lr['pcc'][0])})."
        if not above
        else f"**{len(above)} ranked method(s) exceed the LR-aware bound** ("
        + ", ".join(f"`{_cell(v)}`" for v in above)
        + "): the bound's assumptions (Poisson counting noise) do not hold here."
    )
    out = [
        "",
        "### Share of the ceiling",
        "",
        f"Two ceilings on the scored positions (bench/scoring/ceiling.py). The noise ceiling "
        f"(`ceiling`, PCC {_num(plain['pcc'][0])}) is what a perfect predictor of expected "
        "expression reaches from information independent of the test counts. The LR-aware bound "
        f"(`ceiling (LR-aware)`, PCC {_num(lr['pcc'][0])}) also knows the observed LR block "
        "totals, which are pooled from the very counts the truth holds, so it bounds every "
        f"method that sees the LR input. {held} Share = (PCC - `{neg['variant']}`) / (bound - "
        f"`{neg['variant']}`).",
        "",
        "| method | PCC | share of noise ceiling | share of LR-aware bound |",
        "|---|---:|---:|---:|",
    ]
    for r in ranked:
        shares = [_num(ranking.scaled(r, neg, c, "pcc")) for c in (plain, lr)]
        out.append(f"| {_cell(r['variant'])} | {_num(r['pcc'][0])} | " + " | ".join(shares) + " |")
    return out


def _verdict(ranked: list[dict[str, Any]], test: str = "paired Wilcoxon on PCC") -> list[str]:
    """One sentence per dataset from the paired tests: who is level with the best, who below."""
    if not ranked:
        return []
    best = ranked[0]
    level = [r["variant"] for r in ranked[1:] if not r.get("vs_best", "").endswith("*")]
    below = [r["variant"] for r in ranked[1:] if r.get("vs_best", "").endswith("*")]

    def names(xs: list[str]) -> str:
        return ", ".join(f"`{_cell(x)}`" for x in xs) if xs else "none"

    return [
        f"**Verdict** (Holm-corrected {test}, p < {ALPHA}): best by mean PCC "
        f"`{_cell(best['variant'])}` ({_num(best['pcc'][0])}); level with it (not "
        f"separated by the test): {names(level)}; below it: {names(below)}.",
        "",
    ]


def _rank_stability(ranked: list[dict[str, Any]]) -> list[str]:
    """Kendall's tau between the headline ranking and each alternative protocol's."""
    if len(ranked) < 2:
        return []
    by_ssim = sorted(ranked, key=lambda r: (-r["ssim"][0], r["variant"]))
    cases = [
        (board_rows.ALTERNATIVES[0], "PCC, spot QC off", ranked, "PCC"),
        (board_rows.ALTERNATIVES[1], "PCC pooled per gene across regions", ranked, "PCC"),
        (board_rows.ALTERNATIVES[2], "PCC on the linear scale (expm1)", ranked, "PCC"),
        (board_rows.ALTERNATIVES[3], "SSIM with a 7 x 7 uniform window", by_ssim, "SSIM"),
    ]
    out = [
        "",
        "### Rank stability",
        "",
        "Kendall's tau-b between the headline ranking (PCC; SSIM for the SSIM row) and the "
        "ranking under one defensible alternative protocol (bench/scoring/protocols.py); 1 = the "
        "same order. Top 3: the first three under the alternative, those not in the headline's "
        "first three in bold.",
        "",
        "| alternative | Kendall's tau | top 3 under it | top-3 places that change |",
        "|---|---:|---|---:|",
    ]
    for key, label, order, _ in cases:
        tau, top = ranking.kendall(order, key)
        head = [r["variant"] for r in order[:3]]
        shown = [f"**{_cell(v)}**" if v not in head else _cell(v) for v in top]
        changed = sum(1 for a, b in zip(head, top, strict=False) if a != b)
        out.append(
            f"| {label} | {_num(tau, 2)} | {', '.join(shown) or 'n/a'} | "
            f"{changed if top else 'n/a'} |"
        )
    return out


def _influence(ranked: list[dict[str, Any]]) -> str:
    """The influence diagnostic in one sentence: the largest change of any ranked row's mean
    PCC from dropping one scored position."""
    found = [
        (float(np.nanmax(np.abs(r["influence"]))), r["variant"])
        for r in ranked
        if r.get("influence") is not None and np.isfinite(r["influence"]).any()
    ]
    if not found:
        return ""
    worst, who = max(found)
    return (
        f"Largest single-position influence: dropping one scored position changes a ranked "
        f"method's mean PCC by at most {worst:.4f} (`{_cell(who)}`; closed form, "
        "bench/scoring/influence.py). "
    )


def convergence_table(rows: list[dict[str, Any]], name: str) -> list[str]:
    """The trained methods' learning-curve summary with links to their figures."""
    trained = [r for r in rows if r.get("curves")]
    if not trained:
        return []
    out = [
        "",
        "### Convergence",
        "",
        "Trained methods fit on the training regions less a validation carve (the last quarter of "
        "them, bench/data/splits.py) and are scored on it every "
        f"{EVAL_EVERY:.1%} of their step budget and once at {FIRST:.1%} (bench/run/learning.py). "
        "Early stopping: training "
        f"stops after {PATIENCE} scores in a row (a quarter of the budget) that add less than "
        f"{MIN_DELTA} to the validation PCC, never before {WARM_UP:.0%} of the budget, while "
        "the rule below finds it not converged or while its first score is still its best, and "
        "the test predictions use the state of the "
        "best validation step (where the method can restore it). Rule: converged when validation "
        f"PCC at the end (where training stopped) is less than {MIN_GAIN} above its value a "
        "quarter of the budget earlier (every seed). Seed means; steps per seed.",
        "",
        "| method | steps | validation PCC a quarter before the end | at the end | converged "
        "| stopped at | best step | curve |",
        "|---|---:|---:|---:|---|---|---|---|",
    ]
    for r in trained:
        points = [verdict_points(c) for _, c in r["curves"]]
        cells = [
            _cell(r["variant"]),
            str(max(c.total for _, c in r["curves"])),
            _num(board_rows.mean_of([before for before, _ in points])),
            _num(board_rows.mean_of([last for _, last in points])),
            VERDICT[r["converged"]],
            *_chosen_steps([c for _, c in r["curves"]], [seed for seed, _ in r["curves"]]),
            f"[figure]({FIGURES}/{name}-curve-{r['method']}.png)",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _chosen_steps(curves: list[Any], seeds: list[int]) -> list[str]:
    """The convergence table's "stopped at" and "best step" cells: each seed's step, " / "
    between seeds; a best step the predictions do not use is marked "(not restored)", and seeds
    whose best was the last point of the full budget are named "still improving at max"."""
    if all(c.stopped_at is None for c in curves):  # recorded before early stopping
        return ["–", "–"]
    stopped = " / ".join("–" if c.stopped_at is None else str(c.stopped_at) for c in curves)

    def chosen(c: Any) -> str:
        if c.best_step is None:
            return "–"
        kept = c.restored or c.best_step == c.stopped_at  # the state the predictions use
        return str(c.best_step) + ("" if kept else " (not restored)")

    best = " / ".join(chosen(c) for c in curves)
    rising = [str(seed) for seed, c in zip(seeds, curves, strict=True) if c.improving]
    if rising:
        best += f"; still improving at max (seed {', '.join(rising)})"
    return [stopped, best]


def _summary(sections: list[tuple[str, list[dict[str, Any]]]], note: str = "") -> list[str]:
    """The aggregated rank across datasets and metrics (see
    :func:`bench.board.ranking.aggregated_rank`),
    with each section's headline PCC, interval and significance mark; ``sections`` = (column
    label, ranked rows); ``note`` ends the rule's paragraph."""
    rows = ranking.aggregated_rank([r for _, r in sections], [(m, "↓" in t) for m, t in MAIN])
    if not rows:
        return []
    n = len(sections) * len(MAIN)
    by = [{r["variant"]: r for r in ranked} for _, ranked in sections]
    out = [
        "## Summary across datasets",
        "",
        "Rule: in each dataset section, ranked methods are ranked on each of "
        f"{', '.join(m for m, _ in MAIN)} by their mean (ties share the average rank; controls "
        f"excluded); a method's aggregated rank is the mean of its {n} ranks. Methods scored on "
        "fewer sections come after, whatever their mean. PCC columns: each section's mean with "
        f"its {LEVEL:.0%} bootstrap interval; * marks a method that differs from that section's "
        f"best (Holm-corrected paired Wilcoxon, p < {ALPHA}).{note}",
        "",
        "| rank | method | mean rank | ranks counted | first places | "
        + " | ".join(f"PCC {_cell(label)}" for label, _ in sections)
        + " |",
        "|---:|---|---:|---:|---:|" + "---|" * len(sections),
    ]
    for i, (m, mean_rank, count, wins) in enumerate(rows, start=1):
        cells = [str(i), _cell(m), f"{mean_rank:.2f}", f"{count}/{n}", str(wins)]
        for section in by:
            r = section.get(m)
            if r is None:
                cells.append("n/a")
                continue
            mean, low, high = r["pcc"]
            mark = " *" if r.get("vs_best", "").endswith("*") else ""
            cells.append(f"{_num(mean)} [{_num(low)}, {_num(high)}]{mark}")
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _score_table(rows: list[dict[str, Any]], first: str) -> list[str]:
    """Markdown table; ``first`` is "rank" (ranked methods) or "control" (control kind)."""
    head = [first, "method", *(label for _, label in MAIN), "seeds", "fit+predict (s)"]
    align = ["---:" if first == "rank" else "---", "---", "---", "---", "---", "---:", "---:"]
    if first == "rank":
        head, align = [*head, "vs best (Holm p)", "converged"], [*align, "---:", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for i, row in enumerate(rows, start=1):
        lead = str(i) if first == "rank" else _cell(row["control"])
        cis = [f"{_num(m)} [{_num(lo)}, {_num(hi)}]" for m, lo, hi in (row[k] for k, _ in MAIN)]
        cells = [lead, _cell(row["variant"]), *cis, str(row["seeds"]), _num(row["time"], 1)]
        if first == "rank":
            cells += [row.get("vs_best", "n/a"), VERDICT[row.get("converged")]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_TILE_ID = re.compile(r"_r-?\d+c-?\d+$")  # bench.data.regions names tiles <section>_r<row>c<col>


def _regions_are(test: tuple[str, ...] | list[str]) -> str:
    """What the split's regions are, in one sentence: tiles of sections or whole sections."""
    if test and all(_TILE_ID.search(r) for r in test):
        return "Regions are tiles (disjoint windows of a section; train and test in bands)."
    return "Regions are whole sections."


def _reproduce(command: str, records: list[Record]) -> str:
    """``command``, prefixed with ``STSR_DATASETS_DIR=...`` when a record's dataset has no card
    in the repository (a user card: the command does not run without that folder)."""
    from bench.data.cards import CARDS_DIR, CARDS_ENV

    extra = os.environ.get(CARDS_ENV)
    names = {str(r.dataset).split("-k")[0] for r in records}
    user = any(not (CARDS_DIR / n / "card.toml").is_file() for n in names)
    if extra and user and CARDS_ENV not in command:
        return f"{CARDS_ENV}={extra} {command}"
    return command


def _section(
    group: list[Record], draw: Draw | None, pooled: board_folds.Pooled | None = None
) -> tuple[list[str], list[dict[str, Any]], list[Path]]:
    """The markdown of one (dataset, fingerprint) group, its ranked rows and the figures
    ``draw`` wrote for it (linked from the markdown); ``group`` sorted by (method, seed).
    ``pooled``: a dataset's cross-validation folds in one section (:mod:`bench.board.folds`);
    ``group`` is then its failed records."""
    if pooled is None:
        split = next((r.split for r in group if r.split.k), SplitRef())
        genes = list(split.genes)
        dataset, k, fingerprint = group[0].dataset, split.k or "n/a", _fingerprint(group[0])
        ranked, controls = board_rows.rows(group, genes)
    else:
        split, genes = pooled.split, list(pooled.split.genes)
        dataset, k, fingerprint = pooled.base, split.k or "n/a", pooled.fingerprint
        ranked, controls = board_rows.rows(pooled.complete, genes, clustered=True)
    out = [
        f"## {dataset} · k = {k} · split `{fingerprint}`",
        "",
        f"{len(split.test)} test regions, {len(genes)} genes, {split.scored} scored test "
        f"positions. {_qc_sentence(split)} {_influence(ranked)}Scores are means over "
        f"(region, gene) pairs with {LEVEL:.0%} bootstrap intervals ({N_BOOT} resamples of seeds "
        "and of genes within regions, seed 0); a method's seeds are averaged per (region, gene) "
        f"first. {_regions_are(split.test)} "
        '"vs best": Holm-corrected p of a paired Wilcoxon signed-rank test of PCC against the '
        f"first-ranked method on the same (region, gene) pairs; * marks p < {ALPHA}.",
        "",
    ]
    if pooled is None:
        out += _verdict(ranked)
    else:
        out = _pooled_head(pooled, ranked)
        out += _verdict(ranked, "signed-rank test on region means of the PCC difference")
        out += _power_sentence(ranked)
    name = board_figures.stem(str(dataset), fingerprint)
    title = f"{dataset} · k = {k} · split {fingerprint[:8]}"
    source = (str(dataset), fingerprint) if pooled is None else pooled.maps_source
    if pooled is not None:
        title = f"{dataset} · k = {k} · {pooled.folds} folds, maps of {source[0]}"
    drawn = draw(ranked + controls, name, title, *source) if draw and ranked else []
    if drawn:
        links = (f"[{board_figures.label(f.name, name)}]({FIGURES}/{f.name})" for f in drawn)
        out += ["Figures: " + " · ".join(links), ""]
    out += _score_table(ranked, "rank") if ranked else ["No successful method runs."]
    if pooled is not None:
        out += _per_fold(pooled, ranked, controls) + _power_table(ranked)
    out += ["", "### Controls", "", "Not ranked: they frame the scores above.", ""]
    out += _score_table(controls, "control") if controls else ["none"]
    out += _scaled(ranked, controls)
    out += _share_of_ceiling(ranked, controls)
    out += convergence_table(ranked + controls, name)
    out += _diversity(ranked + controls)
    out += _rank_stability(ranked)
    costed = [r for r in ranked + controls if r["control"] != "ceiling"]  # computed, not run
    out += [
        "",
        "### Cost",
        "",
        "Means over seeds; peak resident (CPU) or allocated (GPU) memory. K: the draws per "
        "input a sampler's point prediction averages (`--draws auto` draws until more could no "
        "longer move its PCC, methods/contract.py `DrawRule`)."
        + (" Fit and predict: sums over the folds; memory: the largest fold's." if pooled else ""),
        "",
    ]
    out += [
        "| method | fit (s) | predict (s) | K | peak memory (MiB) | device |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in costed:
        draws = _num(r["draws"], 0) if r["stochastic"] else "–"
        cells = [_num(r["fit_s"], 1), _num(r["predict_s"], 1), draws, _num(r["memory"], 0)]
        device = _cell(r["device"])
        out.append(f"| {_cell(r['variant'])} | " + " | ".join(cells) + f" | {device} |")
    if any(r["paper_pcc"] is not None for r in costed):
        out += ["", "### Paper-compatible metrics (`paper` set)", ""]
        out += [
            "The diffusion paper's released scoring (bench/paper_metrics.py): |PCC| on raw maps, "
            "SSIM and RMSE on per-map min-max scaled maps, whole grid, mean of non-zero entries "
            "and of seeds. For comparison with published numbers only; not used for ranking. "
            "Scored on the whole grid, it rewards predicting zero outside tissue (where the truth "
            "is zero), and the non-zero mean drops perfect RMSE (0) entries.",
            "",
            "| method | abs PCC | SSIM | RMSE |",
            "|---|---:|---:|---:|",
        ]
        for r in costed:
            cells = [_num(r[k]) for k in ("paper_pcc", "paper_ssim", "paper_rmse")]
            out.append(f"| {_cell(r['variant'])} | " + " | ".join(cells) + " |")
    failed = [r for r in group if not r.ok]
    out += ["", "### Failed or skipped", ""]
    out += [
        f"- {_cell(r.method)} ({f'{_cell(r.dataset)}, ' if pooled else ''}seed {r.seed}, "
        f"{_cell(r.status)}): "
        f"{_cell(r.error or 'no reason recorded')}"
        for r in failed
    ] or ["none"]
    excluded = [r for r in ranked + controls if r["excluded"]]
    if excluded:
        out += ["", "### Pairs excluded from PCC", "", "Constant truth (null in every seed):", ""]
        out += [f"- {_cell(r['variant'])}: {r['excluded']} of {r['pairs']}" for r in excluded]
    return out + [""], ranked, drawn


POWER_AT = (0.01, 0.02, 0.05, 0.1)  # PCC differences the folded page's power table is read at


def _qc_thresholds(split: SplitRef, unit: str = " counts") -> str:
    """The test regions' spot-QC thresholds, regions of one threshold together: ``"31 counts"``
    when every region has it, else ``"31 counts in C5; 29 in C6"`` (``unit`` after the first
    number; ``""`` gives table cells, ``"31 in C5; 29 in C6"``)."""
    groups: dict[int, list[str]] = {}
    for region, threshold in split.qc_min_totals.items():
        groups.setdefault(threshold, []).append(region)
    if len(groups) <= 1:
        return f"{next(iter(groups), 0)}{unit}"
    parts = [
        f"{t}{unit if i == 0 else ''} in {', '.join(rs)}"
        for i, (t, rs) in enumerate(groups.items())
    ]
    return "; ".join(parts)


def _qc_sentence(split: SplitRef) -> str:
    """Spot QC in the section's opening paragraph: the dropped positions and each test region's
    threshold; for records from before the per-section rule, the one threshold it had."""
    if split.qc_depth_fraction is None:
        return (
            f"Spot QC (bench/data/qc.py): {split.dropped} in-tissue test position(s) with an "
            f"all-gene total below {_qc_thresholds(split)} (3 MADs of log depth below the "
            "training regions' median, or the card's `qc_nmads`) are dropped from every score."
        )
    return (
        f"Spot QC (bench/data/qc.py): {split.dropped} in-tissue test position(s) with an "
        f"all-gene total below their region's threshold ({_qc_thresholds(split)}: "
        f"{split.qc_depth_fraction:g} x the depth level of the region's section, read from its "
        "LR input; the fraction is 3 MADs below the training positions' median log depth "
        "relative to their section's level, or the card's `qc_nmads`) are dropped from every "
        "score."
    )


def _pooled_head(pooled: board_folds.Pooled, ranked: list[dict[str, Any]]) -> list[str]:
    """The heading and opening paragraph of a folded section, with its warnings: pooled folds
    that have no records, and variants not ranked because a fold lacks them."""
    folds = sorted(pooled.by_fold)
    splits = [pooled.fold_split(f) for f in folds]
    split = pooled.split
    in_every = set.intersection(*(set(s.genes) for s in splits))
    count = str(pooled.folds) + (" (a count inferred from the labels)" if pooled.inferred else "")
    qc_rule = (
        "each fold's threshold from its own training regions"
        if any(s.qc_depth_fraction is None for s in splits)  # records before per-section QC
        else "each fold's cut from its own training regions and each test region's threshold "
        "from its section's depth level (LR input)"
    )
    out = [
        f"## {pooled.base} · k = {split.k or 'n/a'} · {pooled.folds} folds",
        "",
        "Cross-validation: pools folds "
        + ", ".join(f"`{pooled.fold_label(f)}`" for f in folds)
        + f" of {count}, each on its own split (under Per fold); every test region is scored "
        f"once, in the fold that tests it. {len(split.test)} test regions "
        f"({' + '.join(str(len(s.test)) for s in splits)} by fold), {len(split.genes)} genes in "
        f"any fold ({len(in_every)} in every fold), {split.scored} scored test positions. Spot "
        f"QC (bench/data/qc.py), {qc_rule}: "
        f"{split.dropped} in-tissue test position(s) are dropped from every score. "
        f"{_influence(ranked)}Scores are means over every fold's (region, gene) pairs with "
        f"{LEVEL:.0%} hierarchical bootstrap intervals ({N_BOOT} resamples of seeds, of regions, "
        "then of genes within each drawn region, seed 0); a method's seeds are averaged per "
        f"(region, gene) first. {_regions_are(split.test)} "
        '"vs best": Holm-corrected p of a Wilcoxon signed-rank test of PCC against the '
        "first-ranked method on the region means of their paired differences (pairs of one "
        "region are correlated, so a test on the pooled pairs would reject too often; "
        f"bench/board/stats.py); * marks p < {ALPHA}. Cost sums the folds; Convergence lists each "
        "fold's seeds in fold order.",
        "",
    ]
    absent = [f for f in range(pooled.folds) if f not in pooled.by_fold]
    if absent:
        out += [
            f"**Fold(s) {', '.join(f'f{f}' for f in absent)} of {pooled.folds} have no records "
            "here**: their test regions are not scored in this section.",
            "",
        ]
    if pooled.missing:
        lacking = "; ".join(
            f"`{_cell(v)}` lacks {', '.join(f'f{f}' for f in fs)}"
            for v, fs in sorted(pooled.missing.items())
        )
        out += [
            f"**Not ranked, a fold is missing** (no ok record there): {lacking}. Their scores on "
            "the folds they have are under Per fold, marked incomplete.",
            "",
        ]
    return out


def _power_sentence(ranked: list[dict[str, Any]]) -> list[str]:
    """The folded section's power in one sentence beside the ranking: the smallest mean PCC
    difference from the best that its paired test detects (:func:`bench.board.folds.power_rows`),
    from the runner-up's comparison; and when the regions are too few for any to be detected."""
    from bench.board.stats import min_signed_rank_p

    found = board_folds.power_rows(ranked)
    if not found:
        return []
    first, best = found[0], ranked[0]["variant"]
    n, comparisons = first["regions"], len(found)
    smallest = min_signed_rank_p(n)
    if not first["reachable"]:
        return [
            f"**Power**: with {n} regions the region-mean test's smallest two-sided p is "
            f"{smallest:.3g}, not below {ALPHA}: no difference from the best is detectable with "
            "these regions, however large.",
            "",
        ]
    text = (
        f"**Power** (bench/board/stats.py): from the observed variance of the paired PCC "
        f"differences of `{_cell(first['variant'])}` against `{_cell(best)}` ({first['pairs']} "
        f"pairs in {n} regions, intraclass correlation {_num(first['icc'], 2)}), the "
        f"region-mean test detects a mean difference of {_num(first['mde'])} PCC with "
        f"{board_folds.POWER:.0%} power (two-sided p < {ALPHA} per comparison, before Holm; "
        f"normal approximation): differences below {_num(first['mde'])} PCC are not detectable "
        "with these regions."
    )
    others = [p["mde"] for p in found[1:] if math.isfinite(p["mde"])]
    if others:
        low, high = _num(min(others)), _num(max(others))
        text += (
            f" Against the other ranked methods: {low if low == high else f'{low} to {high}'} PCC."
        )
    if comparisons * smallest >= ALPHA:
        text += (
            f" With {comparisons} comparisons Holm's correction needs p < "
            f"{ALPHA / comparisons:.3g} for the first, below the smallest p the test can give on "
            f"{n} regions ({smallest:.3g}): no method can be separated from the best here."
        )
    return [text, ""]


def _power_table(ranked: list[dict[str, Any]]) -> list[str]:
    """Power against difference, per comparison with the best (the folded section)."""
    from bench.board.stats import power_at

    found = board_folds.power_rows(ranked)
    if not found:
        return []
    out = [
        "",
        "### Power",
        "",
        "Each ranked method against the best: the observed mean PCC difference (negative: "
        "below), the regions and the intraclass correlation of the paired differences within "
        f"them, the difference the region-mean test detects with {board_folds.POWER:.0%} power, "
        "and its power at a few true differences (bench/board/stats.py `detectable_difference`, "
        f"`power_at`; two-sided p < {ALPHA} per comparison, before Holm; normal approximation, "
        "optimistic with few regions; 0 where the exact test on these regions cannot reach "
        f"p < {ALPHA}).",
        "",
        "| method | difference from best | regions | intraclass corr. | detectable at "
        f"{board_folds.POWER:.0%} power | " + " | ".join(f"power at {d}" for d in POWER_AT) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(POWER_AT),
    ]
    for p in found:
        powers = [
            power_at(d, p["mde"], board_folds.POWER, ALPHA) if p["reachable"] else 0.0
            for d in POWER_AT
        ]
        cells = [
            _cell(p["variant"]),
            _num(p["diff"]),
            str(p["regions"]),
            _num(p["icc"], 2),
            _num(p["mde"]) if p["reachable"] else "none",
            *(_num(x, 2) for x in powers),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _per_fold(
    pooled: board_folds.Pooled, ranked: list[dict[str, Any]], controls: list[dict[str, Any]]
) -> list[str]:
    """The folded section's per-fold tables: each fold's split, and each row's mean PCC per fold
    with the spread across folds; incomplete variants (not ranked) after, marked."""
    folds = sorted(pooled.by_fold)
    genes = list(pooled.split.genes)
    part, part_controls = board_rows.rows(pooled.incomplete, genes, clustered=True)
    out = [
        "",
        "### Per fold",
        "",
        "Each fold is a split of its own (genes and spot QC's cut from its training regions; "
        "each test region's QC threshold from its section's depth level, read from the LR "
        "input):",
        "",
        "| fold | task | split | test regions | genes | scored positions | QC threshold "
        "(counts) | dropped |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in folds:
        s = pooled.fold_split(f)
        out.append(
            f"| f{f} | {_cell(pooled.fold_label(f))} | `{s.fingerprint}` | {len(s.test)} | "
            f"{len(s.genes)} | {s.scored} | {_cell(_qc_thresholds(s, ''))} | {s.dropped} |"
        )
    out += [
        "",
        "Mean PCC over each fold's test (region, gene) pairs (seeds averaged per pair first); "
        "sd (n - 1) and range (largest - smallest) across folds: how much a score depends on "
        "which regions are tested.",
        "",
        "| method | " + " | ".join(f"f{f}" for f in folds) + " | sd across folds | range |",
        "|---|" + "---:|" * len(folds) + "---:|---:|",
    ]
    shown = [(r, "") for r in ranked + controls]
    shown += [(r, " (incomplete, not ranked)") for r in part + part_controls]
    for r, mark in shown:
        values = [r.get("fold_pcc", {}).get(f, math.nan) for f in folds]
        finite = [v for v in values if math.isfinite(v)]
        sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
        spread = max(finite) - min(finite) if len(finite) > 1 else math.nan
        cells = [_cell(r["variant"]) + mark, *(_num(v) for v in values), _num(sd), _num(spread)]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _diversity(rows: list[dict[str, Any]]) -> list[str]:
    """Collapse for every method, diversity for samplers, with the legend and the flags."""
    from bench.scoring.diversity import COLLAPSE_BELOW, DIVERSE_ABOVE

    rows = [r for r in rows if r["control"] != "ceiling"]
    samplers = any(r["stochastic"] for r in rows)
    cols = [
        (k, t)
        for k, t in DIVERSITY
        if (samplers or k == "rvd") and (k != "coverage" or any(_finite(r[k]) for r in rows))
    ]
    out = [
        "",
        "### Collapse and diversity",
        "",
        "input response (every method; bench/scoring/diversity.py): for every pair of test "
        "regions and gene, the PCC between how the prediction (pooled to the LR lattice) "
        "differs between the two inputs and how the LR inputs themselves differ, averaged: 1 = "
        "outputs follow their inputs, near 0 = one output whatever the input (mode collapse). "
        f"Flagged **collapsed** below {COLLAPSE_BELOW}. RVD: relative variance distance of the "
        "point prediction (0 perfect, towards 1 over-smoothed).",
    ]
    if samplers:
        out[-1] += (
            " Samplers: spread, per-position std over the K draws, averaged in tissue; CRPS of "
            "the draws; spread-skill, spread / RMSE of the draws' mean (1 calibrated, near 0 "
            "collapsed); coverage (K >= 10), share of truth values inside the draws' 5-95% "
            "interval; draw diversity, per input the mean over pairs of draws of 1 - PCC "
            f"between them (0: every draw the same), flagged **collapsed** below {DIVERSE_ABOVE}."
        )
    out += [
        "",
        "| method | input response (→1) | " + " | ".join(t for _, t in cols) + " | flag |",
        "|---|---:|" + "---:|" * len(cols) + "---|",
    ]
    for r in rows:
        flags = []
        if _finite(r["input_response"]) and r["input_response"] < COLLAPSE_BELOW:
            flags.append("**collapsed (input)**")
        if _finite(r["draw_diversity"]) and r["draw_diversity"] < DIVERSE_ABOVE:
            flags.append("**collapsed (draws)**")
        cells = [_cell(r["variant"]), _num(r["input_response"]), *(_num(r[k]) for k, _ in cols)]
        out.append("| " + " | ".join([*cells, ", ".join(flags) or "–"]) + " |")
    return out


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def _render(
    records: list[Record], command: str, draw: Draw | None = None, folder: Path | None = None
) -> tuple[str, list[Path]]:
    out = [
        "# stsr-bench leaderboard",
        "",
        "Generated from the result records by `bench/board/page.py`; do not edit by hand.",
        "Reproduce with:",
        "",
        "```",
        _reproduce(command, records),
        "```",
        "",
    ]
    folded = {found[0] for r in records if (found := board_folds.fold_of(r)) is not None}
    records, ladders = board_ladder.take(records, folded)  # rungs before the folds are pooled
    plain, pooled = board_folds.group(records)
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for rec in plain:
        groups[(str(rec.dataset), _fingerprint(rec))].append(rec)
    if not groups and not pooled:
        out += ["No result records found.", ""]
    sections = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (str(r.method), int(r.seed)))
        sections.append(_section(group, draw))
    # summary column heads: the dataset, with the split when records of two splits share it
    labels = [d for d, _ in sorted(groups)]
    heads = [f"{d} {fp[:8]}" if labels.count(d) > 1 else d for d, fp in sorted(groups)]
    # folded datasets (bench.board.folds): one section each, placed by name among the others
    order = [(d, 0, fp) for d, fp in sorted(groups)] + [(p.base, 1, p.label) for p in pooled]
    sections += [_section(p.failed, draw, p) for p in pooled]
    heads += [p.label for p in pooled]
    placed = sorted(range(len(order)), key=lambda i: order[i])
    sections, heads = [sections[i] for i in placed], [heads[i] for i in placed]
    note = (
        " Cross-validated columns (n folds): every fold's regions pooled, intervals from the "
        "hierarchical bootstrap (regions, then genes) and the test on region means."
        if pooled
        else ""
    )
    pairs = zip(heads, sections, strict=True)
    out += _summary([(h, ranked) for h, (_, ranked, _) in pairs], note)
    for lines, _, _ in sections:
        out += lines
    ladder_lines, ladder_drawn = board_ladder.section(ladders, folder if draw else None, FIGURES)
    out += ladder_lines
    drawn = [f for _, _, figs in sections for f in figs] + ladder_drawn
    return "\n".join(out).rstrip("\n") + "\n", drawn


def render(records: list[Record], command: str) -> str:
    """The leaderboard markdown for ``records`` (any order; the result does not depend on it),
    without figures (:func:`write` draws them and links them).

    Parameters
    ----------
    records : result records as read by :func:`bench.run.records.read_records`.
    command : the shell command that regenerates the page; printed in the header.

    Returns
    -------
    Markdown text ending in one newline.
    """
    return _render(records, command)[0]


STALE_S = 600.0  # a figure's temporary file this old was left by a killed writer


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files (:func:`bench.files.atomic_write`'s ``.<name>.*.tmp*``) that a
    killed page writer left in ``folder``; younger ones may belong to a writer still running."""
    import time

    for tmp in folder.glob(".*.tmp*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > STALE_S:
                tmp.unlink()


def write(results_dir: Path, path: Path, command: str) -> tuple[Path, list[Path]]:
    """Render the records under ``results_dir`` and write them atomically to ``path``, with the
    figures the page links, drawn in ``<path's folder>/figures`` (:mod:`bench.board.figures`)
    from the records and the runner's files beside them; a figure there that the page no longer
    links (a renamed or dropped one of an earlier page) is removed, so the folder belongs to
    one page. Returns the page and the figures."""
    results_dir, folder = Path(results_dir), Path(path).parent / FIGURES
    _remove_stale_temporaries(folder)

    def draw(rows: list, name: str, title: str, label: str, fingerprint: str) -> list[Path]:
        return board_figures.draw(rows, folder, name, title, (results_dir, label, fingerprint))

    text, drawn = _render(read_records(results_dir), command, draw, folder)
    atomic_write_text(Path(path), text)
    linked = {Path(f).name for f in drawn}
    for old in folder.glob("*.png"):
        if not old.name.startswith(".") and old.name not in linked:
            old.unlink(missing_ok=True)
    return Path(path), drawn
