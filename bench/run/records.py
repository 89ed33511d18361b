"""Result records: one JSON file per (dataset, method, seed), written atomically.

Layout: ``<results-dir>/<dataset>/<method>/seed-<seed>.json``, one :class:`Record` each, with
``dataset``, ``method``, ``seed``, ``status`` ("ok" or "failed"), ``error``, ``params``,
``control``, ``split`` (:class:`SplitRef`: fingerprint, k, genes, test regions), ``metrics``
(scalar means), ``per_gene`` (:class:`PerGene`: one row per (region, gene) with every per-map
metric), ``timings`` (seconds), ``peak_memory_mb``, ``memory``, ``device``, ``code_version``,
``name`` (the run name), start/finish times (Unix seconds), ``influence`` (per scored test
position, the change of the mean PCC when it alone is dropped), and for trained methods the
learning ``curve`` (:class:`Curve`) and its ``converged`` verdict; for samplers ``draws_used``,
the K draws per input that were averaged; ``files``, the sha256 of each
side file the record owns (:mod:`bench.run.outputs`), by name in the record's folder.

Schema 1 on disk. Records written before the shared vocabulary named the per-gene region column
``section`` and a sampler's draws parameter ``samples``; :meth:`Record.from_json` reads both, so
old results load, resume and rank as before. Records written before ``files`` have none (None:
no checksum recorded; ``python -m bench verify`` says so and checks nothing of their files).

``<results-dir>/damaged/`` holds records ``python -m bench verify`` moved aside
(:data:`DAMAGED`); it is never read as records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.files import atomic_write_text

SCHEMA = 1
DAMAGED = "damaged"  # <results-dir>/damaged/<time>/...: records moved aside by bench verify
_LEGACY_PARAMS = {"samples": "draws"}  # written before the shared vocabulary


@dataclass(frozen=True)
class SplitRef:
    """What a record keeps of its split: the fingerprint, pooling k, genes, test regions and its
    spot QC (:mod:`bench.data.qc`): each test region's threshold in counts (``qc_min_totals``),
    the cut as a fraction of a section's depth level (``qc_depth_fraction``), the scored test
    positions and those dropped. A cross-validation fold's task also keeps its ``fold`` i of
    ``folds`` (None for a split, and for fold records written before they carried it: the page
    then reads the label's ``-f<i>``); the JSON leaves them out when None.

    Records written before the thresholds were per section hold one ``qc_min_total`` for every
    test region and no fraction: :meth:`from_json` gives each test region that threshold and
    ``qc_depth_fraction`` None."""

    fingerprint: str = "unknown"
    k: int = 0
    genes: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    qc_min_totals: dict[str, int] = field(default_factory=dict)
    qc_depth_fraction: float | None = None
    scored: int = 0
    dropped: int = 0
    fold: int | None = None
    folds: int | None = None

    def to_json(self) -> dict[str, Any]:
        fold = {k: v for k, v in (("fold", self.fold), ("folds", self.folds)) if v is not None}
        return {
            "fingerprint": self.fingerprint,
            "k": self.k,
            "genes": list(self.genes),
            "test": list(self.test),
            "qc_min_totals": dict(self.qc_min_totals),
            "qc_depth_fraction": self.qc_depth_fraction,
            "scored": self.scored,
            "dropped": self.dropped,
            **fold,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SplitRef:
        data = data or {}
        test = tuple(data.get("test") or ())
        if data.get("qc_min_totals") is not None:
            thresholds = {str(r): int(t) for r, t in data["qc_min_totals"].items()}
        else:  # before per-section QC: one threshold for every test region
            thresholds = {str(r): int(data.get("qc_min_total") or 0) for r in test}
        fraction = data.get("qc_depth_fraction")
        return cls(
            fingerprint=str(data.get("fingerprint") or "unknown"),
            k=int(data.get("k") or 0),
            genes=tuple(data.get("genes") or ()),
            test=test,
            qc_min_totals=thresholds,
            qc_depth_fraction=None if fraction is None else float(fraction),
            scored=int(data.get("scored") or 0),
            dropped=int(data.get("dropped") or 0),
            fold=int(data["fold"]) if data.get("fold") is not None else None,
            folds=int(data["folds"]) if data.get("folds") is not None else None,
        )


@dataclass
class PerGene:
    """The long per-(region, gene) table of one cell: ``region`` and ``gene`` columns and one
    column of values (None for an excluded pair) per per-map metric in ``scores``."""

    region: list[str] = field(default_factory=list)
    gene: list[str] = field(default_factory=list)
    scores: dict[str, list[float | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.region)

    def columns(self) -> dict[str, list]:
        """Every column, ``region`` and ``gene`` first (the per-gene CSV, the JSON)."""
        return {"region": self.region, "gene": self.gene, **self.scores} if self else {}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PerGene:
        data = dict(data or {})
        region = data.pop("region", None)
        legacy = data.pop("section", None)
        gene = data.pop("gene", [])
        return cls(
            region=list(region if region is not None else legacy or []),
            gene=list(gene),
            scores={k: list(v) for k, v in data.items()},
        )


@dataclass
class Curve:
    """A trained method's learning curve (:mod:`bench.run.learning`): at each checkpoint
    ``step`` (optimiser steps), the mean training ``loss`` since the previous one and the
    validation ``pcc`` / ``rmse`` (and ``crps`` for samplers, else empty) of the point prediction
    on the ``validation`` regions; ``total`` is the fit's step budget. Early stopping: the last
    step trained (``stopped_at``), the step of the best validation PCC (``best_step``), whether
    the test predictions use the state of that step (``restored``; else that of ``stopped_at``)
    and whether the best was the last point of the full budget (``improving``: still improving
    at the maximum). Curves recorded before early stopping have None / False there."""

    total: int = 0
    validation: list[str] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    pcc: list[float | None] = field(default_factory=list)
    rmse: list[float | None] = field(default_factory=list)
    crps: list[float | None] = field(default_factory=list)
    stopped_at: int | None = None
    best_step: int | None = None
    restored: bool = False
    improving: bool = False

    def __bool__(self) -> bool:
        return bool(self.step)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Curve:
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Record:
    """One cell's result; the only thing the runner hands to tracking and the leaderboard."""

    dataset: str
    method: str
    seed: int
    split: SplitRef = field(default_factory=SplitRef)
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "failed"
    error: str | None = None
    control: str | None = None
    name: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_gene: PerGene = field(default_factory=PerGene)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    memory: dict[str, float | None] = field(default_factory=dict)
    device: str = "n/a"
    code_version: str = "unknown"
    started: float = 0.0
    finished: float = 0.0
    finished_ms: int = 0
    curve: Curve = field(default_factory=Curve)  # trained methods only (else empty)
    converged: bool | None = None  # the learning-curve verdict; None: not trained / no curve
    # a sampler's K: the draws per input its point prediction averages (fixed by --draws or
    # chosen by methods.contract.DrawRule); None for deterministic methods and failed cells
    draws_used: int | None = None
    # per scored test position (C order of the split's scored mask): the change of the mean PCC
    # when that position alone is dropped (bench.scoring.influence); empty for failed cells
    influence: list[float | None] = field(default_factory=list)
    # sha256 of each side file this record owns, by file name in its folder (set when saved);
    # None for a record written before records carried checksums (or one with no side files)
    files: dict[str, str] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def path(self, results_dir: Path) -> Path:
        return record_path(results_dir, self.dataset, self.method, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (schema 1), without ``name`` when the cell never got one and without
        ``files`` when no checksum was recorded."""
        out: dict[str, Any] = {"schema": SCHEMA}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if key == "split":
                value = value.to_json()
            elif key == "per_gene":
                value = value.columns()
            elif key == "curve":
                value = value.to_json()
            elif key in ("name", "files") and value is None:
                continue
            out[key] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> Record:
        """A record from its JSON text or object (old key names read, see the module doc)."""
        raw = json.loads(data) if isinstance(data, str) else dict(data)
        raw.pop("schema", None)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        known["split"] = SplitRef.from_json(raw.get("split"))
        known["per_gene"] = PerGene.from_json(raw.get("per_gene"))
        known["curve"] = Curve.from_json(raw.get("curve"))
        known["params"] = {
            _LEGACY_PARAMS.get(k, k): v for k, v in (raw.get("params") or {}).items()
        }
        for key in ("metrics", "timings", "memory"):
            known[key] = dict(raw.get(key) or {})
        for key in ("peak_memory_mb", "started", "finished"):
            value = raw.get(key)
            known[key] = float(value) if value is not None else 0.0
        known["finished_ms"] = int(raw.get("finished_ms") or 0)
        used = raw.get("draws_used")
        known["draws_used"] = int(used) if used is not None else None
        known["influence"] = list(raw.get("influence") or [])
        files = raw.get("files")
        known["files"] = {str(k): str(v) for k, v in files.items()} if files is not None else None
        return cls(**known)


def record_path(results_dir: Path, dataset: str, method: str, seed: int) -> Path:
    return results_dir / dataset / method / f"seed-{seed}.json"


def write_record(results_dir: Path, record: Record) -> Path:
    """Write one record atomically; returns its path."""
    return atomic_write_text(record.path(results_dir), record.to_json())


def read_record(path: Path) -> Record | None:
    """A record, or None when the file is unreadable, not a record of this schema, or ok without
    a single metric."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        return None
    try:
        record = Record.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if record.ok and not any(v is not None for v in record.metrics.values()):
        return None  # "ok" with no score would be ranked as anything: not a record
    return record


def record_paths(results_dir: Path) -> list[Path]:
    """The record files under ``results_dir`` (``<dataset>/<method>/seed-*.json``, sorted), never
    those moved aside into ``<results-dir>/damaged/``."""
    found = Path(results_dir).glob("*/*/seed-*.json")
    return sorted(p for p in found if p.relative_to(results_dir).parts[0] != DAMAGED)


def read_records(results_dir: Path) -> list[Record]:
    """Every record under ``results_dir``, sorted by (dataset, method, seed)."""
    found = (read_record(p) for p in record_paths(results_dir))
    return sorted((r for r in found if r is not None), key=lambda r: (r.dataset, r.method, r.seed))
