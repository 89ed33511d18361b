"""Result records: one JSON file per (dataset, method, seed), written atomically.

Layout: ``<results-dir>/<dataset>/<method>/seed-<seed>.json``. A record holds ``dataset``,
``method``, ``seed``, ``status`` ("ok" or "failed"), ``error``, ``params``, ``control``,
``split`` (fingerprint, k, genes, sections), ``metrics`` (scalar means), ``per_gene`` (a long
table: one row per (section, gene) with every per-map metric), ``timings`` (seconds),
``peak_memory_mb``, ``device``, ``code_version`` and start/finish times (Unix seconds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.files import atomic_write_text

SCHEMA = 1


def record_path(results_dir: Path, dataset: str, method: str, seed: int) -> Path:
    return results_dir / dataset / method / f"seed-{seed}.json"


def write_record(results_dir: Path, record: dict[str, Any]) -> Path:
    """Write one record atomically; returns its path."""
    path = record_path(results_dir, record["dataset"], record["method"], record["seed"])
    atomic_write_text(
        path, json.dumps({"schema": SCHEMA, **record}, indent=1, sort_keys=True) + "\n"
    )
    return path


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is unreadable or not a record of this schema."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA else None


def read_records(results_dir: Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir``, sorted by (dataset, method, seed)."""
    found = (read_record(p) for p in sorted(results_dir.glob("*/*/seed-*.json")))
    return sorted(
        (r for r in found if r is not None), key=lambda r: (r["dataset"], r["method"], r["seed"])
    )
