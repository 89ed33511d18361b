"""What a cell leaves beside its record: per-gene table, prediction, figures, traceback; and the
split's test maps that the leaderboard's gene-map figures show. Every file is written atomically,
and a record last, so a record implies its files.
"""

from __future__ import annotations

import re
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
    "cell_bytes",
    "remove_temporaries",
    "save",
    "save_or_fail",
    "save_test_maps",
    "side_files",
    "side_path",
    "split_bytes",
    "test_maps_path",
]

VALUE_BYTES = 24  # one number as JSON or CSV text with its separator, at the most
TABLE_COLUMNS = 48  # score columns of the per-(region, gene) table, with room for more
FIGURE_BYTES = 2**20  # one gene-map figure (PNG), at the most
RECORD_BYTES = 2**16  # a record's fields beside its tables (params, timings, curve, ...)


def cell_bytes(split: Split, stochastic: bool, copies: int = 1) -> int:
    """The most a cell on ``split`` writes: its record (the per-(region, gene) table and the
    influence column), the same table as CSV, the prediction as float32 (N, G, H, W) not
    counting compression (twice for a stochastic method: its spread too) and its figures;
    ``copies`` 2 when the side files are copied again into a local MLflow store's artifacts."""
    n, g = len(split.test), len(split.genes)
    maps = sum(g * h * w * 4 for h, w in (s.hr_shape for s in split.test))
    table = n * g * TABLE_COLUMNS * VALUE_BYTES
    side = maps * (2 if stochastic else 1) + table + FIGURE_BYTES * (2 if stochastic else 1)
    record = table + int(split.truth.scored.sum()) * VALUE_BYTES + RECORD_BYTES
    return record + side * copies


def split_bytes(split: Split) -> int:
    """The most the files every cell of ``split`` shares take: its test maps (first region, LR
    and HR, float32) and the noise ceiling's record."""
    s = split.test[0]
    (h, w), (hh, ww) = s.lr.shape[-2:], s.hr_shape
    maps = len(split.genes) * (h * w + hh * ww) * 4
    table = len(split.test) * len(split.genes) * TABLE_COLUMNS * VALUE_BYTES
    return maps + table + RECORD_BYTES


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
    """Write the side files, then the record itself (last, so a record implies its files), with
    the sha256 of each side file in ``record.files`` (``python -m bench verify`` checks them)."""
    from bench.data.fetch import sha256

    files = _artifacts(results_dir, split, record, extras)
    record.files = {p.name: sha256(p) for p in files}
    write_record(results_dir, record)
    return files


def save_or_fail(
    results_dir: Path, split: Split, record: Record, extras: dict
) -> tuple[Record, list[Path]]:
    """:func:`save`, where an I/O error (a full disk while saving a figure) fails this cell
    instead of the grid: the record becomes failed with the error and is saved without side
    files but its traceback (if even that cannot be written, nothing is, and a later run
    recomputes the cell). Returns the record as saved and its files.

    A full disk (``ENOSPC``, ``EDQUOT``), here or in the cell itself (its error says so), stops
    the grid instead: :class:`bench.errors.DiskFull` naming the file, the space free and the
    space the cell's outputs need, the side files this call wrote removed (no record refers to
    them), the records already written untouched."""
    import time
    import traceback

    from bench.errors import disk_error, is_disk_full_text
    from bench.files import disk_full

    where = record_path(results_dir, record.dataset, record.method, record.seed)
    needed = cell_bytes(split, "spread" in extras)
    began = time.time()
    try:
        files = save(results_dir, split, record, extras)
    except OSError as err:
        if disk_error(err):
            _remove_side_files(results_dir, record, since=began)
            raise disk_full(err, where, needed) from None
        record.status, record.error = "failed", f"saving its outputs failed: {one_line(err)}"
        record.metrics, record.per_gene = {}, PerGene()
        try:
            return record, save(results_dir, split, record, {"traceback": traceback.format_exc()})
        except OSError as again:
            if disk_error(again):
                raise disk_full(again, where, needed) from None
            return record, []
    if not record.ok and is_disk_full_text(record.error or ""):  # the cell's own writes
        named = re.search(r": '([^']+)'$", record.error or "")
        raise disk_full(None, Path(named.group(1)) if named else where.parent, needed)
    return record, files


def _remove_side_files(results_dir: Path, record: Record, since: float) -> None:
    """Remove the cell's side files written at ``since`` or later (by an attempt to save that
    ran out of space)."""
    for path in side_files(results_dir, record):
        try:
            if path.stat().st_mtime >= since - 1:
                path.unlink()
        except OSError:
            pass


def remove_temporaries(results_dir: Path, dataset: str, method: str, seed: int) -> int:
    """Delete the temporary files (``.seed-<seed>.*.tmp*``, from :func:`bench.files.atomic_write`)
    that a writer of this cell killed mid-write left beside its record; call it holding the
    cell's lock. Returns how many were removed."""
    folder = record_path(results_dir, dataset, method, seed).parent
    stale = list(folder.glob(f".seed-{seed}.*.tmp*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
