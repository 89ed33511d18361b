"""Reading a transcript table, shared by the transcript readers (not a reader): the file, its
mapped columns, numeric coordinates and the control probes.

A table is ``.parquet``, ``.csv``, ``.tsv`` or either gzipped (``.csv.gz``, ``.tsv.gz``, or any
``.gz``, read as comma-separated); only the mapped columns are read, renamed to ``gene``, ``x``,
``y`` (and ``qv``, ``fov``). Gene names may be str or bytes (as some Xenium parquet files hold
them). Control / blank probes are names matching a case-insensitive glob of ``[read].controls``
(default :data:`CONTROL_PATTERNS`).
"""

from __future__ import annotations

import fnmatch
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError, first_line

CONTROL_PREFIXES = (
    "NegControl", "BLANK", "Unassigned", "DeprecatedCodeword", "Intergenic", "antisense",  # Xenium
    "NegPrb", "FalseCode", "SystemControl",  # CosMx; MERSCOPE's Blank-* match BLANK*
)  # fmt: skip
CONTROL_PATTERNS = tuple(f"{p}*" for p in CONTROL_PREFIXES)
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, UnicodeError, pd.errors.ParserError)


def _reader_args(path: Path) -> dict[str, str] | None:
    """pandas.read_csv arguments for a text table, by its name; None for parquet."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return None
    if name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        return {"sep": "\t"}
    if name.endswith((".csv", ".gz")):
        return {"sep": ","}
    raise BenchError(f"{path}: unknown table type; use .parquet, .csv, .tsv or their .gz")


def load_table(
    path: Path, columns: Mapping[str, str], need: tuple[str, ...] = ("gene", "x", "y")
) -> pd.DataFrame:
    """The wanted columns of a transcript table, renamed to gene, x, y (and qv, fov when
    present); every column of ``need`` must exist."""
    if not path.is_file():
        raise BenchError(f"{path}: transcripts file missing; re-fetch it or fix the card's path")
    wanted = {name: key for key, name in columns.items()}
    args = _reader_args(path)
    try:
        if args is None:
            import pyarrow.parquet as pq
            from pyarrow import ArrowException

            try:
                names = set(pq.read_schema(path).names)
                frame = pd.read_parquet(path, columns=[n for n in wanted if n in names])
            except ArrowException as err:
                raise ValueError(err) from None
        else:
            frame = pd.read_csv(  # low_memory=False: typed whole, no mixed-type DtypeWarning
                path,
                usecols=lambda c: c in wanted,
                dtype={columns["gene"]: str},
                low_memory=False,
                **args,
            )
    except READ_ERRORS as err:
        raise BenchError(
            f"{path}: unreadable transcript table ({first_line(err)}); re-fetch it"
        ) from None
    missing = [columns[k] for k in need if columns[k] not in frame.columns]
    if missing:
        mapping = ", ".join(f"{k} = {columns[k]!r}" for k in need)
        raise BenchError(
            f"{path}: missing column(s) {', '.join(missing)} (column mapping {mapping}); "
            "set [read].columns to the table's names"
        )
    return frame.rename(columns=wanted)


def select_fov(
    path: Path, frame: pd.DataFrame, column: str, fov: int | str, sid: str
) -> pd.DataFrame:
    """The rows of one field of view: ``fov`` column equal to ``fov`` (compared as text)."""
    keys = frame["fov"].astype(str).str.strip()
    chosen = (keys == str(fov).strip()).to_numpy()
    if not chosen.any():
        have = sorted(set(keys), key=lambda v: (len(v), v))
        raise BenchError(
            f"{path}: no transcript with {column} = {fov!r} (have "
            f"{', '.join(have[:5])}{', ...' if len(have) > 5 else ''}); fix [sections.{sid}].fov"
        )
    return frame[chosen]


def coordinates(path: Path, frame: pd.DataFrame, axis: str) -> np.ndarray:
    """(P,) float64 coordinates of one axis, checked numeric and finite."""
    column = frame[axis]
    if not pd.api.types.is_numeric_dtype(column):
        raise BenchError(f"{path}: non-numeric {axis} coordinates; the table needs numbers")
    values = column.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise BenchError(f"{path}: NaN or infinite {axis} coordinates; drop or fix those rows")
    return values


def control_mask(names: np.ndarray, patterns: tuple[str, ...]) -> np.ndarray:
    """(n,) int: index of the first pattern each name matches (case-insensitive glob), or -1."""
    out = np.full(len(names), -1, dtype=np.int64)
    for i, pattern in reversed(list(enumerate(patterns))):
        regex = re.compile(fnmatch.translate(pattern), re.IGNORECASE)
        out[[bool(regex.match(n)) for n in names]] = i
    return out


def gene_codes(
    gene: pd.Series, patterns: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted non-control gene names present; each transcript's index into them (-1: control);
    each transcript's control pattern index (-1: a gene)."""
    names = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in gene.cat.categories])
    codes = gene.cat.codes.to_numpy()
    which = control_mask(names, patterns)
    real = (np.bincount(codes, minlength=len(names)) > 0) & (which < 0)
    genes = np.sort(names[real])
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[real] = np.searchsorted(genes, names[real])
    return genes, lookup[codes], which[codes]


def _count(n: int) -> str:
    return f"{n:,}"


def drop_controls(
    path: Path,
    gene: pd.Series,
    qv: np.ndarray | None,
    controls: tuple[str, ...],
    min_qv: float | None,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(genes, each transcript's gene index (-1: control), kept transcripts, the note): control
    probes dropped, and transcripts with ``qv < min_qv`` when there is a qv column and a
    ``min_qv``; the note counts what was dropped, per control pattern."""
    genes, codes, control = gene_codes(gene, controls)
    keep = codes >= 0
    n_controls = int(len(codes) - keep.sum())
    low_qv = np.zeros(len(codes), dtype=bool)
    if qv is not None and min_qv is not None:
        low_qv = keep & (qv < min_qv)
        keep &= ~low_qv
    if not keep.any():
        raise BenchError(
            f"{path}: nothing left of {len(codes)} transcripts ({n_controls} control probes, "
            "the rest below min_qv): empty section; check [read].controls and min_qv"
        )
    counts_by = np.bincount(control[control >= 0], minlength=len(controls))
    dropped = ", ".join(
        f"{controls[i]}: {_count(int(counts_by[i]))}"
        for i in np.argsort(-counts_by, kind="stable")
        if counts_by[i]
    )
    note = (
        f"{label}: kept {_count(int(keep.sum()))} of {_count(len(codes))} transcripts; dropped "
        f"{_count(n_controls)} control/blank probe transcripts "
        f"({dropped or 'none matched [read].controls'})"
        + (f" and {_count(int(low_qv.sum()))} below min_qv {min_qv:g}" if low_qv.any() else "")
    )
    return genes, codes, keep, note
