"""Result records: one JSON file per (dataset, method, seed), written atomically.

Layout: ``<results-dir>/<dataset>/<method>/seed-<seed>.json``. A record holds ``dataset``,
``method``, ``seed``, ``status`` ("ok" or "failed"), ``error``, ``params``, ``control``,
``split`` (fingerprint, k, genes, sections), ``metrics`` (scalar means), ``per_gene`` (a long
table: one row per (section, gene) with every per-map metric), ``timings`` (seconds),
``peak_memory_mb``, ``device``, ``code_version`` and start/finish times (Unix seconds).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A reader sees either the old file or the new one, never half of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
