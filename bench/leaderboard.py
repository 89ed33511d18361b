"""The leaderboard: one markdown page rendered from the result records.

``render`` is pure: the same records (in any order) give the same bytes. There are no timestamps,
and every loop runs over sorted keys. ``write`` also draws each section's figures
(:mod:`bench.board_figures`) and links those it drew, so its page is a function of the records and
the runner's prediction files beside them. One section per (dataset, split fingerprint) so scores from
different splits never share a table. Within a section, methods are ranked by mean PCC. Control
methods (``record["control"]`` set) get their own table and no rank. Failed runs are listed with
their reason.

Aggregation (``shared/design/metrics.md``): per method, the per-gene values of its seeds are first
averaged per (section, gene) (a NaN or null seed value is left out of that average); the score is
the mean of that (section x gene) table. Its interval comes from
:func:`bench.stats.bootstrap_ci_seeds` (seed 0) on the per-seed tables: seeds and genes within
sections resampled. Table order: sections sorted, genes in the split's order (unknown genes
after, sorted).

Significance: each ranked method's seed-averaged PCC table is compared with the best method's on
the same (section, gene) pairs by a two-sided Wilcoxon signed-rank test
(:func:`bench.stats.paired_wilcoxon`); the p-values of all ranked methods but the best are
Holm-corrected together (:func:`bench.stats.holm`) and shown in the "vs best" column, marked
``*`` below ``ALPHA`` (different from the best).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import board_figures, ranking
from bench.records import atomic_write_text, read_records
from bench.stats import bootstrap_ci_seeds

__all__ = ["render", "write", "seed_mean_table"]

MAIN = (("pcc", "PCC ↑"), ("ssim", "SSIM ↑"), ("rmse", "RMSE ↓"))
DIVERSITY = (
    ("spread", "spread"),
    ("crps", "CRPS ↓"),
    ("spread_skill", "spread-skill (→1)"),
    ("rvd", "RVD ↓"),
    ("collapse_ratio", "collapse ratio (→1)"),
)
STOCHASTIC = ("spread", "crps", "spread_skill", "collapse_ratio")
N_BOOT = 1000
LEVEL = 0.95
FIGURES = "figures"  # folder of the figures, beside the leaderboard file
ALPHA = 0.05  # significance level of the Holm-corrected paired tests against the best method
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


def _fingerprint(record: dict[str, Any]) -> str:
    return str((record.get("split") or {}).get("fingerprint") or "unknown")


def _mean(values: Iterable[Any]) -> float:
    """Mean of the finite entries (None and NaN left out); NaN when there is none."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(xs) / len(xs) if xs else float("nan")


def seed_mean_table(
    records: Sequence[dict[str, Any]], metric: str, genes: Sequence[str] = ()
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
        per_gene = rec.get("per_gene") or {}
        values = per_gene.get(metric)
        if not values:
            continue
        for key in zip(per_gene["section"], per_gene["gene"], strict=True):
            counts[key] += 0  # register the pair even when its value is null
        pairs = zip(per_gene["section"], per_gene["gene"], strict=True)
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


def _summarise(method: str, recs: list[dict[str, Any]], genes: Sequence[str]) -> dict[str, Any]:
    """Everything one table row needs for one method's ok records (sorted by seed)."""
    row: dict[str, Any] = {"method": method, "control": recs[0].get("control"), "seeds": len(recs)}
    row["first_seed"] = int(recs[0]["seed"])
    for metric, _ in MAIN:
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
        t = rec.get("timings") or {}
        fit, predict = t.get("fit_s"), t.get("predict_s")
        times.append(None if fit is None or predict is None else float(fit) + float(predict))
    row["time"] = _mean(times)
    for key in ("fit_s", "predict_s"):
        row[key] = _mean((rec.get("timings") or {}).get(key) for rec in recs)
    row["memory"] = _mean(rec.get("peak_memory_mb") for rec in recs)
    for key in ("paper_pcc", "paper_ssim", "paper_rmse"):
        values = [(rec.get("metrics") or {}).get(key) for rec in recs]
        row[key] = _mean(values) if any(v is not None for v in values) else None
    row["device"] = ", ".join(sorted({str(rec.get("device", "n/a")) for rec in recs}))
    for metric, _ in DIVERSITY:
        row[metric] = _mean((rec.get("metrics") or {}).get(metric) for rec in recs)
    row["stochastic"] = any(m in (rec.get("metrics") or {}) for rec in recs for m in STOCHASTIC)
    return row


def _significance(ranked: list[dict[str, Any]]) -> None:
    """Set ``row["vs_best"]`` of every ranked row (see the module docstring)."""
    for i, (row, p) in enumerate(zip(ranked, ranking.vs_best(ranked), strict=True)):
        mark = "best" if i == 0 else "n/a" if math.isnan(p) else f"{p:.2g}"
        row["vs_best"] = mark + (" *" if i and p < ALPHA else "")


def _scaled(ranked: list[dict[str, Any]], controls: list[dict[str, Any]]) -> list[str]:
    """The table of :func:`bench.ranking.scaled` scores, or nothing without both controls."""
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


def _summary(sections: list[list[dict[str, Any]]]) -> list[str]:
    """The aggregated rank across datasets and metrics (:func:`bench.ranking.aggregated_rank`)."""
    rows = ranking.aggregated_rank(sections, [(m, "↓" in label) for m, label in MAIN])
    if not rows:
        return []
    n = len(sections) * len(MAIN)
    out = [
        "## Summary across datasets",
        "",
        "Rule: in each dataset section, ranked methods are ranked on each of "
        f"{', '.join(m for m, _ in MAIN)} by their mean (ties share the average rank; controls "
        f"excluded); a method's aggregated rank is the mean of its {n} ranks. Methods scored on "
        "fewer sections come after, whatever their mean.",
        "",
        "| rank | method | mean rank | ranks counted | first places |",
        "|---:|---|---:|---:|---:|",
    ]
    for i, (m, mean_rank, count, wins) in enumerate(rows, start=1):
        out.append(f"| {i} | {_cell(m)} | {mean_rank:.2f} | {count}/{n} | {wins} |")
    return out + [""]


def _rank_key(row: dict[str, Any]) -> tuple[float, str]:
    pcc = row["pcc"][0]
    return (-pcc if math.isfinite(pcc) else math.inf, row["method"])


def _score_table(rows: list[dict[str, Any]], first: str) -> list[str]:
    """Markdown table; ``first`` is "rank" (ranked methods) or "control" (control kind)."""
    head = [first, "method", *(label for _, label in MAIN), "seeds", "fit+predict (s)"]
    align = ["---:" if first == "rank" else "---", "---", "---", "---", "---", "---:", "---:"]
    if first == "rank":
        head, align = [*head, "vs best (Holm p)"], [*align, "---:"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for i, row in enumerate(rows, start=1):
        lead = str(i) if first == "rank" else _cell(row["control"])
        cis = [f"{_num(m)} [{_num(lo)}, {_num(hi)}]" for m, lo, hi in (row[k] for k, _ in MAIN)]
        cells = [lead, _cell(row["method"]), *cis, str(row["seeds"]), _num(row["time"], 1)]
        if first == "rank":
            cells.append(row.get("vs_best", "n/a"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _section(
    group: list[dict[str, Any]], draw: Draw | None
) -> tuple[list[str], list[dict[str, Any]], list[Path]]:
    """The markdown of one (dataset, fingerprint) group, its ranked rows and the figures
    ``draw`` wrote for it (linked from the markdown); ``group`` sorted by (method, seed)."""
    split = next((r["split"] for r in group if r.get("split")), {})
    genes = list(split.get("genes") or [])
    dataset, k, fingerprint = group[0]["dataset"], split.get("k", "n/a"), _fingerprint(group[0])
    out = [
        f"## {dataset} · k = {k} · split `{fingerprint}`",
        "",
        f"{len(split.get('test') or [])} test sections, {len(genes)} genes. Scores are means over "
        f"(section, gene) pairs with {LEVEL:.0%} bootstrap intervals ({N_BOOT} resamples of seeds "
        "and of genes within sections, seed 0); a method's seeds are averaged per (section, gene) "
        "first. "
        '"vs best": Holm-corrected p of a paired Wilcoxon signed-rank test of PCC against the '
        f"first-ranked method on the same (section, gene) pairs; * marks p < {ALPHA}.",
        "",
    ]
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in group:
        if rec.get("status") == "ok":
            by_method[rec["method"]].append(rec)
    rows = [_summarise(m, by_method[m], genes) for m in sorted(by_method)]
    ranked = sorted((r for r in rows if not r["control"]), key=_rank_key)
    _significance(ranked)
    controls = sorted(
        (r for r in rows if r["control"]), key=lambda r: (str(r["control"]), *_rank_key(r))
    )
    name = board_figures.stem(str(dataset), fingerprint)
    title = f"{dataset} · k = {k} · split {fingerprint[:8]}"
    drawn = draw(ranked + controls, name, title, str(dataset), fingerprint) if draw else []
    if ranked and drawn:
        links = (f"[{board_figures.label(f.name, name)}]({FIGURES}/{f.name})" for f in drawn)
        out += ["Figures: " + " · ".join(links), ""]
    out += _score_table(ranked, "rank") if ranked else ["No successful method runs."]
    out += ["", "### Controls", "", "Not ranked: they frame the scores above.", ""]
    out += _score_table(controls, "control") if controls else ["none"]
    out += _scaled(ranked, controls)
    if any(r["stochastic"] for r in rows):
        out += ["", "### Diversity", "", "Means over seeds of each run's scalar metrics.", ""]
        out += ["| method | " + " | ".join(label for _, label in DIVERSITY) + " |"]
        out += ["|---|" + "---:|" * len(DIVERSITY)]
        for r in ranked + controls:
            cells = [_cell(r["method"]), *(_num(r[k]) for k, _ in DIVERSITY)]
            out.append("| " + " | ".join(cells) + " |")
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
    for r in ranked + controls:
        cells = [_num(r["fit_s"], 1), _num(r["predict_s"], 1), _num(r["memory"], 0)]
        out.append(f"| {_cell(r['method'])} | " + " | ".join(cells) + f" | {_cell(r['device'])} |")
    if any(r["paper_pcc"] is not None for r in ranked + controls):
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
        for r in ranked + controls:
            cells = [_num(r[k]) for k in ("paper_pcc", "paper_ssim", "paper_rmse")]
            out.append(f"| {_cell(r['method'])} | " + " | ".join(cells) + " |")
    failed = [r for r in group if r.get("status") != "ok"]
    out += ["", "### Failed or skipped", ""]
    out += [
        f"- {_cell(r['method'])} (seed {r['seed']}, {_cell(r.get('status'))}): "
        f"{_cell(r.get('error') or 'no reason recorded')}"
        for r in failed
    ] or ["none"]
    excluded = [r for r in ranked + controls if r["excluded"]]
    if excluded:
        out += ["", "### Pairs excluded from PCC", "", "Constant truth (null in every seed):", ""]
        out += [f"- {_cell(r['method'])}: {r['excluded']} of {r['pairs']}" for r in excluded]
    return out + [""], ranked, drawn


def _render(
    records: list[dict[str, Any]], command: str, draw: Draw | None = None
) -> tuple[str, list[Path]]:
    out = [
        "# stsr-bench leaderboard",
        "",
        "Generated by `python -m bench leaderboard` from the result records; do not edit by hand.",
        "Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        groups[(str(rec["dataset"]), _fingerprint(rec))].append(rec)
    if not groups:
        out += ["No result records found.", ""]
    sections = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda r: (str(r["method"]), int(r["seed"])))
        sections.append(_section(group, draw))
    out += _summary([ranked for _, ranked, _ in sections])
    for lines, _, _ in sections:
        out += lines
    return "\n".join(out).rstrip("\n") + "\n", [f for _, _, drawn in sections for f in drawn]


def render(records: list[dict[str, Any]], command: str) -> str:
    """The leaderboard markdown for ``records`` (any order; the result does not depend on it),
    without figures (:func:`write` draws them and links them).

    Parameters
    ----------
    records : result records as read by :func:`bench.records.read_records`.
    command : the shell command that regenerates the page; printed in the header.

    Returns
    -------
    Markdown text ending in one newline.
    """
    return _render(records, command)[0]


def write(results_dir: Path, path: Path, command: str) -> tuple[Path, list[Path]]:
    """Render the records under ``results_dir`` and write them atomically to ``path``, with the
    figures the page links, drawn in ``<path's folder>/figures`` (:mod:`bench.board_figures`)
    from the records and the runner's files beside them. Returns the page and the figures."""
    results_dir, folder = Path(results_dir), Path(path).parent / FIGURES

    def draw(rows: list, name: str, title: str, label: str, fingerprint: str) -> list[Path]:
        return board_figures.draw(rows, folder, name, title, (results_dir, label, fingerprint))

    text, drawn = _render(read_records(results_dir), command, draw)
    atomic_write_text(Path(path), text)
    return Path(path), drawn
