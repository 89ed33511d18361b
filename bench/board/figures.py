"""Leaderboard figures (seaborn/matplotlib, PNG), drawn from the same rows as the tables.

For each (dataset, split) section:

- ``<stem>-metrics.png``: the distribution of each primary metric over (section, gene) pairs
  (seed-averaged), one box per method, methods in rank order, controls last;
- ``<stem>-vs-bicubic.png``: per-(section, gene) PCC of the best-ranked method other than
  bicubic against bicubic, with the diagonal and the share of pairs above it;
- ``<stem>-gallery.png``: for the most variable genes of the split's first test region, LR, truth,
  each ranked method's prediction (its lowest seed) and each sampler's per-position spread;
- ``<stem>-spread-<method>.png``: per stochastic method, that spread beside its error map;
- ``<stem>-curve-<method>.png``: per trained method, its learning curves (:func:`curve_figure`).

The last two are drawn from the files the runner leaves beside the records (the split's
``maps-<fingerprint>.npz`` and each cell's ``.pred.npz``, :mod:`bench.run.outputs`); a method whose
file is missing is left out of them. Files are written atomically and without a timestamp in
their metadata, so the same records and files give the same bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import plots as figures
from bench.run.outputs import side_path, test_maps_path

METRICS = (("pcc", "PCC"), ("ssim", "SSIM"), ("rmse", "RMSE"))


def stem(dataset: str, fingerprint: str) -> str:
    """File-name stem of a section's figures."""
    return f"{dataset}-{fingerprint[:8]}"


GALLERY_GENES = 4  # rows of the gallery and of the spread figures


def label(file: str, name: str) -> str:
    """The link text of a figure file of section ``name`` on the leaderboard."""
    kind = file.removeprefix(f"{name}-").removesuffix(".png")
    fixed = {
        "metrics": "metric distributions",
        "vs-bicubic": "per-gene PCC against bicubic",
        "gallery": "gene maps",
    }
    if kind.startswith("curve-"):
        return f"{kind.removeprefix('curve-')}: learning curve"
    return fixed.get(kind) or f"{kind.removeprefix('spread-')}: sample spread beside error"


def curve_figure(row: dict[str, Any], path: Path, title: str) -> Path:
    """``row``'s learning curves (one line per seed): mean training loss and validation PCC
    (and CRPS for samplers) against optimiser steps, with the convergence verdict's window (the
    last quarter of the budget) shaded. Written atomically (:func:`bench.run.plots.save_png`)."""
    from matplotlib.figure import Figure

    curves = row["curves"]
    keys = [("loss", "training loss"), ("pcc", "validation PCC ↑")]
    if any(c.crps for _, c in curves):
        keys.append(("crps", "validation CRPS ↓"))
    fig = Figure(figsize=(3.6 * len(keys), 3.0))
    axes = fig.subplots(1, len(keys))
    for ax, (key, text) in zip(np.atleast_1d(axes), keys, strict=True):
        for seed, c in curves:
            pairs = [
                (s, v) for s, v in zip(c.step, getattr(c, key), strict=False) if v is not None
            ]
            if pairs:
                ax.plot(*zip(*pairs, strict=True), marker="o", ms=3, label=f"seed {seed}")
        total = max(c.total for _, c in curves)
        ax.axvspan(0.75 * total, total, color="#eeeeee", zorder=0)
        ax.set_xlabel("training step")
        ax.set_title(text, fontsize=9)
    verdict = {True: "converged", False: "not converged", None: "no verdict"}[row["converged"]]
    np.atleast_1d(axes)[-1].legend(fontsize=7)
    fig.suptitle(f"{title} · {row['method']}: {verdict} (shaded: the last quarter)", fontsize=9)
    fig.tight_layout()
    return figures.save_png(fig, path)


def draw(
    rows: list[dict[str, Any]],
    folder: Path,
    name: str,
    title: str,
    results: tuple[Path, str, str] | None = None,
) -> list[Path]:
    """The figures of one section; ``rows`` in display order, each with ``<metric>_table``,
    ``control`` and ``first_seed``; ``results`` = (results dir, split label, fingerprint) for
    the gene-map figures (none without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    written: list[Path] = []
    long = [
        {"method": r["method"], "metric": label, "value": float(v)}
        for r in rows
        for key, label in METRICS
        for v in np.ravel(r[f"{key}_table"])
        if np.isfinite(v)
    ]
    if long:
        frame = pd.DataFrame(long)
        fig, axes = plt.subplots(
            1, len(METRICS), figsize=(4.2 * len(METRICS), 0.35 * len(rows) + 1.5)
        )
        order = [r["method"] for r in rows]
        for ax, (_, label) in zip(np.atleast_1d(axes), METRICS, strict=True):
            sub = frame[frame.metric == label]
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's old `vert`
                warnings.simplefilter("ignore", DeprecationWarning)
                sns.boxplot(
                    data=sub,
                    x="value",
                    y="method",
                    order=order,
                    ax=ax,
                    color="#9ecae1",
                    fliersize=1.5,
                )
            ax.set_xlabel(f"{label} per (section, gene)")
            ax.set_ylabel("")
        fig.suptitle(title)
        path = folder / f"{name}-metrics.png"
        figures.save_png(fig, path)
        plt.close(fig)
        written.append(path)
    bicubic = next((r for r in rows if r["method"] == "bicubic"), None)
    best = next((r for r in rows if not r["control"] and r["method"] != "bicubic"), None)
    if (
        bicubic is not None
        and best is not None
        and bicubic["pcc_table"].shape == best["pcc_table"].shape
    ):
        x, y = np.ravel(bicubic["pcc_table"]), np.ravel(best["pcc_table"])
        keep = np.isfinite(x) & np.isfinite(y)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(x[keep], y[keep], s=10, alpha=0.6)
        low = float(min(x[keep].min(), y[keep].min(), 0.0)) if keep.any() else 0.0
        ax.plot([low, 1], [low, 1], color="grey", lw=1)
        above = float(np.mean(y[keep] > x[keep])) if keep.any() else float("nan")
        ax.set_xlabel("bicubic PCC per (section, gene)")
        ax.set_ylabel(f"{best['method']} PCC")
        ax.set_title(
            f"{title}\n{best['method']} above bicubic on {above:.0%} of pairs", fontsize=9
        )
        path = folder / f"{name}-vs-bicubic.png"
        figures.save_png(fig, path)
        plt.close(fig)
        written.append(path)
    for row in rows:
        if row.get("curves"):
            path = folder / f"{name}-curve-{row['method']}.png"
            written.append(curve_figure(row, path, title))
    if results is not None:
        written += _map_figures(rows, folder, name, title, *results)
    return written


def _prediction(results_dir: Path, label: str, row: dict[str, Any], region: str) -> dict | None:
    """``pred`` and (samplers) ``spread``, (G, H, W), of ``region`` in a row's lowest seed."""
    path = side_path(results_dir, label, row["method"], row["first_seed"], ".pred.npz")
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        regions = [str(r) for r in z["regions"]]
        if region not in regions:
            return None
        i = regions.index(region)
        return {k: z[k][i] for k in ("pred", "spread") if k in z.files}


def _map_figures(
    rows: list[dict[str, Any]],
    folder: Path,
    name: str,
    title: str,
    results_dir: Path,
    label: str,
    fingerprint: str,
) -> list[Path]:
    """The gallery and the spread-beside-error figures (see the module docstring)."""
    source = test_maps_path(results_dir, label, fingerprint)
    if not source.is_file():
        return []
    with np.load(source, allow_pickle=False) as z:
        m = {k: z[k] for k in z.files}
    region, genes = str(m["region"]), [str(g) for g in m["genes"]]
    idx = figures.pick_genes(m["hr"], m["hr_mask"], genes, n=GALLERY_GENES)
    shown = [genes[i] for i in idx]
    preds, spreads = [], []
    for row in rows:
        found = None if row["control"] else _prediction(results_dir, label, row, region)
        if found is not None and found["pred"].shape == m["hr"].shape:
            preds.append((row["method"], found["pred"][idx]))
            if "spread" in found:
                spreads.append((row["method"], found["spread"][idx]))
    if not preds:
        return []
    where = f"{title} · region {region}"
    fig = figures.gallery_figure(
        m["lr"][idx], m["hr"][idx], m["lr_mask"], m["hr_mask"], preds, spreads, shown,
        title=f"{where}: the {len(shown)} most variable genes; predictions of each method's "
        "lowest seed",
    )  # fmt: skip
    written = [figures.save_png(fig, folder / f"{name}-gallery.png")]
    point = dict(preds)
    for method, spread in spreads:
        fig = figures.error_spread_figure(
            m["hr"][idx], point[method], spread, m["hr_mask"], shown,
            title=f"{where}: {method}, sample spread beside error",
        )  # fmt: skip
        written.append(figures.save_png(fig, folder / f"{name}-spread-{method}.png"))
    return written
