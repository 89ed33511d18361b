"""Transcript-table readers: the real Xenium bone-marrow section (a pixel table read by the generic
reader), synthetic Xenium files (the xenium reader), errors; the old ``[read].format`` key."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.data.readers import transcripts, xenium
from bench.data.readers.table_io import CONTROL_PREFIXES
from bench.errors import BenchError

REAL_CARD = {
    "read": {
        "columns": {"gene": "gene", "x": "x_px", "y": "y_px"},
        "unit": "px",
        "um_per_px": 0.425,
        "bin_um": 32,
    },
    "lattice": {"image_um_per_px": 0.425},
}
REAL_ENTRY = {"transcripts": "transcripts.parquet", "image": "dapi_full.jpg"}

# Synthetic Xenium: 0.5 um/px, 10 um bins, a 100 x 60 px image (50 x 30 um).
XENIUM_CARD = {"read": {"um_per_px": 0.5, "bin_um": 10}, "lattice": {}}
ROWS = [  # feature_name, x_location, y_location (um), qv
    ("GeneA", 2.0, 3.0, 30.0),  # bin (0, 0)
    ("GeneB", 5.0, 5.0, 25.0),  # bin (0, 0)
    ("GeneA", 9.9, 0.0, 40.0),  # bin (0, 0)
    ("GeneB", 35.0, 25.0, 30.0),  # bin (2, 3)
    ("NegControlProbe_00042", 12.0, 12.0, 30.0),  # control
    ("BLANK_0001", 1.0, 1.0, 30.0),  # control
    ("GeneA", 45.0, 5.0, 10.0),  # qv < 20
    ("GeneC", 22.0, 12.0, 5.0),  # qv < 20: GeneC keeps a zero column
]


@pytest.fixture(scope="module")
def real(root: Path):
    start = time.perf_counter()
    section = transcripts.read_section("bm", root / "xenium_bone_marrow", REAL_ENTRY, REAL_CARD)
    print(f"read + bin: {time.perf_counter() - start:.2f} s")
    return section


def write_table(folder: Path, rows: list[tuple], name: str = "tx.csv.gz", **columns) -> Path:
    """Write ``rows`` as a Xenium table (``.csv.gz`` or ``.parquet``) plus a 100 x 60 image."""
    names = ["feature_name", "x_location", "y_location", "qv"]
    frame = pd.DataFrame(rows, columns=[columns.get(n, n) for n in names])
    path = folder / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    Image.fromarray(np.zeros((60, 100), dtype=np.uint8)).save(folder / "dapi.png")
    return path


def read_synthetic(folder: Path, name: str = "tx.csv.gz", card: dict = XENIUM_CARD, reader=xenium):
    return reader.read_section("s1", folder, {"transcripts": name, "image": "dapi.png"}, card)


def test_real_section(real, root: Path) -> None:
    genes = pd.read_parquet(root / "xenium_bone_marrow" / "transcripts.parquet", columns=["gene"])
    names = genes["gene"].astype(str)
    kept = int((~names.str.startswith(CONTROL_PREFIXES)).sum())
    assert 1.30e6 < kept < 1.34e6 and 15_000 < len(names) - kept < 20_000
    assert int(real.counts.sum()) == kept
    assert len(real.genes) == 477 == real.counts.shape[1]
    assert not any(g.startswith(CONTROL_PREFIXES) for g in real.genes)
    assert list(real.genes) == sorted(real.genes)
    assert abs(real.col.max() + 1 - 321) <= 3 and abs(real.row.max() + 1 - 114) <= 3
    assert abs(len(real.row) - 18_342) <= 0.02 * 18_342
    assert real.in_tissue.all() and real.image_size == (24134, 8571)
    assert real.pitch_um == (32.0, 32.0) and real.um_per_px == 0.425
    x, y = real.to_pixel @ np.array([real.col[-1], real.row[-1], 1.0])
    assert 0 <= x < 24134 and 0 <= y < 8571


def test_quarter_scale_image_matches_full(real, root: Path) -> None:
    entry = {**REAL_ENTRY, "image": "dapi_level13_div4.png", "image_scale": 0.25}
    small = transcripts.read_section("bm", root / "xenium_bone_marrow", entry, REAL_CARD)
    assert all(abs(a - b) <= 4 for a, b in zip(small.image_size, real.image_size, strict=True))
    assert (small.counts != real.counts).nnz == 0
    assert np.array_equal(small.row, real.row) and np.array_equal(small.col, real.col)


@pytest.mark.parametrize("name", ["tx.csv.gz", "tx.parquet"])
def test_synthetic_xenium(tmp_path: Path, name: str) -> None:
    write_table(tmp_path, ROWS, name)
    section = read_synthetic(tmp_path, name)
    assert list(section.genes) == ["GeneA", "GeneB", "GeneC"]
    assert section.row.tolist() == [0, 2] and section.col.tolist() == [0, 3]
    assert section.counts.toarray().tolist() == [[2, 1, 0], [0, 1, 0]]
    assert section.in_tissue.tolist() == [True, True]
    assert section.image_size == (100, 60) and section.um_per_px == 0.5
    assert np.allclose(section.to_pixel, [[20, 0, 10], [0, 20, 10]])


def test_csv_and_parquet_agree(tmp_path: Path) -> None:
    write_table(tmp_path, ROWS, "tx.csv.gz")
    write_table(tmp_path, [(g.encode(), *rest) for g, *rest in ROWS], "bytes.parquet")
    a, b = read_synthetic(tmp_path, "tx.csv.gz"), read_synthetic(tmp_path, "bytes.parquet")
    assert (a.counts != b.counts).nnz == 0 and list(a.genes) == list(b.genes)


def test_edge_bin_centre_outside_image_is_not_in_tissue(tmp_path: Path) -> None:
    write_table(tmp_path, [("GeneA", 2.0, 2.0, 30.0), ("GeneA", 42.0, 2.0, 30.0)])
    Image.fromarray(np.zeros((60, 85), dtype=np.uint8)).save(tmp_path / "dapi.png")  # 42.5 um
    section = read_synthetic(tmp_path)
    assert section.col.tolist() == [0, 4] and section.in_tissue.tolist() == [True, False]


def truncated_gzip(folder: Path) -> None:
    path = write_table(folder, ROWS * 200, "raw.csv")
    data = gzip.compress(path.read_bytes())
    (folder / "tx.csv.gz").write_bytes(data[: len(data) // 2])


def random_parquet(folder: Path) -> None:
    write_table(folder, ROWS)
    (folder / "tx.parquet").write_bytes(np.random.default_rng(0).bytes(4096))


def with_rows(rows: list[tuple]):
    return lambda folder: write_table(folder, rows)


TABLE_CARD = {
    "read": {
        "columns": {"gene": "gene_name", "x": "x_location", "y": "y_location"},
        "unit": "um",
        "um_per_px": 0.5,
        "bin_um": 10,
    }
}
IMPLAUSIBLE_CARD = {"read": {**XENIUM_CARD["read"], "um_per_px": 500}}
X, T = xenium, transcripts
CASES = {  # id: (make files, file name, reader, card, text expected in the message)
    "missing file": (lambda f: None, "tx.csv.gz", X, XENIUM_CARD, "missing"),
    "truncated gzip": (truncated_gzip, "tx.csv.gz", X, XENIUM_CARD, "unreadable"),
    "corrupt parquet": (random_parquet, "tx.parquet", X, XENIUM_CARD, "unreadable"),
    "missing column": (with_rows(ROWS), "tx.csv.gz", T, TABLE_CARD, "gene = 'gene_name'"),
    "xenium columns renamed": (with_rows(ROWS), "tx.csv.gz", X, TABLE_CARD, "gene = 'gene_name'"),
    "outside image": (with_rows([("GeneA", 60.0, 5.0, 30.0)]), "tx.csv.gz", X, XENIUM_CARD,
                      "misregistered"),
    "negative": (with_rows([("GeneA", -1.0, 5.0, 30.0)]), "tx.csv.gz", X, XENIUM_CARD, "negative"),
    "nan": (with_rows([("GeneA", 1.0, None, 30.0), *ROWS]), "tx.csv.gz", X, XENIUM_CARD, "NaN"),
    "empty": (with_rows([]), "tx.csv.gz", X, XENIUM_CARD, "empty section"),
    "controls only": (with_rows(ROWS[4:6]), "tx.csv.gz", X, XENIUM_CARD, "empty section"),
    "implausible pixel size": (with_rows(ROWS), "tx.csv.gz", X, IMPLAUSIBLE_CARD, "implausible"),
    "table without unit": (with_rows(ROWS), "tx.csv.gz", T,
                           {"read": {k: v for k, v in TABLE_CARD["read"].items() if k != "unit"}},
                           "[read].unit"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_errors_name_the_file(tmp_path: Path, case: str) -> None:
    make, name, reader, card, expected = CASES[case]
    make(tmp_path)
    with pytest.raises(BenchError) as err:
        read_synthetic(tmp_path, name, card, reader)
    message = str(err.value)
    assert name in message and expected in message and "\n" not in message


@pytest.mark.parametrize(
    ("reader", "fmt", "fix"),
    [
        (transcripts, "xenium", 'set reader = "xenium" (not reader = "transcripts"'),
        (transcripts, "cosmx", 'set reader = "cosmx"'),
        (transcripts, "table", 'keep reader = "transcripts"'),
        (xenium, "xenium", 'keep reader = "xenium"'),
        (xenium, "table", 'set reader = "transcripts" (not reader = "xenium"'),
        (transcripts, "visium", "set reader to one of"),
    ],
)
def test_old_format_key_is_refused_with_the_fix(
    tmp_path: Path, reader, fmt: str, fix: str
) -> None:
    """``[read].format`` chose the platform before each had its reader: one line, the fix."""
    write_table(tmp_path, ROWS)
    card = {"read": {**XENIUM_CARD["read"], "format": fmt}}
    with pytest.raises(BenchError) as err:
        read_synthetic(tmp_path, "tx.csv.gz", card, reader)
    message = str(err.value)
    assert "\n" not in message and "[read].format" in message and fix in message
    assert "delete [read].format" in message


def test_platform_readers_share_the_core_and_differ_in_defaults(tmp_path: Path) -> None:
    """The generic reader with Xenium's columns, unit and min_qv reads what the xenium reader
    reads; without min_qv it keeps the low-qv transcripts."""
    write_table(tmp_path, ROWS)
    columns = {"gene": "feature_name", "x": "x_location", "y": "y_location", "qv": "qv"}
    read = {**XENIUM_CARD["read"], "columns": columns, "unit": "um"}
    a = read_synthetic(tmp_path)
    b = read_synthetic(tmp_path, card={"read": {**read, "min_qv": 20}}, reader=transcripts)
    assert (a.counts != b.counts).nnz == 0 and list(a.genes) == list(b.genes)
    c = read_synthetic(tmp_path, card={"read": read}, reader=transcripts)
    assert c.counts.sum() == a.counts.sum() + 2  # the two qv < 20 rows
