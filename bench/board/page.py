"""The leaderboard: one markdown page rendered from the result records.

``render`` is pure: the same records (in any order) give the same bytes. There are no timestamps,
and every loop runs over sorted keys. ``write`` also draws each section's figures
(:mod:`bench.board.figures`) and links those it drew, so its page is a function of the records and
the runner's prediction files beside them. One section per (dataset, split fingerprint) so scores
from different splits never share a table. Within a section, methods are ranked by mean PCC.
Control methods (``Record.control`` set) get their own table and no rank. Failed runs are listed
with their reason.

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

from bench.board import figures as board_figures
from bench.board import ranking
from bench.board import rows as board_rows
from bench.board.rows import ALPHA, LEVEL, N_BOOT
from bench.files import atomic_write_text
from bench.run.learning import MIN_GAIN
from bench.run.records import Record, SplitRef, read_records

__all__ = ["render", "write"]

MAIN = tuple(zip(board_rows.MAIN, ("PCC ↑", "SSIM ↑", "RMSE ↓"), strict=True))
DIVERSITY = tuple(
    zip(
        board_rows.DIVERSITY,
        ("spread", "CRPS ↓", "spread-skill (→1)", "coverage (→0.9)", "RVD ↓", "collapse (→1)"),
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
        out.append(f"| {_cell(r['method'])} | " + " | ".join(cells) + " |")
    return out


def _share_of_ceiling(ranked: list[dict[str, Any]], controls: list[dict[str, Any]]) -> list[str]:
    """PCC as a share of the noise ceiling's, above the negative control; nothing without both."""
    pair = ranking.ceiling_pair(controls)
    if not ranked or pair is None:
        return []
    neg, ceil = pair
    out = [
        "",
        "### Share of the noise ceiling",
        "",
        f"(PCC - `{neg['method']}`) / (`ceiling` - `{neg['method']}`): 0 = the negative control, "
        f"1 = what a perfect predictor of expected expression would reach against this noisy "
        f"truth (`ceiling` PCC {_num(ceil['pcc'][0])}; split-half binomial thinning of the test "
        "counts with Spearman-Brown, bench/scoring/ceiling.py). SSIM and RMSE have no ceiling "
        "(not available: see that module). A share above 1 is possible: the LR input is pooled "
        "from the very counts the truth holds, so part of the truth's noise reaches every method "
        "through it (most at small k), and the ceiling does not credit that.",
        "",
        "| method | PCC | share of ceiling |",
        "|---|---:|---:|",
    ]
    for r in ranked:
        share = ranking.scaled(r, neg, ceil, "pcc")
        out.append(f"| {_cell(r['method'])} | {_num(r['pcc'][0])} | {_num(share)} |")
    return out


def _convergence(rows: list[dict[str, Any]], name: str) -> list[str]:
    """The trained methods' learning-curve summary with links to their figures."""
    trained = [r for r in rows if r.get("curves")]
    if not trained:
        return []
    out = [
        "",
        "### Convergence",
        "",
        "Trained methods fit on the training regions less a validation carve (the last quarter of "
        "them, bench/data/splits.py) and are scored on it at 25/50/75/100% of their step budget "
        "(bench/run/learning.py). Rule: converged when validation PCC at the end is less than "
        f"{MIN_GAIN} above its value at 75% of the budget (every seed). Seed means.",
        "",
        "| method | steps | validation PCC at 75% | at the end | converged | curve |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in trained:
        at = {"75": [], "end": []}
        for _, c in r["curves"]:
            points = dict(zip(c.step, c.pcc, strict=False))
            at["75"].append(points.get(math.ceil(0.75 * c.total)))
            at["end"].append(points.get(c.total))
        cells = [
            _cell(r["method"]),
            str(max(c.total for _, c in r["curves"])),
            _num(board_rows.mean_of(at["75"])),
            _num(board_rows.mean_of(at["end"])),
            VERDICT[r["converged"]],
            f"[figure]({FIGURES}/{name}-curve-{r['method']}.png)",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _summary(sections: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """The aggregated rank across datasets and metrics (see
    :func:`bench.board.ranking.aggregated_rank`),
    with each section's headline PCC, interval and significance mark; ``sections`` = (column
    label, ranked rows)."""
    rows = ranking.aggregated_rank([r for _, r in sections], [(m, "↓" in t) for m, t in MAIN])
    if not rows:
        return []
    n = len(sections) * len(MAIN)
    by = [{r["method"]: r for r in ranked} for _, ranked in sections]
    out = [
        "## Summary across datasets",
        "",
        "Rule: in each dataset section, ranked methods are ranked on each of "
        f"{', '.join(m for m, _ in MAIN)} by their mean (ties share the average rank; controls "
        f"excluded); a method's aggregated rank is the mean of its {n} ranks. Methods scored on "
        "fewer sections come after, whatever their mean. PCC columns: each section's mean with "
        f"its {LEVEL:.0%} bootstrap interval; * marks a method that differs from that section's "
        f"best (Holm-corrected paired Wilcoxon, p < {ALPHA}).",
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
        cells = [lead, _cell(row["method"]), *cis, str(row["seeds"]), _num(row["time"], 1)]
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
    group: list[Record], draw: Draw | None
) -> tuple[list[str], list[dict[str, Any]], list[Path]]:
    """The markdown of one (dataset, fingerprint) group, its ranked rows and the figures
    ``draw`` wrote for it (linked from the markdown); ``group`` sorted by (method, seed)."""
    split = next((r.split for r in group if r.split.k), SplitRef())
    genes = list(split.genes)
    dataset, k, fingerprint = group[0].dataset, split.k or "n/a", _fingerprint(group[0])
    out = [
        f"## {dataset} · k = {k} · split `{fingerprint}`",
        "",
        f"{len(split.test)} test regions, {len(genes)} genes. Scores are means over "
        f"(region, gene) pairs with {LEVEL:.0%} bootstrap intervals ({N_BOOT} resamples of seeds "
        "and of genes within regions, seed 0); a method's seeds are averaged per (region, gene) "
        f"first. {_regions_are(split.test)} "
        '"vs best": Holm-corrected p of a paired Wilcoxon signed-rank test of PCC against the '
        f"first-ranked method on the same (region, gene) pairs; * marks p < {ALPHA}.",
        "",
    ]
    ranked, controls = board_rows.rows(group, genes)
    name = board_figures.stem(str(dataset), fingerprint)
    title = f"{dataset} · k = {k} · split {fingerprint[:8]}"
    drawn = (
        draw(ranked + controls, name, title, str(dataset), fingerprint) if draw and ranked else []
    )
    if drawn:
        links = (f"[{board_figures.label(f.name, name)}]({FIGURES}/{f.name})" for f in drawn)
        out += ["Figures: " + " · ".join(links), ""]
    out += _score_table(ranked, "rank") if ranked else ["No successful method runs."]
    out += ["", "### Controls", "", "Not ranked: they frame the scores above.", ""]
    out += _score_table(controls, "control") if controls else ["none"]
    out += _scaled(ranked, controls)
    out += _share_of_ceiling(ranked, controls)
    out += _convergence(ranked + controls, name)
    if any(r["stochastic"] for r in ranked + controls):
        out += _diversity(ranked + controls)
    costed = [r for r in ranked + controls if r["control"] != "ceiling"]  # computed, not run
    out += [
        "",
        "### Cost",
        "",
        "Means over seeds; peak resident (CPU) or allocated (GPU) memory.",
        "",
    ]
    out += [
        "| method | fit (s) | predict (s) | peak memory (MiB) | device |",
        "|---|---:|---:|---:|---|",
    ]
    for r in costed:
        cells = [_num(r["fit_s"], 1), _num(r["predict_s"], 1), _num(r["memory"], 0)]
        out.append(f"| {_cell(r['method'])} | " + " | ".join(cells) + f" | {_cell(r['device'])} |")
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
            out.append(f"| {_cell(r['method'])} | " + " | ".join(cells) + " |")
    failed = [r for r in group if not r.ok]
    out += ["", "### Failed or skipped", ""]
    out += [
        f"- {_cell(r.method)} (seed {r.seed}, {_cell(r.status)}): "
        f"{_cell(r.error or 'no reason recorded')}"
        for r in failed
    ] or ["none"]
    excluded = [r for r in ranked + controls if r["excluded"]]
    if excluded:
        out += ["", "### Pairs excluded from PCC", "", "Constant truth (null in every seed):", ""]
        out += [f"- {_cell(r['method'])}: {r['excluded']} of {r['pairs']}" for r in excluded]
    return out + [""], ranked, drawn


def _diversity(rows: list[dict[str, Any]]) -> list[str]:
    """The diversity table with its legend; coverage only where some run has it (K >= 10)."""
    cols = [(k, t) for k, t in DIVERSITY if k != "coverage" or any(_finite(r[k]) for r in rows)]
    out = [
        "",
        "### Diversity",
        "",
        "Means over seeds of each run's scalar metrics (definitions in `bench/diversity.py`). "
        "spread: per-position std over the K draws, averaged in tissue (0: every draw the same). "
        "CRPS: the draws' continuous ranked probability score against the truth. spread-skill: "
        "spread / RMSE of the draws' mean (1 calibrated, above 1 under-confident, below 1 "
        "over-confident, near 0 collapsed). coverage (K >= 10): share of truth values inside the "
        "draws' 5-95% interval. RVD: relative variance distance of the point prediction (0 "
        "perfect, towards 1 over-smoothed). collapse: inter-input collapse ratio, mean PCC "
        "between different regions' predictions over the same for the truth (above 1: inputs "
        "collapse onto one output).",
        "",
        "| method | " + " | ".join(t for _, t in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for r in rows:
        out.append("| " + " | ".join([_cell(r["method"]), *(_num(r[k]) for k, _ in cols)]) + " |")
    return out


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def _render(
    records: list[Record], command: str, draw: Draw | None = None
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
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for rec in records:
        groups[(str(rec.dataset), _fingerprint(rec))].append(rec)
    if not groups:
        out += ["No result records found.", ""]
    sections = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (str(r.method), int(r.seed)))
        sections.append(_section(group, draw))
    # summary column heads: the dataset, with the split when records of two splits share it
    labels = [d for d, _ in sorted(groups)]
    heads = [f"{d} {fp[:8]}" if labels.count(d) > 1 else d for d, fp in sorted(groups)]
    out += _summary([(h, ranked) for h, (_, ranked, _) in zip(heads, sections, strict=True)])
    for lines, _, _ in sections:
        out += lines
    return "\n".join(out).rstrip("\n") + "\n", [f for _, _, drawn in sections for f in drawn]


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
    from the records and the runner's files beside them. Returns the page and the figures."""
    results_dir, folder = Path(results_dir), Path(path).parent / FIGURES
    _remove_stale_temporaries(folder)

    def draw(rows: list, name: str, title: str, label: str, fingerprint: str) -> list[Path]:
        return board_figures.draw(rows, folder, name, title, (results_dir, label, fingerprint))

    text, drawn = _render(read_records(results_dir), command, draw)
    atomic_write_text(Path(path), text)
    return Path(path), drawn
