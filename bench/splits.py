"""Fixed downsampled splits: committed split files and the samples they define.

A split file ``datasets/<name>/split-k<k>.json`` fixes everything a score depends on: sections and
their train/test role, the HR canvas and each section's place on it, the pooling factor k, the
genes (chosen on training sections only), the normalisation, the image resolution and the sha256 of
every input file. Its fingerprint is the first 16 hex digits of the sha256 of the canonical JSON of
those fields; results carry it and the leaderboard never mixes fingerprints.

Construction of one sample from a section (metrics.md, "Splits"):

- HR grid: the native lattice on a fixed ``canvas`` (rows x columns), section centred on it;
  ``hr_mask`` = measured in-tissue spots.
- LR: non-overlapping k x k blocks; counts of the block's in-tissue HR spots summed; a block is an
  LR spot when at least half of its k^2 positions are in tissue.
- Scale: ``x = log1p(counts / spot_total * 1e4)`` on each resolution's own counts
  (``spot_total`` = all genes of that spot or block), 0 outside the mask.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.cards import Card, require_files
from bench.errors import BenchError
from bench.histology import crop_grid
from bench.section import Section
from methods.contract import Sample

READERS = {"legacy_st": "bench.legacy_st"}
_FINGERPRINTED = (
    "dataset",
    "k",
    "canvas",
    "image_px",
    "train",
    "test",
    "genes",
    "origins",
    "normalisation",
    "inputs",
)


@dataclass(frozen=True, eq=False)
class Split:
    """A materialised split: training and test samples plus the SSIM data range.

    ``data_range`` is (G,) float64, gene g's maximum over the training HR maps (metrics.md, SSIM).
    """

    spec: dict[str, Any]
    train: list[Sample]
    test: list[Sample]
    data_range: np.ndarray

    @property
    def fingerprint(self) -> str:
        return self.spec["fingerprint"]

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self.spec["genes"])


def fingerprint(spec: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of the canonical JSON of the fingerprinted fields of ``spec``."""
    core = {key: spec[key] for key in _FINGERPRINTED}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_sections(card: Card, root: Path, ids: list[str]) -> dict[str, Section]:
    """Read the named sections with the card's reader, from ``root/<dataset>``."""
    folder = require_files(card, root)
    reader = importlib.import_module(READERS[card.raw["reader"]])
    return {
        sid: reader.read_section(
            sid,
            folder / card.sections[sid]["counts"],
            folder / card.sections[sid]["spots"],
            folder / card.sections[sid]["image"],
        )
        for sid in ids
    }


def select_genes(train: list[Section], n: int) -> list[str]:
    """The card's gene rule, on training sections only (the released diffusion code's rule).

    Genes are ranked by their mean ``log1p(counts / spot_total * 1e4)`` over all in-tissue spots
    of the training sections pooled (a gene absent from a section counts 0 there), after dropping
    mitochondrial (``MT-``) and ribosomal-protein (``RPL``/``RPS``) genes; the top ``n`` are kept,
    in rank order (ties broken by name).
    """
    genes = sorted(set().union(*(s.genes for s in train)))
    total, spots = np.zeros(len(genes)), 0
    for s in train:
        x = s.gene_counts(genes)[s.in_tissue]
        total += np.log1p(x / s.totals[s.in_tissue, None] * 1e4).sum(axis=0)
        spots += len(x)
    names = np.asarray(genes)
    keep = np.array([not g.startswith(("MT-", "RPL", "RPS")) for g in genes])
    if keep.sum() < n:
        raise BenchError(
            f"only {keep.sum()} genes pass the filter, fewer than n = {n}; lower [genes].n"
        )
    order = np.lexsort((names, -np.where(keep, total / spots, -np.inf)))
    return [str(g) for g in names[order[:n]]]


def grid_origin(section: Section, canvas: tuple[int, int]) -> tuple[int, int]:
    """Lattice (row, col) of HR position (0, 0) that centres the section's tissue on the canvas."""
    rows, cols = section.row[section.in_tissue], section.col[section.in_tissue]
    extent = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    if extent[0] > canvas[0] or extent[1] > canvas[1]:
        raise BenchError(
            f"section {section.id}: tissue spans {extent[0]}x{extent[1]} spots, larger than the "
            f"card's canvas {canvas[0]}x{canvas[1]}; enlarge [split].canvas"
        )
    return (
        int(rows.min() - (canvas[0] - extent[0]) // 2),
        int(cols.min() - (canvas[1] - extent[1]) // 2),
    )


def make_split(card: Card, root: Path, k: int) -> dict[str, Any]:
    """Build the split file's content for pooling ``k`` from the data (genes from train only)."""
    cfg = card.split
    if k not in cfg["pooling"]:
        raise BenchError(
            f"pooling k = {k} is not offered by {card.name}; choose from {cfg['pooling']}"
        )
    canvas = tuple(cfg["canvas"])
    if canvas[0] % k or canvas[1] % k:
        raise BenchError(f"canvas {canvas} is not divisible by k = {k}; fix [split].canvas")
    sections = read_sections(card, root, cfg["train"] + cfg["test"])
    spec: dict[str, Any] = {
        "dataset": card.name,
        "k": k,
        "canvas": list(canvas),
        "image_px": cfg["image_px"],
        "train": list(cfg["train"]),
        "test": list(cfg["test"]),
        "genes": select_genes([sections[s] for s in cfg["train"]], card.raw["genes"]["n"]),
        "gene_rule": card.raw["genes"]["rule"],
        "origins": {sid: list(grid_origin(sec, canvas)) for sid, sec in sections.items()},
        "normalisation": cfg["normalisation"],
        "inputs": card.files,
    }
    spec["fingerprint"] = fingerprint(spec)
    return spec


def load_spec(card: Card, k: int) -> dict[str, Any]:
    """Read and check the committed split file for pooling ``k``."""
    path = card.split_path(k)
    if not path.is_file():
        raise BenchError(
            f"{path} does not exist; pooling k = {k} has no committed split "
            f"(create it with 'python -m bench split --datasets {card.name} --k {k}')"
        )
    try:
        spec = json.loads(path.read_text())
        ok = spec["fingerprint"] == fingerprint(spec)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BenchError(f"{path}: malformed split file ({err}); restore it from git") from None
    if not ok:
        raise BenchError(f"{path}: fingerprint does not match its content; restore it from git")
    if spec["inputs"] != card.files:
        raise BenchError(f"{path}: input checksums differ from the card's; regenerate the split")
    return spec


def write_spec(card: Card, spec: dict[str, Any]) -> Path:
    """Write a split file atomically; returns its path."""
    from bench.records import atomic_write_text

    path = card.split_path(spec["k"])
    atomic_write_text(path, json.dumps(spec, indent=1) + "\n")
    return path


def to_sample(section: Section, spec: dict[str, Any]) -> Sample:
    """One :class:`Sample` (with ``hr``) from a section, as the module docstring defines."""
    k, (H, W) = spec["k"], spec["canvas"]
    genes = tuple(spec["genes"])
    row0, col0 = spec["origins"][section.id]
    i, j = section.row - row0, section.col - col0
    spot = section.in_tissue & (i >= 0) & (i < H) & (j >= 0) & (j < W)
    if (section.in_tissue & ~spot).any():
        raise BenchError(
            f"section {section.id}: in-tissue spots fall off the split's canvas; "
            "regenerate the split"
        )
    counts = np.zeros((len(genes), H, W))
    totals = np.zeros((H, W))
    mask = np.zeros((H, W), dtype=bool)
    counts[:, i[spot], j[spot]] = section.gene_counts(genes)[spot].T
    totals[i[spot], j[spot]] = section.totals[spot]
    mask[i[spot], j[spot]] = totals[i[spot], j[spot]] > 0

    def pool(a: np.ndarray) -> np.ndarray:
        return a.reshape(*a.shape[:-2], H // k, k, W // k, k).sum(axis=(-3, -1))

    lr_mask = pool(mask.astype(np.int64)) * 2 >= k * k
    lr_counts, lr_totals = pool(counts * mask), pool(totals * mask)
    return Sample(
        region=section.id,
        genes=genes,
        scale=k,
        lr=_log_cp10k(lr_counts, lr_totals, lr_mask),
        lr_mask=lr_mask,
        hr_mask=mask,
        image=crop_grid(section, (row0, col0), (H, W), spec["image_px"]),
        hr=_log_cp10k(counts, totals, mask),
    )


def _log_cp10k(counts: np.ndarray, totals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``log1p(counts / totals * 1e4)`` where ``mask``, else 0; (G, H, W) float32."""
    safe = np.where(mask, totals, 1.0)
    return np.where(mask, np.log1p(counts / safe * 1e4), 0.0).astype(np.float32)


def build(card: Card, root: Path, k: int, verify_inputs: bool = True) -> Split:
    """Materialise the committed split: read, verify (sha256) and pool every section."""
    from bench.fetch import verify

    spec = load_spec(card, k)
    require_files(card, root)
    if verify_inputs:
        verify(card, root)
    sections = read_sections(card, root, spec["train"] + spec["test"])
    train = [to_sample(sections[s], spec) for s in spec["train"]]
    test = [to_sample(sections[s], spec) for s in spec["test"]]
    hr = np.stack([s.hr for s in train])  # (N, G, H, W)
    data_range = hr.max(axis=(0, 2, 3)).astype(np.float64)
    if (data_range <= 0).any():
        gene = spec["genes"][int(np.argmin(data_range))]
        raise BenchError(
            f"gene {gene} is never expressed in the training HR maps; regenerate the split"
        )
    return Split(spec=spec, train=train, test=test, data_range=data_range)
