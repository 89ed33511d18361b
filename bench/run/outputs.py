"""What a cell leaves beside its record: per-gene table, prediction, figures, traceback; and the
split's test maps that the leaderboard's gene-map figures show. Every file is written atomically,
and a record last, so a record implies its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.errors import one_line
from bench.files import atomic_write
from bench.run.records import PerGene, Record, record_path, write_record

if TYPE_CHECKING:  # annotations only: the leaderboard reads paths here without loading splits
    from bench.data.splits import Split

__all__ = [
    "SIDE_SUFFIXES",
    "remove_temporaries",
    "save",
    "save_or_fail",
    "save_test_maps",
    "side_files",
    "side_path",
    "test_maps_path",
]


def side_path(results_dir: Path, dataset: str, method: str, seed: int, suffix: str) -> Path:
    """``<results-dir>/<dataset>/<method>/seed-<seed><suffix>``: a side file of that record."""
    stem = record_path(results_dir, dataset, method, seed).with_suffix("")
    return stem.with_name(stem.name + suffix)


def test_maps_path(results_dir: Path, label: str, fingerprint: str) -> Path:
    """Where :func:`save_test_maps` keeps a split's test maps."""
    return Path(results_dir) / label / f"maps-{fingerprint}.npz"


def _artifacts(results_dir: Path, split: Split, record: Record, extras: dict) -> list[Path]:
    """Write a cell's side files beside its record: per-gene CSV; the prediction (``.pred.npz``:
    ``pred`` (N, G, H, W) float32 on the split's scale, ``regions`` (N,), and for stochastic
    methods ``spread`` (N, G, H, W), the population std over the K draws); the gene-map figure
    of the first test region, and for stochastic methods its spread beside the error; traceback."""
    import pandas as pd

    from bench.run import plots as figures

    cell = (record.dataset, record.method, record.seed)
    out: list[Path] = []

    def side(suffix: str, write: Any) -> None:
        path = side_path(results_dir, *cell, suffix)
        atomic_write(path, write)
        out.append(path)

    if record.per_gene:
        table = pd.DataFrame(record.per_gene.columns())
        side(".per_gene.csv", lambda p: table.to_csv(p, index=False))
    if "pred" in extras:
        arrays = {"pred": extras["pred"], "regions": np.array([t.region for t in split.test])}
        if "spread" in extras:
            arrays["spread"] = extras["spread"]
        side(".pred.npz", lambda p: np.savez_compressed(p, **arrays))  # for 'bench export'
        s, hr = split.test[0], split.truth.hr[0]  # figures of the first test region
        idx = figures.pick_genes(hr, s.hr_mask, split.genes, n=3)
        genes = [split.genes[i] for i in idx]
        where = f"{record.dataset} {s.region}: {record.method} (seed {record.seed})"
        side(
            ".genes.png",
            lambda p: figures.gene_panel(
                s.lr[idx], hr[idx], extras["pred"][0][idx], s.hr_mask, s.lr_mask, genes, p,
                title=where,
            ),
        )  # fmt: skip
        if "spread" in extras:
            fig = figures.error_spread_figure(
                hr[idx], extras["pred"][0][idx], extras["spread"][0][idx], s.hr_mask, genes,
                title=f"{where}: sample spread beside error",
            )  # fmt: skip
            side(".spread.png", lambda p: figures.save_png(fig, p))
    if "traceback" in extras:
        side(".traceback.txt", lambda p: p.write_text(extras["traceback"]))
    else:  # a traceback of an earlier failed run of this cell would now describe nothing
        side_path(results_dir, *cell, ".traceback.txt").unlink(missing_ok=True)
    return out


def save_test_maps(results_dir: Path, split: Split) -> Path:
    """Write the first test region's maps for the leaderboard's figures, once per split.

    ``<results-dir>/<split label>/maps-<fingerprint>.npz``: ``lr`` (G, h, w), ``hr`` (G, H, W)
    float32 on the split's scale, ``lr_mask`` (h, w), ``hr_mask`` (H, W), ``region`` and
    ``genes`` (G,). Kept when present (the fingerprint names everything it depends on).
    """
    path = test_maps_path(results_dir, split.label, split.fingerprint)
    if not path.is_file():
        s = split.test[0]
        arrays = {
            "lr": s.lr.astype(np.float32), "hr": split.truth.hr[0].astype(np.float32),
            "lr_mask": s.lr_mask, "hr_mask": s.hr_mask,
            "region": np.array(s.region), "genes": np.array(list(split.genes)),
        }  # fmt: skip
        atomic_write(path, lambda p: np.savez_compressed(p, **arrays))
    return path


SIDE_SUFFIXES = (".per_gene.csv", ".genes.png", ".spread.png", ".pred.npz", ".traceback.txt")


def side_files(results_dir: Path, record: Record) -> list[Path]:
    """The side files of a record that exist (see :func:`_artifacts`)."""
    cell = (record.dataset, record.method, record.seed)
    paths = (side_path(results_dir, *cell, suffix) for suffix in SIDE_SUFFIXES)
    return [p for p in paths if p.is_file()]


def save(results_dir: Path, split: Split, record: Record, extras: dict) -> list[Path]:
    """Write the side files, then the record itself (last, so a record implies its files)."""
    files = _artifacts(results_dir, split, record, extras)
    write_record(results_dir, record)
    return files


def save_or_fail(
    results_dir: Path, split: Split, record: Record, extras: dict
) -> tuple[Record, list[Path]]:
    """:func:`save`, where an I/O error (a full disk while saving a figure) fails this cell
    instead of the grid: the record becomes failed with the error and is saved without side
    files but its traceback (if even that cannot be written, nothing is, and a later run
    recomputes the cell). Returns the record as saved and its files."""
    import traceback

    try:
        return record, save(results_dir, split, record, extras)
    except OSError as err:
        record.status, record.error = "failed", f"saving its outputs failed: {one_line(err)}"
        record.metrics, record.per_gene = {}, PerGene()
        try:
            return record, save(results_dir, split, record, {"traceback": traceback.format_exc()})
        except OSError:
            return record, []


def remove_temporaries(results_dir: Path, dataset: str, method: str, seed: int) -> int:
    """Delete the temporary files (``.seed-<seed>.*.tmp*``, from :func:`bench.files.atomic_write`)
    that a writer of this cell killed mid-write left beside its record; call it holding the
    cell's lock. Returns how many were removed."""
    folder = record_path(results_dir, dataset, method, seed).parent
    stale = list(folder.glob(f".seed-{seed}.*.tmp*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
