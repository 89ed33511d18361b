"""Leaderboard figures (seaborn/matplotlib, PNG), drawn from the same rows as the tables.

For each (dataset, split) section:

- ``<stem>-metrics.png``: the distribution of each primary metric over (section, gene) pairs
  (seed-averaged), one box per method, methods in rank order, controls last;
- ``<stem>-vs-bicubic.png``: per-(section, gene) PCC of the best-ranked method other than
  bicubic against bicubic, with the diagonal and the share of pairs above it.

Files are written atomically and without a timestamp in their metadata, so the same records give
the same bytes.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

METRICS = (("pcc", "PCC"), ("ssim", "SSIM"), ("rmse", "RMSE"))


def stem(dataset: str, fingerprint: str) -> str:
    """File-name stem of a section's figures."""
    return f"{dataset}-{fingerprint[:8]}"


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def draw(rows: list[dict[str, Any]], folder: Path, name: str, title: str) -> list[Path]:
    """Both figures of one section; ``rows`` in display order, each with ``<metric>_table``."""
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
        _save(fig, path)
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
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written
