"""Fixed downsampled splits: committed split files and the samples they define.

A split file ``datasets/<name>/split-k<k>.json`` fixes everything a score depends on: the regions
(windows of the HR grid, :mod:`bench.data.regions`) and their train/test role, the pooling
factor k, the genes (chosen on training regions only), the normalisation, the image resolution
and the sha256 of every input file. Its fingerprint is the first 16 hex digits of the sha256 of the
canonical JSON of those fields (no dates, paths or machine facts, so two builds on different days
or machines agree); results carry it and the leaderboard never mixes fingerprints.

Spot QC (:mod:`bench.data.qc`) is fixed in the file too: ``qc_depth_fraction``, the cut as a
fraction of a section's depth level (from the training regions), and ``qc_min_totals``, each test
region's threshold in counts (its section's depth level, from the LR input, times that fraction).
The test thresholds read the test regions' LR input, never their HR truth.

A fold file ``datasets/<name>/folds/split-k<k>-f<i>.json`` (:mod:`bench.data.folds`) is a split
file with three more fields, fingerprinted: ``fold`` (i), ``folds`` (how many) and ``excluded``
(the regions that neither train nor test in this fold: the buffer around its test block). Its
genes, spot-QC fraction and fingerprint come from its own training regions; split files carry
none of the three keys (their bytes are unchanged).

Construction of one sample from a region (metrics.md, "Splits"):

- HR grid: the section's grid (:mod:`bench.data.section`) in the region's ``canvas``-sized window;
  ``hr_mask`` = measured in-tissue positions with counts.
- LR: non-overlapping k x k blocks of the window; counts of the block's in-tissue HR positions
  summed; a block is an LR spot when at least half of its lattice positions are in tissue (on a
  checkerboard lattice a block holds k^2 / 2 positions, exactly, for even k;
  :mod:`bench.data.blocks`).
- Scale (the card's ``normalisation``), 0 outside the mask:
  ``log1p_cp10k`` (spot platforms): ``x = log1p(counts / spot_total * 1e4)`` on each resolution's
  own counts (``spot_total`` = all genes of that spot or block);
  ``log1p_area`` (binned transcripts): ``x = log1p(counts per HR-bin area)``, i.e. HR bins as
  counted and LR blocks' sums divided by k^2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data import qc
from bench.data.blocks import lr_spots, pool
from bench.data.cards import NORMALISATIONS, Card, require_files
from bench.data.histology import crop_grids
from bench.data.readers import reader
from bench.data.regions import define_regions, in_window, sites, window_totals
from bench.data.section import Section
from bench.errors import BenchError, first_line
from bench.files import atomic_write_text
from methods.contract import Sample

_FINGERPRINTED = (
    "dataset",
    "k",
    "canvas",
    "image_px",
    "regions",
    "train",
    "test",
    "genes",
    "normalisation",
    "qc_depth_fraction",
    "qc_min_totals",
    "inputs",
)
_FOLD_KEYS = ("fold", "folds", "excluded")  # fingerprinted when present (fold files only)


@dataclass(frozen=True)
class RegionRef:
    """A region of a split: the section it lies in and its window's origin (row, column) on the
    section's HR grid (the window is the split's ``canvas``)."""

    section: str
    origin: tuple[int, int]


@dataclass(frozen=True)
class SplitSpec:
    """The content of a committed split file (module docstring), typed.

    :meth:`to_json` gives the file's JSON object, keys in file order; :meth:`from_json` reads it.
    """

    dataset: str
    k: int
    # cross-validation fold i of ``folds`` (fold files only; None in a split file)
    fold: int | None = field(default=None, kw_only=True)
    folds: int | None = field(default=None, kw_only=True)
    default_pooling: int
    canvas: tuple[int, int]
    image_px: int
    regions: dict[str, RegionRef]
    train: tuple[str, ...]
    test: tuple[str, ...]
    # a fold's buffer: regions neither trained nor tested in this fold (fold files only)
    excluded: tuple[str, ...] | None = field(default=None, kw_only=True)
    genes: tuple[str, ...]
    gene_rule: str
    region_rule: str
    normalisation: str
    # spot QC (:mod:`bench.data.qc`): the cut as a fraction of a section's depth level, and each
    # test region's threshold in counts (its scored positions have at least that total)
    qc_depth_fraction: float
    qc_min_totals: dict[str, int]
    inputs: dict[str, str]
    fingerprint: str
    # what the readers dropped or inferred (e.g. control probes), for the user; not fingerprinted
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def label(self) -> str:
        """Name of this task in records: the dataset, suffixed ``-k<k>`` unless k is the card's
        default pooling (so results at different resolutions never overwrite each other), then
        ``-f<i>`` for fold i (``her2st-f0``, ``her2st-k3-f0``)."""
        name = self.dataset if self.k == self.default_pooling else f"{self.dataset}-k{self.k}"
        return name if self.fold is None else f"{name}-f{self.fold}"

    def section_ids(self, regions: Sequence[str] | None = None) -> list[str]:
        """The sections of ``regions`` (default: train then test), each once, in order."""
        ids = self.train + self.test if regions is None else regions
        return list(dict.fromkeys(self.regions[r].section for r in ids))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if key == "notes" and not value:
                continue  # split files without notes keep their bytes
            if key in _FOLD_KEYS and value is None:
                continue  # split files (not folds) keep their bytes
            if key == "regions":
                value = {
                    r: {"section": v.section, "origin": list(v.origin)} for r, v in value.items()
                }
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitSpec:
        """A spec from a split file's JSON object; a missing or malformed field raises
        ``KeyError`` / ``TypeError`` / ``ValueError``."""
        return cls(
            dataset=str(data["dataset"]),
            k=int(data["k"]),
            default_pooling=int(data["default_pooling"]),
            canvas=(int(data["canvas"][0]), int(data["canvas"][1])),
            image_px=int(data["image_px"]),
            regions={
                str(r): RegionRef(str(v["section"]), (int(v["origin"][0]), int(v["origin"][1])))
                for r, v in data["regions"].items()
            },
            train=tuple(data["train"]),
            test=tuple(data["test"]),
            fold=None if data.get("fold") is None else int(data["fold"]),
            folds=None if data.get("folds") is None else int(data["folds"]),
            excluded=None if data.get("excluded") is None else tuple(data["excluded"]),
            genes=tuple(data["genes"]),
            gene_rule=str(data["gene_rule"]),
            region_rule=str(data["region_rule"]),
            normalisation=str(data["normalisation"]),
            qc_depth_fraction=float(data["qc_depth_fraction"]),
            qc_min_totals={str(r): int(t) for r, t in data["qc_min_totals"].items()},
            inputs=dict(data["inputs"]),
            fingerprint=str(data["fingerprint"]),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )


@dataclass(frozen=True, eq=False)
class Truth:
    """The test regions' truth: what the scorer alone reads (:mod:`bench.run.cell`'s ``score``
    and the ceiling). Tuning code (benchmarks, method defaults) never gets it: they use
    :attr:`Split.fit` and :attr:`Split.validation`, and :attr:`Split.test` holds the inputs only
    (``tests/test_layout.py`` checks that nothing else reads ``.truth``).

    ``hr`` (N, G, H, W) float32 on the split's scale, 0 outside ``tissue``; ``tissue`` (N, H, W)
    bool, the measured in-tissue positions (each test sample's ``hr_mask``); ``scored`` (N, H, W)
    bool, the positions every score uses: ``tissue`` less the positions that spot QC drops
    (:mod:`bench.data.qc`); ``counts`` (N, G, H, W) and ``totals`` (N, H, W) int64, the raw HR
    counts of the split's genes and all-gene totals behind ``hr``, 0 outside ``tissue`` (the
    ceiling's input).
    """

    hr: np.ndarray
    tissue: np.ndarray
    scored: np.ndarray
    counts: np.ndarray
    totals: np.ndarray

    @property
    def dropped(self) -> int:
        """In-tissue test positions that spot QC drops from every score."""
        return int(self.tissue.sum() - self.scored.sum())

    def targets(self, inputs: Sequence[Sample]) -> list[Sample]:
        """``inputs`` with their HR truth put back: only the positive control sees this."""
        return [dataclasses.replace(s, hr=hr) for s, hr in zip(inputs, self.hr, strict=True)]


@dataclass(frozen=True, eq=False)
class Split:
    """A materialised split: its spec, training samples, test inputs, the test truth and the
    SSIM data range.

    ``train`` samples carry ``hr``; ``test`` samples never do (the inputs a method predicts
    from); their truth is :attr:`truth` (:class:`Truth`), for the scorer alone.
    ``data_range`` is (G,) float64, gene g's maximum over the TRAINING HR maps (metrics.md, SSIM).
    """

    spec: SplitSpec
    train: list[Sample]
    test: list[Sample]
    data_range: np.ndarray
    truth: Truth | None = None

    @property
    def validation(self) -> list[Sample]:
        """The validation carve: the last quarter (at least one) of the training regions in the
        split file's order, none when there are fewer than two. Held out of every method's fit
        (:attr:`fit`) and scored during training for learning curves; never a test region."""
        n = len(self.train)
        return self.train[n - math.ceil(n / 4) :] if n >= 2 else []

    @property
    def fit(self) -> list[Sample]:
        """What every method fits on: the training regions less :attr:`validation`."""
        return self.train[: len(self.train) - len(self.validation)]

    def normalise(self, counts: np.ndarray, totals: np.ndarray, mask: np.ndarray, area: float):
        """:func:`normalise` with this split's normalisation ((G, H, W) float32)."""
        return normalise(counts, totals, mask, self.spec.normalisation, area)

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def genes(self) -> tuple[str, ...]:
        return self.spec.genes

    @property
    def label(self) -> str:
        return self.spec.label


def fingerprint(spec: Mapping[str, Any] | SplitSpec) -> str:
    """sha256 (16 hex digits) of the canonical JSON of the fingerprinted fields of ``spec`` (a
    split file's JSON object or a :class:`SplitSpec`); a fold's ``fold``, ``folds`` and
    ``excluded`` count too (absent from split files, so their fingerprints are unchanged)."""
    if isinstance(spec, SplitSpec):
        spec = spec.to_json()
    core = {key: spec[key] for key in _FINGERPRINTED}
    core.update({key: spec[key] for key in _FOLD_KEYS if spec.get(key) is not None})
    blob = json.dumps(core, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def card_sections(card: Card) -> list[str]:
    """The sections a card's split uses, in card order."""
    cfg = card.split
    ids = (
        cfg["sections"]
        if cfg.get("regions", "sections") == "tiles"
        else cfg["train"] + cfg["test"]
    )
    unknown = [s for s in ids if s not in card.sections]
    if unknown:
        raise BenchError(
            f"dataset {card.name}: split names section {unknown[0]!r} not in [sections]"
        )
    return list(ids)


def read_sections(card: Card, root: Path, ids: list[str]) -> dict[str, Section]:
    """Read the named sections with the card's reader, from ``root/<dataset>``."""
    folder = require_files(card, root)
    module = reader(card.raw.get("reader"), card.name)
    return {sid: module.read_section(sid, folder, card.sections[sid], card.raw) for sid in ids}


def normalise(
    counts: np.ndarray, totals: np.ndarray, mask: np.ndarray, how: str, area: float = 1.0
) -> np.ndarray:
    """(G, H, W) float32 values on the split's scale (module docstring), 0 outside ``mask``.

    ``counts`` (G, H, W) summed counts; ``totals`` (H, W) all-gene totals; ``area`` the number of
    HR bins a position stands for (k^2 for LR blocks, 1 for HR), used by ``log1p_area``.
    """
    if how == "log1p_cp10k":
        safe = np.where(mask, totals, 1.0)
        values = np.log1p(counts / safe * 1e4)
    elif how == "log1p_area":
        values = np.log1p(counts / area)
    else:
        raise BenchError(f"normalisation {how!r} unknown; use one of {NORMALISATIONS}")
    return np.where(mask, values, 0.0).astype(np.float32)


def _grid(section: Section, origin: tuple[int, int], shape: tuple[int, int], genes) -> tuple:
    """Counts (G, H, W), totals (H, W) and the mask of a window."""
    spot = in_window(section, origin, shape)
    i, j = section.row[spot] - origin[0], section.col[spot] - origin[1]
    counts = np.zeros((len(genes), *shape))
    counts[:, i, j] = section.gene_counts(genes)[spot].T
    totals = window_totals(section, origin, shape)
    return counts, totals, totals > 0


GENE_EXCLUDE = ("MT-", "RPL", "RPS")  # mitochondrial, ribosomal-protein: human and mouse alike


def gene_table(card: Card, root: Path) -> dict[str, str]:
    """``[genes].table``: a file listed in ``[files]`` whose first two columns are a gene's id
    and its symbol (e.g. Space Ranger's ``features.tsv.gz``: id, name, type; tab- or
    comma-separated, gzip allowed, a header row is harmless); {} when the card names none."""
    rel = card.raw["genes"].get("table")
    if rel is None:
        return {}
    path = root / card.name / rel
    sep = "," if path.name.lower().removesuffix(".gz").endswith(".csv") else "\t"
    try:
        table = pd.read_csv(path, sep=sep, header=None, dtype=str, usecols=[0, 1])
    except (OSError, EOFError, ValueError, UnicodeError, pd.errors.ParserError) as err:
        raise BenchError(
            f"{path}: unreadable gene table ([genes].table; {first_line(err)}); it needs two "
            "columns, id and symbol"
        ) from None
    return dict(zip(table[0].str.strip(), table[1].str.strip(), strict=True))


def select_genes(
    train: list[tuple[Section, tuple[int, int]]],
    all_sections: list[Section],
    canvas: tuple[int, int],
    n: int,
    normalisation: str,
    exclude: tuple[str, ...] = GENE_EXCLUDE,
    symbols: dict[str, str] | None = None,
) -> list[str]:
    """The card's gene rule, on training regions only (the released diffusion code's rule).

    Candidates are the genes measured in every section of the split (names only: a panel is a
    property of the assay, not of test values), minus those whose symbol starts with an
    ``exclude`` prefix, case-insensitively: the default ``MT-``, ``RPL``, ``RPS`` drops
    mitochondrial and ribosomal-protein genes of human (``MT-CO1``, ``RPL13``) and mouse
    (``mt-Co1``, ``Rpl13``) symbols. A gene's symbol is its name, or for identifiers such as
    Ensembl ids the symbol ``symbols`` (the card's ``[genes].table``) or the data (a section's
    ``symbols``) give it. They are ranked by their mean value on the split's scale
    (``normalisation``) over all in-tissue HR positions of the training regions (``train`` =
    (section, window origin) pairs) pooled; the top ``n`` are kept, in rank order (ties broken by
    name).
    """
    common = set(all_sections[0].genes).intersection(*(s.genes for s in all_sections[1:]))
    names = dict(symbols or {})
    for section in all_sections:
        if section.symbols is not None:
            for gene, symbol in zip(section.genes, section.symbols, strict=True):
                names.setdefault(str(gene), str(symbol))
    prefixes = tuple(p.lower() for p in exclude)
    genes = sorted(g for g in common if not names.get(g, g).lower().startswith(prefixes))
    if len(genes) < n:
        raise BenchError(
            f"only {len(genes)} genes are measured in every section and pass the filter, fewer "
            f"than n = {n}; lower [genes].n"
        )
    total, positions = np.zeros(len(genes)), 0
    for section, origin in train:
        spot = in_window(section, origin, canvas) & (section.totals > 0)
        index = {g: i for i, g in enumerate(section.genes)}
        x = section.counts[spot][:, [index[g] for g in genes]].toarray()
        tot = section.totals[spot, None]
        x = np.log1p(x / tot * 1e4) if normalisation == "log1p_cp10k" else np.log1p(x)
        total += x.sum(axis=0)
        positions += len(x)
    names_arr = np.asarray(genes)
    order = np.lexsort((names_arr, -total / max(positions, 1)))
    return [str(g) for g in names_arr[order[:n]]]


def verified_sections(card: Card, root: Path) -> dict[str, Section]:
    """Every section the card's split uses, read after the files are checked against the
    card's checksums (a split records them, so the data must match)."""
    from bench.data.fetch import verify

    require_files(card, root)
    verify(card, root)
    return read_sections(card, root, card_sections(card))


def make_split(
    card: Card,
    root: Path,
    k: int,
    sections: dict[str, Section] | None = None,
    layout: Mapping[str, Any] | None = None,
) -> SplitSpec:
    """Build the split file's content for pooling ``k`` from the data (genes from train only);
    ``sections`` as :func:`verified_sections` returns them (read here when None).

    ``layout`` gives the regions and their roles (``regions``, ``train``, ``test``; a fold's
    also ``fold``, ``folds``, ``excluded`` and ``region_rule``), default the card's
    (:func:`bench.data.regions.define_regions`); genes and spot QC's fraction then come from its
    ``train`` regions alone, and each test region's QC threshold from its section's LR input
    (:mod:`bench.data.qc`)."""
    cfg = card.split
    if k not in cfg["pooling"]:
        raise BenchError(
            f"pooling k = {k} is not offered by {card.name}; choose from {cfg['pooling']}"
        )
    canvas = tuple(cfg["canvas"])
    if canvas[0] % k or canvas[1] % k:
        raise BenchError(f"canvas {canvas} is not divisible by k = {k}; fix [split].canvas")
    if cfg["normalisation"] not in NORMALISATIONS:
        raise BenchError(
            f"dataset {card.name}: normalisation {cfg['normalisation']!r} unknown; "
            f"use one of {NORMALISATIONS}"
        )
    sections = sections if sections is not None else verified_sections(card, root)
    layout = dict(layout) if layout is not None else define_regions(sections, cfg)
    region_rule = layout.pop("region_rule", cfg.get("region_rule", ""))
    windows = {
        r: (sections[v["section"]], (int(v["origin"][0]), int(v["origin"][1])))
        for r, v in layout["regions"].items()
    }
    train = [windows[r] for r in layout["train"]]
    spot_qc = qc.for_split(
        windows, layout["train"], layout["test"], canvas, k, float(cfg.get("qc_nmads", qc.NMADS))
    )
    gene_cfg = card.raw["genes"]
    spec: dict[str, Any] = {
        "dataset": card.name,
        "k": k,
        "default_pooling": cfg["default_pooling"],
        "canvas": list(canvas),
        "image_px": cfg["image_px"],
        **layout,
        "genes": select_genes(
            train,
            list(sections.values()),
            canvas,
            gene_cfg["n"],
            cfg["normalisation"],
            tuple(gene_cfg.get("exclude_prefixes", GENE_EXCLUDE)),
            gene_table(card, root),
        ),
        "gene_rule": gene_cfg.get("rule", ""),
        "region_rule": region_rule,
        "normalisation": cfg["normalisation"],
        "qc_depth_fraction": spot_qc.fraction,
        "qc_min_totals": spot_qc.min_totals,
        "inputs": card.files,
    }
    spec["fingerprint"] = fingerprint(spec)
    spec["notes"] = [f"{sid}: {note}" for sid, sec in sections.items() for note in sec.notes]
    spec["notes"] += qc.notes(spot_qc, windows, layout["test"], canvas)
    return SplitSpec.from_json(spec)


FOLDS_DIR = "folds"  # fold files: datasets/<name>/folds/split-k<k>-f<i>.json


def fold_path(card: Card, k: int, fold: int) -> Path:
    """The committed fold file of pooling ``k`` and fold ``fold``."""
    return card.folder / FOLDS_DIR / f"split-k{k}-f{fold}.json"


def fold_paths(card: Card, k: int) -> list[Path]:
    """The fold files of pooling ``k`` on disk, in fold order."""
    prefix = f"split-k{k}-f"
    found = [
        p
        for p in (card.folder / FOLDS_DIR).glob(f"{prefix}*.json")
        if p.stem.removeprefix(prefix).isdigit()
    ]
    return sorted(found, key=lambda p: int(p.stem.removeprefix(prefix)))


def fold_count(card: Card, k: int) -> int:
    """How many fold files pooling ``k`` has committed (0 when none): they must be
    ``f0`` .. ``f<n-1>``, none missing."""
    found = [int(p.stem.removeprefix(f"split-k{k}-f")) for p in fold_paths(card, k)]
    if found != list(range(len(found))):
        raise BenchError(
            f"{card.folder / FOLDS_DIR}: fold files of k = {k} are f{found}, not f0 .. "
            f"f{len(found) - 1}; regenerate them with 'python -m bench split --datasets "
            f"{card.name} --k {k} --folds'"
        )
    return len(found)


def fold_specs(card: Card, k: int) -> list[SplitSpec]:
    """Every committed fold of pooling ``k``, in fold order, each checked as :func:`load_spec`
    checks it and against the others' count."""
    n = fold_count(card, k)
    if n == 0:
        raise BenchError(
            f"pooling k = {k} of {card.name} has no committed fold files (create them with "
            f"'python -m bench split --datasets {card.name} --k {k} --folds')"
        )
    specs = [load_spec(card, k, fold) for fold in range(n)]
    for spec in specs:
        if spec.folds != n:
            raise BenchError(
                f"{fold_path(card, k, spec.fold or 0)}: says {spec.folds} folds beside {n} fold "
                f"files; regenerate them with 'python -m bench split --datasets {card.name} "
                f"--k {k} --folds'"
            )
    return specs


def load_spec(card: Card, k: int, fold: int | None = None) -> SplitSpec:
    """Read and check the committed split file for pooling ``k``, or with ``fold`` its fold
    file (:func:`fold_path`)."""
    path = card.split_path(k) if fold is None else fold_path(card, k, fold)
    again = f"python -m bench split --datasets {card.name} --k {k}" + (
        "" if fold is None else " --folds"
    )
    if not path.is_file():
        what = "committed split" if fold is None else f"committed fold {fold}"
        raise BenchError(
            f"{path} does not exist; pooling k = {k} has no {what} (create it with '{again}')"
        )
    try:
        raw = json.loads(path.read_text())
        if isinstance(raw, dict) and "fingerprint" in raw and "qc_min_totals" not in raw:
            raise BenchError(
                f"{path}: split file predates spot QC relative to each section's depth (no "
                f"qc_min_totals); regenerate it with '{again}'"
            )
        ok = raw["fingerprint"] == fingerprint(raw)
        spec = SplitSpec.from_json(raw)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as err:
        raise BenchError(f"{path}: malformed split file ({err}); restore it from git") from None
    if not ok:
        raise BenchError(f"{path}: fingerprint does not match its content; restore it from git")
    if spec.inputs != card.files:
        raise BenchError(f"{path}: input checksums differ from the card's; regenerate the split")
    if spec.fold != fold or (fold is not None and (spec.k != k or not _roles_partition(spec))):
        raise BenchError(
            f"{path}: holds k = {spec.k}, fold {spec.fold} of {spec.folds}, or regions that are "
            f"not train, test or excluded exactly once; regenerate it with '{again}'"
        )
    return spec


def _roles_partition(spec: SplitSpec) -> bool:
    """Every region of a fold is train, test or excluded, exactly once."""
    roles = [*spec.train, *spec.test, *(spec.excluded or ())]
    return len(roles) == len(set(roles)) and set(roles) == set(spec.regions)


def write_spec(card: Card, spec: SplitSpec) -> Path:
    """Write a split file (a fold's to :func:`fold_path`) atomically; returns its path."""
    path = card.split_path(spec.k) if spec.fold is None else fold_path(card, spec.k, spec.fold)
    atomic_write_text(path, json.dumps(spec.to_json(), indent=1) + "\n")
    return path


def to_samples(section: Section, region_ids: list[str], spec: SplitSpec) -> list[Sample]:
    """The :class:`Sample` (with ``hr``) of each named region of one section."""
    k, shape, genes = spec.k, spec.canvas, spec.genes
    origins = [spec.regions[r].origin for r in region_ids]
    images = crop_grids(section, origins, shape, spec.image_px)
    how = spec.normalisation

    out = []
    for rid, origin, image in zip(region_ids, origins, images, strict=True):
        counts, totals, mask = _grid(section, origin, shape, genes)
        lr_mask = lr_spots(mask, sites(section, origin, shape), totals, k)
        out.append(
            Sample(
                region=rid,
                genes=genes,
                scale=k,
                lr=normalise(pool(counts * mask, k), pool(totals * mask, k), lr_mask, how, k * k),
                lr_mask=lr_mask,
                hr_mask=mask,
                image=image,
                hr=normalise(counts, totals, mask, how),
            )
        )
    return out


def materialise(spec: SplitSpec, sections: dict[str, Section]) -> Split:
    """Samples of every region of ``spec`` and the training data range (no file access)."""
    by_section: dict[str, list[str]] = {}
    for rid in spec.train + spec.test:
        by_section.setdefault(spec.regions[rid].section, []).append(rid)
    made: dict[str, Sample] = {}
    for sid, rids in by_section.items():
        made.update(zip(rids, to_samples(sections[sid], rids, spec), strict=True))
    train = [made[r] for r in spec.train]
    test = [made[r] for r in spec.test]
    data_range = np.stack([s.hr for s in train]).max(axis=(0, 2, 3)).astype(np.float64)
    if (data_range <= 0).any():
        gene = spec.genes[int(np.argmin(data_range))]
        raise BenchError(
            f"gene {gene} is never expressed in the training HR maps; regenerate the split"
        )
    grids = [
        _grid(sections[spec.regions[r].section], spec.regions[r].origin, spec.canvas, spec.genes)
        for r in spec.test
    ]
    tissue = np.stack([mask for _, _, mask in grids])
    totals = np.stack([totals for _, totals, _ in grids]).astype(np.int64)
    truth = Truth(
        hr=np.stack([s.hr for s in test]),
        tissue=tissue,
        scored=qc.scored(
            totals, tissue, np.array([spec.qc_min_totals[r] for r in spec.test])[:, None, None]
        ),
        counts=np.stack([(c * m).astype(np.int64) for c, _, m in grids]),
        totals=totals,
    )
    return Split(spec, train, [s.without_target() for s in test], data_range, truth)


def build(
    card: Card, root: Path, k: int, verify_inputs: bool = True, fold: int | None = None
) -> Split:
    """Materialise the committed split (or fold ``fold``): read, verify (sha256) and pool every
    section."""
    from bench.data.fetch import verify

    spec = load_spec(card, k, fold)
    require_files(card, root)
    if verify_inputs:
        verify(card, root)
    return materialise(spec, read_sections(card, root, spec.section_ids()))
